"""Writes of custom rewards: save a new version (checked first), try source on samples."""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Max

from engine import rewards as engine_rewards
from engine.rewards.sandboxed import CustomRewardError, SandboxedReward, check_source
from webapp.projects.models import Project
from webapp.projects.selectors import AuthUser, can_write
from webapp.rewards.models import CustomReward

NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_SOURCE_CHARS = 64_000
TRY_TIMEOUT_S = 10.0


def reward_save(*, project: Project, user: AuthUser, name: str, source: str, note: str = "") -> CustomReward:
    """Save `source` as the next version of `name` in `project` (owners only)."""
    if not can_write(user, project.pk):
        raise PermissionDenied("only project owners may save rewards")
    name = name.strip()
    if not NAME.match(name):
        raise ValidationError({"name": "must be 1-40 lowercase letters, digits or _, starting with a letter"})
    if name == "task" or name in engine_rewards.names():
        raise ValidationError({"name": f"{name!r} is a built-in reward; choose another name"})
    _check(source)
    with transaction.atomic():
        # Two people saving at once: the lock on the project row orders them, one version each.
        Project.objects.select_for_update().filter(pk=project.pk).first()
        top = CustomReward.objects.filter(project=project, name=name).aggregate(top=Max("version"))["top"] or 0
        return CustomReward.objects.create(project=project, name=name, version=top + 1, source=source,
                                           note=note.strip()[:200], created_by=user)


def reward_try(source: str, samples: list[tuple[str, dict[str, Any]]]) -> list[tuple[float, str]]:
    """Score `samples` with `source` in the sandbox (nothing is saved); ValidationError({"source": ...})
    when it cannot be a reward."""
    _check(source)
    fn = SandboxedReward(source, name="draft", timeout_s=TRY_TIMEOUT_S)
    try:
        return fn.batch([c for c, _ in samples], [ex for _, ex in samples])
    except CustomRewardError as exc:
        raise ValidationError({"source": str(exc)}) from None


def _check(source: str) -> None:
    if not source.strip():
        raise ValidationError({"source": "is empty: define reward(completion, example) -> float"})
    if len(source) > MAX_SOURCE_CHARS:
        raise ValidationError({"source": f"is {len(source)} characters; at most {MAX_SOURCE_CHARS}"})
    try:
        check_source(source)
    except CustomRewardError as exc:
        raise ValidationError({"source": str(exc)}) from None
