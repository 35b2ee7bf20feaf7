"""Pipelines: stages chained so each takes the previous stage's checkpoint or dataset; and
the ready-made configs (the R1 recipe and its R1-Zero stage, scaled to the starter).

A stage's config may say `"model": "@previous"` (the previous run's last checkpoint) or
`"dataset": "@previous"` (the dataset the previous run produced). Only the first run is
queued at once; each later one is queued when the one before it succeeds.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from webapp.projects.models import Project
from webapp.projects.selectors import AuthUser, can_write
from webapp.runs import services, stages
from webapp.runs.models import Pipeline, PipelineTemplate, Run, Status
from webapp.runs.references import PREVIOUS

# R1-Zero on the starter (`make demo`): GRPOConfig's defaults are tuned for this run (learning
# rate, batch, length limit; see docs/benchmarks.md), so the preset names only what it is about:
# the base model, the task and R1-Zero's two rule-based rewards (format and the task's grader).
R1_ZERO_DEMO: dict[str, Any] = {"model": "starter", "task": "arithmetic", "rewards": {"format": 0.5, "task": 1.0}}

# The R1 recipe (R1-RECIPE.md) in miniature, on the starter model and the arithmetic task.
R1_RECIPE: list[dict[str, Any]] = [
    {"stage": "grpo", "name": "R1-Zero: RL on the base model",
     "config": R1_ZERO_DEMO},
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
# The recipe's human step, on the starter in minutes: R1-Zero, then people accept (and rewrite)
# its correct samples at a review gate, cold-start SFT of the base model on exactly those, and
# reasoning RL with language consistency from the cold-started model.
R1_WITH_PEOPLE: list[dict[str, Any]] = [
    {"stage": "grpo", "name": "R1-Zero: RL on the base model", "config": {**R1_ZERO_DEMO, "steps": 30}},
    {"stage": "review", "name": "Cold-start data: people accept and rewrite R1-Zero's samples",
     "config": {"accept": 10, "limit": 60}},
    {"stage": "sft", "name": "Cold-start SFT of the base model", "config": {"model": "starter", "dataset": PREVIOUS}},
    {"stage": "grpo", "name": "Reasoning RL with language consistency",
     "config": {"model": PREVIOUS, "task": "arithmetic", "steps": 30,
                "rewards": {"format": 0.5, "task": 1.0, "language": 0.1}}},
]
PRESETS = {"r1": ("The R1 recipe", R1_RECIPE),
           "r1-people": ("R1 on the starter with people in the loop (a review gate)", R1_WITH_PEOPLE)}


MAX_STAGES = 20


def parse_stages(text: str) -> list[dict[str, Any]]:
    """The editor's stages: a JSON list of {"stage", "name", "config"}; ValidationError naming
    where the text or a stage breaks the rule."""
    try:
        stages = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError({"stages": f"is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"}
                              ) from None
    check_stage_list(stages)
    return stages


def check_stage_list(stages: Any) -> None:
    """The shape of a pipeline's stages (the configs are the engine's to judge)."""
    if not isinstance(stages, list) or not 1 <= len(stages) <= MAX_STAGES:
        raise ValidationError({"stages": f"must be a list of 1 to {MAX_STAGES} stages"})
    for i, spec in enumerate(stages, start=1):
        if not isinstance(spec, dict) or not isinstance(spec.get("stage"), str):
            raise ValidationError({"stages": f"stage {i}: must be an object with \"stage\" (and \"name\", \"config\")"})
        unknown = sorted(set(spec) - {"stage", "name", "config"})
        if unknown:
            raise ValidationError({"stages": f"stage {i}: unknown keys {', '.join(unknown)}; a stage has stage, name, "
                                             "config"})
        if not isinstance(spec.get("config", {}), dict) or not isinstance(spec.get("name", ""), str):
            raise ValidationError({"stages": f"stage {i}: config must be an object and name a text"})


def editor_start(source: str, templates: list[PipelineTemplate]) -> tuple[str, str]:
    """(name, stages as JSON) for the editor from `preset:<key>` or `template:<id>`."""
    kind, _, key = source.partition(":")
    if kind == "template":
        found = next((t for t in templates if str(t.pk) == key), None)
        if found is not None:
            return found.name, json.dumps(found.stages, indent=2)
    title, stages = PRESETS.get(key, PRESETS["r1"])
    return title, json.dumps(stages, indent=2)


class _DryRun(Exception):
    """Raised to roll back a launch made only to check it."""


def template_save(*, project: Project, user: AuthUser, name: str, stages: list[dict[str, Any]]) -> PipelineTemplate:
    """Save (or replace) the project's template `name`, once every stage passes the rules a
    launch would check: nothing is launched."""
    if not can_write(user, project.pk):
        raise PermissionDenied("only project owners save pipeline templates")
    name = name.strip()
    if not name or len(name) > 200:
        raise ValidationError({"name": "a template needs a name of 1 to 200 characters"})
    check_stage_list(stages)
    with transaction.atomic():
        try:
            with transaction.atomic():  # the launch's own checks; rolled back, its queued work with it
                _create_stages(project, user, name, stages)
                raise _DryRun
        except _DryRun:
            pass
        template, _ = PipelineTemplate.objects.update_or_create(
            project=project, name=name, defaults={"stages": copy.deepcopy(stages), "created_by": user})
    return template


def pipeline_create(*, project: Project, user: AuthUser, name: str,
                    stages: list[dict[str, Any]]) -> Pipeline:
    if not can_write(user, project.pk):
        raise PermissionDenied("only project owners may launch pipelines")
    if not stages:
        raise ValidationError({"stages": "a pipeline needs at least one stage"})
    with transaction.atomic():
        return _create_stages(project, user, name, stages)


def _create_stages(project: Project, user: AuthUser, name: str, stages: list[dict[str, Any]]) -> Pipeline:
    """The pipeline and its runs (inside the caller's transaction); a stage that breaks a rule
    is named in the error: "stage 2 (sft): config: ..." """
    pipeline = Pipeline.objects.create(project=project, name=name, spec=copy.deepcopy(stages), created_by=user)
    previous = None
    for index, spec in enumerate(stages):
        try:
            run = services.run_create(  # later stages wait for their parent: not sent to a worker yet
                project=project, user=user, name=spec.get("name") or f"{name} · {spec['stage']}",
                stage=spec["stage"], config=dict(spec.get("config", {})), parent=previous, queue=index == 0,
            )
        except ValidationError as exc:
            raise ValidationError({"stages": [f"stage {index + 1} ({spec.get('stage')}): {k}: {m}"
                                              for k, ms in exc.message_dict.items() for m in ms]}) from None
        Run.objects.filter(pk=run.pk).update(pipeline=pipeline, pipeline_index=index)
        previous = run
    return pipeline


def pipeline_runs(pipeline: Pipeline) -> list[Run]:
    return list(pipeline.runs.select_related("output_dataset").prefetch_related("checkpoints")
                .order_by("pipeline_index"))


def pipelines_for(projects: Any) -> list[tuple[Pipeline, list[Run], str]]:
    """The pipelines of `projects`, newest first, with their stages and state."""
    rows = Pipeline.objects.filter(project__in=projects).select_related("project").order_by("-created_at")[:200]
    out = []
    for pipeline in rows:
        runs = list(pipeline.runs.order_by("pipeline_index"))
        out.append((pipeline, runs, pipeline_state(runs)))
    return out


def stage_row(run: Run) -> dict[str, Any]:
    """One stage as the pipeline page shows it: status, progress, time, what it produced."""
    checkpoint = max(run.checkpoints.all(), key=lambda c: c.step, default=None)
    gate = _gate_queue(run)
    return {
        "gate_queue": gate,
        "id": run.pk, "status": run.shown_status, "step": run.current_step, "total": run.total_steps,
        "blocked_reason": run.blocked_reason, "duration_s": stage_seconds(run),
        "checkpoint": checkpoint.pk if checkpoint else None,
        "dataset": run.output_dataset_id, "dataset_name": run.output_dataset.name if run.output_dataset else "",
    }


def _gate_queue(run: Run) -> int | None:
    """A review gate's queue id (the review app's queue points at its gate run)."""
    if run.stage != stages.REVIEW:
        return None
    try:
        return run.review_gate.pk  # type: ignore[attr-defined]  # the reverse side of ReviewQueue.gate_run
    except ObjectDoesNotExist:
        return None


def stage_seconds(run: Run) -> float | None:
    """How long the stage has run (so far, while it runs)."""
    if run.started_at is None:
        return None
    return ((run.finished_at or timezone.now()) - run.started_at).total_seconds()




def pipeline_abandon(*, pipeline: Pipeline, user: AuthUser) -> None:
    """Give up on a pipeline: the stage that runs is cancelled, waiting and blocked ones end
    as cancelled, and what the finished stages produced stays."""
    if not can_write(user, pipeline.project_id):
        raise PermissionDenied("only project owners may abandon pipelines")
    with transaction.atomic():
        for run in pipeline.runs.filter(status__in=[Status.QUEUED, Status.RUNNING]).order_by("pipeline_index"):
            services.run_cancel(run=run, user=user)
        pipeline.runs.filter(status=Status.CANCELLED).exclude(blocked_reason="").update(
            blocked_reason="", error=f"the pipeline was abandoned by {user.get_username()}")


def pipeline_state(runs: list[Run]) -> str:
    """One word for a pipeline, from its stages (in order)."""
    shown = [run.shown_status for run in runs]
    if any(s in ("queued", "running") for s in shown):
        return "running"
    if "blocked" in shown:
        return "blocked"
    if shown and all(s == Status.SUCCEEDED for s in shown):
        return "succeeded"
    return "waiting" if "waiting" in shown else "ended"


def resumable_stage(runs: list[Run]) -> Run | None:
    """The stage a pipeline can be resumed from: its first that did not succeed, when that
    one failed, was cancelled or is blocked."""
    first = next((run for run in runs if run.status != Status.SUCCEEDED), None)
    return first if first is not None and first.status in (Status.FAILED, Status.CANCELLED) else None


def parse_config(text: str) -> dict[str, Any] | None:
    """The settings typed on the pipeline page: a JSON object, or nothing to keep the old ones."""
    if not text.strip():
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError({"config": f"is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"}) from None
    if not isinstance(config, dict):
        raise ValidationError({"config": "must be a JSON object"})
    return config
