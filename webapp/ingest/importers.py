"""Importing rollouts that other trainers wrote to disk into a run.

- TRL (`GRPOTrainer`, `log_completions=True`): `<output_dir>/completions/completions_NNNNN.parquet`,
  columns `step`, `prompt`, `completion`, one column per reward function, any
  `log_extra` columns, and `advantage`. Numeric columns other than `step` and
  `advantage` are taken as rewards (or name them); the others go to `metadata`.
- verl (`trainer.rollout_data_dir`): `<step>.jsonl`, one JSON object per line with
  `input`, `output`, `gts`, `score`, `step` and the reward function's extra fields.
  `score` is the reward; the extra fields go to `metadata`; `gts` is the answer.

Two passes: the first checks every row against the API's rules (the same schema) and
stops naming `file:line: field: rule`; the second stores rows in chunks through
`store.rollouts_store`, so an import repeated stores nothing twice. A row's
`sample_index` numbers the rows of the same (step, prompt) in file order.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from webapp.ingest import store
from webapp.ingest.schemas import CheckedRolloutIn as RolloutSchema
from webapp.ingest.schemas import field_path
from webapp.runs.models import Run

FORMATS = ("trl", "verl")
CHUNK = 5000
MAX_ERRORS = 20
Progress = Callable[[int, int, int], None]  # (rows done, rows in all, new so far)

# API field -> the file's field, for messages.
VERL_FIELDS = {"prompt": "input", "completion": "output", "answer": "gts", "step": "step", "rewards": "score"}
TRL_FIELDS = {"prompt": "prompt", "completion": "completion", "step": "step"}


class ImportFailed(ValueError):
    """The files cannot be imported; the message names each bad line."""


class RowError(ValueError):
    """One row breaks a rule: `field: rule`."""


@dataclass
class ImportReport:
    files: int = 0
    rows: int = 0
    created: int = 0

    @property
    def already_stored(self) -> int:
        return self.rows - self.created


@dataclass(frozen=True)
class Row:
    location: str  # "file:line" (for Parquet, the 1-based row number)
    fields: dict[str, Any]  # the API's rollout fields
    names: Mapping[str, str]  # API field path -> the file's column, for messages
    error: str = ""  # why the line could not be read at all


def _row(location: str, names: Mapping[str, str], make: Callable[[], dict[str, Any]]) -> Row:
    try:
        return Row(location, make(), names)
    except RowError as exc:
        return Row(location, {}, names, error=str(exc))


# -- finding and reading the files -------------------------------------------------------------

def detect_format(path: Path) -> str:
    """`trl` for Parquet, `verl` for JSONL (a folder by what it holds)."""
    if not path.exists():
        raise ImportFailed(f"{path}: no such file or folder")
    suffixes = {p.suffix for p in ([path] if path.is_file() else path.iterdir())}
    parquet, jsonl = ".parquet" in suffixes, bool(suffixes & {".jsonl", ".json", ".ndjson"})
    if parquet == jsonl:
        what = "both Parquet and JSONL files" if parquet else "no Parquet or JSONL files"
        raise ImportFailed(f"{path}: cannot tell the format ({what}); pass --format trl or verl")
    return "trl" if parquet else "verl"


def files_of(path: Path, fmt: str) -> list[Path]:
    """The files to import, in step order (verl's names are step numbers)."""
    if not path.exists():
        raise ImportFailed(f"{path}: no such file or folder")
    if path.is_file():
        return [path]
    suffixes = (".parquet",) if fmt == "trl" else (".jsonl", ".json", ".ndjson")
    found = [p for p in path.iterdir() if p.is_file() and p.suffix in suffixes]
    if not found:
        raise ImportFailed(f"{path}: no {' or '.join(suffixes)} files")
    return sorted(found, key=lambda p: (int(p.stem) if p.stem.isdigit() else -1, p.name))


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def _number(value: Any, name: str) -> float | None:
    """A reward: numbers (and booleans) as floats, None/NaN as unscored."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    raise RowError(f"{name}: must be a number, not {type(value).__name__}")


def as_text(value: Any) -> Any:
    """Conversations (lists of {role, content}) become `role: content` lines, as the TRL callback does."""
    if isinstance(value, list) and value and all(isinstance(m, Mapping) for m in value):
        if len(value) == 1 and value[0].get("role") == "assistant":
            return _content(value[0].get("content"))
        return "\n".join(f"{m.get('role', 'user')}: {_content(m.get('content'))}" for m in value)
    return value


def _content(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text") or "" if p.get("type") == "text" else f"[{p.get('type', 'part')}]"
                       for p in content if isinstance(p, Mapping))
    return "" if content is None else str(content)


# -- verl -------------------------------------------------------------------------------------

def read_verl(path: Path) -> Iterator[Row]:
    """One row per non-empty line of a verl dump (the step from the file name when a line has none)."""
    step_from_name = int(path.stem) if path.stem.isdigit() else None
    with open(path, "rb") as lines:
        for number, data in enumerate(lines, 1):
            if data.strip():
                yield _row(f"{path}:{number}", VERL_FIELDS,
                           functools.partial(_verl_row, data, step_from_name))


def _verl_row(data: bytes, step_from_name: int | None) -> dict[str, Any]:
    try:
        raw = json.loads(data.rstrip(b"\r\n").decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RowError(f"line: must be UTF-8 (invalid byte at column {exc.start + 1})") from None
    except json.JSONDecodeError as exc:
        raise RowError(f"line: not valid JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})") from None
    if not isinstance(raw, dict):
        raise RowError(f"line: must be a JSON object, not {type(raw).__name__}")
    for key in ("input", "output"):
        if key not in raw:
            raise RowError(f"{key}: Field required")
    reward_key = "score" if "score" in raw else "reward" if "reward" in raw else None
    if reward_key is None:
        raise RowError("score: Field required")
    score = _number(raw[reward_key], reward_key)
    gts = raw.get("gts")
    metadata = {k: _finite_or_none(v) for k, v in raw.items() if k not in {"input", "output", "gts", "step", reward_key}}
    if score is None:
        metadata["unscored"] = [reward_key]
    return {"step": raw.get("step", step_from_name), "prompt": raw["input"], "completion": raw["output"],
            "rewards": {} if score is None else {reward_key: score},
            "answer": gts if isinstance(gts, str) else "" if gts is None else json.dumps(gts, ensure_ascii=False),
            "metadata": metadata}


# -- TRL --------------------------------------------------------------------------------------

def trl_reward_columns(path: Path) -> list[str]:
    """Numeric columns other than `step` and `advantage`: one per reward function."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    return [f.name for f in schema if f.name not in ("step", "advantage")
            and (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))]


def read_trl(path: Path, reward_columns: Sequence[str] | None = None) -> Iterator[Row]:
    """One row per row of a TRL completions Parquet file."""
    import pyarrow.parquet as pq

    rewards = list(reward_columns) if reward_columns else trl_reward_columns(path)
    names = {**TRL_FIELDS, **{f"rewards.{c}": c for c in rewards}}
    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=2048):
        for raw in batch.to_pylist():
            number += 1
            yield _row(f"{path}:{number}", names, functools.partial(_trl_row, raw, rewards))


def _trl_row(raw: dict[str, Any], reward_columns: Sequence[str]) -> dict[str, Any]:
    for key in ("step", "prompt", "completion"):
        if key not in raw:
            raise RowError(f"{key}: Field required (columns: {', '.join(raw)})")
    scores = {c: _number(raw.get(c), c) for c in reward_columns}
    metadata = {k: _finite_or_none(v) for k, v in raw.items()
                if k not in {"step", "prompt", "completion", *reward_columns}}
    if any(v is None for v in scores.values()):
        metadata["unscored"] = [c for c, v in scores.items() if v is None]
    step = raw["step"]
    return {"step": int(step) if isinstance(step, str) and step.isdigit() else step, "prompt": as_text(raw["prompt"]),
            "completion": as_text(raw["completion"]), "rewards": {c: v for c, v in scores.items() if v is not None},
            "metadata": metadata}


# -- checking and storing ---------------------------------------------------------------------

def _rows(files: list[Path], fmt: str, reward_columns: Sequence[str] | None) -> Iterator[Row]:
    """Every row of every file, in order, numbered within its (step, prompt)."""
    seen: dict[tuple[Any, int], int] = {}
    for path in files:
        try:
            yield from (_numbered(row, seen) for row in
                        (read_trl(path, reward_columns) if fmt == "trl" else read_verl(path)))
        except (OSError, ValueError) as exc:  # unreadable file (not Parquet, permissions, ...)
            raise ImportFailed(f"{path}: cannot be read as {fmt} ({exc})") from None


def _numbered(row: Row, seen: dict[tuple[Any, int], int]) -> Row:
    if isinstance(row.fields.get("prompt"), str):
        key = (row.fields.get("step"), store.prompt_hash(row.fields["prompt"]))
        row.fields["sample_index"] = seen.get(key, 0)
        seen[key] = row.fields["sample_index"] + 1
    return row


def check(row: Row) -> store.RolloutIn:
    """The row as the API would store it, or RowError naming the file's field and the rule."""
    if row.error:
        raise RowError(row.error)
    try:
        r = RolloutSchema.model_validate(row.fields)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            api_field = field_path(error.get("loc", ()))
            name = row.names.get(api_field) or row.names.get(api_field.split(".")[0]) or api_field
            problems.append(f"{name}: {str(error.get('msg', 'is invalid')).removeprefix('Value error, ')}")
        raise RowError("; ".join(problems)) from None
    return store.RolloutIn(step=r.step, prompt=r.prompt, completion=r.completion, rewards=r.rewards,
                            sample_index=r.sample_index, reference=r.answer, metadata=r.metadata)


def _validate(files: list[Path], fmt: str, reward_columns: Sequence[str] | None) -> int:
    """First pass: count the rows; raise ImportFailed naming up to MAX_ERRORS bad ones."""
    errors, rows = [], 0
    for row in _rows(files, fmt, reward_columns):
        rows += 1
        try:
            check(row)
        except RowError as exc:
            errors.append(f"{row.location}: {exc}")
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        raise ImportFailed(f"{len(errors)}{'+' if len(errors) >= MAX_ERRORS else ''} bad rows, nothing imported:\n"
                           + "\n".join(errors))
    return rows


def rollouts_import(*, run: Run, path: Path, fmt: str = "auto", reward_columns: Sequence[str] | None = None,
                    chunk: int = CHUNK, progress: Progress | None = None, dry_run: bool = False) -> ImportReport:
    """Import TRL or verl rollouts from a file or folder into `run`; see the module docstring."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise ImportFailed(f"format: must be one of {', '.join(FORMATS)} or auto, not {fmt!r}")
    files = files_of(path, fmt)
    report = ImportReport(files=len(files), rows=_validate(files, fmt, reward_columns))
    if dry_run:
        return report
    pending: list[store.RolloutIn] = []
    done = 0
    for row in _rows(files, fmt, reward_columns):
        pending.append(check(row))
        if len(pending) >= chunk:
            done, pending = _store(run, pending, report, done, progress), []
    if pending:
        _store(run, pending, report, done, progress)
    return report


def _store(run: Run, rows: list[store.RolloutIn], report: ImportReport, done: int, progress: Progress | None) -> int:
    report.created += store.rollouts_store(run=run, rollouts=rows)
    done += len(rows)
    if progress is not None:
        progress(done, report.rows, report.created)
    return done
