"""Request and response bodies of the REST API (CONTRACTS: HTTP); the rollout and metric
bodies, shared with the importers, are in `webapp.ingest.schemas`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from webapp.ingest.schemas import JsonObject, Name, no_nul


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
    blocked_reason: str = ""  # a pipeline stage that cannot start (status cancelled): why


class RunResumeIn(Strict):
    config: JsonObject | None = None


class RunFinishIn(Strict):
    status: str = "succeeded"
    summary: JsonObject = Field(default_factory=dict)


class CreatedOut(BaseModel):
    created: int


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
    path: Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(no_nul)]
    summary: JsonObject = Field(default_factory=dict)


class CheckpointOut(BaseModel):
    id: int
    step: int
    path: str
    architecture: str
    parameter_count: int
    summary: dict[str, Any]
