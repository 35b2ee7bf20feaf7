"""Ingestion speed of runs logged from elsewhere, each figure against a baseline measured
in the same run:

- rollouts/s through `POST /api/v1/runs/{id}/rollouts` (5,000 per call, 1 KB completions,
  four reward components) on a real daphne server, against a raw psycopg `COPY` of the
  same rows into the same table (interleaved rounds, so load on the machine hits both);
- metric points/s through `POST /api/v1/runs/{id}/metrics` (100,000 per call) against a
  raw `COPY` into the metric table;
- the client's cost per logging call on the caller's thread (p50/p99), against the floor
  of serialising the same rollout to JSON and appending it to a file.

    .venv/bin/python benchmarks/bench_ingest.py              # 6 rounds of 5,000 rollouts
    .venv/bin/python benchmarks/bench_ingest.py --rounds 10

It uses a scratch database `<name>_bench` next to DATABASE_URL's (created and migrated
here; its rollout and metric tables are emptied at the start).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "client"))

BATCH = 5000
POINTS = 100_000
COLUMNS = ("run_id", "step", "sample_index", "prompt_hash", "prompt", "completion", "reasoning", "final_answer",
           "reference", "token_count", "finish_reason", "reward", "rewards", "metadata", "checkpoint_id", "created_at")


def scratch_env() -> dict[str, str]:
    """The environment of this script and its server: the scratch database, quiet settings."""
    from webapp import localservices

    found = localservices.discover()
    parts = urlsplit(found["DATABASE_URL"])
    url = urlunsplit(parts._replace(path=f"/{(parts.path.lstrip('/') or 'ponder')}_bench"))
    localservices.ensure_database(url)
    return {**os.environ, "DATABASE_URL": url, "REDIS_URL": found["REDIS_URL"], "DJANGO_SETTINGS_MODULE": "webapp.settings",
            "PONDER_CHANNEL_PREFIX": "ponder-bench", "PYTHONPATH": str(ROOT)}


def prepare_database(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    os.environ.update(env)
    import django

    django.setup()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE runs_rollout, runs_metricpoint CASCADE")  # a scratch database


def bench_owner() -> tuple[Any, str]:
    """A user and a bearer token for the API, with a project to hold the runs."""
    from django.contrib.auth import get_user_model

    from webapp.accounts.services import api_token_create
    from webapp.projects.services import personal_project

    user, _ = get_user_model().objects.get_or_create(username="bench")
    personal_project(user=user)
    return user, api_token_create(user=user)


def new_run(user: Any, name: str) -> int:
    from webapp.projects.services import personal_project
    from webapp.runs import services

    return services.run_create(project=personal_project(user=user), user=user, name=name, stage="external",
                               config={}).pk


def rollouts(step: int, n: int = BATCH) -> list[dict[str, Any]]:
    """`n` rollouts of one step: 1 KB completions, four reward components, groups of 8."""
    reasoning = ("Let me add the numbers one digit at a time and carry where needed. " * 15)[:960]
    return [{"step": step, "prompt": f"Problem {i // 8}: what is {i // 8} + {step}? Think step by step.",
             "completion": f"<think>{reasoning}</think> {i // 8 + step}", "sample_index": i % 8,
             "rewards": {"format": 1.0, "math": float(i % 2), "length": 0.25, "language": 0.9}}
            for i in range(n)]


def copy_rows(run_id: int, items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The same rollouts as table rows, computed outside the timing (the COPY baseline's input)."""
    from django.utils import timezone

    from webapp.ingest import store

    now = timezone.now()
    return [store.RolloutIn(step=r["step"], prompt=r["prompt"], completion=r["completion"], rewards=r["rewards"],
                             sample_index=r["sample_index"]).row(run_id) + (now,) for r in items]


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    import httpx

    from tests.procs import free_port

    port = free_port()
    log = open(Path(tempfile.gettempdir()) / "ponder-bench-daphne.log", "wb")  # noqa: SIM115
    server = subprocess.Popen([str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1", "-p", str(port),
                               "webapp.asgi:application"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit(f"daphne did not start; see {log.name}")


def bench_rollouts(http: Any, user: Any, rounds: int) -> tuple[float, float]:
    """(API rollouts/s, COPY rollouts/s), interleaved round by round."""
    import psycopg

    api_run, copy_run = new_run(user, "bench api"), new_run(user, "bench copy")
    http.post(f"/api/v1/runs/{api_run}/rollouts", content=json.dumps({"rollouts": rollouts(0)}))  # warm-up
    api_s = copy_s = 0.0
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        for step in range(1, rounds + 1):
            body = json.dumps({"rollouts": rollouts(step)}).encode()
            started = time.perf_counter()
            response = http.post(f"/api/v1/runs/{api_run}/rollouts", content=body)
            api_s += time.perf_counter() - started
            assert response.status_code == 201 and response.json() == {"created": BATCH}, response.text
            rows = copy_rows(copy_run, rollouts(step))
            started = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur, cur.copy(
                    f"COPY runs_rollout ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            copy_s += time.perf_counter() - started
    return rounds * BATCH / api_s, rounds * BATCH / copy_s


def bench_metrics(http: Any, user: Any, rounds: int) -> tuple[float, float]:
    """(API points/s, COPY points/s): 100,000 points per call, 100 names x 1,000 steps."""
    import psycopg
    from django.utils import timezone

    api_run, copy_run = new_run(user, "bench metrics api"), new_run(user, "bench metrics copy")
    api_s = copy_s = 0.0
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        for r in range(rounds):
            points = [{"step": r * 1000 + s, "name": f"metric/{n}", "value": s * 0.001 + n}
                      for s in range(1000) for n in range(POINTS // 1000)]
            body = json.dumps({"points": points}).encode()
            started = time.perf_counter()
            response = http.post(f"/api/v1/runs/{api_run}/metrics", content=body)
            api_s += time.perf_counter() - started
            assert response.status_code == 201, response.text
            now = timezone.now()
            rows = [(copy_run, p["name"], p["step"], p["value"], now) for p in points]
            started = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur, cur.copy(
                    "COPY runs_metricpoint (run_id, name, step, value, wall_time) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            copy_s += time.perf_counter() - started
    return rounds * POINTS / api_s, rounds * POINTS / copy_s


def percentiles(ns: list[int]) -> tuple[float, float]:
    """(p50, p99) in microseconds."""
    ordered = sorted(ns)
    return ordered[len(ordered) // 2] / 1000, ordered[int(len(ordered) * 0.99)] / 1000


def bench_client(url: str, token: str, calls: int) -> dict[str, tuple[float, float]]:
    """The client's cost per call on the caller's thread, interleaved call by call with the
    floor (the same rollout through json.dumps and appended to a file), so both see the same
    load; the client's sender thread runs meanwhile, as it would under a trainer."""
    from ponder_client import Run

    item = rollouts(1, 1)[0]
    floor, log_ns, metric_ns = [], [], []
    with tempfile.TemporaryDirectory() as spool, open(Path(spool) / "floor.jsonl", "ab") as out:
        run = Run.create("bench client", base_url=url, token=token, spool_dir=spool)
        for i in range(calls):
            one = {**item, "sample_index": i}
            started = time.perf_counter_ns()
            out.write(json.dumps(one).encode() + b"\n")
            out.flush()
            floor.append(time.perf_counter_ns() - started)
            started = time.perf_counter_ns()
            run.log_rollouts([one])
            log_ns.append(time.perf_counter_ns() - started)
            started = time.perf_counter_ns()
            run.log_metrics(i, {"loss": 0.5, "reward": 1.0, "kl": 0.01, "entropy": 2.0})
            metric_ns.append(time.perf_counter_ns() - started)
            if i % 100 == 99:
                time.sleep(0.005)  # a trainer does other work between logging calls
        report = run.finish()
    if not report.ok or report.rollouts_created != calls:
        raise SystemExit(f"client benchmark lost data: {report}")
    return {"floor": percentiles(floor), "log_rollouts": percentiles(log_ns), "log_metrics": percentiles(metric_ns)}


def report(name: str, value: float, baseline: float, unit: str, base_name: str, target: str) -> None:
    print(f"{name:<28} {value:>10,.0f} {unit}   baseline {base_name}: {baseline:>10,.0f} {unit}   "
          f"ratio {value / baseline:.2f}   ({target})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="API calls (and COPYs) of 5,000 rollouts")
    parser.add_argument("--metric-rounds", type=int, default=3)
    parser.add_argument("--client-calls", type=int, default=5000)
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    env = scratch_env()
    prepare_database(env)
    user, token = bench_owner()
    server, url = start_server(env)
    try:
        import httpx

        with httpx.Client(base_url=url, timeout=300, headers={"Authorization": f"Bearer {token}",
                                                                "Content-Type": "application/json"}) as http:
            api, copy = bench_rollouts(http, user, args.rounds)
            metrics_api, metrics_copy = bench_metrics(http, user, args.metric_rounds)
        client = bench_client(url, token, args.client_calls)
    finally:
        server.terminate()
        server.wait(20)
    print(f"rollouts: {args.rounds} x {BATCH} per call (1 KB completions, 4 rewards); metric points: "
          f"{args.metric_rounds} x {POINTS:,} per call; client: {args.client_calls} calls")
    report("API rollouts", api, copy, "rollouts/s", "psycopg COPY", f"target >= 20,000/s and >= 0.50 of COPY: "
           f"{'met' if api >= 20_000 and api >= 0.5 * copy else 'MISSED'}")
    report("API metric points", metrics_api, metrics_copy, "points/s", "psycopg COPY",
           f"target >= 100,000/s: {'met' if metrics_api >= 100_000 else 'MISSED'}")
    floor_p50, floor_p99 = client["floor"]
    for name in ("log_rollouts", "log_metrics"):
        p50, p99 = client[name]
        print(f"client {name:<21} p50 {p50:8.1f} us  p99 {p99:8.1f} us   baseline json.dumps + append: "
              f"p50 {floor_p50:.1f} us  p99 {floor_p99:.1f} us   ratio p50 {p50 / floor_p50:.1f} p99 {p99 / floor_p99:.1f}   "
              f"(target < 1000 us: {'met' if p99 < 1000 else 'MISSED at p99' if p50 < 1000 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
