"""A comparison of checkpoints stored the way a worker stores one (through its sink), with
hostile model text, so pages and services can be tested without sampling a model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.review.conftest import HOSTILE

PROMPTS = 3
K = 4
# correct[c][p] = how many of the K samples of prompt p checkpoint c got right.
CORRECT = [[1, 4, 0], [3, 4, 0], [0, 2, 2]]


@dataclass
class Compared:
    comparison: Any
    checkpoints: list[Any]


def make_checkpoints(project: Any, n: int, run_name: str = "alpha-grpo") -> list[Any]:
    from webapp.runs.configs import run_dir
    from webapp.runs.models import Checkpoint, Run

    run = Run.objects.create(project=project, name=run_name, stage="grpo", status="succeeded")
    return [Checkpoint.objects.create(run=run, step=10 * (i + 1), path=str(run_dir(run) / f"checkpoint-{10 * (i + 1)}"))
            for i in range(n)]  # where the worker saves them; not on disk


def records(c: int, correct: list[int]) -> list[Any]:
    """What engine.evaluate reports for checkpoint `c`: K samples per prompt."""
    from engine.events import RolloutRecord

    out = []
    for p, right in enumerate(correct):
        question = f"Question {p}: what is {p} + {p}? {HOSTILE}"  # on every pair a judge may be handed
        for i in range(K):
            ok = i < right
            reasoning = f"I add {p} and {p} carefully, step {c}" + (f" {HOSTILE}" if i == 0 else "")
            answer = str(2 * p) if ok else f"wrong {c} {HOSTILE}"
            out.append(RolloutRecord(
                step=0, prompt=question, completion=f"<think>{reasoning}</think> {answer}",
                rewards={"correct": float(ok), "format": 1.0}, reward=float(ok), sample_index=i,
                reasoning=reasoning, answer=answer, reference=str(2 * p), token_count=10 + 5 * i + c,
                metadata={"question": question, "correct": ok, "majority": answer, "question_index": p,
                          "cons": float(right > K / 2)}))
    return out


def column_runs(comparison: Any) -> list[Any]:
    """The eval runs sampling the comparison's checkpoints, in column order."""
    return [e.run for e in comparison.entries.select_related("run").order_by("position")]


def make_comparison(owner: Any, checkpoints: list[Any], correct: list[list[int]] = CORRECT) -> Any:
    """Created as a person creates one; each column's eval run reports its samples as the
    worker's sink does, and ends (before any worker could claim it)."""
    from webapp.compare.services import SamplingSpec, comparison_create, comparison_samples_store
    from webapp.runs.models import Run

    comparison = comparison_create(user=owner, checkpoint_ids=[c.pk for c in checkpoints],
                                   spec=SamplingSpec(num_prompts=PROMPTS, k=K), name="grpo steps")
    for n, run in enumerate(column_runs(comparison)):
        comparison_samples_store(run=run, records=records(n, correct[n]))
    Run.objects.filter(comparison_entry__comparison=comparison).update(status="succeeded", current_step=PROMPTS)
    return comparison


@pytest.fixture
def viewer(personas):
    from django.contrib.auth import get_user_model

    from webapp.projects.models import Role
    from webapp.projects.services import member_add

    user = get_user_model().objects.create_user("vera", password="vera-pass-123")
    member_add(project=personas.project, user=user, role=Role.VIEWER)
    return user


@pytest.fixture
def compared(personas) -> Compared:
    checkpoints = make_checkpoints(personas.project, 3)
    return Compared(make_comparison(personas.owner, checkpoints), checkpoints)
