"""Runs API: thin handlers that check who asks, then call services and selectors."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.urls import reverse
from ninja import Query, Router, Status

from webapp.api.errors import body_schema, validated_body
from webapp.api.schemas import (
    CheckpointIn,
    CheckpointOut,
    CreatedOut,
    RolloutOut,
    RolloutPage,
    RunFinishIn,
    RunIn,
    RunOut,
    RunPage,
    RunResumeIn,
    StoredOut,
)
from webapp.ingest import store
from webapp.ingest.schemas import MetricBatch, RolloutBatchIn
from webapp.projects.selectors import AuthedRequest, can_write, project_for
from webapp.projects.services import personal_project
from webapp.runs import services
from webapp.runs.models import Rollout, Run
from webapp.runs.selectors import RolloutFilter, rollouts_page, run_for, runs_page

router = Router(tags=["runs"])


def run_out(run: Run) -> RunOut:
    return RunOut(
        id=run.pk, name=run.name, stage=run.stage, status=run.status, project=run.project.slug,
        config=run.config, created_at=run.created_at, started_at=run.started_at, finished_at=run.finished_at,
        current_step=run.current_step, total_steps=run.total_steps, eta_s=run.eta_s, error=run.error,
        parent_id=run.parent_id, url=reverse("run-detail", args=[run.pk]), blocked_reason=run.blocked_reason,
    )


def rollout_out(r: Rollout) -> RolloutOut:
    return RolloutOut(
        id=r.pk, step=r.step, sample_index=r.sample_index, prompt=r.prompt, completion=r.completion,
        reasoning=r.reasoning, final_answer=r.final_answer, answer=r.reference, reward=r.reward, rewards=r.rewards,
        token_count=r.token_count, finish_reason=r.finish_reason, metadata=r.metadata, created_at=r.created_at,
    )


def _writable_run(request: HttpRequest, run_id: int) -> Run:
    run = run_for(request.user, run_id)
    if not can_write(request.user, run.project_id):
        raise PermissionDenied("only project owners may write to this run")
    services.external_run_seen(run=run)
    return run


@router.post("/runs", response={201: RunOut})
def create_run(request: AuthedRequest, payload: RunIn):
    project = project_for(request.user, payload.project) if payload.project else personal_project(user=request.user)
    run = services.run_create(
        project=project, user=request.user, name=payload.name, stage=payload.stage, config=payload.config
    )
    return Status(201, run_out(run))


@router.get("/runs", response=RunPage)
def list_runs(request: HttpRequest, cursor: str | None = None, limit: int = Query(50, ge=1, le=500)):
    rows, nxt = runs_page(request.user, cursor=cursor, limit=limit)
    return {"items": [run_out(r) for r in rows], "next": nxt}


@router.get("/runs/{run_id}", response=RunOut)
def get_run(request: HttpRequest, run_id: int):
    return run_out(run_for(request.user, run_id))


@router.post("/runs/{run_id}/cancel", response=RunOut)
def cancel_run(request: AuthedRequest, run_id: int):
    return run_out(services.run_cancel(run=run_for(request.user, run_id), user=request.user))


@router.post("/runs/{run_id}/resume", response=RunOut)
def resume_run(request: AuthedRequest, run_id: int):
    """An optional body `{"config": {...}}` gives the resumed run (or pipeline stage) new settings."""
    config = validated_body(request, RunResumeIn).config if request.body.strip() else None
    return run_out(services.run_resume(run=run_for(request.user, run_id), user=request.user, config=config))


@router.post("/runs/{run_id}/finish", response=RunOut)
def finish_run(request: HttpRequest, run_id: int, payload: RunFinishIn):
    run = _writable_run(request, run_id)
    services.external_run_finish(run=run, status=payload.status, summary=payload.summary)
    run.refresh_from_db()
    return run_out(run)


@router.post("/runs/{run_id}/rollouts", response={201: CreatedOut}, openapi_extra=body_schema(RolloutBatchIn))
def post_rollouts(request: HttpRequest, run_id: int):
    run = _writable_run(request, run_id)
    payload = validated_body(request, RolloutBatchIn, nul_guard=True)  # the hot path: no dict between JSON and models
    rows = [
        store.RolloutIn(step=r.step, prompt=r.prompt, completion=r.completion, rewards=r.rewards,
                         sample_index=r.sample_index, reference=r.answer, metadata=r.metadata)
        for r in payload.rollouts
    ]
    return Status(201, {"created": store.rollouts_store(run=run, rollouts=rows)})


@router.get("/runs/{run_id}/rollouts", response=RolloutPage)
def list_rollouts(
    request: HttpRequest, run_id: int, cursor: str | None = None, limit: int = Query(50, ge=1, le=500),
    step: int | None = None, min_reward: float | None = None, max_reward: float | None = None,
    q: str | None = Query(None, max_length=500),
):
    run = run_for(request.user, run_id)
    flt = RolloutFilter(step=step, min_reward=min_reward, max_reward=max_reward, q=q)
    rows, nxt = rollouts_page(run, flt, cursor=cursor, limit=limit)
    return {"items": [rollout_out(r) for r in rows], "next": nxt}


@router.post("/runs/{run_id}/metrics", response={201: StoredOut}, openapi_extra=body_schema(MetricBatch))
def post_metrics(request: HttpRequest, run_id: int):
    run = _writable_run(request, run_id)
    payload = validated_body(request, MetricBatch, nul_guard=True)
    points = [(p["step"], p["name"], p["value"]) for p in payload["points"]]
    return Status(201, {"stored": store.metrics_store(run=run, points=points)})


@router.post("/runs/{run_id}/checkpoints", response={201: CheckpointOut})
def post_checkpoint(request: HttpRequest, run_id: int, payload: CheckpointIn):
    run = _writable_run(request, run_id)
    ckpt = services.checkpoint_record(run=run, step=payload.step, path=payload.path, summary=payload.summary)
    out = CheckpointOut(id=ckpt.pk, step=ckpt.step, path=ckpt.path, architecture=ckpt.architecture,
                        parameter_count=ckpt.parameter_count, summary=ckpt.summary)
    return Status(201, out)

