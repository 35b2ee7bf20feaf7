"""The rules of what trainers send in (CONTRACTS: HTTP, rollouts and metrics): the REST
API validates request bodies with them, and the importers validate file rows with the
same schema, so both name the same field and rule."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, field_validator
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

MAX_TEXT = 2_000_000  # characters per text field


def no_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain NUL (\\u0000) characters")
    return text


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _json_clean(value: Any) -> Any:
    # PostgreSQL jsonb stores neither NUL characters nor NaN.
    if not value:
        return value
    if isinstance(value, str):
        return no_nul(value)
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dict):
        return {no_nul(k): _json_clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_clean(v) for v in value]
    return value


Text = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(no_nul)]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(no_nul)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_clean)]


# The ingestion bodies are validated by pydantic's core alone (no Python call per field):
# finiteness by `allow_inf_nan=False`, NUL characters by one scan of the body
# (`errors.validated_body(..., nul_guard=True)`), since JSON must escape them as \u0000.
HOT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
MAX_BIGINT = 2**63 - 1  # steps are PostgreSQL bigints


class Hot(BaseModel):
    model_config = HOT


PlainText = Annotated[str, Field(max_length=MAX_TEXT)]
RewardName = Annotated[str, Field(min_length=1, max_length=128)]


class RolloutIn(Hot):
    step: int = Field(ge=0, le=MAX_BIGINT)
    prompt: PlainText
    completion: PlainText
    rewards: dict[RewardName, float]
    sample_index: int = Field(default=0, ge=0)
    answer: PlainText = ""
    metadata: JsonObject = Field(default_factory=dict)


class CheckedRolloutIn(RolloutIn):
    """RolloutIn with its text checked field by field, for paths that validate row by row
    (importers) and need the field named without the body-level NUL scan."""

    @field_validator("prompt", "completion", "answer")
    @classmethod
    def _text_without_nul(cls, text: str) -> str:
        return no_nul(text)


class RolloutBatchIn(Hot):
    rollouts: list[RolloutIn] = Field(min_length=1, max_length=5000)


# Metric points are dicts, not models: 100,000 model instances cost ~4x the validation
# itself (measured, docs/scaling.md). Same rules, same error locations.
class MetricPointIn(TypedDict):
    __pydantic_config__ = HOT  # type: ignore[misc]  # pydantic reads it; mypy allows only fields here
    step: Annotated[int, Field(ge=0, le=MAX_BIGINT)]
    name: RewardName
    value: float


class MetricBatchIn(TypedDict):
    __pydantic_config__ = HOT  # type: ignore[misc]  # pydantic reads it; mypy allows only fields here
    points: Annotated[list[MetricPointIn], Field(min_length=1, max_length=100_000)]


MetricBatch = TypeAdapter(MetricBatchIn)




def field_path(loc: list[Any] | tuple[Any, ...]) -> str:
    """('body', 'payload', 'rollouts', 3, 'step') -> 'rollouts[3].step'."""
    parts = [p for p in loc if p not in ("body", "payload", "query", "path")]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"
