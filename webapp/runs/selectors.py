"""Reads of runs and their data, always scoped to what the caller may see."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.http import Http404

from webapp.projects.selectors import User, projects_for
from webapp.runs.models import MetricPoint, Rollout, Run


def runs_for(user: User) -> QuerySet[Run]:
    return Run.objects.filter(project__in=projects_for(user))


def run_for(user: User, run_id: int) -> Run:
    """The run if `user` may see it; 404 otherwise, so outsiders learn nothing."""
    run = runs_for(user).select_related("project").filter(pk=run_id).first()
    if run is None:
        raise Http404("No such run.")
    return run


class CursorError(ValueError):
    pass


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise CursorError("cursor: not a cursor this API issued (pass back `next` unchanged)") from None
    if not isinstance(values, list) or len(values) != arity or not all(isinstance(v, int) for v in values):
        raise CursorError("cursor: not a cursor this API issued (pass back `next` unchanged)")
    return values


@dataclass
class RolloutFilter:
    step: int | None = None
    min_reward: float | None = None
    max_reward: float | None = None
    q: str | None = None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def rollouts_page(run: Run, flt: RolloutFilter, *, cursor: str | None, limit: int) -> tuple[list[Rollout], str | None]:
    """One page of a run's rollouts, newest step first (keyset on (step, id) descending)."""
    qs = Rollout.objects.filter(run=run)
    if flt.step is not None:
        qs = qs.filter(step=flt.step)
    if flt.min_reward is not None:
        qs = qs.filter(reward__gte=flt.min_reward)
    if flt.max_reward is not None:
        qs = qs.filter(reward__lte=flt.max_reward)
    if flt.q:
        # Case-insensitive substring match in prompt or completion.
        qs = qs.filter(Q(prompt__icontains=flt.q) | Q(completion__icontains=flt.q))
    if cursor:
        step, last_id = decode_cursor(cursor, 2)
        # A row comparison walks the (run, step DESC, id DESC) index directly.
        qs = qs.filter(RawSQL('("runs_rollout"."step", "runs_rollout"."id") < (%s, %s)', (step, last_id),
                              output_field=BooleanField()))
    rows = list(qs.order_by("-step", "-id")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor([rows[-1].step, rows[-1].id]) if more else None
    return rows, nxt


def runs_page(user: User, *, cursor: str | None, limit: int) -> tuple[list[Run], str | None]:
    qs = runs_for(user).select_related("project")
    if cursor:
        (last_id,) = decode_cursor(cursor, 1)
        qs = qs.filter(id__lt=last_id)
    rows = list(qs.order_by("-id")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor([rows[-1].id]) if more else None)


def metric_series(run: Run, names: list[str] | None = None) -> dict[str, list[tuple[int, float]]]:
    qs = MetricPoint.objects.filter(run=run)
    if names:
        qs = qs.filter(name__in=names)
    series: dict[str, list[tuple[int, float]]] = {}
    for name, step, value in qs.order_by("name", "step").values_list("name", "step", "value"):
        series.setdefault(name, []).append((step, value))
    return series
