"""Dataset files: checking and reading uploads (JSONL, Parquet, a zipped `datasets` folder)
into Prompt rows, and writing Prompt rows back out in the layouts the engine reads.

An upload is checked in two steps. `check_upload` runs in the web process and reads only
metadata: a Parquet file's footer (rows, uncompressed size) and a zip's central directory
(member count, unpacked size, member names, the file names in `state.json`), so a small file
that would unpack to something huge is refused before anyone reads its data. `unpack` and
`read_prompts` run in a worker: the zip is extracted member by member within what its
directory declared, Arrow files are counted, and rows are read one by one under
PONDER_MAX_DATASET_ROWS.

Row rules come from `engine.datasets`: prompt rows are checked by `normalize_row` (as
`load_examples` does; errors name the file, the line or row, the field and the rule), SFT
rows by `check_sft_row`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings

from engine.datasets import (
    MAX_REPORTED,
    DatasetError,
    check_columns,
    check_sft_row,
    map_columns,
    normalize_row,
    recognise_layout,
)
from webapp.datasets.models import Dataset, Prompt

FORMATS = ("jsonl", "parquet", "datasets")
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".zip": "datasets",
            ".csv": "csv", ".tsv": "csv"}
PREVIEW_ROWS = 5
PREVIEW_CHARS = 300  # a cell longer than this is cut in the preview
SFT_KEYS = ("completion", "messages")
PREFERENCE_KEYS = ("chosen", "rejected")  # TRL's preference layout (DPO, reward models)
MB = 1024 * 1024
MAX_STATE_BYTES = MB  # a state.json lists file names; anything bigger is not one
PROGRESS_EVERY = 1000  # rows between progress reports
_EXAMPLE_KEYS = {"id", "prompt", "answer", "tests", "language", "task"}


# ---- checking an upload (metadata only) ---------------------------------------------------


def upload_name(name: str | None) -> str:
    """The upload's file name, safe to put in a folder, or DatasetError for unknown formats."""
    name = Path(name or "upload").name
    if Path(name).suffix.lower() not in SUFFIXES:
        raise DatasetError(f"{name}: unknown format; upload .jsonl, .csv, .parquet or a .zip of a datasets "
                           "save_to_disk folder.")
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def save_upload(upload: Any, path: Path) -> Path:
    """The uploaded file written to `path` chunk by chunk (never whole in memory)."""
    with open(path, "wb") as f:
        for chunk in upload.chunks():
            f.write(chunk)
    return path


def check_upload(path: Path) -> None:
    """Refuse, from metadata alone, a file that would unpack or parse past the caps."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        _check_parquet(path)
    elif suffix == ".zip":
        _check_zip(path)


def _check_rows(label: str, rows: int) -> None:
    cap = int(settings.PONDER_MAX_DATASET_ROWS)
    if rows > cap:
        raise DatasetError(f"{label}: {rows:,} rows; a dataset may hold at most {cap:,} (PONDER_MAX_DATASET_ROWS).")


def _check_parquet(path: Path) -> None:
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path)  # the footer only, no data page is read
    except Exception as e:  # pyarrow raises several types for unreadable files
        raise DatasetError(f"{path.name}: not a readable Parquet file ({e}).") from None
    _check_rows(path.name, meta.num_rows)
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    # Writers fill one or the other honestly; the larger of the two is what reading costs.
    size = max(sum(g.total_byte_size for g in groups),
               sum(g.column(j).total_uncompressed_size for g in groups for j in range(g.num_columns)))
    cap = int(settings.PONDER_MAX_PARQUET_UNCOMPRESSED_MB)
    if size > cap * MB:
        raise DatasetError(f"{path.name}: its metadata says {size / MB:,.0f} MB uncompressed; a Parquet upload "
                           f"may hold at most {cap} MB uncompressed (PONDER_MAX_PARQUET_UNCOMPRESSED_MB).")


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise DatasetError(f"{path.name}: not a zip file.") from None


def _check_zip(path: Path) -> None:
    """The central directory: member count, unpacked size, names; and state.json's names."""
    with _open_zip(path) as archive:
        members = archive.infolist()
        max_files, cap = int(settings.PONDER_MAX_ZIP_FILES), int(settings.PONDER_MAX_UNZIPPED_MB)
        if len(members) > max_files:
            raise DatasetError(f"{path.name}: {len(members):,} entries; a zip may hold at most {max_files:,} "
                               "(PONDER_MAX_ZIP_FILES).")
        total = sum(m.file_size for m in members)
        if total > cap * MB:
            raise DatasetError(f"{path.name}: unpacks to {total / MB:,.0f} MB; a zip may unpack to at most {cap} MB "
                               "(PONDER_MAX_UNZIPPED_MB).")
        for m in members:
            _check_member(path.name, m)
        for m in members:
            if PurePosixPath(m.filename).name == "state.json" and not m.is_dir():
                _check_state_names(m.filename, _read_small(archive, m))


def _check_member(label: str, m: zipfile.ZipInfo) -> None:
    """Only plain files and folders, named relative to the archive (no `/x`, `C:`, `..`)."""
    name = m.filename
    parts = name.split("/")
    if not name or name.startswith("/") or "\\" in name or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise DatasetError(f"{label}: the entry {name!r} points outside the archive; entries must be relative "
                           "paths without '..'.")
    if stat.S_ISLNK(m.external_attr >> 16):
        raise DatasetError(f"{label}: the entry {name!r} is a symbolic link; a zip may hold only files and folders.")


def _read_small(archive: zipfile.ZipFile, m: zipfile.ZipInfo) -> bytes:
    if m.file_size > MAX_STATE_BYTES:
        raise DatasetError(f"{m.filename}: too large for a datasets state file.")
    try:
        return archive.read(m)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as e:
        raise DatasetError(f"{m.filename}: cannot be unpacked ({e}).") from None


def _check_state_names(label: str, text: str | bytes) -> None:
    """Every Arrow file a `state.json` lists lies in its own folder: `datasets` joins those
    names to the folder unchecked, so `../` would read any file the worker can."""
    try:
        names = [f.get("filename") for f in json.loads(text).get("_data_files", [])]
    except (ValueError, AttributeError, TypeError):
        raise DatasetError(f"{label}: not a datasets state file.") from None
    for name in names:
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise DatasetError(f"{label}: the data file {name!r} is not a file name in its own folder.")


# ---- unpacking and reading (in a worker) --------------------------------------------------


def unpack(path: Path, workdir: Path) -> Path:
    """What to read: the file itself, or a zip's `datasets` folder extracted under `workdir`.
    The metadata checks run again: they are cheap, and the worker trusts no one's word."""
    check_upload(path)
    if path.suffix.lower() != ".zip":
        return path
    folder = _dataset_dir(_extract(path, workdir / "unzipped"))
    _check_state_files(folder)
    _check_rows(folder.name, sum(_arrow_rows(f, folder) for f in sorted(folder.rglob("*.arrow"))))
    return folder


def _extract(path: Path, dest: Path) -> Path:
    """Member by member, each within the size its directory entry declared."""
    dest.mkdir(parents=True, exist_ok=True)
    with _open_zip(path) as archive:
        for m in archive.infolist():
            _check_member(path.name, m)
            target = dest.joinpath(*PurePosixPath(m.filename).parts)
            try:
                if m.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(m) as src, open(target, "xb") as out:
                    shutil.copyfileobj(src, out, MB)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as e:
                raise DatasetError(f"{path.name}: the entry {m.filename!r} cannot be unpacked ({e}).") from None
    return dest


def _arrow_rows(path: Path, folder: Path) -> int:
    """Rows in an Arrow file, counted batch by batch from a memory map (nothing copied)."""
    import pyarrow as pa

    try:
        with pa.memory_map(str(path)) as source:
            try:
                return sum(batch.num_rows for batch in pa.ipc.open_stream(source))
            except pa.ArrowInvalid:
                source.seek(0)
                reader = pa.ipc.open_file(source)
                return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    except (pa.ArrowException, OSError) as e:
        raise DatasetError(f"{path.relative_to(folder)}: not a readable Arrow file ({e}).") from None


def _dataset_dir(root: Path) -> Path:
    """The folder that `datasets.save_to_disk` wrote: the root or one level below it."""
    markers = ("dataset_dict.json", "dataset_info.json", "state.json")
    for candidate in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        if any((candidate / m).exists() for m in markers):
            return candidate
    raise DatasetError("the zip holds no datasets save_to_disk folder (no dataset_info.json or dataset_dict.json).")


def _check_state_files(folder: Path) -> None:
    for state in folder.rglob("state.json"):
        _check_state_names(str(state.relative_to(folder)), state.read_bytes())


def _raw_rows(path: Path) -> Iterator[tuple[str, Any]]:
    # engine.datasets reads the three formats and names each row's place for errors.
    from engine.datasets import _rows

    return _rows(path, "train")


def detect_kind(path: Path) -> str:
    """Preference pairs when the first row has `chosen` and `rejected`; SFT when it has a
    completion or chat messages; else prompts."""
    for _, row in _raw_rows(path):
        if isinstance(row, dict) and all(k in row for k in PREFERENCE_KEYS):
            return Dataset.Kind.PREFERENCE
        if isinstance(row, dict) and any(k in row for k in SFT_KEYS):
            return Dataset.Kind.SFT
        return Dataset.Kind.PROMPTS
    raise DatasetError(f"{path.name}: the dataset has no rows.")


def read_prompts(path: Path, kind: str, *, max_rows: int | None = None,
                 on_progress: Callable[[int], None] | None = None, columns: dict[str, str] | None = None
                 ) -> list[Prompt]:
    """Unsaved Prompt rows (index set) from the file at `path`, or DatasetError naming bad rows.

    With `max_rows`, reading stops (refused) at the first row past it; `on_progress` hears
    the number of rows read every PROGRESS_EVERY rows; `columns` maps roles to the file's
    column names (`engine.datasets.map_columns`)."""
    if kind == Dataset.Kind.SFT:
        rows = _checked_rows(path, _sft_row, max_rows, on_progress)
        return [_sft_prompt(i, row) for i, row in enumerate(rows)]
    if kind == Dataset.Kind.PREFERENCE:
        pairs = _checked_rows(path, _preference_row, max_rows, on_progress)
        return [preference_prompt(i, row["prompt"], row["chosen"], row["rejected"],
                                  {k: v for k, v in row.items() if k not in ("prompt", *PREFERENCE_KEYS)})
                for i, row in enumerate(pairs)]
    check = _example_row if not columns else lambda row, number: _example_row(_mapped(row, columns), number)
    examples = _checked_rows(path, check, max_rows, on_progress)
    return [_example_prompt(i, ex) for i, ex in enumerate(examples)]


def _mapped(row: Any, columns: dict[str, str]) -> Any:
    return map_columns(row, columns) if isinstance(row, dict) else row


def preview(path: Path, n: int = PREVIEW_ROWS) -> tuple[list[str], list[dict[str, str]]]:
    """The first `n` rows of a JSONL, CSV or Parquet upload as text cells, and every column
    name they use (in order of first appearance), for the column mapping page."""
    rows: list[dict[str, str]] = []
    names: dict[str, None] = {}
    for _, row in _staged_rows(path, n):
        if not isinstance(row, dict):
            continue
        cells = {str(k): _cell(v) for k, v in row.items()}
        names.update(dict.fromkeys(cells))
        rows.append(cells)
    return list(names), rows


def _first_rows(path: Path, n: int) -> Iterator[tuple[str, Any]]:
    if path.suffix.lower() == ".parquet":  # one batch, not the whole table
        import pyarrow.parquet as pq

        batch = next(pq.ParquetFile(path).iter_batches(batch_size=n), None)
        yield from ((f"{path.name} row {i + 1}", r) for i, r in enumerate(batch.to_pylist() if batch else []))
        return
    for i, item in enumerate(_raw_rows(path)):
        if i >= n:
            return
        yield item


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"


def needs_mapping(path: Path) -> bool:
    """True when the upload's first rows are neither SFT rows nor prompts in a layout
    `engine.datasets` recognises. A zip is not unpacked here: the worker asks again of the
    `datasets` folder inside (`first_rows_file`)."""
    if path.suffix.lower() == ".zip":
        return False
    for _, row in _first_rows(path, 1):
        if not isinstance(row, dict) or any(k in row for k in SFT_KEYS):
            return False  # unparsable rows and SFT rows: the import reads them (or says why, with the line)
        layout = recognise_layout(row)
        return "prompt" not in layout or not any(k in layout for k in ("answer", "solution", "tests", "reward_model"))
    return False


FIRST_ROWS_FILE = "first-rows.json"  # beside a zip whose folder waits for a mapping


def save_first_rows(data: Path, staging: Path) -> None:
    """Keep the first rows of an unpacked `datasets` folder beside its zip (JSON), so the
    mapping page and the mapping check read them without unpacking it again."""
    rows = [(where, row) for where, row in _first_rows(data, PREVIEW_ROWS)]
    (staging / FIRST_ROWS_FILE).write_text(json.dumps(rows, ensure_ascii=False, default=str), encoding="utf-8")


def _staged_rows(path: Path, n: int) -> Iterator[tuple[str, Any]]:
    """The first rows of an upload: read from the file, or for a zip from the rows the
    worker kept (`save_first_rows`)."""
    kept = path.with_name(FIRST_ROWS_FILE)
    if path.suffix.lower() == ".zip":
        if kept.is_file():
            yield from (tuple(item) for item in json.loads(kept.read_text(encoding="utf-8"))[:n])
        return
    yield from _first_rows(path, n)


def check_mapping(path: Path, columns: dict[str, str]) -> None:
    """DatasetError naming the field and the rule when `columns` does not read the first rows."""
    check_columns(columns)
    if "prompt" not in columns:
        raise DatasetError("columns.prompt: choose the column that holds the prompt")
    for where, row in _staged_rows(path, PREVIEW_ROWS):
        try:
            normalize_row(_mapped(row, columns))
        except DatasetError as e:
            raise DatasetError(f"{where}: {e}") from None


def _preference_row(row: Any, number: int) -> dict[str, Any]:
    """A preference pair: a prompt, and `chosen` and `rejected` completions (text)."""
    if not isinstance(row, dict):
        normalize_row(row)  # raises the engine's sentence for unparsable rows
    for key in ("prompt", *PREFERENCE_KEYS):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise DatasetError(f"field {key!r}: a preference row needs prompt, chosen and rejected as text")
    return row


def preference_prompt(index: int, prompt: str, chosen: str, rejected: str, extra: dict[str, Any]) -> Prompt:
    """A preference pair as a stored row: chosen in `completion`, rejected beside it."""
    return Prompt(index=index, text=prompt, completion=chosen, metadata={"rejected": rejected, **extra})


def _sft_row(row: Any, number: int) -> dict[str, Any]:
    if not isinstance(row, dict):
        normalize_row(row)  # raises the engine's sentence for unparsable rows
    return check_sft_row(row, number)


def _example_row(row: Any, number: int) -> dict[str, Any]:
    return dict(normalize_row(row, index=number - 1, task="custom"))


def _checked_rows(path: Path, check: Callable[[Any, int], dict[str, Any]], max_rows: int | None,
                  on_progress: Callable[[int], None] | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    number = 0
    for number, (where, row) in enumerate(_raw_rows(path), start=1):
        if max_rows is not None and number > max_rows:
            raise DatasetError(f"{path.name}: more than {max_rows:,} rows; a dataset may hold at most {max_rows:,} "
                               "(PONDER_MAX_DATASET_ROWS).")
        try:
            rows.append(check(row, number))
        except DatasetError as e:
            errors.append(f"{where}: {re.sub(r'^row [0-9]+: ', '', str(e))}")
        if on_progress is not None and number % PROGRESS_EVERY == 0:
            on_progress(number)
    if errors:
        more = f" (and {len(errors) - MAX_REPORTED} more bad rows)" if len(errors) > MAX_REPORTED else ""
        raise DatasetError("; ".join(errors[:MAX_REPORTED]) + more)
    if not rows:
        raise DatasetError(f"{path.name}: the dataset has no rows.")
    if on_progress is not None:
        on_progress(number)
    return rows


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "".join(m.get("content", "") for m in value if m.get("role") == "assistant")


def _sft_prompt(index: int, row: dict[str, Any]) -> Prompt:
    extra = {k: v for k, v in row.items() if k not in ("prompt", "completion", "messages")}
    if "messages" in row:
        messages = row["messages"]
        users = [m["content"] for m in messages if m["role"] == "user"]
        return Prompt(index=index, text=users[-1] if users else "", messages=messages,
                      completion=_text_of(messages), metadata={"layout": "messages", "extra": extra})
    prompt = row["prompt"]
    return Prompt(index=index, text=prompt if isinstance(prompt, str) else "",
                  messages=None if isinstance(prompt, str) else prompt, completion=_text_of(row["completion"]),
                  metadata={"layout": "prompt_completion", "extra": extra})


def _example_prompt(index: int, ex: dict[str, Any]) -> Prompt:
    prompt = ex["prompt"]
    extra = {k: v for k, v in ex.items() if k not in _EXAMPLE_KEYS}
    return Prompt(index=index, text=prompt if isinstance(prompt, str) else "",
                  messages=None if isinstance(prompt, str) else prompt, answer=ex["answer"],
                  tests=ex.get("tests") or "", language=ex["language"], metadata={"id": ex["id"], "extra": extra})


# ---- writing ------------------------------------------------------------------------------


def export_row(dataset: Dataset, p: Prompt) -> dict[str, Any]:
    """One Prompt as a row of the file the engine reads (TRL layouts)."""
    extra = dict((p.metadata or {}).get("extra") or {})
    if dataset.kind == Dataset.Kind.PREFERENCE:
        return {"prompt": p.text, "chosen": p.completion, "rejected": (p.metadata or {}).get("rejected", ""),
                **({"source": p.metadata["source"]} if (p.metadata or {}).get("source") else {})}
    if dataset.kind == Dataset.Kind.SFT:
        if p.messages and (p.metadata or {}).get("layout") == "messages":
            return {**extra, "messages": p.messages}
        return {**extra, "prompt": p.messages or p.text, "completion": p.completion}
    row = {**extra, "prompt": p.messages or p.text, "answer": p.answer, "language": p.language}
    if p.tests:
        row["tests"] = p.tests
    if (p.metadata or {}).get("id"):
        row["id"] = p.metadata["id"]
    return row


def write_rows(rows: list[dict[str, Any]], path: Path, fmt: str) -> Path:
    """Write rows as JSONL, Parquet or a `datasets` folder at `path`, atomically."""
    if fmt not in FORMATS:
        raise DatasetError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        out = tmp / path.name
        if fmt == "jsonl":
            with open(out, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        elif fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), out)
        else:
            from datasets import Dataset as HFDataset

            HFDataset.from_list(rows).save_to_disk(str(out))
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(out, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def zip_folder(folder: Path, path: Path) -> Path:
    """`folder` zipped (entries under the folder's name) to `path`, atomically."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, Path(folder.name) / file.relative_to(folder))
    os.replace(tmp, path)
    return path
