import pytest
from django.urls import reverse

from webapp.datasets.models import Dataset
from webapp.runs import services
from webapp.runs.configs import engine_config
from webapp.runs.models import Checkpoint, Pipeline, Run

pytestmark = pytest.mark.django_db


def launch_r1(client, personas, callbacks_fixture):
    client.force_login(personas.owner)
    with callbacks_fixture(execute=False) as callbacks:
        response = client.post(reverse("pipeline-new"), {"preset": "r1", "project": "alpha"})
    pipeline = Pipeline.objects.get()
    assert response["Location"] == reverse("pipeline-detail", args=[pipeline.pk])
    return pipeline, callbacks


def test_the_r1_recipe_is_one_click_and_only_its_first_stage_is_queued(client, personas,
                                                                      django_capture_on_commit_callbacks):
    pipeline, callbacks = launch_r1(client, personas, django_capture_on_commit_callbacks)
    runs = list(pipeline.runs.order_by("pipeline_index"))
    assert [r.stage for r in runs] == ["grpo", "rejection", "sft", "grpo", "rejection", "sft", "distill"]
    assert runs[0].celery_task_id and all(r.celery_task_id == "" for r in runs[1:])
    assert all(r.parent_id == p.pk for p, r in zip(runs, runs[1:], strict=False))
    assert len(callbacks) == 1
    body = client.get(reverse("pipeline-detail", args=[pipeline.pk])).content.decode()
    assert body.count("stage-node") == 7 and "waiting" in body


def test_a_stage_that_succeeds_hands_its_checkpoint_and_dataset_on(client, personas,
                                                                  django_capture_on_commit_callbacks):
    pipeline, _ = launch_r1(client, personas, django_capture_on_commit_callbacks)
    zero, rejection, sft = pipeline.runs.order_by("pipeline_index")[:3]
    checkpoint = Checkpoint.objects.create(run=zero, step=5, path="/ckpt/zero-5")
    with django_capture_on_commit_callbacks(execute=False) as queued:
        services.run_finish(run_id=zero.pk, status="succeeded")
    rejection.refresh_from_db()
    assert rejection.config["model"] == f"checkpoint:{checkpoint.pk}" and rejection.base_checkpoint == checkpoint
    assert engine_config(rejection).model == "/ckpt/zero-5" and rejection.celery_task_id and len(queued) >= 1
    dataset = Dataset.objects.create(project=personas.project, name="cold start", kind="sft")
    Run.objects.filter(pk=rejection.pk).update(output_dataset=dataset, status="running")
    services.run_finish(run_id=rejection.pk, status="succeeded")
    sft.refresh_from_db()
    assert sft.config["dataset"] == f"dataset:{dataset.pk}" and sft.input_dataset == dataset
    assert sft.config["model"] == "starter"


def test_a_stage_without_the_dataset_it_needs_fails_with_the_reason(client, personas,
                                                                    django_capture_on_commit_callbacks):
    pipeline, _ = launch_r1(client, personas, django_capture_on_commit_callbacks)
    zero, rejection, sft = pipeline.runs.order_by("pipeline_index")[:3]
    Checkpoint.objects.create(run=zero, step=5, path="/ckpt/zero-5")
    services.run_finish(run_id=zero.pk, status="succeeded")
    Run.objects.filter(pk=rejection.pk).update(status="running")
    services.run_finish(run_id=rejection.pk, status="succeeded")
    sft.refresh_from_db()
    assert sft.status == "failed" and "produced no dataset" in sft.error


def test_outsiders_and_teammates(client, personas, django_capture_on_commit_callbacks):
    pipeline, _ = launch_r1(client, personas, django_capture_on_commit_callbacks)
    client.force_login(personas.outsider)
    assert client.get(reverse("pipeline-detail", args=[pipeline.pk])).status_code == 404
    client.force_login(personas.teammate)
    assert client.get(reverse("pipeline-detail", args=[pipeline.pk])).status_code == 200
    client.post(reverse("pipeline-new"), {"preset": "r1", "project": "alpha"})
    assert Pipeline.objects.count() == 1
