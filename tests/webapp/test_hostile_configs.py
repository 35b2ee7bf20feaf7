"""Hostile run configs from a plain user, through the API and the launch form: each is refused
with a 4xx naming the field and the rule, and nothing is created or queued. What an
operator allowed, and Ponder's own models and datasets, still launch."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from webapp.datasets.models import Dataset
from webapp.runs.configs import run_dir
from webapp.runs.models import Checkpoint, Run

pytestmark = pytest.mark.django_db

GRPO = {"model": "starter", "task": "arithmetic", "rewards": {"format": 0.5, "task": 1.0}}


@pytest.fixture
def mallory(db):
    """A plain user: no project yet (the API makes their personal one)."""
    return get_user_model().objects.create_user("mallory", password="mallory-pass-123")


@pytest.fixture
def theirs(personas):
    """Alice's checkpoint and dataset, in a project Mallory is not in."""
    run = Run.objects.create(project=personas.project, name="alice's", stage="grpo", status="succeeded")
    checkpoint = Checkpoint.objects.create(run=run, step=5, path=str(run_dir(run) / "checkpoint-5"))
    dataset = Dataset.objects.create(project=personas.project, name="alice's data", kind="sft")
    return checkpoint, dataset


def hostile_cases(checkpoint: Checkpoint, dataset: Dataset) -> list[tuple[str, dict[str, Any], str, str]]:
    """(stage, config, field named, words of the rule)."""
    distill = {"teacher": "starter", "task": "arithmetic"}
    return [
        ("grpo", {**GRPO, "rewards": {"builtins:exec": 1.0}}, "rewards.builtins:exec", "not a registered reward"),
        ("grpo", {**GRPO, "rewards": {"os.system": 1.0}}, "rewards.os.system", "not a registered reward"),
        ("eval", {"model": "starter", "accuracy_reward": "subprocess:run"}, "accuracy_reward", "registered reward"),
        ("grpo", {**GRPO, "model": "/etc"}, "model", "not a model you may use"),
        ("grpo", {**GRPO, "model": "../../var/runs/1/checkpoint-5"}, "model", "not a model you may use"),
        ("grpo", {**GRPO, "model": "gpt2"}, "model", "PONDER_ALLOWED_MODELS"),
        ("grpo", {**GRPO, "model": f"checkpoint:{checkpoint.pk}"}, "model", "not a checkpoint you can see"),
        ("grpo", {**GRPO, "model": "checkpoint:1e9"}, "model", "not a checkpoint you can see"),
        ("grpo", {**GRPO, "model": "@previous"}, "model", "not a model you may use"),
        ("sft", {"model": "starter", "dataset": "/etc/passwd"}, "dataset", "not a dataset you may use"),
        ("sft", {"model": "starter", "dataset": f"dataset:{dataset.pk}"}, "dataset", "not a dataset you can see"),
        ("grpo", {**GRPO, "eval_dataset": "/root/held-out.jsonl"}, "eval_dataset",
         "not a dataset you may use"),
        ("sft", {"model": "starter", "task": "arithmetic", "mix_dataset": f"dataset:{dataset.pk}", "mix_ratio": 0.5},
         "mix_dataset", "not a dataset you can see"),
        ("sft", {"model": "starter", "task": "arithmetic", "mix_dataset": "/etc/shadow", "mix_ratio": 0.5},
         "mix_dataset", "not a dataset you may use"),
        ("grpo", {**GRPO, "judge": {"model": "/root/secret-model"}, "rewards": {"judge": 1.0}}, "judge.model",
         "not a model you may use"),
        ("grpo", {**GRPO, "judge": {"model": f"checkpoint:{checkpoint.pk}"}, "rewards": {"judge": 1.0}},
         "judge.model", "not a checkpoint you can see"),
        ("distill", {**distill, "teacher": "/var/lib/postgresql"}, "teacher", "not a model you may use"),
        ("distill", {**distill, "student": "/tmp/evil"}, "student", "not a model you may use"),
        ("distill", {**distill, "sft": {"output_dir": "/work/other-run"}}, "sft.output_dir", "its own folder"),
        ("distill", {**distill, "rejection": {"output_dir": "../7"}}, "rejection.output_dir", "its own folder"),
        ("distill", {**distill, "sft": {"model": "/etc"}}, "sft.model", "not a model you may use"),
        ("pretrain", {"data_dir": "/tmp/elsewhere"}, "data_dir", "its own folder"),
        ("grpo", {**GRPO, "output_dir": "/tmp/x"}, "output_dir", "its own folder"),
        ("grpo", {**GRPO, "launcher": "torchrun", "nproc_per_node": 10_000}, "nproc_per_node", "at most 8"),
        ("grpo", {**GRPO, "steps": 10**9}, "steps", "at most 100000"),
        ("grpo", {**GRPO, "group_size": 10**6}, "group_size", "at most 256"),
        ("grpo", {**GRPO, "max_new_tokens": 10**7}, "max_new_tokens", "at most 32768"),
        ("distill", {**distill, "sft": {"max_steps": 10**8}}, "sft.max_steps", "at most 100000"),
    ]


def test_every_hostile_config_is_refused_through_the_api(mallory, theirs, api_for,
                                                         django_capture_on_commit_callbacks):
    api = api_for(mallory)
    for stage, config, field, rule in hostile_cases(*theirs):
        with django_capture_on_commit_callbacks() as queued:
            response = api.post("/api/v1/runs", {"name": "x", "stage": stage, "config": config})
        detail = response.json().get("detail", "")
        assert 400 <= response.status_code < 500, (stage, config, response.content)
        assert f"{field}: " in detail and rule in detail, (field, detail)
        assert not queued, config
    assert not Run.objects.filter(launched_by=mallory).exists()


def test_hostile_values_are_refused_by_the_launch_form(mallory, theirs, client):
    from webapp.projects.services import personal_project

    project = personal_project(user=mallory)
    client.force_login(mallory)
    checkpoint, _ = theirs
    cases = [({"cfg_rewards": '{"builtins:exec": 1.0}'}, "not a registered reward"),
             ({"cfg_model": "/etc"}, "not a model you may use"),
             ({"cfg_model": f"checkpoint:{checkpoint.pk}"}, "not a checkpoint you can see"),
             ({"cfg_nproc_per_node": "10000", "cfg_launcher": "torchrun"}, "less than or equal to 8")]
    for change, rule in cases:
        data = {"stage": "grpo", "project": project.slug, "name": "x", "cfg_model": "starter",
                "cfg_task": "arithmetic", "cfg_rewards": '{"format": 0.5, "task": 1.0}', **change}
        response = client.post(reverse("run-new"), data)
        assert response.status_code == 200 and rule in response.content.decode(), change
    assert not Run.objects.filter(project=project).exists()
    assert "At most 8 on this server." in client.get(reverse("run-new")).content.decode()


def test_what_the_operator_allowed_and_ponders_own_files_launch(personas, api_for, settings, tmp_path,
                                                                django_capture_on_commit_callbacks):
    settings.PONDER_ALLOWED_MODELS = ["Qwen/*"]
    settings.PONDER_MODEL_DIRS = [str(tmp_path)]
    own = Run.objects.create(project=personas.project, name="mine", stage="grpo", status="succeeded")
    checkpoint = Checkpoint.objects.create(run=own, step=5, path=str(run_dir(own) / "checkpoint-5"))
    logged = Checkpoint.objects.create(run=own, step=6, path="/elsewhere/checkpoint-6")  # a trainer's own disk
    api = api_for(personas.owner)
    for model in ("Qwen/Qwen2.5-0.5B-Instruct", str(tmp_path / "my-model"), f"checkpoint:{checkpoint.pk}",
                  "starter-moe"):
        with django_capture_on_commit_callbacks() as queued:
            response = api.post("/api/v1/runs", {"name": model, "stage": "grpo", "project": "alpha",
                                                 "config": {**GRPO, "model": model}})
        assert response.status_code == 201, response.content
        assert len(queued) == 1
    refused = api.post("/api/v1/runs", {"name": "x", "stage": "grpo", "project": "alpha",
                                        "config": {**GRPO, "model": f"checkpoint:{logged.pk}"}})
    assert refused.status_code == 422 and "logged from elsewhere" in refused.json()["detail"]
    assert Run.objects.get(name=f"checkpoint:{checkpoint.pk}").base_checkpoint == checkpoint


def test_a_judge_named_by_an_owned_checkpoint_reaches_the_engine_as_its_folder(personas, settings):
    from webapp.runs import services
    from webapp.runs.configs import engine_config

    source = Run.objects.create(project=personas.project, name="judge source", stage="grpo")
    checkpoint = Checkpoint.objects.create(run=source, step=5, path=str(run_dir(source) / "checkpoint-5"))
    run = services.run_create(project=personas.project, user=personas.owner, name="judged", stage="eval",
                              config={"model": "starter", "task": "arithmetic", "accuracy_reward": "judge",
                                      "judge": {"model": f"checkpoint:{checkpoint.pk}", "max_new_tokens": 8}},
                              queue=False)
    assert engine_config(run).judge == {"model": checkpoint.path, "max_new_tokens": 8}
