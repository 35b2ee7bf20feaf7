"""Reads of runs and their data, always scoped to what the caller may see."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import BooleanField, Case, F, FloatField, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.http import Http404

from webapp.projects.selectors import User, projects_for
from webapp.runs import stages
from webapp.runs.models import Checkpoint, MetricPoint, Rollout, Run, Status


def runs_for(user: User) -> QuerySet[Run]:
    return Run.objects.filter(project__in=projects_for(user))


def run_for(user: User, run_id: int) -> Run:
    """The run if `user` may see it; 404 otherwise, so outsiders learn nothing."""
    run = runs_for(user).select_related("project").filter(pk=run_id).first()
    if run is None:
        raise Http404("No such run.")
    return run


def run_lineage(user: User, run_id: int) -> Run:
    """`run_for` with where the run came from and what it made, in the same query: the
    checkpoint it started from (and that run), the run before it, its input and output datasets."""
    run = (runs_for(user).select_related("project", "base_checkpoint__run", "parent", "input_dataset",
                                         "output_dataset").filter(pk=run_id).first())
    if run is None:
        raise Http404("No such run.")
    return run


class CursorError(ValueError):
    pass


def run_status(run_id: int) -> Mapping[str, Any] | None:
    """What the live page's status line shows: status, current_step, total_steps, error, and
    `shown`, the status as pages word it (`blocked`, `waiting`: `Run.shown_status`)."""
    run = Run.objects.filter(pk=run_id).only("status", "current_step", "total_steps", "error", "blocked_reason",
                                             "celery_task_id").first()
    if run is None:
        return None
    return {"status": run.status, "shown": run.shown_status, "current_step": run.current_step,
            "total_steps": run.total_steps, "error": run.error}


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


def checkpoint_for(user: User, checkpoint_id: int) -> Checkpoint:
    """The checkpoint if `user` may see its run; 404 otherwise."""
    found = (Checkpoint.objects.filter(run__project__in=projects_for(user), pk=checkpoint_id)
             .select_related("run", "run__project").first())
    if found is None:
        raise Http404("No such checkpoint.")
    return found


def checkpoint_derived_runs(user: User, checkpoint: Checkpoint) -> list[Run]:
    """Runs started from the checkpoint (evaluations, continued training) the user may see."""
    return list(runs_for(user).filter(base_checkpoint=checkpoint).select_related("project").order_by("-created_at"))


# Sorting by status puts what needs attention first.
STATUS_ORDER = [Status.RUNNING, Status.QUEUED, Status.FAILED, Status.CANCELLED, Status.SUCCEEDED]
# The runs list's sortable columns: query value -> ordering (ties broken by id, newest first).
RUN_SORTS = {
    "created": ("created_at",), "name": ("name",), "status": ("status_rank",), "stage": ("stage",),
    "steps": ("current_step",), "reward": ("final_reward",),
}
RUNS_PER_PAGE = 50


@dataclass
class RunListFilter:
    project: str = ""
    stage: str = ""
    status: str = ""
    launched_by: str = ""
    q: str = ""
    sort: str = "-created"
    page: int = 1


def parse_run_list(params: Any) -> tuple[RunListFilter, list[str]]:
    """The runs list's query string; a value it cannot use is dropped and named in the errors."""
    flt, errors = RunListFilter(), []
    for name in ("project", "launched_by", "q"):
        setattr(flt, name, params.get(name, "").strip()[:200])
    for name, allowed in (("stage", stages.names()), ("status", Status.values)):
        value = params.get(name, "")
        if value and value not in allowed:
            errors.append(f"{name}: {value!r} is not one of {', '.join(allowed)}")
        elif value:
            setattr(flt, name, value)
    sort = params.get("sort", "")
    if sort and sort.lstrip("-") not in RUN_SORTS:
        errors.append(f"sort: {sort!r} is not a column; use one of {', '.join(RUN_SORTS)} (prefix - for descending)")
    elif sort:
        flt.sort = sort
    page = params.get("page", "1")
    if not page.isdigit() or int(page) < 1:
        errors.append(f"page: {page!r} is not a page number (1, 2, ...)")
    else:
        flt.page = int(page)
    return flt, errors


def _ordering(sort: str) -> list[Any]:
    descending = sort.startswith("-")
    fields = [F(f).desc(nulls_last=True) if descending else F(f).asc(nulls_last=True)
              for f in RUN_SORTS[sort.lstrip("-")]]
    return [*fields, "-id"]


_CONFIG_WORD = re.compile(r"(?P<key>[a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*)=(?P<value>\S+)")


def _config_value(text: str) -> Any:
    """A searched setting's value as the config stores it: JSON (numbers, true, null), else text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _search(qs: Any, q: str) -> Any:
    for word in q.split():
        if word.startswith("tag:"):
            qs = qs.filter(tags__contains=[word[4:].lower()])
        elif word == "starred":
            qs = qs.filter(starred=True)
        elif word == "archived":
            qs = qs.filter(archived_at__isnull=False)
        elif (setting := _CONFIG_WORD.fullmatch(word)) is not None:  # learning_rate=1e-06, rewards.math=1
            qs = qs.filter(**{"config__" + setting["key"].replace(".", "__"): _config_value(setting["value"])})
        else:
            qs = qs.filter(Q(name__icontains=word) | Q(notes__icontains=word))
    return qs


def runs_list(user: User, flt: RunListFilter) -> tuple[list[Run], bool]:
    """One page of the runs list and whether there is a next one (no COUNT over all runs)."""
    qs = runs_for(user).select_related("project", "launched_by")
    if flt.project:
        qs = qs.filter(project__slug=flt.project)
    if flt.stage:
        qs = qs.filter(stage=flt.stage)
    if flt.status:
        qs = qs.filter(status=flt.status)
    if flt.launched_by:
        qs = qs.filter(launched_by__username=flt.launched_by)
    if "archived" not in flt.q.split():  # archived runs are listed only when asked for
        qs = qs.filter(archived_at__isnull=True)
    if flt.q:  # words: a run's name, or `tag:<t>`, `starred`, `archived`
        qs = _search(qs, flt.q)
    latest = Checkpoint.objects.filter(run=OuterRef("pk")).order_by("-step")
    qs = qs.annotate(
        # The stages end with their last metrics in `summary`; the mean reward is one of them.
        status_rank=Case(*[When(status=s, then=Value(i)) for i, s in enumerate(STATUS_ORDER)]),
        final_reward=Cast(KeyTextTransform("reward/mean", "summary"), FloatField()),
        latest_checkpoint_id=Subquery(latest.values("pk")[:1]),
        latest_checkpoint_step=Subquery(latest.values("step")[:1]),
    )
    start = (flt.page - 1) * RUNS_PER_PAGE
    rows: list[Run] = list(qs.order_by(*_ordering(flt.sort))[start:start + RUNS_PER_PAGE + 1])
    return rows[:RUNS_PER_PAGE], len(rows) > RUNS_PER_PAGE


def run_launchers(user: User) -> list[Any]:
    """Who launched the runs `user` can see: the runs list's "launched by" choices."""
    from django.contrib.auth import get_user_model

    launched = runs_for(user).filter(launched_by__isnull=False).values("launched_by")
    return list(get_user_model().objects.filter(pk__in=launched).order_by("username"))


SPARK_POINTS = 40
SPARK_METRIC = "reward/mean"


def reward_sparklines(run_ids: list[int], width: float = 90, height: float = 22) -> dict[int, str]:
    """SVG polyline points of each run's mean reward over its steps (about SPARK_POINTS a run,
    every n-th point picked in SQL), scaled to width x height; runs with under two points
    get none."""
    if not run_ids:
        return {}
    sql = """
        SELECT run_id, step, value FROM (
            SELECT run_id, step, value, row_number() OVER (PARTITION BY run_id ORDER BY step) AS rn,
                   count(*) OVER (PARTITION BY run_id) AS n
            FROM runs_metricpoint WHERE run_id = ANY(%s) AND name = %s) AS t
        WHERE (rn - 1) %% GREATEST(n / %s, 1) = 0 OR rn = n ORDER BY run_id, step"""
    series: dict[int, list[tuple[int, float]]] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, [run_ids, SPARK_METRIC, SPARK_POINTS])
        for run_id, step, value in cursor.fetchall():
            if value is not None and math.isfinite(value):
                series.setdefault(run_id, []).append((step, value))
    return {run_id: _points(points, width, height) for run_id, points in series.items() if len(points) >= 2}


def _points(points: list[tuple[int, float]], width: float, height: float) -> str:
    steps, values = [p[0] for p in points], [p[1] for p in points]
    x0, dx = steps[0], max(steps[-1] - steps[0], 1)
    low, span = min(values), max(max(values) - min(values), 1e-9)
    return " ".join(f"{(s - x0) / dx * width:.1f},{height - (v - low) / span * (height - 2) - 1:.1f}"
                    for s, v in points)
