"""Outages between the client and the live server lose nothing and store nothing twice:
ten seconds of 503, a restart mid-stream (with a response lost after the commit), and a
client process that crashes with unsent rollouts in its spool."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ponder_client import Run
from ponder_client.__main__ import pending_runs

from tests import procs
from tests.client.conftest import FAST, rollout, stored_counts
from tests.client.proxy import FaultyProxy
from webapp.runs.models import Checkpoint, MetricPoint

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def proxy(live_url):
    proxy = FaultyProxy(live_url).start()
    yield proxy
    proxy.close()


def log_steps(run: Run, steps: range, per_step: int, pause_s: float = 0.0) -> float:
    """Log `per_step` rollouts and two metrics per step; returns the slowest call (s)."""
    slowest = 0.0
    for step in steps:
        started = time.perf_counter()
        run.log_rollouts([rollout(step, i) for i in range(per_step)])
        run.log_metrics(step, {"reward/mean": step / 100, "kl": 0.001 * step})
        slowest = max(slowest, time.perf_counter() - started)
        time.sleep(pause_s)
    return slowest


def test_ten_seconds_of_503_lose_nothing(proxy, owner_token, personas, tmp_path):
    proxy.fail_for(2.0)
    started = time.monotonic()
    run = Run.create("flaky", base_url=proxy.url, token=owner_token, spool_dir=tmp_path, options=FAST)
    assert time.monotonic() - started >= 1.9  # create() waited the outage out
    proxy.fail_for(10.0)
    slowest = log_steps(run, range(40), per_step=50, pause_s=0.05)
    report = run.finish(timeout_s=120)

    assert report.ok, report
    assert report.retries >= 5 and proxy.refused >= 5
    assert slowest < 0.25  # the caller never waits for the server
    assert stored_counts(run.id) == (2000, 2000)
    assert MetricPoint.objects.filter(run_id=run.id).count() == 80


def test_a_restart_mid_stream_loses_nothing_and_stores_nothing_twice(proxy, owner_token, personas, tmp_path):
    run = Run.create("restart", base_url=proxy.url, token=owner_token, spool_dir=tmp_path, options=FAST)
    logger = threading.Thread(target=log_steps, args=(run, range(60), 50, 0.03))
    logger.start()
    wait_until(lambda: stored_counts(run.id)[0] > 0, 30)
    proxy.drop_responses = 1  # the server stores the next batch, the client never hears
    wait_until(lambda: proxy.drop_responses == 0, 30)
    proxy.stop()  # connections refused while "restarting"
    time.sleep(2.0)
    proxy.start()
    logger.join()
    report = run.finish(timeout_s=120)

    assert report.ok, report
    assert report.retries >= 2
    assert stored_counts(run.id) == (3000, 3000)
    assert MetricPoint.objects.filter(run_id=run.id).count() == 120


CRASHING_CLIENT = """
import os, signal, sys
from ponder_client import ClientOptions, Run
run_id, url, token, spool = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
run = Run.attach(run_id, base_url=url, token=token, spool_dir=spool, options=ClientOptions(backoff_cap_s=0.5))
run.log_rollouts([{"step": 1, "prompt": f"p{i}", "completion": "c", "rewards": {"r": 1.0}} for i in range(300)])
assert run.flush(30)
print("flushed", flush=True)
sys.stdin.readline()  # the test makes the server refuse writes now
for step in range(2, 12):
    run.log_rollouts([{"step": step, "prompt": f"p{i}", "completion": "c", "rewards": {"r": 1.0}} for i in range(300)])
    run.log_metrics(step, {"loss": 1.0 / step})
run.log_checkpoint(11, "/ckpt/11")
print("logged", run.spool_dir, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_crashed_clients_spool_is_replayed_by_the_next(proxy, owner_token, personas, server_env, tmp_path):
    from webapp.runs.models import Run as RunRow

    row = RunRow.objects.create(project=personas.project, name="crashy", stage="external", status="running")
    env = {**server_env, "PYTHONPATH": os.pathsep.join([str(procs.ROOT / "client"), str(procs.ROOT)])}
    child = subprocess.Popen([sys.executable, "-c", CRASHING_CLIENT, str(row.pk), proxy.url, owner_token, str(tmp_path)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout.readline().strip() == "flushed"
    proxy.posts_unavailable = True
    child.stdin.write("go\n")
    child.stdin.flush()
    spool_dir = Path(child.stdout.readline().split(maxsplit=1)[1].strip())
    assert child.wait(30) == -9
    assert stored_counts(row.pk) == (300, 300)
    segment = max(spool_dir.glob("seg-*.jsonl"))
    with open(segment, "ab") as torn:  # a line cut short by the crash
        torn.write(b'{"k":"r","d":{"step":99,"prom')

    assert pending_runs(proxy.url, tmp_path) == {row.pk: 10 * 300 + 10 + 1}  # what `replay` would send
    run = Run.attach(row.pk, base_url=proxy.url, token=owner_token, spool_dir=tmp_path, options=FAST)
    proxy.posts_unavailable = False
    report = run.finish(timeout_s=60)

    assert report.ok, report
    assert report.replayed == 10 * 300 + 10 + 1  # rollouts, metric lines, the checkpoint
    assert stored_counts(row.pk) == (3300, 3300)
    assert MetricPoint.objects.filter(run_id=row.pk, name="loss").count() == 10
    assert Checkpoint.objects.filter(run_id=row.pk, step=11).exists()
    assert RunRow.objects.get(pk=row.pk).status == "succeeded"


def wait_until(predicate, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
