"""Pipelines: stages chained so each takes the previous stage's checkpoint or dataset.

A stage's config may say `"model": "@previous"` (the previous run's last checkpoint) or
`"dataset": "@previous"` (the dataset the previous run produced). Only the first run is
queued at once; each later one is queued when the one before it succeeds.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from webapp.projects.models import Project
from webapp.projects.selectors import can_write
from webapp.runs import services
from webapp.runs.models import Checkpoint, Pipeline, Run, Stage, Status

PREVIOUS = "@previous"

# The R1 recipe (R1-RECIPE.md) in miniature, on the starter model and the arithmetic task.
R1_RECIPE: list[dict[str, Any]] = [
    {"stage": "grpo", "name": "R1-Zero: RL on the base model",
     "config": {"model": "starter", "task": "arithmetic", "rewards": {"format": 0.5, "task": 1.0}}},
    {"stage": "rejection", "name": "Cold-start data from R1-Zero samples",
     "config": {"model": PREVIOUS, "task": "arithmetic"}},
    {"stage": "sft", "name": "Cold-start SFT of the base model",
     "config": {"model": "starter", "dataset": PREVIOUS}},
    {"stage": "grpo", "name": "Reasoning RL with language consistency",
     "config": {"model": PREVIOUS, "task": "arithmetic",
                "rewards": {"format": 0.5, "task": 1.0, "language": 0.1}}},
    {"stage": "rejection", "name": "Rejection sampling of the interim model",
     "config": {"model": PREVIOUS, "task": "arithmetic"}},
    {"stage": "sft", "name": "SFT of the base model on the sampled data",
     "config": {"model": "starter", "dataset": PREVIOUS}},
    {"stage": "distill", "name": "Distil into a small dense student",
     "config": {"teacher": PREVIOUS, "task": "arithmetic"}},
]
PRESETS = {"r1": ("The R1 recipe", R1_RECIPE)}


def pipeline_create(*, project: Project, user: AbstractBaseUser, name: str,
                    stages: list[dict[str, Any]]) -> Pipeline:
    if not can_write(user, project.pk):
        raise PermissionDenied("only project owners may launch pipelines")
    if not stages:
        raise ValidationError({"stages": "a pipeline needs at least one stage"})
    with transaction.atomic():
        pipeline = Pipeline.objects.create(project=project, name=name, spec=copy.deepcopy(stages), created_by=user)
        previous = None
        for index, spec in enumerate(stages):
            run = services.run_create(
                project=project, user=user, name=spec.get("name") or f"{name} · {spec['stage']}",
                stage=spec["stage"], config=dict(spec.get("config", {})), parent=previous, queue=index == 0,
            )
            Run.objects.filter(pk=run.pk).update(pipeline=pipeline, pipeline_index=index)
            if index > 0:  # waits for its parent: not in Celery yet
                Run.objects.filter(pk=run.pk).update(celery_task_id="", queued_at=None)
            previous = run
    return pipeline


def pipeline_advance(*, run_id: int) -> Run | None:
    """Queue the stage after `run_id` in its pipeline, wiring in what `run_id` produced."""
    run = Run.objects.select_related("output_dataset").get(pk=run_id)
    child = Run.objects.filter(parent=run, pipeline=run.pipeline_id, status=Status.QUEUED, celery_task_id="").first()
    if run.pipeline_id is None or child is None:
        return None
    config = dict(child.config)
    fields: dict[str, Any] = {}
    for key in ("model", "teacher"):
        if config.get(key) == PREVIOUS:
            checkpoint = Checkpoint.objects.filter(run=run).order_by("-step").first()
            if checkpoint is None:
                return _blocked(child, f"{key}: the previous stage (#{run.pk}) saved no checkpoint")
            config[key] = checkpoint.path
            fields["base_checkpoint"] = checkpoint
    if config.get("dataset") == PREVIOUS:
        if run.output_dataset is None:
            return _blocked(child, f"dataset: the previous stage (#{run.pk}) produced no dataset")
        config["dataset"] = f"dataset:{run.output_dataset_id}"
        fields["input_dataset"] = run.output_dataset
    with transaction.atomic():
        Run.objects.filter(pk=child.pk).update(config=config, celery_task_id=str(uuid.uuid4()),
                                               queued_at=timezone.now(), **fields)
        child.refresh_from_db()
        transaction.on_commit(lambda: services.enqueue(child))
    return child


def _blocked(child: Run, reason: str) -> None:
    services.run_finish(run_id=child.pk, status=Status.FAILED, error=reason)
    return None


def pipeline_runs(pipeline: Pipeline) -> list[Run]:
    return list(pipeline.runs.order_by("pipeline_index"))


__all__ = ["PRESETS", "R1_RECIPE", "Stage", "pipeline_advance", "pipeline_create", "pipeline_runs"]
