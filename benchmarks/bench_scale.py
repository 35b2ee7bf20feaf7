"""The rollout table at scale: sizes, the explorer's key queries, and which layout pays.

Seeds `--rows` rollouts (default 1,000,000; the figures in docs/scaling.md come from
`--rows 10000000`) into a scratch database `ponder_scale`, spread over `--runs` runs
trained side by side (each step writes 1,000 rollouts per run: 125 prompts x 8 samples,
~280-byte completions), generated inside PostgreSQL with `generate_series` with the
secondary indexes dropped, which are then rebuilt and timed one by one. Then it measures:

- the size of the heap, its TOAST and each index, in bytes per row;
- the key reads (p50/p95 over repeats, warm cache): one run's newest page, a deep keyset
  page, a reward band, a step-range aggregate, and a time-range scan across runs;
- (b) a BRIN index: the step-range and time-range reads with BRIN instead of the btree,
  and the BRIN's size;
- (c) the same rows in a table hash-partitioned by run (`--partitions`, default 16) with
  the same indexes: the same reads, and COPY ingest into it;
- COPY ingest of 5,000-rollout batches into the seeded table against the same batches
  into an empty table of the same schema (the baseline: does ingest slow with size?).

    .venv/bin/python benchmarks/bench_scale.py                    # 1M rows, ~5 minutes
    .venv/bin/python benchmarks/bench_scale.py --rows 10000000    # the docs' figures
    .venv/bin/python benchmarks/bench_scale.py --drop             # then drop ponder_scale

The database is dropped at the end with `--drop` (it takes ~1 KB per row on disk).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scratch import scratch_env, setup_django  # noqa: E402
from bench_explorer import timed  # noqa: E402

DB_NAME = "ponder_scale"
PER_STEP = 1000  # rollouts per run per step: 125 prompts x 8 samples
BATCH = 5000
COLUMNS = ("run_id, step, sample_index, prompt_hash, prompt, completion, reasoning, final_answer, reference, "
           "token_count, finish_reason, reward, rewards, metadata, created_at")

# Row g of the seed: step-major, then run, then 1,000 rollouts of that run and step.
ROWS = f"""
SELECT r.run_id, r.step, g %% 8, hashtextextended(r.prompt, 0), r.prompt,
       '<think>' || r.think || '</think> ' || (g %% 2000), r.think, (g %% 2000)::text, '42',
       50 + r.h %% 400 + r.step / 2, 'stop', r.math + r.fmt,
       jsonb_build_object('math', r.math, 'format', r.fmt, 'length', 0.25), jsonb_build_object(),
       '2026-01-01'::timestamptz + g * interval '10 ms'
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS g,
LATERAL (SELECT (%(runs)s::bigint[])[(g / {PER_STEP}) %% %(nruns)s + 1] AS run_id,
                g / ({PER_STEP} * %(nruns)s) AS step,
                'Question ' || ((g / ({PER_STEP} * %(nruns)s)) * 125 + (g %% {PER_STEP}) / 8) %% 5000
                    || ': what is the sum of the digits? Think step by step.' AS prompt,
                repeat(md5(g::text), 8) AS think,
                abs(hashint8(g)) AS h,
                (abs(hashint8(g)) %% 100 < 20 + 60 * (g / ({PER_STEP} * %(nruns)s)) / %(steps)s)::int::float8 AS math,
                (g %% 10 <> 0)::int::float8 AS fmt) AS r
"""
SEED = "INSERT INTO %(table)s (" + COLUMNS + ")" + ROWS


def sql(cursor, text: str, params=None) -> list[tuple]:
    cursor.execute(text, params)
    return cursor.fetchall() if cursor.description else []


def secondary_ddl(cursor, table: str) -> list[tuple[str, str]]:
    """(name, CREATE statement) of every index but the primary key, and the FK constraints."""
    out = [(name, f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}") for name, definition in sql(cursor, """
        SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE conrelid = %s::regclass AND contype IN ('u', 'f')""", [table])]
    taken = {name for name, _ in out}
    out += [(name, definition) for name, definition in sql(cursor, """
        SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT LIKE '%%pkey'""", [table])
        if name not in taken]
    return out


def drop_secondary(cursor, table: str, ddl: list[tuple[str, str]]) -> None:
    for name, statement in ddl:
        if statement.startswith("ALTER"):
            cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}")
        else:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")


def seed(cursor, run_ids: list[int], rows: int) -> dict[str, float]:
    """Fill runs_rollout; returns seconds per phase (insert, then each index rebuilt)."""
    ddl = secondary_ddl(cursor, "runs_rollout")
    cursor.execute("TRUNCATE runs_rollout CASCADE")
    drop_secondary(cursor, "runs_rollout", ddl)
    steps = max(1, rows // (PER_STEP * len(run_ids)))
    took: dict[str, float] = {}
    started = time.perf_counter()
    chunk = 1_000_000
    for lo in range(0, rows, chunk):
        cursor.execute(SEED.replace("%(table)s", "runs_rollout"), {"lo": lo, "hi": min(rows, lo + chunk), "runs": run_ids,
                                                           "nruns": len(run_ids), "steps": steps})
        print(f"  seeded {min(rows, lo + chunk):,} rows, {time.perf_counter() - started:.0f} s", flush=True)
    took["insert (generate_series, no secondary index)"] = time.perf_counter() - started
    for name, statement in ddl:
        started = time.perf_counter()
        cursor.execute(statement)
        took[f"build {name}"] = time.perf_counter() - started
        print(f"  built {name}: {took[f'build {name}']:.0f} s", flush=True)
    cursor.execute("VACUUM ANALYZE runs_rollout")
    return took


def sizes(cursor, table: str, rows: int) -> list[tuple[str, int]]:
    """(relation, bytes) for the heap (with its TOAST) and each index of `table` and its partitions."""
    heap = sql(cursor, """SELECT coalesce(sum(pg_table_size(c.oid)), 0) FROM pg_class c
                          WHERE c.oid = %s::regclass OR c.oid IN (SELECT inhrelid FROM pg_inherits
                                                                  WHERE inhparent = %s::regclass)""",
               [table, table])[0][0]
    indexes = sql(cursor, """
        SELECT coalesce(pi.indexrelid::regclass::text, i.indexrelid::regclass::text),
               sum(pg_relation_size(i.indexrelid))
        FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
        LEFT JOIN pg_inherits inh ON inh.inhrelid = i.indexrelid
        LEFT JOIN pg_index pi ON pi.indexrelid = inh.inhparent
        WHERE c.oid = %s::regclass OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = %s::regclass)
        GROUP BY 1 ORDER BY 2 DESC""", [table, table])
    return [("heap + TOAST", int(heap))] + [(name, int(size)) for name, size in indexes]


def print_sizes(label: str, found: list[tuple[str, int]], rows: int) -> None:
    total = sum(size for _, size in found)
    print(f"{label}: {total / 2**30:.2f} GiB in all, {total / rows:,.0f} bytes/row")
    for name, size in found:
        print(f"  {name:40s} {size / 2**20:10,.0f} MiB  {size / rows:8.1f} bytes/row")


def queries(table: str, run_id: int, steps: int) -> dict[str, tuple[str, list]]:
    """The key reads, as the API and the explorer send them (50 rows a page)."""
    mid, deep = steps // 2, max(0, steps - steps // 4)
    return {
        "newest page (run, step desc, id desc)": (
            f"SELECT id, step, reward FROM {table} WHERE run_id = %s ORDER BY step DESC, id DESC LIMIT 51",
            [run_id]),
        "deep keyset page (3/4 back)": (
            f"SELECT id, step, reward FROM {table} WHERE run_id = %s AND (step, id) < (%s, 0) "
            "ORDER BY step DESC, id DESC LIMIT 51", [run_id, steps - deep]),
        "reward band 0.5..1.5, newest first": (
            f"SELECT id, step, reward FROM {table} WHERE run_id = %s AND reward BETWEEN 0.5 AND 1.5 "
            "ORDER BY step DESC, id DESC LIMIT 51", [run_id]),
        "best reward page": (
            f"SELECT id, step, reward FROM {table} WHERE run_id = %s ORDER BY reward DESC, id DESC LIMIT 51",
            [run_id]),
        "step range, 10 steps: reward by step": (
            f"SELECT step, avg(reward), count(*) FROM {table} WHERE run_id = %s AND step BETWEEN %s AND %s "
            "GROUP BY step", [run_id, mid, mid + 9]),
        "time range across runs, 1 minute": (
            f"SELECT count(*), avg(reward) FROM {table} WHERE created_at >= '2026-01-01'::timestamptz + "
            f"%s * interval '1 s' AND created_at < '2026-01-01'::timestamptz + %s * interval '1 s'",
            [steps * 2, steps * 2 + 60]),
    }


def measure_reads(cursor, table: str, run_id: int, steps: int, only: set[str] | None = None,
                  repeats: int = 20) -> dict[str, tuple[float, float, str]]:
    out = {}
    for name, (text, params) in queries(table, run_id, steps).items():
        if only and name not in only:
            continue
        plan = sql(cursor, "EXPLAIN " + text, params)
        scan = " / ".join(sorted({re.sub(r" on \S+( \S+)?$", "", line.split("(cost")[0].strip().lstrip("-> "))
                                  for (line,) in plan if "Scan" in line}))
        p50, p95 = timed(lambda text=text, params=params: sql(cursor, text, params), repeats)
        out[name] = (p50, p95, scan)
    return out


def print_reads(label: str, reads: dict[str, tuple[float, float, str]]) -> None:
    print(label)
    for name, (p50, p95, scan) in reads.items():
        print(f"  {name:40s} p50 {p50:8.2f} ms  p95 {p95:8.2f} ms   {scan}")


def brin_variant(cursor, run_id: int, steps: int, rows: int) -> None:
    """Step and time ranges with BRIN indexes in place of the btrees (dropped inside a
    transaction that is rolled back)."""
    started = time.perf_counter()
    cursor.execute("CREATE INDEX scale_brin_step ON runs_rollout USING brin (run_id, step)")
    cursor.execute("CREATE INDEX scale_brin_created ON runs_rollout USING brin (created_at)")
    built = time.perf_counter() - started
    cursor.execute("ANALYZE runs_rollout")
    step_kib, created_kib = (sql(cursor, f"SELECT pg_relation_size('{name}')")[0][0] / 1024
                             for name in ("scale_brin_step", "scale_brin_created"))
    print(f"(b) BRIN (run_id, step) {step_kib:,.0f} KiB, BRIN (created_at) {created_kib:,.0f} KiB, "
          f"both built in {built:.1f} s")
    only = {"step range, 10 steps: reward by step", "time range across runs, 1 minute"}
    print_reads("  with the btrees and BRIN:", measure_reads(cursor, "runs_rollout", run_id, steps, only))
    cursor.execute("BEGIN")
    for name in ("rollout_run_newest", "rollout_identity_unique", "rollout_run_prompt_step"):
        if name == "rollout_identity_unique":
            cursor.execute(f"ALTER TABLE runs_rollout DROP CONSTRAINT IF EXISTS {name}")
        else:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")
    print_reads("  BRIN only (the (run, step...) btrees dropped):",
                measure_reads(cursor, "runs_rollout", run_id, steps, only))
    cursor.execute("ROLLBACK")
    cursor.execute("DROP INDEX scale_brin_step")
    cursor.execute("DROP INDEX scale_brin_created")




def copy_rates(cursor, tables: list[str], run_id: int, step0: int, batches: int = 6) -> list[float]:
    """Rollouts/s of COPY in 5,000-row batches (one transaction each) into each table,
    batch by batch in turn (so load on the machine hits all alike), the rows (built by the
    seed query) in hand before the clock starts."""
    totals = [0.0] * len(tables)
    for b in range(batches):
        with cursor.copy(f"COPY ({ROWS}) TO STDOUT",
                         {"lo": b * BATCH, "hi": (b + 1) * BATCH, "runs": [run_id], "nruns": 1, "steps": 1}) as out:
            data = _shift_steps(b"".join(bytes(chunk) for chunk in out), step0)
        for k, table in enumerate(tables):
            started = time.perf_counter()
            cursor.execute("BEGIN")
            with cursor.copy(f"COPY {table} ({COLUMNS}) FROM STDIN") as copy:
                copy.write(data)
            cursor.execute("COMMIT")
            totals[k] += time.perf_counter() - started
    return [batches * BATCH / total for total in totals]


def _shift_steps(data: bytes, step0: int) -> bytes:
    """Moves the batch's steps (second column) past the seeded ones, so rows are new."""
    lines = []
    for line in data.splitlines():
        run, step, rest = line.split(b"\t", 2)
        lines.append(b"\t".join((run, str(int(step) + step0).encode(), rest)))
    return b"\n".join(lines) + b"\n"


def empty_like(cursor, name: str) -> None:
    """An empty table with runs_rollout's columns, indexes and foreign keys."""
    cursor.execute(f"DROP TABLE IF EXISTS {name}")
    cursor.execute(f"CREATE TABLE {name} (LIKE runs_rollout INCLUDING ALL)")
    for _, statement in secondary_ddl(cursor, "runs_rollout"):
        if "FOREIGN KEY" in statement:
            cursor.execute(statement.replace("runs_rollout ADD CONSTRAINT ", f"{name} ADD CONSTRAINT {name}_"))


def partitioned(cursor, partitions: int) -> dict[str, float]:
    """runs_rollout's rows in a table hash-partitioned by run, with the same indexes (the
    primary key must then include run_id). Returns seconds per phase."""
    took = {}
    cursor.execute("DROP TABLE IF EXISTS scale_part")
    cursor.execute("CREATE TABLE scale_part (LIKE runs_rollout INCLUDING DEFAULTS) PARTITION BY HASH (run_id)")
    cursor.execute("ALTER TABLE scale_part ALTER id SET DEFAULT nextval(pg_get_serial_sequence('runs_rollout', 'id'))")
    for i in range(partitions):
        cursor.execute(f"CREATE TABLE scale_part_{i} PARTITION OF scale_part "
                       f"FOR VALUES WITH (MODULUS {partitions}, REMAINDER {i})")
    started = time.perf_counter()
    cursor.execute("INSERT INTO scale_part SELECT * FROM runs_rollout")
    took["insert (from the seeded table, no index)"] = time.perf_counter() - started
    ddl = [("p_pkey", "ALTER TABLE scale_part ADD CONSTRAINT p_pkey PRIMARY KEY (id, run_id)")]
    for name, statement in secondary_ddl(cursor, "runs_rollout"):
        statement = statement.replace("ALTER TABLE runs_rollout ADD CONSTRAINT ", "ALTER TABLE scale_part ADD CONSTRAINT p_")
        ddl.append((name, statement.replace(f"INDEX {name} ON public.runs_rollout ", f"INDEX p_{name} ON scale_part ")))
    for name, statement in ddl:
        started = time.perf_counter()
        cursor.execute(statement)
        took[f"build {name}"] = time.perf_counter() - started
    cursor.execute("VACUUM ANALYZE scale_part")
    return took


def print_phases(label: str, took: dict[str, float]) -> None:
    print(f"{label}: {sum(took.values()):,.0f} s in all")
    for name, seconds in took.items():
        print(f"  {name:48s} {seconds:8.1f} s")


def make_runs(count: int) -> list[int]:
    from webapp.projects.services import project_create
    from webapp.runs.models import Run

    runs = list(Run.objects.filter(name__startswith="scale run ").order_by("id").values_list("id", flat=True))
    if len(runs) == count:
        return runs
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="bench")
    project = project_create(name="Bench scale", owner=user, slug=f"bench-scale-{int(time.time())}")
    Run.objects.filter(name__startswith="scale run ").delete()
    return [Run.objects.create(project=project, name=f"scale run {i}", stage="external", status="succeeded").pk
            for i in range(count)]


def drop_database(url: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    print(f"dropped database {DB_NAME}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--reseed", action="store_true", help="seed even if the rows are there")
    parser.add_argument("--skip-partitioned", action="store_true")
    parser.add_argument("--drop", action="store_true", help="drop the scratch database at the end")
    args = parser.parse_args()
    env = scratch_env(DB_NAME)
    setup_django(env)
    import psycopg

    run_ids = make_runs(args.runs)
    steps = max(1, args.rows // (PER_STEP * args.runs))
    middle = run_ids[len(run_ids) // 2]
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn, conn.cursor() as cursor:
        have = sql(cursor, "SELECT count(*) FROM runs_rollout")[0][0]
        if args.reseed or have != args.rows:
            print(f"seeding {args.rows:,} rollouts over {args.runs} runs ({steps} steps)", flush=True)
            print_phases("(a) seed, current layout", seed(cursor, run_ids, args.rows))
        else:
            print(f"reusing {have:,} seeded rollouts (--reseed to rebuild)")
        cursor.execute("DELETE FROM runs_rollout WHERE step >= %s", [steps])  # a previous run's ingest batches
        print_sizes("(a) current layout (btree indexes)", sizes(cursor, "runs_rollout", args.rows), args.rows)
        print_reads(f"(a) reads, run id {middle}, one of {args.runs} ({args.rows // args.runs:,} rows in it):",
                    measure_reads(cursor, "runs_rollout", middle, steps))
        brin_variant(cursor, middle, steps, args.rows)
        empty_like(cursor, "scale_empty")
        seeded_rate, empty_rate = copy_rates(cursor, ["runs_rollout", "scale_empty"], middle, steps)
        print(f"COPY ingest, 5,000 per transaction: into the {args.rows:,}-row table {seeded_rate:,.0f} rollouts/s; "
              f"baseline into an empty table {empty_rate:,.0f} rollouts/s; ratio {seeded_rate / empty_rate:.2f}")
        cursor.execute("DROP TABLE scale_empty")
        if not args.skip_partitioned:
            print(f"(c) hash-partitioned by run, {args.partitions} partitions", flush=True)
            print_phases("  build", partitioned(cursor, args.partitions))
            print_sizes("  sizes", sizes(cursor, "scale_part", args.rows), args.rows)
            print_reads("  reads:", measure_reads(cursor, "scale_part", middle, steps))
            part_rate, plain_rate = copy_rates(cursor, ["scale_part", "runs_rollout"], middle, steps + 1000)
            print(f"  COPY ingest into the partitioned table {part_rate:,.0f} rollouts/s; baseline the plain "
                  f"table, same run, interleaved: {plain_rate:,.0f}; ratio {part_rate / plain_rate:.2f}")
            cursor.execute("DROP TABLE scale_part")
        cursor.execute("DELETE FROM runs_rollout WHERE step >= %s", [steps])
    if args.drop:
        drop_database(env["DATABASE_URL"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
