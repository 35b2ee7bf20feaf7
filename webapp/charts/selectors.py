"""Curves of several runs on one chart: downsampled in SQL, grouped by a config value.

A run can hold millions of metric points, so the browser never gets them raw. For each
metric, the step range of all selected runs is cut into at most `points` equal buckets
of whole steps (one grid per metric, shared by every run, so curves and group means line
up on the same x values), and PostgreSQL returns the mean, min and max of each run's
points in each bucket. With fewer steps than `points` every step is its own bucket, so
short runs come back exactly.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.http import QueryDict

from webapp.projects.selectors import User
from webapp.runs.models import MetricPoint, Run
from webapp.runs.selectors import runs_for

MAX_RUNS = 50
MAX_METRICS = 12
DEFAULT_POINTS, MIN_POINTS, MAX_POINTS = 500, 10, 5000
NO_VALUE = "(not set)"

# The step range of every (run, metric) comes from the primary key's two ends (an index
# probe each). Then, per run and metric, one index range of the primary key is read and
# hashed into the grid's buckets (integer arithmetic only: numeric math per row was 5x
# slower), so other runs' points are never read.
BUCKETS_SQL = """
WITH bounds AS (
    SELECT n.name, min(b.lo) AS lo, max(b.hi) AS hi
    FROM unnest(%(names)s::text[]) AS n(name)
    CROSS JOIN unnest(%(runs)s::bigint[]) AS r(id)
    CROSS JOIN LATERAL (SELECT min(m.step) AS lo, max(m.step) AS hi FROM runs_metricpoint m
                        WHERE m.run_id = r.id AND m.name = n.name) AS b
    GROUP BY n.name HAVING min(b.lo) IS NOT NULL
), grid AS MATERIALIZED (
    SELECT name, lo, greatest(1, (hi - lo + %(points)s) / %(points)s) AS width FROM bounds
)
SELECT g.name, r.id, g.lo + s.k * g.width AS x, s.mean, s.low, s.high
FROM grid g CROSS JOIN unnest(%(runs)s::bigint[]) AS r(id)
CROSS JOIN LATERAL (
    SELECT (m.step - g.lo) / g.width AS k, avg(m.value) AS mean, min(m.value) AS low, max(m.value) AS high
    FROM runs_metricpoint m WHERE m.run_id = r.id AND m.name = g.name
    GROUP BY k
) AS s
ORDER BY g.name, x, r.id
"""

# The distinct metric names of each run, by skipping along the primary key (run, name, step)
# from one name to the next, instead of reading every point.
NAMES_SQL = """
SELECT DISTINCT found.name FROM unnest(%(runs)s::bigint[]) AS r(id)
CROSS JOIN LATERAL (
    WITH RECURSIVE names(name) AS (
        (SELECT m.name FROM runs_metricpoint m WHERE m.run_id = r.id ORDER BY m.name LIMIT 1)
        UNION ALL
        SELECT (SELECT m.name FROM runs_metricpoint m WHERE m.run_id = r.id AND m.name > names.name
                ORDER BY m.name LIMIT 1)
        FROM names WHERE names.name IS NOT NULL
    )
    SELECT name FROM names WHERE name IS NOT NULL
) AS found
ORDER BY found.name
"""


def metric_names(run_ids: list[int]) -> list[str]:
    if not run_ids:
        return []
    with connection.cursor() as cursor:
        cursor.execute(NAMES_SQL, {"runs": run_ids})
        return [name for (name,) in cursor.fetchall()]


@dataclass
class Series:
    """One metric of one run on the metric's grid: per bucket the mean, min and max."""

    x: list[int] = field(default_factory=list)
    mean: list[float | None] = field(default_factory=list)
    low: list[float | None] = field(default_factory=list)
    high: list[float | None] = field(default_factory=list)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def metric_buckets(run_ids: list[int], names: list[str], points: int) -> dict[str, dict[int, Series]]:
    """{metric: {run id: Series}} with at most `points` buckets per metric."""
    if not run_ids or not names:
        return {}
    with transaction.atomic(), connection.cursor() as cursor:
        # The planner's cost for a million points crosses jit_above_cost, and compiling
        # costs more than it saves here (0.33 s against 0.45 s for 1M points).
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(BUCKETS_SQL, {"runs": run_ids, "names": names, "points": points})
        rows = cursor.fetchall()
    out: dict[str, dict[int, Series]] = {}
    for name, run_id, x, mean, low, high in rows:
        series = out.setdefault(name, {}).setdefault(run_id, Series())
        series.x.append(x)
        series.mean.append(_finite(mean))
        series.low.append(_finite(low))
        series.high.append(_finite(high))
    return out


def config_value(config: Any, path: str) -> Any:
    """The value at a dotted path ("optimizer.lr") in a run's config, or None."""
    node = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def group_label(value: Any) -> str:
    if value is None:
        return NO_VALUE
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def config_keys(configs: list[Any]) -> list[str]:
    """Dotted paths of the leaves of the runs' configs, those whose values differ first."""
    paths = sorted({path for config in configs for path, _ in _leaves(config, "")})
    differs = {p for p in paths if len({group_label(config_value(c, p)) for c in configs}) > 1}
    return sorted(paths, key=lambda p: (p not in differs, p))


def _leaves(node: Any, prefix: str) -> list[tuple[str, Any]]:
    if not isinstance(node, dict):
        return [(prefix, node)] if prefix else []
    found: list[tuple[str, Any]] = []
    for key, value in node.items():
        found.extend(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return found


def _group_stats(xs: list[int], members: list[Series]) -> dict[str, list[Any]]:
    """Across the group's runs, per x: the mean of their bucket means, min, max, std and count."""
    at: list[dict[int, float]] = [
        {x: y for x, y in zip(s.x, s.mean, strict=True) if y is not None} for s in members]
    stats: dict[str, list[Any]] = {"mean": [], "min": [], "max": [], "std": [], "n": []}
    for x in xs:
        ys = [values[x] for values in at if x in values]
        stats["n"].append(len(ys))
        stats["mean"].append(statistics.fmean(ys) if ys else None)
        stats["min"].append(min(ys) if ys else None)
        stats["max"].append(max(ys) if ys else None)
        stats["std"].append(statistics.pstdev(ys) if ys else None)
    return stats


def _aligned(xs: list[int], series: Series | None) -> dict[str, list[float | None]]:
    """A run's bucket means, mins and maxes on the chart's x values (None where it has none)."""
    if series is None:
        return {"mean": [None] * len(xs), "min": [None] * len(xs), "max": [None] * len(xs)}
    at = {x: i for i, x in enumerate(series.x)}

    def pick(values: list[float | None]) -> list[float | None]:
        return [values[at[x]] if x in at else None for x in xs]

    return {"mean": pick(series.mean), "min": pick(series.low), "max": pick(series.high)}


@dataclass
class OverlayQuery:
    run_ids: list[int]
    metrics: list[str]
    group_by: str
    points: int


def _ints(params: QueryDict, name: str) -> list[int]:
    try:
        values = [int(v) for raw in params.getlist(name) for v in raw.split(",") if v.strip()]
    except ValueError:
        raise ValidationError({name: "run ids are whole numbers, e.g. ?runs=3&runs=7"}) from None
    return list(dict.fromkeys(values))


def parse_query(params: QueryDict) -> OverlayQuery:
    """The overlay's query string, checked; errors name the parameter and the rule."""
    run_ids = _ints(params, "runs")
    if len(run_ids) > MAX_RUNS:
        raise ValidationError({"runs": f"at most {MAX_RUNS} runs can be overlaid at once"})
    metrics = [m for raw in params.getlist("metric") for m in raw.split(",") if m.strip()]
    if len(metrics) > MAX_METRICS:
        raise ValidationError({"metric": f"at most {MAX_METRICS} metrics at once"})
    try:
        points = int(params.get("points") or DEFAULT_POINTS)
    except ValueError:
        raise ValidationError({"points": "a whole number of buckets per curve"}) from None
    if not MIN_POINTS <= points <= MAX_POINTS:
        raise ValidationError({"points": f"between {MIN_POINTS} and {MAX_POINTS} buckets per curve"})
    return OverlayQuery(run_ids, list(dict.fromkeys(metrics)), params.get("group_by", "").strip(), points)


def visible_runs(user: User, run_ids: list[int]) -> list[Run]:
    """The requested runs the user may see, in the order asked; others are left out silently."""
    found = {r.pk: r for r in runs_for(user).filter(pk__in=run_ids).select_related("project")}
    return [found[pk] for pk in run_ids if pk in found]


def overlay_data(runs: list[Run], query: OverlayQuery) -> dict[str, Any]:
    """What the overlay page draws: per metric a shared x axis, each run's curve and, when
    grouping, each group's mean with its min/max and ±std band."""
    run_ids = [r.pk for r in runs]
    available = metric_names(run_ids)
    metrics = [m for m in query.metrics if m in available] or _default_metrics(available)
    groups: dict[str, list[int]] = {}
    if query.group_by:
        for run in runs:
            groups.setdefault(group_label(config_value(run.config, query.group_by)), []).append(run.pk)
    buckets = metric_buckets(run_ids, metrics, query.points)
    charts = {}
    for name in metrics:
        per_run = buckets.get(name, {})
        xs = sorted({x for s in per_run.values() for x in s.x})
        charts[name] = {
            "x": xs,
            "runs": {str(pk): _aligned(xs, per_run.get(pk)) for pk in run_ids},
            "groups": {label: {"runs": members, **_group_stats(xs, [per_run[pk] for pk in members if pk in per_run])}
                       for label, members in groups.items()},
        }
    return {
        "runs": [{"id": r.pk, "name": r.name, "project": r.project.name, "stage": r.stage,
                  "group": group_label(config_value(r.config, query.group_by)) if query.group_by else None}
                 for r in runs],
        "metrics": available, "shown": metrics, "group_by": query.group_by, "points": query.points,
        "config_keys": config_keys([r.config for r in runs]), "charts": charts,
    }


def _default_metrics(available: list[str]) -> list[str]:
    for first in ("reward", "reward/mean", "accuracy", "eval/accuracy", "loss"):
        if first in available:
            return [first]
    return available[:1]


RUN_PAGE_POINTS = 2000


def run_curves(run: Run, points: int = RUN_PAGE_POINTS) -> dict[str, list[tuple[int, float | None]]]:
    """Every metric of one run as (step, bucket mean) pairs, at most `points` per metric:
    what the live run page starts from before the websocket adds new points."""
    buckets = metric_buckets([run.pk], metric_names([run.pk]), points)
    return {name: list(zip(per_run[run.pk].x, per_run[run.pk].mean, strict=True))
            for name, per_run in buckets.items()}


def metric_table(run: Run) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """The run's metrics wide, as W&B exports them: one row per step, a column per metric
    (`step` first, then the names in order), blank where a metric was not logged at a step.
    The wide table is built in memory (steps x metrics floats: small next to rollouts)."""
    names = sorted(MetricPoint.objects.filter(run=run).values_list("name", flat=True).distinct())

    def rows() -> Iterator[dict[str, Any]]:
        table: dict[int, dict[str, Any]] = {}
        for name in names:
            for step, value in MetricPoint.objects.filter(run=run, name=name).values_list("step", "value").iterator(
                    chunk_size=10_000):
                table.setdefault(step, {"step": step})[name] = value
        for step in sorted(table):
            yield table[step]

    return ["step", *names], rows()
