"""Reading users' prompt datasets and writing SFT datasets.

`load_examples(path)` reads JSONL, CSV, Parquet, a `datasets.save_to_disk` directory or a
Hugging Face Hub dataset (`hf:<owner>/<name>[:<config>][@<split>]`) in any common layout, or in the user's own with a column mapping (`columns`), and returns
task examples (the dict shape of `engine.tasks`):

- TRL: `prompt` (a string, or chat messages `[{"role", "content"}]`) and `solution` or
  `answer`; optional `tests`, `language`, `id`.
- verl: `prompt` as chat messages and `reward_model.ground_truth` (plus `data_source`,
  `extra_info`, which are kept);
- GSM8K, MATH, HumanEval and MBPP as published (`recognise_layout`).

A bad row raises `DatasetError` naming the file, the line (JSONL) or row (Parquet, 1-based),
the field and the rule, e.g. `data.jsonl line 3: field 'prompt': must be a non-empty
string or a list of {role, content} messages`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from engine.rewards.language import known_language
from engine.tasks.base import Example, last_boxed
from engine.tasks.humaneval import humaneval_row

FORMATS = ("jsonl", "parquet", "datasets")  # what SFT datasets are written as
ROLES = {"system", "user", "assistant", "tool"}
MAX_REPORTED = 5  # row errors listed in one DatasetError
HUB_PREFIX = "hf:"
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")  # owner/name: never a path


class DatasetError(ValueError):
    """A dataset that cannot be used; the message names every bad row found (up to 5)."""


def load_examples(path: str | Path, *, split: str = "train", task: str = "custom",
                  columns: dict[str, str] | None = None) -> list[Example]:
    """Examples from a JSONL, CSV or Parquet file or a `save_to_disk` directory.

    `split` picks the split of a saved `DatasetDict`; `task` is stored in each example;
    `columns` maps roles (COLUMN_ROLES) to the file's own column names (`map_columns`).
    """
    check_columns(columns or {})
    path = Path(path)
    if not is_hub_ref(path) and not path.exists():
        raise DatasetError(f"{path}: no such file or directory.")
    examples: list[Example] = []
    errors: list[str] = []
    for where, row in _rows(path, split):
        try:
            if columns and not isinstance(row, _Invalid):
                row = map_columns(row, columns)
            examples.append(normalize_row(row, index=len(examples), task=task))
        except DatasetError as e:
            errors.append(f"{where}: {e}")
    if errors:
        more = f" (and {len(errors) - MAX_REPORTED} more bad rows)" if len(errors) > MAX_REPORTED else ""
        raise DatasetError("; ".join(errors[:MAX_REPORTED]) + more)
    if not examples:
        raise DatasetError(f"{path.name}: the dataset has no rows.")
    return examples


def is_hub_ref(path: str | Path) -> bool:
    return str(path).startswith(HUB_PREFIX)


def parse_hub_ref(ref: str) -> tuple[str, str | None, str | None]:
    """(name, config, split) of `hf:<owner>/<name>[:<config>][@<split>]`; DatasetError
    for anything else (a local path is never a Hub name)."""
    body, _, split = str(ref).removeprefix(HUB_PREFIX).partition("@")
    name, _, config = body.partition(":")
    if not _HUB_NAME.fullmatch(name) or ".." in name or (split and not re.fullmatch(r"[\w.\[\]:%-]+", split)):
        raise DatasetError(f"{ref}: a Hub dataset is named hf:<owner>/<name>[:<config>][@<split>], "
                           "e.g. hf:openai/gsm8k:main@test.")
    return name, config or None, split or None


def _rows_hub(ref: str, split: str) -> Iterator[tuple[str, Any]]:
    """Rows of a Hub dataset through `datasets.load_dataset` (downloaded, or from the local
    Hugging Face cache when there is no network)."""
    from datasets import load_dataset

    name, config, pinned = parse_hub_ref(ref)
    if Path(name).exists():  # load_dataset would read a local folder of that name instead
        raise DatasetError(f"{ref}: {name} is also a local folder here; a Hub name must not read local files.")
    try:
        data = load_dataset(name, config, split=pinned or split)
    except Exception as e:  # no network, no such dataset, config or split: datasets raises many types
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DatasetError(f"{ref}: cannot be loaded from the Hugging Face Hub ({reason}); without network "
                           "access only datasets already in the local Hugging Face cache load.") from None
    for number, row in enumerate(data, start=1):
        yield f"{ref} row {number}", row


def _rows(path: Path, split: str) -> Iterator[tuple[str, Any]]:
    """(location for error messages, raw row) for every row of the dataset at `path`."""
    if is_hub_ref(path):
        yield from _rows_hub(str(path), split)
    elif path.is_dir():
        yield from _rows_saved(path, split)
    elif path.suffix in (".jsonl", ".json", ".ndjson"):
        yield from _rows_jsonl(path)
    elif path.suffix == ".parquet":
        yield from _rows_parquet(path)
    elif path.suffix in (".csv", ".tsv"):
        yield from _rows_csv(path)
    else:
        raise DatasetError(f"{path.name}: unknown format; use .jsonl, .csv, .parquet or a datasets save_to_disk "
                           "directory.")


def _rows_csv(path: Path) -> Iterator[tuple[str, Any]]:
    """Rows of a CSV (or TSV) file with a header line; every cell is text, empty cells absent."""
    import csv

    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ",")
        if not reader.fieldnames:
            raise DatasetError(f"{path.name}: the first line must name the columns.")
        start = reader.line_num + 1  # a quoted cell may span lines: a row is named by its first
        for row in reader:
            where, start = f"{path.name} line {start}", reader.line_num + 1
            if None in row:  # more cells than the header names
                yield where, _Invalid(f"{len(reader.fieldnames) + len(row[None])} cells, but the header names "
                                      f"{len(reader.fieldnames)} columns")
            else:
                yield where, {k: v for k, v in row.items() if v not in (None, "")}


def _rows_jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path.name} line {number}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as e:
                yield where, _Invalid(f"not valid JSON ({e.msg} at column {e.colno})")


def _rows_parquet(path: Path) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for unreadable files
        raise DatasetError(f"{path.name}: not a readable Parquet file ({e}).") from e
    for number, row in enumerate(table.to_pylist(), start=1):
        yield f"{path.name} row {number}", row


def _rows_saved(path: Path, split: str) -> Iterator[tuple[str, Any]]:
    from datasets import DatasetDict, load_from_disk

    try:
        data = load_from_disk(str(path))
    except Exception as e:  # datasets raises FileNotFoundError or ValueError variants
        raise DatasetError(f"{path.name}: not a datasets save_to_disk directory ({e}).") from e
    if isinstance(data, DatasetDict):
        if split not in data:
            raise DatasetError(f"{path.name}: no split {split!r}; it has {', '.join(data)}.")
        data = data[split]
    for number, row in enumerate(data, start=1):
        yield f"{path.name} row {number}", row


# What a column of the user's file can be: the fields Ponder reads.
COLUMN_ROLES = ("prompt", "answer", "solution", "tests", "entry_point", "language", "system_prompt", "id")
REQUIRED_ROLES = {"prompt", "answer", "solution", "tests"}  # a mapped one must have a value in every row


def check_columns(columns: dict[str, str]) -> None:
    """Refuse a mapping that names an unknown role, a role twice over, or no column."""
    if not isinstance(columns, dict):
        raise DatasetError("columns: must map roles to column names, e.g. {\"prompt\": \"question\"}")
    for role, column in columns.items():
        if role not in COLUMN_ROLES:
            raise DatasetError(f"columns: unknown role {role!r}; roles are {', '.join(COLUMN_ROLES)}")
        if not isinstance(column, str) or not column:
            raise DatasetError(f"columns.{role}: must be the name of a column")
    if "answer" in columns and "solution" in columns:
        raise DatasetError("columns: map answer or solution, not both (both are the reference answer)")


def map_columns(row: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    """The row with each mapped column renamed to its role, the other columns kept as they are.

    `system_prompt` turns a text prompt into chat messages; `entry_point` with `tests`
    appends `check(entry_point)` to the tests (HumanEval's convention).

    >>> map_columns({"q": "2 + 3?", "a": "5"}, {"prompt": "q", "answer": "a"})
    {'prompt': '2 + 3?', 'answer': '5'}
    """
    if not isinstance(row, dict):
        return row
    for role, column in columns.items():
        if role in REQUIRED_ROLES and row.get(column) in (None, ""):
            raise DatasetError(f"columns: no value in column {column!r} (the {role}); this row has "
                               f"{', '.join(map(str, row)) or 'no columns'}")
    used = set(columns.values())
    out = {k: v for k, v in row.items() if k not in used and k not in columns}
    out.update({role: row[column] for role, column in columns.items() if row.get(column) not in (None, "")})
    system = out.pop("system_prompt", None)
    if system and isinstance(out.get("prompt"), str):
        out["prompt"] = [{"role": "system", "content": str(system)}, {"role": "user", "content": out["prompt"]}]
    entry = out.pop("entry_point", None)
    if entry and isinstance(out.get("tests"), str):
        out["tests"] = f"{out['tests']}\n\ncheck({entry})\n"
    return out


class _Invalid:
    """A row that could not even be parsed; normalizing it raises its reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def normalize_row(row: Any, *, index: int = 0, task: str = "custom") -> Example:
    """One raw row (TRL or verl layout) as an example dict; raises DatasetError with the rule."""
    if isinstance(row, _Invalid):
        raise DatasetError(row.reason)
    if not isinstance(row, dict):
        raise DatasetError(f"must be an object with a 'prompt' field, not {type(row).__name__}")
    row = recognise_layout(row)
    prompt = _prompt(row.get("prompt"))
    answer = _answer(row)
    tests = row.get("tests")
    if tests is not None and not isinstance(tests, str):
        raise DatasetError("field 'tests': must be Python source (a string) or absent")
    if answer is None and tests is None:
        raise DatasetError("field 'answer': a row needs 'solution', 'answer', 'reward_model.ground_truth' or 'tests'")
    language = row.get("language") or "auto"
    if language != "auto" and not known_language(language):
        raise DatasetError("field 'language': must be an ISO 639-1 code such as 'en', 'zh' or 'fr', or 'auto' "
                           "(the prompt's language, detected)")
    example: Example = {k: v for k, v in row.items() if k not in ("prompt", "solution", "answer", "reward_model")}
    example.update(id=str(row.get("id", f"{task}-{index}")), prompt=prompt, answer=answer if answer is not None else "",
                   tests=tests, language=language, task=task)
    return example


def recognise_layout(row: dict[str, Any]) -> dict[str, Any]:
    """Public benchmark layouts read as Ponder's own (`prompt`, `answer`, `tests`), the
    original text kept as `reference_solution`:

    - GSM8K: `question`, `answer` ending in `#### 42` (the answer is what follows `####`);
    - MATH / MATH-500: `problem`, `solution` with `\\boxed{}` (or an `answer` column);
    - HumanEval: `prompt` (a signature and docstring), `test`, `entry_point`,
      `canonical_solution`: the tests are `test` then `check(entry_point)`;
    - MBPP: `text`, `test_list` (plus `test_setup_code`), `code`.
    Rows already in Ponder's, TRL's or verl's layout are returned as they are.

    >>> recognise_layout({"question": "2 + 3?", "answer": "2 plus 3 is 5\\n#### 5"})["answer"]
    '5'
    """
    keys = row.keys()
    if "entry_point" in keys and "test" in keys and "prompt" in keys:
        return humaneval_row(row)
    if "prompt" in keys:
        return row
    if "question" in keys and isinstance(row.get("answer"), str) and "####" in row["answer"]:
        final = row["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        return {**_without(row, "question", "answer"), "prompt": row["question"], "answer": final,
                "reference_solution": row["answer"]}
    if "problem" in keys and ("solution" in keys or "answer" in keys):
        answer = row.get("answer")
        if answer in (None, "") and isinstance(row.get("solution"), str):
            answer = last_boxed(row["solution"])
        return {**_without(row, "problem", "solution", "answer"), "prompt": row["problem"], "answer": answer,
                "reference_solution": row.get("solution")}
    if "text" in keys and "test_list" in keys:
        tests = "\n".join([str(row.get("test_setup_code") or ""), *map(str, row["test_list"] or [])]).strip()
        return {**_without(row, "text", "test_list", "code"), "prompt": f"{row['text']}\n\nAnswer with the Python "
                f"code in a ```python block. Your code should pass these tests:\n{tests}", "tests": tests,
                "reference_solution": row.get("code")}
    return row


def _without(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in keys}


def _prompt(value: Any) -> str | list[dict[str, str]]:
    rule = "must be a non-empty string or a list of {role, content} messages"
    if isinstance(value, str):
        if not value.strip():
            raise DatasetError(f"field 'prompt': {rule}")
        return value
    if isinstance(value, list) and value:
        messages = []
        for i, m in enumerate(value):
            if not (isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)):
                raise DatasetError(f"field 'prompt[{i}]': {rule}; roles are {', '.join(sorted(ROLES))}")
            messages.append({"role": m["role"], "content": m["content"]})
        if not any(m["role"] == "user" for m in messages):
            raise DatasetError("field 'prompt': the messages need at least one 'user' turn")
        return messages
    raise DatasetError(f"field 'prompt': {rule}")


def _answer(row: dict[str, Any]) -> str | None:
    """The reference answer: `solution`, `answer` or verl's `reward_model.ground_truth`."""
    for name in ("solution", "answer"):
        if row.get(name) is not None:
            return _scalar(row[name], name)
    reward_model = row.get("reward_model")
    if reward_model is not None:
        if not isinstance(reward_model, dict) or reward_model.get("ground_truth") is None:
            raise DatasetError("field 'reward_model.ground_truth': must be present in verl's layout")
        return _scalar(reward_model["ground_truth"], "reward_model.ground_truth")
    return None


def _scalar(value: Any, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DatasetError(f"field '{name}': must be a string or a number")
    return str(value)


# ---- writing SFT datasets -------------------------------------------------------------


def check_sft_row(row: Any, number: int) -> dict[str, Any]:
    """A row of an SFT dataset: TRL's prompt/completion pair or a `messages` conversation."""
    if not isinstance(row, dict):
        raise DatasetError(f"row {number}: must be an object")
    if "messages" in row:
        _prompt(row["messages"])  # same message rules as prompts
        return row
    for name in ("prompt", "completion"):
        if not isinstance(row.get(name), (str, list)) or not row.get(name):
            raise DatasetError(f"row {number}: field '{name}': must be a non-empty string or messages list "
                               "(or give 'messages' instead of prompt/completion)")
    return row


def save_sft_dataset(rows: Iterable[dict[str, Any]], path: str | Path, fmt: str = "jsonl") -> Path:
    """Write SFT rows as JSONL, Parquet or a `datasets` directory, atomically."""
    if fmt not in FORMATS:
        raise DatasetError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}.")
    checked = [check_sft_row(r, i) for i, r in enumerate(rows, start=1)]
    if not checked:
        raise DatasetError("an SFT dataset needs at least one row.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        written = _write_sft(checked, tmp / path.name, fmt)
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(written, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _write_sft(rows: list[dict[str, Any]], out: Path, fmt: str) -> Path:
    if fmt == "jsonl":
        with open(out, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), out)
    else:
        from datasets import Dataset

        Dataset.from_list(rows).save_to_disk(str(out))
    return out
