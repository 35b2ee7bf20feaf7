"""Archiving a run (off the list, kept) and deleting it with what goes with it, confirmed."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from webapp.review.models import Label, QueueItem, ReviewQueue
from webapp.runs.models import Checkpoint, MetricPoint, Rollout, Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def trained(personas, settings, tmp_path):
    """A finished run with rollouts, a label and a queue item on one, metrics, a checkpoint on
    disk, and a run started from that checkpoint."""
    settings.PONDER_DATA_DIR = tmp_path
    run = Run.objects.create(project=personas.project, name="r1-zero", stage="grpo", status="succeeded")
    folder = tmp_path / "runs" / str(run.pk) / "checkpoint-2"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\0" * 4096)
    checkpoint = Checkpoint.objects.create(run=run, step=2, path=str(folder))
    rollouts = [Rollout.objects.create(run=run, step=1, sample_index=i, prompt_hash=7, prompt="p", completion=f"c{i}")
                for i in range(3)]
    now = timezone.now()
    MetricPoint.objects.bulk_create([MetricPoint(run=run, name="loss", step=s, value=0.1, wall_time=now)
                                     for s in (1, 2)])
    Label.objects.create(rollout=rollouts[0], user=personas.teammate, verdict="accept")
    queue = ReviewQueue.objects.create(project=personas.project, name="q")
    QueueItem.objects.create(queue=queue, position=0, rollout=rollouts[1])
    derived = Run.objects.create(project=personas.project, name="from it", stage="grpo", status="succeeded",
                                 base_checkpoint=checkpoint)
    return run, derived, folder


def test_an_archived_run_leaves_the_list_and_comes_back(client, personas, trained):
    run, _, _ = trained
    client.force_login(personas.owner)
    client.post(reverse("run-archive", args=[run.pk]))
    run.refresh_from_db()
    assert run.archived_at is not None and Rollout.objects.filter(run=run).count() == 3  # kept
    listed = client.get(reverse("run-list")).content.decode()
    assert f"/runs/{run.pk}/" not in listed and "from it" in listed
    assert f"/runs/{run.pk}/" in client.get(reverse("run-list") + "?q=archived").content.decode()
    assert 'id="run-archived"' in client.get(reverse("run-detail", args=[run.pk])).content.decode()
    client.post(reverse("run-archive", args=[run.pk]), {"archived": "0"})
    assert f"/runs/{run.pk}/" in client.get(reverse("run-list")).content.decode()


def test_deleting_shows_what_goes_and_takes_it_once_confirmed(client, personas, trained,
                                                               django_capture_on_commit_callbacks):
    run, derived, folder = trained
    client.force_login(personas.owner)
    page = client.get(reverse("run-delete", args=[run.pk])).content.decode()
    assert '<b id="plan-rollouts">3</b>' in page and '<b id="plan-labels">1</b>' in page
    assert '<b id="plan-metrics">2</b>' in page and '<b id="plan-checkpoints">1</b>' in page
    assert "from it (#" in page and "4.0\xa0KB" in page
    wrong = client.post(reverse("run-delete", args=[run.pk]), {"confirm": "r1"})
    assert wrong.status_code == 400 and "type the run&#x27;s name" in wrong.content.decode()
    assert Run.objects.filter(pk=run.pk).exists() and folder.exists()  # nothing went
    with django_capture_on_commit_callbacks(execute=True):  # the folder goes once the rows are gone
        done = client.post(reverse("run-delete", args=[run.pk]), {"confirm": "r1-zero"})
    assert done.status_code == 302 and done["Location"] == reverse("run-list")
    assert not Run.objects.filter(pk=run.pk).exists()
    assert not Rollout.objects.filter(run_id=run.pk).exists() and not MetricPoint.objects.filter(run_id=run.pk).exists()
    assert not Checkpoint.objects.filter(run_id=run.pk).exists() and not Label.objects.exists()
    assert not QueueItem.objects.exists() and not Path(folder).parent.exists()
    derived.refresh_from_db()
    assert derived.base_checkpoint is None  # the run started from it stays


def test_what_would_break_blocks_deletion(client, personas, trained):
    from webapp.compare.models import Comparison, ComparisonEntry

    run, _, _ = trained
    client.force_login(personas.owner)
    comparison = Comparison.objects.create(project=personas.project, name="ab")
    ComparisonEntry.objects.create(comparison=comparison, checkpoint=Checkpoint.objects.get(run=run), position=0)
    page = client.get(reverse("run-delete", args=[run.pk])).content.decode()
    assert f"part of comparison #{comparison.pk}" in page and 'id="confirm-delete"' not in page
    assert client.post(reverse("run-delete", args=[run.pk]), {"confirm": "r1-zero"}).status_code == 400
    comparison.delete()
    Run.objects.filter(pk=run.pk).update(status="running")
    response = client.post(reverse("run-delete", args=[run.pk]), {"confirm": "r1-zero"})
    assert response.status_code == 400 and "it is running: cancel it first" in response.content.decode()
    assert Run.objects.filter(pk=run.pk).exists()


def test_only_owners_archive_or_delete(client, personas, trained):
    run, _, _ = trained
    client.force_login(personas.teammate)  # an annotator
    assert client.get(reverse("run-delete", args=[run.pk])).status_code == 403
    assert client.post(reverse("run-delete", args=[run.pk]), {"confirm": "r1-zero"}).status_code == 403
    assert client.post(reverse("run-archive", args=[run.pk])).status_code == 403
    client.force_login(personas.outsider)
    assert client.get(reverse("run-delete", args=[run.pk])).status_code == 404
    run.refresh_from_db()
    assert run.archived_at is None and Rollout.objects.filter(run=run).count() == 3
