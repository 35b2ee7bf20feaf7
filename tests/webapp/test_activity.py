"""A project's activity page: who did what, newest first, for members only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from webapp.datasets.models import Dataset
from webapp.review.models import Label
from webapp.runs.models import Rollout, Run

pytestmark = pytest.mark.django_db


def test_launches_ends_labels_gates_and_datasets_are_listed_newest_first(client, personas,
                                                                         django_assert_max_num_queries):
    now = timezone.now()
    run = Run.objects.create(project=personas.project, name="r1-zero", stage="grpo", launched_by=personas.owner,
                             status="succeeded")
    Run.objects.filter(pk=run.pk).update(created_at=now - timedelta(hours=3), finished_at=now - timedelta(hours=2))
    gate = Run.objects.create(project=personas.project, name="cold start", stage="review", launched_by=personas.owner,
                              status="succeeded", summary={"accepted": 7, "released_by": "alice"})
    Run.objects.filter(pk=gate.pk).update(created_at=now - timedelta(hours=1), finished_at=now - timedelta(minutes=30))
    rollouts = [Rollout.objects.create(run=run, step=1, sample_index=i, prompt_hash=1, prompt="p<b>", completion="c")
                for i in range(3)]
    for r, verdict in zip(rollouts, ("accept", "accept", "reject"), strict=True):
        Label.objects.create(rollout=r, user=personas.teammate, verdict=verdict)
    Dataset.objects.create(project=personas.project, name="<i>cold</i>", status="ready", created_by=personas.owner)
    Run.objects.create(project=personas.other_project, name="elsewhere", stage="grpo", launched_by=personas.outsider)
    client.force_login(personas.teammate)
    with django_assert_max_num_queries(9):  # session, user, project, runs, labels, datasets, comparisons, ...
        page = client.get(reverse("project-activity", args=["alpha"])).content.decode()
    order = [page.index(text) for text in ("made dataset", "released review gate", "launched Review gate",
                                            "run &#x27;r1-zero&#x27;", "launched GRPO")]
    assert order == sorted(order)  # newest first
    assert "labelled 3 samples (2 accepted)" in page and "bob" in page
    assert "&lt;i&gt;cold&lt;/i&gt;" in page and "<i>cold</i>" not in page
    assert "elsewhere" not in page
    client.force_login(personas.outsider)
    assert client.get(reverse("project-activity", args=["alpha"])).status_code == 404
