"""Checking and encoding what the caller logs, on the caller's thread.

The checks mirror the server's rules (CONTRACTS: HTTP), so a mistake raises
`PonderValidationError` at the call that made it instead of a refused batch later.
Each call becomes spool lines of one fixed shape, `{"k":KIND,"d":PAYLOAD}`, so the
sender can cut the payload out without parsing it again.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any

from ponder_client.errors import PonderValidationError

MAX_TEXT = 2_000_000  # characters per text field (the server's limit)
MAX_METRIC_NAME = 128
ROLLOUT_KEYS = frozenset({"step", "prompt", "completion", "rewards", "sample_index", "answer", "metadata"})
REQUIRED_KEYS = ("step", "prompt", "completion", "rewards")

ROLLOUT, METRICS, CHECKPOINT, FINISH = b"r", b"m", b"c", b"f"
PREFIX_LEN = len(b'{"k":"r","d":')


def _default(value: Any) -> Any:
    """numpy and torch scalars and arrays become plain JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_default)


def encode(payload: Any) -> bytes:
    """Compact UTF-8 JSON; NaN and infinity raise ValueError, numpy/torch values become lists or numbers."""
    return _ENCODER.encode(payload).encode("utf-8")


def line(kind: bytes, payload: Any) -> bytes:
    """One spool line: `{"k":"r","d":...}` and a newline."""
    return b'{"k":"' + kind + b'","d":' + encode(payload) + b"}\n"


def split_line(raw: bytes) -> tuple[bytes, bytes]:
    """(kind, payload JSON) of a spool line given without its newline, without parsing the payload."""
    return raw[6:7], raw[PREFIX_LEN:-1]


def _fail(where: str, rule: str) -> PonderValidationError:
    return PonderValidationError(f"{where}: {rule}")


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise _fail(where, "must be an integer, not a boolean")
    try:
        number = operator.index(value)
    except TypeError:
        raise _fail(where, f"must be an integer, not {type(value).__name__}") from None
    if number < 0:
        raise _fail(where, "must be greater than or equal to 0")
    return number


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, f"must be a string, not {type(value).__name__}")
    if len(value) > MAX_TEXT:
        raise _fail(where, f"must be at most {MAX_TEXT} characters")
    if "\x00" in value:
        raise _fail(where, "must not contain NUL (\\u0000) characters")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, (bool, str, bytes)) or not hasattr(value, "__float__"):
        raise _fail(where, f"must be a number, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise _fail(where, f"must be a finite number, not {number}")
    return number


def _rewards(value: Any, where: str) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise _fail(where, f"must be a dictionary of name -> number, not {type(value).__name__}")
    out = {}
    for name, reward in value.items():
        if not isinstance(name, str) or not name or "\x00" in name:
            raise _fail(where, "reward names must be non-empty text")
        out[name] = _number(reward, f"{where}.{name}")
    return out


def _metadata(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(where, f"must be a JSON object, not {type(value).__name__}")
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise _fail(where, f"must be JSON without NaN or infinity ({exc})") from None
    if "\\u0000" in text:
        raise _fail(where, "must not contain NUL (\\u0000) characters")
    return dict(value)


def rollout(item: Any, where: str, seen: dict[tuple[int, str], int]) -> dict[str, Any]:
    """A checked copy of one rollout; a missing `sample_index` becomes the number of earlier
    rollouts with the same (step, prompt) in this call, so a GRPO group is stored whole."""
    if not isinstance(item, Mapping):
        raise _fail(where, f"must be a dictionary, not {type(item).__name__}")
    for key in REQUIRED_KEYS:
        if key not in item:
            raise _fail(f"{where}.{key}", "Field required")
    extra = set(item) - ROLLOUT_KEYS
    if extra:
        raise _fail(f"{where}.{sorted(map(str, extra))[0]}", f"Extra inputs are not permitted (allowed: {', '.join(sorted(ROLLOUT_KEYS))})")
    step, prompt = _int(item["step"], f"{where}.step"), _text(item["prompt"], f"{where}.prompt")
    out: dict[str, Any] = {"step": step, "prompt": prompt, "completion": _text(item["completion"], f"{where}.completion"),
                           "rewards": _rewards(item["rewards"], f"{where}.rewards")}
    if item.get("sample_index") is not None:
        out["sample_index"] = _int(item["sample_index"], f"{where}.sample_index")
    else:
        key = (step, prompt)
        out["sample_index"] = seen.get(key, 0)
        seen[key] = out["sample_index"] + 1
    if "answer" in item:
        out["answer"] = _text(item["answer"], f"{where}.answer")
    if "metadata" in item:
        out["metadata"] = _metadata(item["metadata"], f"{where}.metadata")
    return out


def rollout_lines(items: Sequence[Any]) -> list[bytes]:
    """Spool lines for one `log_rollouts` call; raises on the first bad rollout."""
    if isinstance(items, (Mapping, str, bytes)):
        raise _fail("rollouts", "must be a list of rollout dictionaries")
    seen: dict[tuple[int, str], int] = {}
    lines = []
    for i, item in enumerate(items):
        checked = rollout(item, f"rollouts[{i}]", seen)
        try:
            lines.append(line(ROLLOUT, checked))
        except UnicodeEncodeError as exc:
            raise _fail(f"rollouts[{i}]", f"must be valid Unicode text ({exc.reason})") from None
    return lines


def metric_points(step: Any, metrics: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """(points, names dropped because their value is NaN or infinite)."""
    step = _int(step, "step")
    if not isinstance(metrics, Mapping):
        raise _fail("metrics", f"must be a dictionary of name -> number, not {type(metrics).__name__}")
    points, dropped = [], []
    for name, value in metrics.items():
        if not isinstance(name, str) or not name or len(name) > MAX_METRIC_NAME or "\x00" in name:
            raise _fail(f"metrics[{name!r}]", f"names must be non-empty text of at most {MAX_METRIC_NAME} characters")
        if isinstance(value, (bool, str, bytes)) or not hasattr(value, "__float__"):
            raise _fail(f"metrics[{name!r}]", f"must be a number, not {type(value).__name__}")
        number = float(value)
        if math.isfinite(number):
            points.append({"step": step, "name": name, "value": number})
        else:
            dropped.append(name)
    return points, dropped


def checkpoint_payload(step: Any, path: Any, summary: Mapping[str, Any] | None) -> dict[str, Any]:
    path = _text(path, "path")
    if not path or len(path) > 1000:
        raise _fail("path", "must be 1 to 1000 characters")
    return {"step": _int(step, "step"), "path": path, "summary": _metadata(summary or {}, "summary")}
