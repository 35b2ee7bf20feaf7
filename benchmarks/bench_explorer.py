"""Trace explorer: keyset pages against OFFSET pages on a million rollouts.

Seeds one run of 1,000,000 rollouts (1,000 steps x 125 prompts x 8 samples, COPY) into a
scratch database `ponder_bench_explorer` (created and migrated here; kept between runs,
`--reseed` rebuilds it), then times `webapp.review.selectors.explorer_page` (the page
query, the group rewards for advantages and the labels: what the explorer view runs)
for page 1 and page 1,000 (50 rows a page) against the same page fetched with OFFSET.

    .venv/bin/python benchmarks/bench_explorer.py            # ~3 minutes once seeded
    .venv/bin/python benchmarks/bench_explorer.py --trigram  # also: does a pg_trgm index pay?

Target: p95 under 100 ms for keyset pages, page 1,000 as fast as page 1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DB_NAME = "ponder_bench_explorer"
STEPS, PROMPTS, GROUP = 1000, 125, 8  # 1,000,000 rollouts
PAGE, DEEP_PAGE, REPEATS = 50, 1000, 30
TARGET_MS = 100.0
SCENARIOS = {  # name -> explorer query string
    "newest (grouped)": {},
    "best reward": {"sort": "best"},
    "longest": {"sort": "longest"},
    "correct, > 600 tokens, step > 100": {"correct_by": "math", "correct": "yes", "tokens_min": "600",
                                          "step_min": "100"},
    "text 'therefore' (common)": {"q": "therefore"},
}
WORDS = ("so", "the", "sum", "is", "we", "check", "wait", "carry", "then", "add", "digits", "let", "me", "verify",
         "again", "hmm", "because", "first", "next", "result", "equals", "times", "minus", "plus")


def setup() -> None:
    """Point Django at the scratch database, create it if needed and migrate."""
    from webapp.localservices import discover, ensure_database

    urls = discover()
    db_url = urlunsplit(urlsplit(urls["DATABASE_URL"])._replace(path=f"/{DB_NAME}"))
    ensure_database(db_url)
    os.environ.update({**urls, "DATABASE_URL": db_url, "DJANGO_SETTINGS_MODULE": "webapp.settings"})
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def rows(run_id: int, seed: int = 0, steps: int = STEPS):
    """Rollout rows as COPY tuples: accuracy and length grow with the step, like R1-Zero."""
    from engine.text import split_reasoning
    from webapp.ingest.store import prompt_hash

    rng = random.Random(seed)
    now = "2026-01-01 00:00:00+00"
    prompts = [f"Question {k}: what is {k * 37 % 991} + {k * 91 % 997}? Think step by step." for k in range(5000)]
    for step in range(steps):
        for p in range(PROMPTS):
            prompt = prompts[(step * PROMPTS + p) % len(prompts)]
            h = prompt_hash(prompt)
            for i in range(GROUP):
                n = rng.randint(20, 120) + step // 10
                words = " ".join(rng.choice(WORDS) for _ in range(n))
                if rng.random() < 0.3:
                    words += " therefore"
                if rng.random() < 0.0001:
                    words += " zebracorn"
                math_r = float(rng.random() < 0.2 + 0.6 * step / steps)
                format_r = float(rng.random() < 0.9)
                completion = f"<think>{words}</think> {rng.randint(0, 2000)}"
                reasoning, answer = split_reasoning(completion)
                tokens = n * 5 + rng.randint(0, 40)
                yield (run_id, step, i, h, prompt, completion, reasoning, answer, "42", tokens,
                       "length" if tokens > 1500 else "stop", math_r + format_r,
                       json.dumps({"math": math_r, "format": format_r}), "{}", now)


COLUMNS = ("run_id, step, sample_index, prompt_hash, prompt, completion, reasoning, final_answer, reference, "
           "token_count, finish_reason, reward, rewards, metadata, created_at")


def copy_rows(run_id: int, rows_in) -> float:
    """Seconds to COPY the rows (an iterable of tuples) in one transaction."""
    from django.db import connection, transaction

    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor, \
            cursor.copy(f"COPY runs_rollout ({COLUMNS}) FROM STDIN") as copy:
        for row in rows_in:
            copy.write_row(row)
    return time.perf_counter() - started


def seed(reseed: bool) -> Any:
    from django.db import connection

    from webapp.projects.services import project_create
    from webapp.runs.models import Rollout, Run

    run = Run.objects.filter(name="bench explorer").first()
    if run is not None and not reseed and Rollout.objects.filter(run=run).count() == STEPS * PROMPTS * GROUP:
        print(f"reusing {STEPS * PROMPTS * GROUP:,} seeded rollouts (--reseed to rebuild)")
        return run
    Run.objects.filter(name="bench explorer").delete()
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="bench")
    project = project_create(name="Bench explorer", owner=user, slug=f"bench-explorer-{int(time.time())}")
    run = Run.objects.create(project=project, name="bench explorer", stage="external", status="succeeded")
    took = copy_rows(run.pk, rows(run.pk, 0, STEPS))
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE runs_rollout")
    print(f"seeded {STEPS * PROMPTS * GROUP:,} rollouts by COPY in {took:.0f} s ({STEPS * PROMPTS * GROUP / took:,.0f} rows/s)")
    return run


def timed(fn: Callable[[], object], repeats: int = REPEATS) -> tuple[float, float]:
    """(p50, p95) in milliseconds after two warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]


def offset_page(run: Any, flt: Any, page: int) -> list:
    """The baseline: the same page and annotations, reached with OFFSET."""
    from webapp.review.filters import apply_filter
    from webapp.review.selectors import _ordering, annotate_rows
    from webapp.runs.models import Rollout

    qs = apply_filter(Rollout.objects.filter(run=run), flt).defer("completion").order_by(*_ordering(flt.sort))
    found = list(qs[(page - 1) * PAGE: page * PAGE])
    annotate_rows(found)
    return found


def deep_cursor(run: Any, flt: Any) -> str | None:
    """The cursor that page DEEP_PAGE's Next link would carry (the row before that page)."""
    from webapp.review.selectors import _cursor_of

    rows = offset_page(run, flt, DEEP_PAGE - 1)
    return _cursor_of(rows[-1], flt.sort) if len(rows) == PAGE else None


def measure(run: Any) -> list[tuple[str, float, float, float, float, float]]:
    from webapp.review.filters import parse_filter
    from webapp.review.selectors import explorer_page

    results = []
    for name, params in SCENARIOS.items():
        flt = parse_filter(params)
        cursor = deep_cursor(run, flt)
        if cursor is None:
            print(f"  {name}: fewer than {DEEP_PAGE} pages, skipped")
            continue
        first = explorer_page([run], flt, limit=PAGE)
        deep = explorer_page([run], flt, cursor=cursor, limit=PAGE)
        assert [r.pk for r in deep.rows] == [r.pk for r in offset_page(run, flt, DEEP_PAGE)], name
        assert len(first.rows) == PAGE
        _, p1 = timed(partial(explorer_page, [run], flt, limit=PAGE))
        k50, k95 = timed(partial(explorer_page, [run], flt, cursor=cursor, limit=PAGE))
        o50, o95 = timed(partial(offset_page, run, flt, DEEP_PAGE), repeats=10)
        results.append((name, p1, k50, k95, o50, o95))
        print(f"  {name:38s} page 1 p95 {p1:7.1f} ms | page {DEEP_PAGE:,}: keyset p95 {k95:7.1f} ms, "
              f"OFFSET p95 {o95:8.1f} ms ({o95 / k95:5.1f}x)", flush=True)
    return results


TRIGRAM = {"bench_trgm_prompt": "prompt", "bench_trgm_completion": "completion"}


def search_ms(run: Any, term: str, repeats: int = 3) -> float:
    """p95 of the explorer's page query for `term`, without its time limit."""
    from webapp.review.filters import parse_filter
    from webapp.review.selectors import _page_query

    flt = parse_filter({"q": term})
    return timed(lambda: list(_page_query([run.pk], flt, None, PAGE)), repeats=repeats)[1]


def trigram_tradeoff(run: Any) -> None:
    """A rare term scans the whole run without an index; do pg_trgm GIN indexes pay?"""
    from django.db import connection

    rare_before, common_before = search_ms(run, "zebracorn", 2), search_ms(run, "therefore")
    print(f"  text search, no index: rare term p95 {rare_before:,.0f} ms, common term {common_before:.1f} ms")
    with connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        started = time.perf_counter()
        for name, column in TRIGRAM.items():  # both: the search is prompt OR completion
            cursor.execute(f"CREATE INDEX {name} ON runs_rollout USING gin ({column} gin_trgm_ops)")
        cursor.execute("ANALYZE runs_rollout")
        build = time.perf_counter() - started
        cursor.execute("SELECT sum(pg_relation_size(c)) FROM unnest(%s::regclass[]) c", [list(TRIGRAM)])
        (size,) = cursor.fetchone()
    try:
        rare_after, common_after = search_ms(run, "zebracorn", 2), search_ms(run, "therefore")
        with_index = ingest_cost(run)
    finally:
        with connection.cursor() as cursor:
            for name in TRIGRAM:
                cursor.execute(f"DROP INDEX {name}")
    without = ingest_cost(run)
    print(f"  with trigram indexes on prompt and completion (built in {build:.0f} s, {size / 2**20:,.0f} MB): "
          f"rare term p95 {rare_after:,.0f} ms, common term {common_after:.1f} ms")
    print(f"  ingest 50,000 rollouts (COPY, best of 2): {without:.2f} s without, {with_index:.2f} s with the "
          f"trigram indexes ({with_index / without:.1f}x)")


def ingest_cost(run: Any, rounds: int = 2, steps: int = 50) -> float:
    """Best of `rounds` COPYs of 50,000 more rollouts into the big table (each removed after)."""
    from webapp.runs.models import Rollout, Run

    best = float("inf")
    for _ in range(rounds):
        extra = Run.objects.create(project_id=run.project_id, name="bench ingest", stage="external")
        batch = list(rows(extra.pk, 1, steps))  # generated first: only the database is timed
        try:
            best = min(best, copy_rows(extra.pk, batch))
        finally:
            Rollout.objects.filter(run=extra).delete()
            extra.delete()
    return best


def index_cost(run: Any) -> None:
    """What the explorer's three extra indexes cost ingestion."""
    import importlib

    from django.db import connection

    ix = importlib.import_module("webapp.review.migrations.0003_rollout_explorer_indexes")
    with_indexes = ingest_cost(run)
    with connection.cursor() as cursor:
        for name in ix.INDEXES:
            cursor.execute(f"DROP INDEX {name}")
    try:
        without = ingest_cost(run)
    finally:
        with connection.cursor() as cursor:
            for name, columns in ix.INDEXES.items():
                cursor.execute(f"CREATE INDEX {name} ON runs_rollout {columns}")
    print(f"  ingest 50,000 rollouts (COPY, best of 2): {without:.2f} s without the explorer's 3 indexes, "
          f"{with_indexes:.2f} s with them ({with_indexes / without:.2f}x)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reseed", action="store_true", help="rebuild the million rollouts")
    parser.add_argument("--trigram", action="store_true", help="also measure a pg_trgm GIN index (slow)")
    args = parser.parse_args()
    setup()
    run = seed(args.reseed)
    print(f"explorer pages of {PAGE}, p95 of {REPEATS} calls (OFFSET: 10), baseline = OFFSET in the same run:")
    results = measure(run)
    index_cost(run)
    if args.trigram:
        trigram_tradeoff(run)
    worst = max(max(p1, k95) for _, p1, _, k95, _, _ in results)
    ok = worst < TARGET_MS
    print(f"target: keyset p95 < {TARGET_MS:.0f} ms on page 1 and page {DEEP_PAGE:,}: worst {worst:.1f} ms "
          f"-> {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
