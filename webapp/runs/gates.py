"""A pipeline's review gate: the stage where people make the cold-start data.

When the stage before it succeeds, the gate runs (no worker holds it): a worker task
(`ponder.review_gate_open`, in `webapp/review/gates.py`) puts that stage's correct samples,
newest first, in a review queue for the project's owners and annotators. The gate closes
when `accept` items are accepted, or when an owner releases it; the accepted items (their
rewrites where people rewrote them) become the dataset the next stage trains on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from webapp import queue
from webapp.runs.models import Run, Status

MAX_ITEMS = 5_000
SOURCE_KEY = "source_run"  # set when the gate opens: the stage whose samples it shows


@dataclass
class ReviewGateConfig:
    accept: int = 20  # accepted items that open the gate
    limit: int = 100  # samples put in the queue
    distinct: bool = True  # a completion repeated for the same prompt once
    correct_only: bool = True  # only samples the stage's accuracy reward counts correct
    instructions: str = ("Accept correct reasoning that reads well; rewrite what is hard to read into "
                         "clear steps (keep the <think> and <answer> tags); reject the rest.")

    def __post_init__(self) -> None:
        if not isinstance(self.accept, int) or self.accept < 1:
            raise ValueError(f"accept must be a whole number of items >= 1, got {self.accept!r}.")
        if not isinstance(self.limit, int) or not self.accept <= self.limit <= MAX_ITEMS:
            raise ValueError(f"limit must be between accept ({self.accept}) and {MAX_ITEMS}: the queue must hold "
                             f"enough items to accept, got {self.limit!r}.")
        if not isinstance(self.instructions, str) or len(self.instructions) > 2000:
            raise ValueError("instructions must be text of at most 2000 characters.")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReviewGateConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {SOURCE_KEY})
        if unknown:
            raise ValueError(f"Unknown review gate keys: {', '.join(unknown)}. Valid keys: {', '.join(sorted(known))}.")
        return cls(**{k: v for k, v in data.items() if k in known})


def validate(config: dict[str, Any]) -> ReviewGateConfig:
    try:
        return ReviewGateConfig.from_dict(config)
    except (TypeError, ValueError) as exc:
        raise ValidationError({"config": str(exc)}) from None


def gate_start(gate: Run, source: Run) -> None:
    """The stage before `gate` (`source`) succeeded: the gate runs, and its queue is made by
    a worker once this commits."""
    Run.objects.filter(pk=gate.pk, status=Status.QUEUED).update(
        status=Status.RUNNING, started_at=timezone.now(), queued_at=timezone.now(), finished_at=None,
        heartbeat_at=None, config={**gate.config, SOURCE_KEY: source.pk})
    transaction.on_commit(lambda: queue.send(queue.REVIEW_GATE_OPEN, args=[gate.pk], queue_kind="cpu"))
