"""The web app's view of the engine's stage table (`engine/stages.py`), plus `external`:
runs trained elsewhere that log in through the API and are never queued.

The table imports every stage module (and with them torch), so it is imported on first
use rather than when Django starts: commands and pages that never touch a stage do not
pay for it. That is also why `Run.stage` has no `choices`: Django's system checks, run by
every management command, would import the table to check them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.stages import StageSpec

EXTERNAL = "external"
EXTERNAL_LABEL = "External (logged through the API)"
REVIEW = "review"  # a pipeline's review gate: people, not a worker (webapp/runs/gates.py)
REVIEW_LABEL = "Review gate (people accept cold-start data)"
WEB_STAGES = (EXTERNAL, REVIEW)  # stages no worker runs


def _table() -> Any:
    from engine import stages  # torch loads here, once, on first use

    return stages


def spec(stage: str) -> StageSpec | None:
    """The engine's stage called `stage`; None for `external` and unknown names."""
    return _table().STAGES.get(stage)


def choices() -> list[tuple[str, str]]:
    """(name, label) of every stage a run may have: the runs list's filter."""
    return [*launchable(), (REVIEW, REVIEW_LABEL), (EXTERNAL, EXTERNAL_LABEL)]


def label(stage: str) -> str:
    """What people read for a stage (`Run.stage_label`)."""
    found = spec(stage)
    if found is not None:
        return found.label
    return {EXTERNAL: EXTERNAL_LABEL, REVIEW: REVIEW_LABEL}.get(stage, stage)


def names() -> list[str]:
    return [name for name, _ in choices()]


def launchable() -> list[tuple[str, str]]:
    """(name, label) of the stages a person launches from the browser: the engine's."""
    return [(s.name, s.label) for s in _table().STAGES.values()]


def queue_kind(stage: str) -> str:
    """The kind of worker queue (`gpu`, `cpu`) a stage's runs go to."""
    found = spec(stage)
    if found is None:
        raise ValueError(f"stage {stage!r} is not run by Ponder's workers")
    return found.queue
