"""Run curves: the overlay's SQL-side downsampling against sending every point.

Seeds a scratch database `ponder_bench_overlay` (created and migrated here; kept between
runs, `--reseed` rebuilds it) with one run of 1,000,000 `reward` points (one per step) and
four runs of 250,000 points each, then times `webapp.charts.selectors.overlay_data` (metric
names, bucket query, grouping: what /runs/overlay/data.json runs) for 500 buckets, against
the baseline of reading the same points raw (`selectors.metric_series`, what the run page
did before) and against the JSON each produces.

    .venv/bin/python benchmarks/bench_overlay.py        # ~1 minute once seeded

Target: the one-million-point run opens well under a second.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scratch import scratch_env, setup_django  # noqa: E402
from bench_explorer import timed  # noqa: E402

DB_NAME = "ponder_bench_overlay"
BIG, SMALL, SMALL_RUNS = 1_000_000, 250_000, 4
REPEATS = 10


def _seed_points(run_id: int, steps: int) -> None:
    """A noisy rising reward curve, one point per step, generated inside PostgreSQL."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO runs_metricpoint (run_id, name, step, value, wall_time) "
            "SELECT %s, 'reward', s, s::float8 / %s + random() * 0.2, now() FROM generate_series(0, %s - 1) s",
            [run_id, steps, steps])


def seed(reseed: bool) -> list[Any]:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from webapp.projects.services import project_create
    from webapp.runs.models import Run

    runs = list(Run.objects.filter(name__startswith="bench overlay").order_by("pk"))
    if runs and not reseed:
        print("reusing the seeded runs (--reseed to rebuild)")
        return runs
    Run.objects.filter(name__startswith="bench overlay").delete()
    user, _ = get_user_model().objects.get_or_create(username="bench")
    project = project_create(name="Bench overlay", owner=user, slug=f"bench-overlay-{int(time.time())}")
    started = time.perf_counter()
    runs = []
    for i, steps in enumerate([BIG] + [SMALL] * SMALL_RUNS):
        lr = [1e-6, 1e-6, 3e-6, 3e-6, 1e-5][i]
        run = Run.objects.create(project=project, name=f"bench overlay {i}", stage="external",
                                 status="succeeded", config={"optim": {"lr": lr}})
        _seed_points(run.pk, steps)
        runs.append(run)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE runs_metricpoint")
    print(f"seeded {BIG + SMALL * SMALL_RUNS:,} points in {time.perf_counter() - started:.0f} s")
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reseed", action="store_true")
    args = parser.parse_args()
    setup_django(scratch_env(DB_NAME))
    from webapp.charts import selectors as charts
    from webapp.runs import selectors

    runs = seed(args.reseed)
    big = runs[:1]
    one = charts.OverlayQuery([big[0].pk], ["reward"], "", charts.DEFAULT_POINTS)
    five = charts.OverlayQuery([r.pk for r in runs], ["reward"], "optim.lr", charts.DEFAULT_POINTS)

    def ponder(query: charts.OverlayQuery, chosen: list[Any]) -> int:
        return len(json.dumps(charts.overlay_data(chosen, query)))

    def raw(chosen: list[Any]) -> int:
        return sum(len(json.dumps({"series": selectors.metric_series(r)})) for r in chosen)

    rows = [
        ("1 run, 1,000,000 points", lambda: ponder(one, big), lambda: raw(big)),
        ("5 runs, 2,000,000 points, grouped by optim.lr", lambda: ponder(five, runs), lambda: raw(runs)),
    ]
    print(f"{'scenario':48s} {'overlay p50/p95 ms':>20s} {'JSON':>9s} {'raw ms':>11s} {'raw JSON':>10s} ratio")
    for name, mine, baseline in rows:
        m50, m95 = timed(mine, repeats=REPEATS)
        started = time.perf_counter()  # the baseline takes seconds: timed once, warm
        raw_size = baseline()
        b50 = (time.perf_counter() - started) * 1000
        print(f"{name:48s} {m50:9.0f} / {m95:6.0f} {mine() / 1e3:8.0f}k {b50:11.0f} {raw_size / 1e6:9.1f}M "
              f"{b50 / m50:5.1f}x", flush=True)


if __name__ == "__main__":
    main()
