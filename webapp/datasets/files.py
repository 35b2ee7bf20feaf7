"""Dataset files: reading uploads (JSONL, Parquet, a zipped `datasets` folder) into Prompt
rows, and writing Prompt rows back out in the layouts the engine reads.

Rules come from `engine.datasets`: prompt datasets are checked by `load_examples` (whose
errors name the file, the line or row, the field and the rule), SFT rows by `check_sft_row`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.datasets import MAX_REPORTED, DatasetError, check_sft_row, load_examples, normalize_row
from webapp.datasets.models import Dataset, Prompt

FORMATS = ("jsonl", "parquet", "datasets")
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".zip": "datasets"}
SFT_KEYS = ("completion", "messages")
MAX_ZIP_BYTES = 4 * 1024**3
MAX_ZIP_FILES = 10_000
_EXAMPLE_KEYS = {"id", "prompt", "answer", "tests", "language", "task"}


# ---- reading ------------------------------------------------------------------------------


def stage_upload(upload: Any, workdir: Path) -> Path:
    """Save an uploaded file under `workdir`; a zip is unpacked to its `datasets` folder."""
    name = Path(upload.name or "upload").name
    suffix = Path(name).suffix.lower()
    if suffix not in SUFFIXES:
        raise DatasetError(f"{name}: unknown format; upload .jsonl, .parquet or a .zip of a datasets "
                           "save_to_disk folder.")
    path = workdir / re.sub(r"[^A-Za-z0-9._-]", "_", name)
    with open(path, "wb") as f:
        for chunk in upload.chunks():
            f.write(chunk)
    if suffix != ".zip":
        return path
    folder = _dataset_dir(_unzip(path, workdir / "unzipped"))
    _check_state_files(folder)
    return folder


def _unzip(path: Path, dest: Path) -> Path:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise DatasetError(f"{path.name}: not a zip file.") from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ZIP_FILES or sum(m.file_size for m in members) > MAX_ZIP_BYTES:
            raise DatasetError(f"{path.name}: too large once unpacked (at most {MAX_ZIP_FILES} files, 4 GB).")
        for m in members:
            target = (dest / m.filename).resolve()
            if not target.is_relative_to(dest.resolve()):
                raise DatasetError(f"{path.name}: the entry {m.filename!r} points outside the archive.")
        archive.extractall(dest)
    return dest


def _dataset_dir(root: Path) -> Path:
    """The folder that `datasets.save_to_disk` wrote: the root or one level below it."""
    markers = ("dataset_dict.json", "dataset_info.json", "state.json")
    for candidate in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        if any((candidate / m).exists() for m in markers):
            return candidate
    raise DatasetError("the zip holds no datasets save_to_disk folder (no dataset_info.json or dataset_dict.json).")


def _check_state_files(folder: Path) -> None:
    """Every Arrow file a `state.json` lists lies in its own folder: `datasets` joins those
    names to the folder unchecked, so `../` would read any file the web process can."""
    for state in folder.rglob("state.json"):
        try:
            names = [f.get("filename") for f in json.loads(state.read_text()).get("_data_files", [])]
        except (ValueError, AttributeError, TypeError):
            raise DatasetError(f"{state.relative_to(folder)}: not a datasets state file.") from None
        for name in names:
            if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
                raise DatasetError(f"{state.relative_to(folder)}: the data file {name!r} is not a file name "
                                   "in its own folder.")


def _raw_rows(path: Path) -> Iterator[tuple[str, Any]]:
    # engine.datasets reads the three formats and names each row's place for errors.
    from engine.datasets import _rows

    return _rows(path, "train")


def detect_kind(path: Path) -> str:
    """SFT when the first row has a completion or chat messages, else prompts."""
    for _, row in _raw_rows(path):
        if isinstance(row, dict) and any(k in row for k in SFT_KEYS):
            return Dataset.Kind.SFT
        return Dataset.Kind.PROMPTS
    raise DatasetError(f"{path.name}: the dataset has no rows.")


def read_prompts(path: Path, kind: str) -> list[Prompt]:
    """Unsaved Prompt rows (index set) from the file at `path`, or DatasetError naming bad rows."""
    if kind == Dataset.Kind.SFT:
        return [_sft_prompt(i, row) for i, row in enumerate(_sft_rows(path))]
    return [_example_prompt(i, ex) for i, ex in enumerate(load_examples(path))]


def _sft_rows(path: Path) -> list[dict[str, Any]]:
    rows, errors = [], []
    for number, (where, row) in enumerate(_raw_rows(path), start=1):
        try:
            if not isinstance(row, dict):
                normalize_row(row)  # raises the engine's sentence for unparsable rows
            rows.append(check_sft_row(row, number))
        except DatasetError as e:
            errors.append(f"{where}: {re.sub(r'^row [0-9]+: ', '', str(e))}")
    if errors:
        more = f" (and {len(errors) - MAX_REPORTED} more bad rows)" if len(errors) > MAX_REPORTED else ""
        raise DatasetError("; ".join(errors[:MAX_REPORTED]) + more)
    if not rows:
        raise DatasetError(f"{path.name}: the dataset has no rows.")
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
