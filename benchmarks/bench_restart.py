"""Restart to next stored step: every process of `manage.py serve` killed with SIGKILL
mid-run, then serve started again, as a newcomer would with `kill -9` and `make serve`.

Figures per kill: seconds from the restart until serve answers, and until the run stores
its next step. Baselines, measured in the same run: the run's own step interval when nothing
fails (the floor), and the lease (`PONDER_LEASE_SECONDS`), which is what a worker under a new
name would wait before its reaper requeues the run. Target: the next step within a minute.

    .venv/bin/python benchmarks/bench_restart.py [--kills 3] [--steps 40]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _scratch import ROOT, owner_with_token, scratch_env, setup_django

sys.path.insert(0, str(ROOT))
from tests import procs  # noqa: E402

QUEUE = "bench-restart"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    data_dir = Path(tempfile.mkdtemp(prefix="ponder-bench-restart-"))
    (ROOT / "var" / "models").mkdir(parents=True, exist_ok=True)
    (data_dir / "models").symlink_to(ROOT / "var" / "models")
    env = {**scratch_env("ponder_bench_restart"), "PONDER_DATA_DIR": str(data_dir),
           "PONDER_GPU_QUEUE": QUEUE, "PONDER_CPU_QUEUE": QUEUE}
    setup_django(env)
    from engine.starter import ensure_starter
    from webapp.runs.models import MetricPoint

    ensure_starter("starter", data_dir=ROOT / "var")
    _, token = owner_with_token("bench-restart")
    port = procs.free_port()
    logs = data_dir / "logs"
    serve = procs.start_serve(env, logs, port, name="serve-0")
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    config = {"model": "starter", "task": "arithmetic", "rewards": {"format": 0.5, "task": 1.0}, "group_size": 4,
              "prompts_per_step": 2, "max_new_tokens": 24, "eval_examples": 4, "steps": args.steps, "save_every": 2}
    run_id = api.post("/api/v1/runs", json={"name": "restart bench", "stage": "grpo", "config": config}).json()["id"]

    def last_step() -> tuple[int, float]:
        rows = MetricPoint.objects.filter(run_id=run_id, name="step_time").order_by("-step")
        row = rows.first()
        return (row.step, row.value) if row else (0, 0.0)

    floor = 0.0

    def wait_step(step: int, timeout: float = 300) -> float:
        start = time.monotonic()
        while last_step()[0] < step:
            if time.monotonic() - start > timeout:
                raise SystemExit(f"no step {step} within {timeout} s; logs in {logs}")
            time.sleep(0.05)
        return time.monotonic() - start

    healthy, next_step = [], []
    try:
        wait_step(1)
        first = (time.monotonic(), last_step()[0])
        for kill in range(1, args.kills + 1):
            wait_step(kill * args.steps // (args.kills + 1))
            if kill == 1:  # the step interval when nothing fails, wall clock
                floor = (time.monotonic() - first[0]) / max(1, last_step()[0] - first[1])
            os.killpg(serve.popen.pid, signal.SIGKILL)
            serve.stop()
            killed_at = last_step()[0]
            restarted = time.monotonic()
            serve = procs.start_serve(env, logs, port, name=f"serve-{kill}")
            healthy.append(time.monotonic() - restarted)
            wait_step(killed_at + 1)
            next_step.append(time.monotonic() - restarted)
        wait_step(args.steps, timeout=600)
    finally:
        serve.stop()
    lease = float(os.environ.get("PONDER_LEASE_SECONDS", "60"))
    print(f"kill -9 of every process of serve, {args.kills} times in a {args.steps}-step GRPO run on the starter")
    print(f"  restart -> serve answers     median {statistics.median(healthy):6.1f} s  (max {max(healthy):.1f})")
    print(f"  restart -> next stored step  median {statistics.median(next_step):6.1f} s  (max {max(next_step):.1f})")
    print(f"  baseline: a step without failure  {floor:6.2f} s -> recovery costs "
          f"{statistics.median(next_step) / floor:.0f} steps")
    print(f"  baseline: the lease a renamed worker would wait  {lease:.0f} s -> "
          f"{statistics.median(next_step) / lease:.2f} of it")
    print(f"  target: next step within 60 s of the restart: {'met' if max(next_step) < 60 else 'NOT met'}")
    return 0 if max(next_step) < 60 else 1


if __name__ == "__main__":
    sys.exit(main())
