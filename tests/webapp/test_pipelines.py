import json

import pytest
from django.urls import reverse
from django.utils import timezone

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


def test_a_stage_without_the_dataset_it_needs_is_blocked_with_the_reason(client, personas,
                                                                        django_capture_on_commit_callbacks):
    pipeline, _ = launch_r1(client, personas, django_capture_on_commit_callbacks)
    zero, rejection, sft, *later = pipeline.runs.order_by("pipeline_index")
    Checkpoint.objects.create(run=zero, step=5, path="/ckpt/zero-5")
    services.run_finish(run_id=zero.pk, status="succeeded")
    Run.objects.filter(pk=rejection.pk).update(status="running")
    services.run_finish(run_id=rejection.pk, status="succeeded")
    sft.refresh_from_db()
    assert sft.shown_status == "blocked" and "produced no dataset" in sft.blocked_reason
    assert all(status(r) == "blocked" and f"#{sft.pk}" in r.blocked_reason for r in later)
    assert not Run.objects.filter(pipeline=pipeline, status="queued").exists()  # nothing waits for ever
    body = client.get(reverse("pipeline-detail", args=[pipeline.pk])).content.decode()
    assert "produced no dataset" in body and 'id="resume-pipeline"' in body


def status(run):
    run.refresh_from_db()
    return run.shown_status


def fail(run, error="CUDA out of memory"):
    Run.objects.filter(pk=run.pk).update(status="running", started_at=timezone.now(), celery_task_id="t")
    services.run_finish(run_id=run.pk, status="failed", error=error)


def test_a_failed_stage_blocks_the_rest_and_the_pipeline_resumes_from_it_with_new_settings(
        client, personas, django_capture_on_commit_callbacks):
    pipeline, _ = launch_r1(client, personas, django_capture_on_commit_callbacks)
    zero, rejection, *later = pipeline.runs.order_by("pipeline_index")
    fail(zero)
    assert [status(r) for r in later + [rejection]] == ["blocked"] * 6
    assert rejection.blocked_reason == f"stage 1 ({zero.name}, #{zero.pk}) is failed"
    page = client.get(reverse("pipeline-detail", args=[pipeline.pk])).content.decode()
    assert "CUDA out of memory" in page and f'name="run" value="{zero.pk}"' in page

    url = reverse("pipeline-resume", args=[pipeline.pk])
    refused = client.post(url, {"run": zero.pk, "config": '{"model": "starter", "steps": "many"}'})
    assert refused.status_code == 200 and "steps" in refused.content.decode()
    assert status(zero) == "failed" and status(rejection) == "blocked"  # nothing half done
    bad_json = client.post(url, {"run": zero.pk, "config": '{"model": '})
    assert "config: is not valid JSON" in bad_json.content.decode()
    not_first = client.post(url, {"run": rejection.pk, "config": ""})
    assert f"stage 1 ({zero.name}, #{zero.pk}) has not succeeded" in not_first.content.decode()

    new = {**zero.config, "learning_rate": 1e-4}
    with django_capture_on_commit_callbacks(execute=False) as queued:
        done = client.post(url, {"run": zero.pk, "config": json.dumps(new)})
    assert done.status_code == 302 and len(queued) >= 1
    zero.refresh_from_db()
    assert zero.status == "queued" and zero.celery_task_id and zero.config["learning_rate"] == 1e-4
    assert [status(r) for r in [rejection, *later]] == ["waiting"] * 6

    # It runs on: the next stage gets its checkpoint as if nothing had happened.
    Checkpoint.objects.create(run=zero, step=9, path="/ckpt/zero-9")
    Run.objects.filter(pk=zero.pk).update(status="running")
    services.run_finish(run_id=zero.pk, status="succeeded")
    rejection.refresh_from_db()
    assert rejection.celery_task_id and rejection.config["model"].startswith("checkpoint:")


def test_a_blocked_stage_resumes_with_an_input_given_by_hand(client, personas, django_capture_on_commit_callbacks):
    pipeline, _ = launch_r1(client, personas, django_capture_on_commit_callbacks)
    zero, rejection, sft, *later = pipeline.runs.order_by("pipeline_index")
    Checkpoint.objects.create(run=zero, step=5, path="/ckpt/zero-5")
    services.run_finish(run_id=zero.pk, status="succeeded")
    Run.objects.filter(pk=rejection.pk).update(status="running", started_at=timezone.now())
    services.run_finish(run_id=rejection.pk, status="succeeded")  # but it stored no dataset
    dataset = Dataset.objects.create(project=personas.project, name="hand-made cold start", kind="sft")
    other = Dataset.objects.create(project=personas.other_project, name="someone else's", kind="sft")
    url = reverse("pipeline-resume", args=[pipeline.pk])
    refused = client.post(url, {"run": sft.pk, "config": json.dumps({"model": "starter", "dataset": f"dataset:{other.pk}"})})
    assert "dataset" in refused.content.decode() and status(sft) == "blocked"
    client.post(url, {"run": sft.pk, "config": json.dumps({"model": "starter", "dataset": f"dataset:{dataset.pk}"})})
    sft.refresh_from_db()
    assert sft.status == "queued" and sft.celery_task_id and sft.input_dataset == dataset
    assert [status(r) for r in later] == ["waiting"] * len(later)


def test_cancelling_a_waiting_stage_blocks_those_after_it_and_abandon_ends_everything(
        client, personas, django_capture_on_commit_callbacks):
    pipeline, _ = launch_r1(client, personas, django_capture_on_commit_callbacks)
    zero, rejection, sft, *later = pipeline.runs.order_by("pipeline_index")
    services.run_cancel(run=sft, user=personas.owner)
    assert status(sft) == "cancelled" and all(status(r) == "blocked" for r in later)
    client.force_login(personas.teammate)  # an annotator may look, not abandon
    assert client.post(reverse("pipeline-abandon", args=[pipeline.pk])).status_code == 403
    assert status(zero) == "queued"
    client.force_login(personas.owner)
    client.post(reverse("pipeline-abandon", args=[pipeline.pk]))
    assert [status(r) for r in [zero, rejection, sft, *later]] == ["cancelled"] * 7
    assert all("abandoned by alice" in r.error for r in later)
    page = client.get(reverse("pipeline-detail", args=[pipeline.pk])).content.decode()
    assert 'id="pipeline-state">ended' in page and "abandon-pipeline" not in page


def test_outsiders_and_teammates(client, personas, django_capture_on_commit_callbacks):
    pipeline, _ = launch_r1(client, personas, django_capture_on_commit_callbacks)
    client.force_login(personas.outsider)
    assert client.get(reverse("pipeline-detail", args=[pipeline.pk])).status_code == 404
    client.force_login(personas.teammate)
    assert client.get(reverse("pipeline-detail", args=[pipeline.pk])).status_code == 200
    client.post(reverse("pipeline-new"), {"preset": "r1", "project": "alpha"})
    assert Pipeline.objects.count() == 1


def test_the_api_shows_why_a_stage_is_blocked_and_resumes_it_with_new_settings(
        client, personas, api_for, django_capture_on_commit_callbacks):
    pipeline, _ = launch_r1(client, personas, django_capture_on_commit_callbacks)
    zero, rejection = pipeline.runs.order_by("pipeline_index")[:2]
    fail(zero)
    owner = api_for(personas.owner)
    shown = owner.get(f"/api/v1/runs/{rejection.pk}").json()
    assert shown["status"] == "cancelled" and shown["blocked_reason"].startswith("stage 1 (")
    refused = owner.post(f"/api/v1/runs/{zero.pk}/resume", {"config": {"model": "/etc"}})
    assert refused.status_code == 422 and "model" in refused.json()["detail"]
    with django_capture_on_commit_callbacks(execute=True):
        resumed = owner.post(f"/api/v1/runs/{zero.pk}/resume", {"config": {**zero.config, "steps": 3}})
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
    assert resumed.json()["config"]["steps"] == 3 and status(rejection) == "waiting"


def test_the_pipelines_list_and_the_live_status_show_each_stage(client, personas, django_capture_on_commit_callbacks):
    pipeline, _ = launch_r1(client, personas, django_capture_on_commit_callbacks)
    zero = pipeline.runs.get(pipeline_index=0)
    listed = client.get(reverse("pipeline-list")).content.decode()
    assert "The R1 recipe" in listed and listed.count("status-waiting") == 6
    Run.objects.filter(pk=zero.pk).update(status="running", started_at=timezone.now(), current_step=3,
                                          total_steps=10)
    Checkpoint.objects.create(run=zero, step=3, path="/ckpt/zero-3")
    live = client.get(reverse("pipeline-status", args=[pipeline.pk])).json()
    assert live["state"] == "running" and [s["status"] for s in live["stages"]] == ["running"] + ["waiting"] * 6
    first = live["stages"][0]
    assert first["step"] == 3 and first["total"] == 10 and first["duration_s"] >= 0 and first["checkpoint"]
    client.force_login(personas.outsider)
    assert client.get(reverse("pipeline-status", args=[pipeline.pk])).status_code == 404
    assert "The R1 recipe" not in client.get(reverse("pipeline-list")).content.decode()


def test_the_editor_launches_edited_stages_and_names_the_stage_that_breaks_a_rule(client, personas,
                                                                                  django_capture_on_commit_callbacks):
    import json as _json

    client.force_login(personas.owner)
    page = client.get(reverse("pipeline-new") + "?from=preset:r1-people").content.decode()
    assert "&quot;stage&quot;: &quot;review&quot;" in page  # the preset's stages, in the editor
    stages = [{"stage": "grpo", "name": "R1-Zero", "config": {"model": "starter", "task": "arithmetic", "steps": 5}},
              {"stage": "sft", "name": "SFT", "config": {"model": "starter", "dataset": "@previous", "mix_ratio": 0.5}}]
    bad = client.post(reverse("pipeline-new"), {"name": "mine", "project": "alpha", "action": "launch",
                                                "stages": _json.dumps(stages)})
    assert bad.status_code == 400 and "stage 2 (sft): config: mix_dataset and mix_ratio go together" in \
        bad.content.decode()
    assert not Run.objects.exists() and not Pipeline.objects.exists()  # nothing half made
    broken = client.post(reverse("pipeline-new"), {"name": "x", "project": "alpha", "stages": "[{"})
    assert "is not valid JSON" in broken.content.decode()
    stages[1]["config"].pop("mix_ratio")
    with django_capture_on_commit_callbacks(execute=False):
        done = client.post(reverse("pipeline-new"), {"name": "mine", "project": "alpha", "action": "launch",
                                                     "stages": _json.dumps(stages)})
    pipeline = Pipeline.objects.get(name="mine")
    assert done["Location"] == reverse("pipeline-detail", args=[pipeline.pk]) and pipeline.spec == stages
    assert [r.config.get("steps") for r in pipeline.runs.order_by("pipeline_index")] == [5, None]


def test_a_saved_template_relaunches_identically(client, personas, django_capture_on_commit_callbacks):
    import json as _json

    from webapp.runs.models import PipelineTemplate

    stages = [{"stage": "grpo", "name": "R1-Zero", "config": {"model": "starter", "task": "countdown", "steps": 7}},
              {"stage": "review", "name": "gate", "config": {"accept": 3, "limit": 9}}]
    client.force_login(personas.owner)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        saved = client.post(reverse("pipeline-new"), {"name": "countdown recipe", "project": "alpha",
                                                      "action": "save", "stages": _json.dumps(stages)})
    template = PipelineTemplate.objects.get()
    assert saved["Location"].endswith(f"?from=template:{template.pk}") and template.stages == stages
    assert not Run.objects.exists() and not Pipeline.objects.exists() and not callbacks  # saving launches nothing
    page = client.get(saved["Location"]).content.decode()
    assert 'value="countdown recipe"' in page and "&quot;countdown&quot;" in page
    with django_capture_on_commit_callbacks(execute=False):
        client.post(reverse("pipeline-new"), {"name": "countdown recipe", "project": "alpha", "action": "launch",
                                              "stages": _json.dumps(template.stages)})
    assert Pipeline.objects.get().spec == stages
    refused = client.post(reverse("pipeline-new"), {"name": "bad", "project": "alpha", "action": "save",
                                                    "stages": _json.dumps([{"stage": "grpo", "config": {"group_size": 1}}])})
    assert refused.status_code == 400 and "group_size must be at least 2" in refused.content.decode()
    assert PipelineTemplate.objects.count() == 1
    client.force_login(personas.teammate)
    assert client.post(reverse("pipeline-new"), {"name": "t", "project": "alpha", "action": "save",
                                                 "stages": _json.dumps(stages)}).status_code == 400  # owns nothing


def test_a_finished_pipeline_compares_every_stages_checkpoint(client, personas, django_capture_on_commit_callbacks):
    from webapp.compare.services import pipeline_comparison
    from webapp.runs import pipelines
    from webapp.runs.configs import run_dir

    stages = [{"stage": "grpo", "name": "R1-Zero", "config": {"model": "starter", "task": "arithmetic",
                                                              "max_new_tokens": 48}},
              {"stage": "grpo", "name": "RL again", "config": {"model": "@previous", "task": "arithmetic"}}]
    pipeline = pipelines.pipeline_create(project=personas.project, user=personas.owner, name="two", stages=stages)
    first, second = pipeline.runs.order_by("pipeline_index")
    Checkpoint.objects.create(run=first, step=10, path=str(run_dir(first) / "checkpoint-10"))  # where workers save
    Run.objects.filter(pk=first.pk).update(status="running", celery_task_id="a")
    services.run_finish(run_id=first.pk, status="succeeded")
    assert pipeline_comparison(pipeline_id=pipeline.pk) is None  # one checkpoint so far: nothing to compare
    Checkpoint.objects.create(run=second, step=20, path=str(run_dir(second) / "checkpoint-20"))
    Run.objects.filter(pk=second.pk).update(status="running", celery_task_id="b")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.run_finish(run_id=second.pk, status="succeeded")
    assert callbacks  # the comparison is asked of a worker (tests/webapp/test_stage_runs.py runs one)
    comparison = pipeline_comparison(pipeline_id=pipeline.pk)
    assert comparison is not None and comparison.pipeline_id == pipeline.pk
    assert [e.checkpoint.step for e in comparison.entries.order_by("position")] == [10, 20]
    assert comparison.task == "arithmetic" and comparison.max_new_tokens == 48 and comparison.num_prompts == 50
    assert pipeline_comparison(pipeline_id=pipeline.pk) is None  # once per pipeline
    client.force_login(personas.teammate)
    page = client.get(reverse("pipeline-detail", args=[pipeline.pk])).content.decode()
    assert f'data-url="{reverse("compare-figures", args=[comparison.pk])}"' in page
    table = client.get(reverse("compare-figures", args=[comparison.pk])).content.decode()
    assert "R1-Zero @ step 10" in table and "RL again @ step 20" in table and 'id="figures"' in table


def test_a_runs_page_says_where_it_came_from_and_what_it_made(client, personas):
    source = Run.objects.create(project=personas.project, name="R1-Zero", stage="grpo", status="succeeded")
    checkpoint = Checkpoint.objects.create(run=source, step=30, path="/c")
    data_in = Dataset.objects.create(project=personas.project, name="cold <start>", status="ready")
    data_out = Dataset.objects.create(project=personas.project, name="traces", status="ready", version=2)
    run = Run.objects.create(project=personas.project, name="SFT", stage="sft", base_checkpoint=checkpoint,
                             parent=source, input_dataset=data_in, output_dataset=data_out)
    client.force_login(personas.teammate)
    page = client.get(reverse("run-detail", args=[run.pk])).content.decode()
    lineage = page.split('id="run-lineage">')[1].split("</p>")[0]
    assert f'/checkpoints/{checkpoint.pk}/' in lineage and "R1-Zero @ step 30" in lineage
    assert "cold &lt;start&gt; v1" in lineage and "traces v2" in lineage and "after" not in lineage
