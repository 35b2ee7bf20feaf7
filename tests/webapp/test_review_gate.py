"""A pipeline's review gate: the stage before ends, its correct samples wait in a review
queue for the project's people, and what they accept (rewrites included) is the next
stage's training data, once enough are accepted or an owner releases the gate."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from webapp.review.gates import gate_open
from webapp.review.models import ReviewQueue
from webapp.runs import pipelines, services
from webapp.runs.models import Rollout, Run

pytestmark = pytest.mark.django_db

STAGES = [
    {"stage": "grpo", "name": "R1-Zero", "config": {"model": "starter", "task": "arithmetic"}},
    {"stage": "review", "name": "Cold-start data", "config": {"accept": 2, "limit": 10}},
    {"stage": "sft", "name": "Cold-start SFT", "config": {"model": "starter", "dataset": "@previous"}},
]


def finished_first_stage(personas, correct=(1.0, 0.0, 1.0, 1.0)):
    pipeline = pipelines.pipeline_create(project=personas.project, user=personas.owner, name="people", stages=STAGES)
    first, gate, sft = pipeline.runs.order_by("pipeline_index")
    for i, value in enumerate(correct):
        Rollout.objects.create(run=first, step=30, sample_index=i, prompt_hash=100 + i, prompt=f"What is {i} + {i}?",
                               completion=f"<think>{i} + {i}</think> <answer>{2 * i}</answer>", reference=str(2 * i),
                               rewards={"task": value, "format": 1.0}, reward=value)
    Run.objects.filter(pk=first.pk).update(status="running", celery_task_id="t")
    services.run_finish(run_id=first.pk, status="succeeded")
    return pipeline, first, Run.objects.get(pk=gate.pk), sft


def label(client, queue, position, verdict, rewritten=""):
    response = client.post(reverse("review-item-label", args=[queue.pk, position]),
                           json.dumps({"verdict": verdict, "rewritten": rewritten}), content_type="application/json")
    assert response.status_code == 200, response.content


def test_accepted_and_rewritten_samples_become_the_next_stages_data(client, personas,
                                                                    django_capture_on_commit_callbacks):
    pipeline, first, gate, sft = finished_first_stage(personas)
    assert gate.status == "running" and gate.config["source_run"] == first.pk
    assert gate_open(run_id=gate.pk) == "open" and gate_open(run_id=gate.pk) == "open"  # a redelivery makes no second
    queue = ReviewQueue.objects.get(gate_run=gate)
    assert queue.item_count == 3 and set(queue.assignees.values_list("username", flat=True)) == {"alice", "bob"}
    assert {i.rollout.rewards["task"] for i in queue.items.all()} == {1.0}  # correct samples only
    client.force_login(personas.owner)
    page = client.get(reverse("pipeline-detail", args=[pipeline.pk])).content.decode()
    assert "waiting for review: <b>0</b> of 2 accepted" in page and f"/review/queues/{queue.pk}/" in page
    client.force_login(personas.teammate)  # the annotator labels
    first_item, second_item = queue.items.order_by("position")[:2]
    label(client, queue, 1, "accept", rewritten="<think>Clearly, it is this.</think> <answer>x</answer>")
    assert Run.objects.get(pk=gate.pk).current_step == 1 and Run.objects.get(pk=gate.pk).status == "running"
    label(client, queue, 2, "reject")
    with django_capture_on_commit_callbacks(execute=False):
        label(client, queue, 3, "accept")
    gate.refresh_from_db()
    assert gate.status == "succeeded" and gate.summary["accepted"] == 2
    rows = list(gate.output_dataset.prompts.order_by("index").values_list("completion", flat=True))
    third = queue.items.get(position=3).rollout.completion
    assert rows == ["<think>Clearly, it is this.</think> <answer>x</answer>", third]
    source = gate.output_dataset.prompts.order_by("index").first().metadata["source"]
    assert source == {"rollout": first_item.rollout_id, "run": first.pk, "step": 30, "rewritten": True}
    sft.refresh_from_db()
    assert sft.config["dataset"] == f"dataset:{gate.output_dataset_id}" and sft.celery_task_id  # sent to a worker


def test_an_owner_releases_the_gate_early_and_an_annotator_cannot(client, personas):
    pipeline, _, gate, sft = finished_first_stage(personas)
    gate_open(run_id=gate.pk)
    queue = ReviewQueue.objects.get(gate_run=gate)
    client.force_login(personas.teammate)
    assert client.post(reverse("gate-release", args=[gate.pk])).status_code == 403
    client.force_login(personas.owner)
    client.post(reverse("gate-release", args=[gate.pk]))  # nothing accepted: refused, said
    assert Run.objects.get(pk=gate.pk).status == "running"
    label(client, queue, 1, "accept")
    assert client.post(reverse("gate-release", args=[gate.pk]))["Location"] == reverse("pipeline-detail",
                                                                                       args=[pipeline.pk])
    gate.refresh_from_db()
    assert gate.status == "succeeded" and gate.summary == {"accepted": 1, "items": 3, "released_by": "alice"}
    assert gate.output_dataset.prompts.count() == 1


def test_a_stage_with_nothing_correct_fails_the_gate_and_blocks_the_rest(personas):
    _, _, gate, sft = finished_first_stage(personas, correct=(0.0, 0.0))
    assert gate_open(run_id=gate.pk) == "failed"
    gate.refresh_from_db()
    sft.refresh_from_db()
    assert gate.status == "failed" and "left no correct sample to review" in gate.error
    assert sft.shown_status == "blocked"


def test_a_gate_is_a_pipeline_stage_with_checked_settings(personas):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="a review gate is a pipeline stage"):
        services.run_create(project=personas.project, user=personas.owner, name="g", stage="review", config={})
    bad = [STAGES[0], {"stage": "review", "config": {"accept": 50, "limit": 10}}]
    with pytest.raises(ValidationError, match=r"limit must be between accept \(50\) and 5000"):
        pipelines.pipeline_create(project=personas.project, user=personas.owner, name="bad", stages=bad)
    assert not Run.objects.exists()
