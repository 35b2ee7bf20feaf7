"""Rollouts shaped like a GRPO run: groups of samples per prompt and step, some hostile text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

# HTML, a script, a markdown link with a javascript: URL and a right-to-left override.
HOSTILE = ('<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
           '[click](javascript:alert(1)) \u202eevil')
STEPS = 6
PROMPTS = 3
GROUP = 4


@dataclass
class Traces:
    run: Any
    other_run: Any
    outsider_run: Any


def make_rollouts(steps: int = STEPS, prompts: int = PROMPTS, group: int = GROUP, hostile: bool = True) -> list[Any]:
    from webapp.ingest.store import RolloutIn

    out = []
    for step in range(1, steps + 1):
        for p in range(prompts):
            prompt = f"Question {p}: what is {p} + {p}?" + (f" {HOSTILE}" if hostile and p == 0 else "")
            for i in range(group):
                correct = float((step + p + i) % 2 == 0)
                tokens = 10 * (i + 1) + step
                out.append(RolloutIn(
                    step=step, prompt=prompt, sample_index=i, reference=str(2 * p),
                    completion=f"<think>thinking {step}/{p}/{i} {HOSTILE if hostile and i == 0 else ''}</think> {2 * p if correct else 7}",
                    rewards={"math": correct, "format": 1.0 if i != 3 else 0.0}, token_count=tokens,
                    finish_reason="length" if i == 3 else "stop", metadata={"note": HOSTILE} if i == 0 else {}))
    return out


def store_traces(personas) -> Traces:
    """Three runs stored through the real ingestion path (COPY + announcements after commit)."""
    from webapp.ingest.store import rollouts_store
    from webapp.runs.models import Run

    run = Run.objects.create(project=personas.project, name="alpha-grpo", stage="grpo", status="running",
                             current_step=STEPS)  # as its progress reports left it
    other = Run.objects.create(project=personas.project, name="alpha-grpo-2", stage="grpo", status="running")
    outsider_run = Run.objects.create(project=personas.other_project, name="beta-run", stage="grpo", status="running")
    rollouts_store(run=run, rollouts=make_rollouts())
    rollouts_store(run=other, rollouts=make_rollouts(steps=2, hostile=False))
    rollouts_store(run=outsider_run, rollouts=make_rollouts(steps=1, hostile=False))
    return Traces(run, other, outsider_run)


@pytest.fixture
def traces(personas) -> Traces:
    return store_traces(personas)


@pytest.fixture
def viewer(personas):
    from django.contrib.auth import get_user_model

    from webapp.projects.models import Role
    from webapp.projects.services import member_add

    user = get_user_model().objects.create_user("vera", password="vera-pass-123")
    member_add(project=personas.project, user=user, role=Role.VIEWER)
    return user


def assert_text_not_html(body: str) -> None:
    """Hostile model text appears escaped, never as markup."""
    assert "<script>window.pwned" not in body
    assert "<img src=x" not in body
    assert 'href="javascript:' not in body
    assert "\u202e" not in body  # the override is shown as ⟨U+202E⟩
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in body
    assert "[click](javascript:alert(1))" in body
    assert "⟨U+202E⟩evil" in body
