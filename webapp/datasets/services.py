"""Writes to datasets: versioned creation, uploads (staged here, parsed by a worker), and
exports to files.

Datasets never change once written (a new version is a new row), so an export file, once
written under PONDER_DATA_DIR/datasets/<id>/, is reused as it is.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from engine.datasets import DatasetError
from webapp import queue
from webapp.datasets import files, uploads
from webapp.datasets.models import Dataset, DatasetExport, Prompt
from webapp.projects.models import Project
from webapp.projects.selectors import AuthUser, can_write

FILE_NAMES = {"jsonl": "data.jsonl", "parquet": "data.parquet", "datasets": "hf"}
EXPORT_SUFFIXES = {"jsonl": ".jsonl", "parquet": ".parquet", "datasets": "-hf.zip"}
MAX_NAME = 200


def _check_owner(user: AuthUser, project: Project) -> None:
    if not can_write(user, project.pk):
        raise PermissionDenied("only project owners create datasets")


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise ValidationError({"name": f"a dataset needs a name of 1 to {MAX_NAME} characters"})
    return name


def dataset_create(*, project: Project, user: AuthUser, name: str, kind: str, prompts: list[Prompt],
                   source: dict[str, Any], description: str = "") -> Dataset:
    """A new version of dataset `name` (previous highest version + 1) holding `prompts`."""
    _check_owner(user, project)
    return _new_version(project, user, _check_name(name), kind, prompts, source, description)


def dataset_store_output(*, project: Project, created_by: AuthUser | None, name: str, kind: str,
                         prompts: list[Prompt], source: dict[str, Any]) -> Dataset:
    """The dataset a run produced, as a new version in its project. The run's launcher was
    checked when it launched; the output is kept even if they have left since."""
    return _new_version(project, created_by, _check_name(name), kind, prompts, source, "")


def _new_version(project: Project, user: AuthUser | None, name: str, kind: str, prompts: list[Prompt],
                 source: dict[str, Any], description: str) -> Dataset:
    if not prompts:
        raise ValidationError({"rows": "nothing to put in the dataset: no rows matched"})
    for attempt in range(3):
        try:
            return _create_version(project, user, name, kind, prompts, source, description)
        except IntegrityError:  # someone took the same version number first; take the next
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@transaction.atomic
def _create_version(project: Project, user: AuthUser | None, name: str, kind: str, prompts: list[Prompt],
                    source: dict[str, Any], description: str) -> Dataset:
    latest = Dataset.objects.filter(project=project, name=name).aggregate(v=Max("version"))["v"] or 0
    dataset = Dataset.objects.create(project=project, name=name, version=latest + 1, kind=kind, source=source,
                                     description=description, row_count=len(prompts), created_by=user)
    for i, p in enumerate(prompts):
        p.dataset, p.index = dataset, i
    Prompt.objects.bulk_create(prompts, batch_size=1000)
    return dataset


# ---- uploads: staged by the web process, parsed by a worker -------------------------------


def uploads_dir() -> Path:
    return Path(settings.PONDER_DATA_DIR) / "uploads"


def upload_dir(dataset_id: int) -> Path:
    """Where an upload waits for its worker (removed once the import ends either way)."""
    return uploads_dir() / str(dataset_id)


def dataset_upload_start(*, project: Project, user: AuthUser, name: str, upload: Any,
                         columns: dict[str, str] | None = None) -> Dataset:
    """A queued dataset for an uploaded JSONL, CSV, Parquet or zipped `datasets` folder: the
    file is saved to its staging folder and a worker parses it (`dataset_import_run`). A file
    in a layout Ponder does not recognise, given no `columns`, waits in status `mapping` for
    `dataset_columns_set`.

    Raises ValidationError({"file": ...}) when the size or the file's metadata alone refuse
    it (`files.check_upload`), or ({"columns": ...}) for a mapping that does not read its
    first rows; then no row and no file is left behind."""
    _check_owner(user, project)
    original = Path(upload.name or "upload").name
    name = _check_name(name or Path(original).stem)
    if upload.size is not None and upload.size > uploads.cap_bytes():
        raise ValidationError({"file": uploads.too_large("file", upload.size)})
    try:
        filename = files.upload_name(original)
    except DatasetError as e:
        raise ValidationError({"file": str(e)}) from None
    incoming = uploads_dir() / f"incoming-{uuid.uuid4().hex}"
    incoming.mkdir(parents=True)
    try:
        staged = files.save_upload(upload, incoming / filename)
        files.check_upload(staged)
    except DatasetError as e:
        shutil.rmtree(incoming, ignore_errors=True)
        raise ValidationError({"file": str(e)}) from None
    try:
        if columns:
            files.check_mapping(staged, columns)
        waits = not columns and files.needs_mapping(staged)
        return _queue_import(project, user, name, original, incoming, columns or None, waits)
    except DatasetError as e:
        raise ValidationError({"columns" if columns else "file": str(e)}) from None
    finally:
        shutil.rmtree(incoming, ignore_errors=True)


def dataset_hub_start(*, project: Project, user: AuthUser, name: str, ref: str,
                      columns: dict[str, str] | None = None) -> Dataset:
    """A queued dataset for a Hugging Face Hub dataset named `owner/name[:config][@split]`
    that the operator allows (PONDER_ALLOWED_DATASETS); a worker loads and stores it.
    ValidationError({"hub": ...}) for a bad or unallowed name, ({"columns": ...}) for an
    unknown role, leaving nothing behind."""
    from engine.datasets import HUB_PREFIX, check_columns, parse_hub_ref

    _check_owner(user, project)
    ref = ref.strip() if ref.strip().startswith(HUB_PREFIX) else HUB_PREFIX + ref.strip()
    try:
        hub_name, _, _ = parse_hub_ref(ref)
    except DatasetError as e:
        raise ValidationError({"hub": str(e)}) from None
    try:
        check_columns(columns or {})
    except DatasetError as e:
        raise ValidationError({"columns": str(e)}) from None
    allowed = settings.PONDER_ALLOWED_DATASETS
    if not any(fnmatch.fnmatchcase(hub_name, pattern) for pattern in allowed):
        raise ValidationError({"hub": f"{hub_name} is not a Hub dataset this server may load: "
                                      + (f"the operator allows {', '.join(allowed)}" if allowed else
                                         "the operator allows none (PONDER_ALLOWED_DATASETS)")})
    name = _check_name(name or hub_name.split("/")[1])
    source = {"type": "hub", "ref": ref, **({"columns": columns} if columns else {})}
    for attempt in range(3):
        try:
            return _create_hub_queued(project, user, name, source)
        except IntegrityError:  # someone took the same version number first; take the next
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@transaction.atomic
def _create_hub_queued(project: Project, user: AuthUser, name: str, source: dict[str, Any]) -> Dataset:
    latest = Dataset.objects.filter(project=project, name=name).aggregate(v=Max("version"))["v"] or 0
    dataset = Dataset.objects.create(project=project, name=name, version=latest + 1, created_by=user,
                                     status=Dataset.Status.QUEUED, source=source)
    transaction.on_commit(lambda: _enqueue_import(dataset.pk))
    return dataset


def dataset_columns_set(*, dataset: Dataset, user: AuthUser, columns: dict[str, str]) -> Dataset:
    """Queue the import of an upload waiting for its mapping, with `columns` (role → the
    file's column) stored in its `source`. ValidationError({"columns": ...}) names the
    field and the rule when the mapping does not read the file's first rows."""
    _check_owner(user, dataset.project)
    if dataset.status != Dataset.Status.MAPPING:
        raise ValidationError({"columns": f"this dataset is {dataset.status}, not waiting for a column mapping"})
    path = upload_dir(dataset.pk) / files.upload_name(dataset.source.get("file"))
    try:
        files.check_mapping(path, columns)
    except DatasetError as e:
        raise ValidationError({"columns": str(e)}) from None
    with transaction.atomic():
        updated = Dataset.objects.filter(pk=dataset.pk, status=Dataset.Status.MAPPING).update(
            status=Dataset.Status.QUEUED, source={**dataset.source, "columns": columns})
        if updated:
            transaction.on_commit(lambda: _enqueue_import(dataset.pk))
    dataset.refresh_from_db()
    return dataset


def _queue_import(project: Project, user: AuthUser, name: str, original: str, incoming: Path,
                  columns: dict[str, str] | None, waits: bool) -> Dataset:
    for attempt in range(3):
        try:
            return _create_queued(project, user, name, original, incoming, columns, waits)
        except IntegrityError:  # someone took the same version number first; take the next
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _create_queued(project: Project, user: AuthUser, name: str, original: str, incoming: Path,
                   columns: dict[str, str] | None, waits: bool) -> Dataset:
    staged: Path | None = None
    source = {"type": "upload", "file": original, **({"columns": columns} if columns else {})}
    try:
        with transaction.atomic():
            latest = Dataset.objects.filter(project=project, name=name).aggregate(v=Max("version"))["v"] or 0
            dataset = Dataset.objects.create(project=project, name=name, version=latest + 1, created_by=user,
                                             status=Dataset.Status.MAPPING if waits else Dataset.Status.QUEUED,
                                             source=source)
            staged = upload_dir(dataset.pk)
            os.rename(incoming, staged)  # same folder tree: a rename, not a copy
            if not waits:
                transaction.on_commit(lambda: _enqueue_import(dataset.pk))
        return dataset
    except BaseException:
        if staged is not None:  # the row never committed: its file goes too
            shutil.rmtree(staged, ignore_errors=True)
        raise


def _enqueue_import(dataset_id: int) -> None:
    queue.send(queue.DATASET_IMPORT, args=[dataset_id], queue_kind="cpu")


def import_claim(*, dataset_id: int) -> bool:
    """queued → importing (a conditional UPDATE). An import still `importing` is taken again:
    only a task redelivered after its worker died asks for it, and an import writes its rows
    in one transaction at the end, so the one that died left none."""
    return Dataset.objects.filter(pk=dataset_id, status__in=[Dataset.Status.QUEUED, Dataset.Status.IMPORTING]
                                  ).update(status=Dataset.Status.IMPORTING, rows_read=0) == 1


def import_progress(*, dataset_id: int, rows: int) -> None:
    Dataset.objects.filter(pk=dataset_id, status=Dataset.Status.IMPORTING).update(rows_read=rows)


def dataset_import_run(*, dataset_id: int) -> str:
    """Parse a claimed upload and store its rows, marking the dataset ready, in one
    transaction ("ready"); a zipped `datasets` folder in a layout Ponder does not recognise,
    given no mapping, waits for one instead ("mapping", its first rows kept to show). Raises
    DatasetError (or anything else) for `import_fail`."""
    dataset = Dataset.objects.get(pk=dataset_id, status=Dataset.Status.IMPORTING)
    columns = dataset.source.get("columns") or None
    data = _hub_data(dataset, columns) if dataset.source.get("type") == "hub" else _uploaded_data(dataset)
    if data.is_dir() and not columns and files.needs_mapping(data):
        files.save_first_rows(data, upload_dir(dataset.pk))
        Dataset.objects.filter(pk=dataset.pk, status=Dataset.Status.IMPORTING).update(status=Dataset.Status.MAPPING)
        return "mapping"
    kind = Dataset.Kind.PROMPTS if columns else files.detect_kind(data)
    prompts = files.read_prompts(data, kind, max_rows=int(settings.PONDER_MAX_DATASET_ROWS),
                                 on_progress=lambda n: import_progress(dataset_id=dataset.pk, rows=n),
                                 columns=columns)
    _store_import(dataset, kind, prompts)
    return "ready"


def _uploaded_data(dataset: Dataset) -> Path:
    folder = upload_dir(dataset.pk)
    path = folder / files.upload_name(dataset.source.get("file"))
    if not path.is_file():
        raise DatasetError(f"{path.name}: the uploaded file is no longer in its staging folder; upload it again.")
    return files.unpack(path, folder / "work")


def _hub_data(dataset: Dataset, columns: dict[str, str] | None) -> Path:
    """What the readers take for a Hub dataset (its `hf:` name), once its first row shows a
    layout Ponder reads or a mapping was given."""
    data = Path(dataset.source["ref"])
    if not columns and files.needs_mapping(data):
        names = ", ".join(files.preview(data)[0])
        raise DatasetError(f"{dataset.source['ref']}: its columns ({names}) are not a layout Ponder recognises; "
                           "import it again with a column mapping, e.g. {\"prompt\": \"question\", \"answer\": "
                           "\"final\"}.")
    return data


@transaction.atomic
def _store_import(dataset: Dataset, kind: str, prompts: list[Prompt]) -> None:
    for i, p in enumerate(prompts):
        p.dataset, p.index = dataset, i
    Prompt.objects.bulk_create(prompts, batch_size=1000)
    ready = Dataset.objects.filter(pk=dataset.pk, status=Dataset.Status.IMPORTING).update(
        status=Dataset.Status.READY, kind=kind, row_count=len(prompts), rows_read=len(prompts), error="")
    if ready != 1:  # failed or removed meanwhile: the rows go back with the transaction
        raise DatasetError("the import was stopped while it ran.")


def import_fail(*, dataset_id: int, reason: str) -> None:
    """The dataset marked failed with the reason, holding no rows."""
    with transaction.atomic():
        failed = Dataset.objects.filter(pk=dataset_id).exclude(status=Dataset.Status.READY).update(
            status=Dataset.Status.FAILED, error=reason[:2000], row_count=0)
        if failed:
            Prompt.objects.filter(dataset_id=dataset_id).delete()


def import_cleanup(*, dataset_id: int) -> None:
    """The staged upload goes once the import has ended; one waiting for its mapping keeps
    its file (the unpacked copy goes: the import after the mapping unpacks it again)."""
    if Dataset.objects.filter(pk=dataset_id, status=Dataset.Status.MAPPING).exists():
        shutil.rmtree(upload_dir(dataset_id) / "work", ignore_errors=True)
        return
    shutil.rmtree(upload_dir(dataset_id), ignore_errors=True)


# ---- exports ------------------------------------------------------------------------------


def dataset_dir(dataset: Dataset) -> Path:
    return Path(settings.PONDER_DATA_DIR) / "datasets" / str(dataset.pk)


def export_rows(dataset: Dataset, on_progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Every row of the dataset in file layout, read 2,000 at a time (keyset on index)."""
    rows: list[dict[str, Any]] = []
    last = -1
    while True:
        chunk = list(Prompt.objects.filter(dataset=dataset, index__gt=last).order_by("index")[:2000])
        if not chunk:
            return rows
        rows.extend(files.export_row(dataset, p) for p in chunk)
        last = chunk[-1].index
        if on_progress is not None:
            on_progress(len(rows))


def dataset_export_path(dataset: Dataset, fmt: str, on_progress: Callable[[int], None] | None = None) -> Path:
    """The dataset written as `fmt` (jsonl, parquet, or datasets: a save_to_disk folder)
    under PONDER_DATA_DIR/datasets/<id>/; written once, then reused."""
    if fmt not in files.FORMATS:
        raise ValueError(f"format must be one of {', '.join(files.FORMATS)}, not {fmt!r}")
    path = dataset_dir(dataset) / FILE_NAMES[fmt]
    if not path.exists():
        files.write_rows(export_rows(dataset, on_progress), path, fmt)
    return path


def dataset_download_path(dataset: Dataset, fmt: str, on_progress: Callable[[int], None] | None = None) -> Path:
    """The file a person downloads: the export itself, or the `datasets` folder zipped."""
    path = dataset_export_path(dataset, fmt, on_progress)
    if fmt != "datasets":
        return path
    archive = dataset_dir(dataset) / "hf.zip"
    return archive if archive.exists() else files.zip_folder(path, archive)


def download_ready(dataset: Dataset, fmt: str) -> Path | None:
    """The download file if written already, here or by a worker's export job."""
    path = dataset_dir(dataset) / ("hf.zip" if fmt == "datasets" else FILE_NAMES.get(fmt, "-"))
    if path.exists():
        return path
    job = dataset.exports.filter(fmt=fmt, status=DatasetExport.Status.DONE).order_by("-finished_at").first()
    return Path(job.path) if job is not None and job.path and Path(job.path).exists() else None


def download_name(dataset: Dataset, fmt: str) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in dataset.name)[:80] or "dataset"
    return f"{stem}-v{dataset.version}{EXPORT_SUFFIXES[fmt]}"


def export_start(*, dataset: Dataset, fmt: str, user: AuthUser) -> DatasetExport:
    """An export job for a Celery worker (large datasets); an unfinished one is reused."""
    if fmt not in files.FORMATS:
        raise ValidationError({"fmt": f"format must be one of {', '.join(files.FORMATS)}"})
    open_job = dataset.exports.filter(fmt=fmt, status__in=[DatasetExport.Status.QUEUED,
                                                           DatasetExport.Status.RUNNING]).first()
    if open_job is not None:
        return open_job
    with transaction.atomic():
        job = DatasetExport.objects.create(dataset=dataset, fmt=fmt, created_by=user)
        transaction.on_commit(lambda: _enqueue_export(job.pk))
    return job


def _enqueue_export(export_id: int) -> None:
    queue.send(queue.DATASET_EXPORT, args=[export_id], queue_kind="cpu")


def export_claim(*, export_id: int) -> bool:
    """queued → running for exactly one worker (a conditional UPDATE)."""
    # A job still `running` is taken again: only a task redelivered after its worker died
    # asks for it (the file is written aside and renamed into place, so none is half there).
    return DatasetExport.objects.filter(pk=export_id, status__in=[DatasetExport.Status.QUEUED,
                                                                  DatasetExport.Status.RUNNING]).update(
        status=DatasetExport.Status.RUNNING, progress=0.0) == 1


def export_progress(*, export_id: int, share: float) -> None:
    DatasetExport.objects.filter(pk=export_id).update(progress=share)


def export_finish(*, export_id: int, status: str, path: str = "", error: str = "") -> None:
    DatasetExport.objects.filter(pk=export_id).update(
        status=status, path=path, error=error, finished_at=timezone.now(),
        progress=1.0 if status == DatasetExport.Status.DONE else 0.0)
