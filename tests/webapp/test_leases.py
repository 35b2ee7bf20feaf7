"""Leases on running runs: a lapsed one is requeued exactly once however many reapers race,
a holder that lost its run writes nothing, and a cancel of a run nobody holds ends it now."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from engine.events import RolloutRecord
from webapp.runs import services
from webapp.runs.leases import lease_renew, runs_requeue_lapsed
from webapp.runs.models import MetricPoint, Rollout, Run
from workers.sink import DbSink


def running(personas, *, beat_ago_s: float, task: str = "task-a") -> Run:
    beat = timezone.now() - timedelta(seconds=beat_ago_s)
    return Run.objects.create(project=personas.project, name="held", stage="pretrain", config={"steps": 3},
                              status="running", worker="w1@host", celery_task_id=task, heartbeat_at=beat)


@pytest.mark.django_db(transaction=True)
def test_two_reapers_racing_requeue_a_lapsed_run_once(personas):
    run = running(personas, beat_ago_s=settings.PONDER_LEASE_SECONDS * 2)
    fresh = running(personas, beat_ago_s=0, task="task-b")
    results: list[list[int]] = []
    start = threading.Barrier(2)

    def reap() -> None:
        start.wait()
        try:
            results.append(runs_requeue_lapsed())
        finally:
            connection.close()

    threads = [threading.Thread(target=reap) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(r) for r in results) == [0, 1] and results[0] + results[1] == [run.pk]
    run.refresh_from_db()
    assert run.requeues == 1 and run.celery_task_id != "task-a"
    assert run.status in ("queued", "running", "succeeded")  # a live worker of the suite may take it at once
    fresh.refresh_from_db()
    assert fresh.status == "running" and fresh.requeues == 0  # a held lease is left alone


@pytest.mark.django_db
def test_a_holder_that_lost_its_run_writes_nothing(personas):
    run = running(personas, beat_ago_s=settings.PONDER_LEASE_SECONDS * 2)
    stale = DbSink(run=run, task_id="task-a")
    assert runs_requeue_lapsed() == [run.pk]  # while task-a stalled
    assert not lease_renew(run_id=run.pk, task_id="task-a")
    stale.metrics(1, {"loss": 1.0})
    stale.rollouts([RolloutRecord(step=1, prompt="p", completion="c", rewards={"task": 1.0}, reward=1.0)])
    with pytest.raises(services.LeaseLost):
        stale.flush()
    with pytest.raises(services.LeaseLost):
        stale.progress(1, 3)
    services.run_finish(run_id=run.pk, status="failed", error="stale", task_id="task-a")
    run.refresh_from_db()
    assert run.status == "queued" and run.error == "" and run.current_step == 0
    assert not MetricPoint.objects.filter(run=run).exists() and not Rollout.objects.filter(run=run).exists()


@pytest.mark.django_db
def test_cancel_ends_a_run_nobody_holds_at_once_and_asks_a_held_one_to_stop(personas):
    lost = running(personas, beat_ago_s=settings.PONDER_LEASE_SECONDS * 2)
    held = running(personas, beat_ago_s=0, task="task-b")
    assert services.run_cancel(run=lost, user=personas.owner).status == "cancelled"
    held = services.run_cancel(run=held, user=personas.owner)
    assert held.status == "running" and held.stop_requested  # stops at its next step boundary
