"""A run whose config says `launcher: torchrun`: the Celery worker starts two data-parallel
processes, relays rank 0's events into the database and passes a cancel request on."""

from __future__ import annotations

import time

import pytest

from tests.webapp.test_stage_runs import TINY_GRPO, wait_for
from webapp.runs.models import Checkpoint, MetricPoint, Rollout, Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_torchrun_run_reports_once_per_step_and_stops_when_cancelled(personas, api_for, starter_model,
                                                                      celery_worker):
    api = api_for(personas.owner)
    config = {**TINY_GRPO, "steps": 200, "eval_examples": 0, "launcher": "torchrun", "nproc_per_node": 2}
    response = api.post("/api/v1/runs", {"name": "two ranks", "stage": "grpo", "project": "alpha", "config": config})
    assert response.status_code == 201, response.content
    run = Run.objects.get(pk=response.json()["id"])
    deadline = time.monotonic() + 240
    while not Rollout.objects.filter(run=run).exists():
        run.refresh_from_db()
        assert run.status in ("queued", "running") and time.monotonic() < deadline, run.error[-3000:]
        time.sleep(0.3)
    assert api.post(f"/api/v1/runs/{run.pk}/cancel").status_code == 200
    run = wait_for(run, {"cancelled", "failed", "succeeded"}, timeout=120)
    assert run.status == "cancelled", run.error[-3000:]
    steps = list(Rollout.objects.filter(run=run).values_list("step", flat=True))
    last = max(steps)
    assert 1 <= last < 200 and sorted(set(steps)) == list(range(1, last + 1))
    assert all(steps.count(s) == 2 * 4 for s in set(steps))  # both ranks' groups, reported once by rank 0
    losses = MetricPoint.objects.filter(run=run, name="loss").values_list("step", flat=True)
    assert sorted(losses) == list(range(1, last + 1))
    checkpoint = Checkpoint.objects.get(run=run)
    assert checkpoint.step == last and run.current_step == last
