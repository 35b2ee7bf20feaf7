"""`store.rollouts_store`: the direct COPY path, its fallback when another writer stored
some of the same rollouts in between, and duplicates inside one batch."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from webapp.ingest import store
from webapp.runs.models import Rollout, Run


@pytest.fixture
def run(personas):
    return Run.objects.create(project=personas.project, name="ext", stage="external", status="running")


def batch(n: int, step: int = 1) -> list[store.RolloutIn]:
    return [store.RolloutIn(step=step, prompt=f"p{i % 5}", completion=f"<think>t</think> {i}",
                             rewards={"math": i % 2}, sample_index=i // 5) for i in range(n)]


@pytest.mark.django_db
def test_duplicates_inside_a_batch_are_stored_once_first_wins(run):
    rows = batch(4) + [store.RolloutIn(step=1, prompt="p0", completion="later", rewards={}, sample_index=0)]
    assert store.rollouts_store(run=run, rollouts=rows) == 4
    assert Rollout.objects.get(run=run, prompt="p0", sample_index=0).completion == "<think>t</think> 0"


@pytest.mark.django_db
def test_a_writer_that_raced_us_sends_the_batch_the_safe_way(run, monkeypatch, django_capture_on_commit_callbacks):
    assert store.rollouts_store(run=run, rollouts=batch(6)) == 6
    everything = lambda cursor, run_id, rows: list(range(len(rows)))  # noqa: E731 (blind to what is stored)
    monkeypatch.setattr(store, "_fresh", everything)
    sent = []
    monkeypatch.setattr(store.broadcast, "watched", lambda run_id: True)  # as if a browser were watching
    monkeypatch.setattr(store.broadcast, "rollout_frames", lambda rows: sent.extend(rows) or [])
    with django_capture_on_commit_callbacks(execute=True):
        assert store.rollouts_store(run=run, rollouts=batch(10)) == 4
    assert store.broadcast.flush(10)  # frames are built on the sender's thread
    assert Rollout.objects.filter(run=run).count() == 10
    assert sorted(r["completion"] for r in sent) == [f"<think>t</think> {i}" for i in range(6, 10)]
    assert [r["id"] for r in sent] == sorted(r["id"] for r in sent)


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_of_one_batch_store_it_once(run):
    created: list[int] = []

    def write() -> None:
        try:
            created.append(store.rollouts_store(run=run, rollouts=batch(2000)))
        finally:
            connection.close()

    threads = [threading.Thread(target=write) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(created) == 2000 and Rollout.objects.filter(run=run).count() == 2000
