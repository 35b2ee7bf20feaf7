"""Reads of custom rewards: a project's latest versions, one by reference."""

from __future__ import annotations

import re
from typing import Any

from django.db.models import QuerySet

from webapp.rewards.models import REF, CustomReward

REF_PATTERN = re.compile(r"^custom:([a-z][a-z0-9_]{0,39})(?:@(\d+))?$")


def latest_versions(project_id: int) -> QuerySet[CustomReward]:
    """One row per name: its newest version (PostgreSQL's DISTINCT ON, one query)."""
    return (CustomReward.objects.filter(project_id=project_id).order_by("name", "-version")
            .distinct("name"))


def reward_by_ref(project_id: int, ref: str) -> CustomReward | None:
    """`custom:<name>@<version>` (or `custom:<name>`, its newest) of this project, else None."""
    match = REF_PATTERN.match(ref)
    if match is None:
        return None
    rows = CustomReward.objects.filter(project_id=project_id, name=match[1])
    if match[2] is not None:
        return rows.filter(version=int(match[2])).first()
    return rows.order_by("-version").first()


def is_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(REF)


# Tried when the project has no completions yet.
EXAMPLES: list[tuple[str, dict[str, Any]]] = [
    ("<think>2 + 3 = 5</think> The answer is 5.", {"prompt": "What is 2 + 3?", "answer": "5"}),
    ("<think>7 times 6 is 42</think> 42", {"prompt": "What is 7 * 6?", "answer": "42"}),
    ("I do not know.", {"prompt": "What is 9 - 4?", "answer": "5"}),
]
