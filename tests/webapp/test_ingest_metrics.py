"""`store.metrics_store`: new steps go straight in by COPY; anything that meets a stored
point (a resent batch, a repeat inside the batch, a writer racing us) is upserted, last
value winning; every call is one transaction."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from webapp.ingest import store
from webapp.runs.models import MetricPoint, Run


@pytest.fixture
def run(personas):
    return Run.objects.create(project=personas.project, name="ext", stage="external", status="running")


def stored(run: Run) -> dict[tuple[str, int], float]:
    return {(n, s): v for n, s, v in MetricPoint.objects.filter(run=run).values_list("name", "step", "value")}


def points(steps: range, value: float = 0.0) -> list[tuple[int, str, float]]:
    return [(s, name, value + s) for s in steps for name in ("loss", "kl")]


@pytest.mark.django_db
def test_a_batch_mixing_new_and_stored_steps_overwrites_and_adds(run):
    assert store.metrics_store(run=run, points=points(range(0, 10))) == 20
    assert store.metrics_store(run=run, points=points(range(5, 15), value=100.0)) == 20
    values = stored(run)
    assert len(values) == 30
    assert values[("loss", 4)] == 4.0 and values[("loss", 5)] == 105.0 and values[("kl", 14)] == 114.0


@pytest.mark.django_db
def test_a_resent_batch_stores_nothing_new(run):
    store.metrics_store(run=run, points=points(range(3)))
    assert store.metrics_store(run=run, points=points(range(3))) == 6
    assert MetricPoint.objects.filter(run=run).count() == 6


@pytest.mark.django_db
def test_a_point_repeated_inside_a_new_batch_keeps_the_last_value(run):
    batch = points(range(10, 13)) + [(11, "loss", -1.0)]
    assert store.metrics_store(run=run, points=batch) == 6
    assert stored(run)[("loss", 11)] == -1.0


@pytest.mark.django_db
def test_a_name_logged_behind_the_others_is_still_stored(run):
    store.metrics_store(run=run, points=[(100, "eval/acc", 0.5)])
    store.metrics_store(run=run, points=[(s, "loss", 1.0) for s in range(5)] + [(200, "eval/acc", 0.7)])
    assert len(stored(run)) == 7


@pytest.mark.django_db
def test_a_failure_mid_call_leaves_nothing(run, monkeypatch):
    store.metrics_store(run=run, points=points(range(2)))

    def broken(*args, **kwargs):
        raise RuntimeError("lost the connection to Redis")

    monkeypatch.setattr(store.broadcast, "send_on_commit", broken)  # runs after the COPY, before the commit
    with pytest.raises(RuntimeError):
        store.metrics_store(run=run, points=points(range(2, 50)))
    with pytest.raises(RuntimeError):
        store.metrics_store(run=run, points=points(range(0, 50), value=7.0))  # the upsert path
    assert stored(run) == {(n, s): float(s) for s, n, _ in points(range(2))}


@pytest.mark.django_db
def test_deleting_the_run_deletes_its_points(run):
    store.metrics_store(run=run, points=points(range(3)))
    run.delete()
    assert not MetricPoint.objects.filter(run_id=run.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_of_one_new_batch_store_it_once(run):
    def write(_: int) -> int:  # each thread on its own connection, all racing for the same keys
        try:
            return store.metrics_store(run=run, points=points(range(2000)))
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=3) as pool:
        assert list(pool.map(write, range(3))) == [4000] * 3
    assert stored(run) == {(n, s): float(s) for s, n, _ in points(range(2000))}
