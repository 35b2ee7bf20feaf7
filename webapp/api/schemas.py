"""Request and response bodies of the REST API (CONTRACTS: HTTP)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, field_validator
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

MAX_TEXT = 2_000_000  # characters per text field


def _no_nul(text: str) -> str:
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
        return _no_nul(value)
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dict):
        return {_no_nul(k): _json_clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_clean(v) for v in value]
    return value


Text = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(_no_nul)]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_no_nul)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_clean)]


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class RunIn(Strict):
    name: Name
    stage: str
    config: JsonObject = Field(default_factory=dict)
    project: str | None = None


class RunOut(BaseModel):
    id: int
    name: str
    stage: str
    status: str
    project: str
    config: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    current_step: int
    total_steps: int
    eta_s: float | None
    error: str
    parent_id: int | None
    url: str


class RunFinishIn(Strict):
    status: str = "succeeded"
    summary: JsonObject = Field(default_factory=dict)


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
        return _no_nul(text)


class RolloutBatchIn(Hot):
    rollouts: list[RolloutIn] = Field(min_length=1, max_length=5000)


class CreatedOut(BaseModel):
    created: int


# Metric points are dicts, not models: 100,000 model instances cost ~4x the validation
# itself (measured, docs/scaling.md). Same rules, same error locations.
class MetricPointIn(TypedDict):
    __pydantic_config__ = HOT
    step: Annotated[int, Field(ge=0, le=MAX_BIGINT)]
    name: RewardName
    value: float


class MetricBatchIn(TypedDict):
    __pydantic_config__ = HOT
    points: Annotated[list[MetricPointIn], Field(min_length=1, max_length=100_000)]


MetricBatch = TypeAdapter(MetricBatchIn)


class StoredOut(BaseModel):
    stored: int


class RolloutOut(BaseModel):
    id: int
    step: int
    sample_index: int
    prompt: str
    completion: str
    reasoning: str
    final_answer: str
    answer: str
    reward: float
    rewards: dict[str, Any]
    token_count: int
    finish_reason: str
    metadata: dict[str, Any]
    created_at: datetime


class Page(BaseModel):
    items: list[Any]
    next: str | None


class RunPage(BaseModel):
    items: list[RunOut]
    next: str | None


class RolloutPage(BaseModel):
    items: list[RolloutOut]
    next: str | None


class CheckpointIn(Strict):
    step: int = Field(ge=0)
    path: Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(_no_nul)]
    summary: JsonObject = Field(default_factory=dict)


class CheckpointOut(BaseModel):
    id: int
    step: int
    path: str
    architecture: str
    parameter_count: int
    summary: dict[str, Any]
