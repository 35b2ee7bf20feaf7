"""Writes to runs: create, claim, progress, finish, cancel. Workers race here, so
state changes are conditional UPDATEs that check the row count."""

from __future__ import annotations

import functools
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from webapp import broadcast, queue
from webapp.projects.models import Project
from webapp.projects.selectors import AuthUser, can_write
from webapp.runs import gates, stages
from webapp.runs.configs import config_check, run_dir
from webapp.runs.models import FINISHED, Checkpoint, Run, Status
from webapp.runs.references import CHECKPOINT_REF, DATASET_REF, PREVIOUS, References, pin_custom_rewards
from webapp.runs.selectors import run_status


def run_create(
    *, project: Project, user: AuthUser, name: str, stage: str, config: dict[str, Any],
    parent: Run | None = None, queue: bool = True,
) -> Run:
    """Create a run; engine stages are queued for a worker once the row commits. With
    `queue=False` the run waits, queued but not yet sent (a pipeline's later stages),
    until `run_enqueue`."""
    if not can_write(user, project.pk):
        raise PermissionDenied("only project owners may launch runs")
    refs = _check_run_fields(user=user, name=name, stage=stage, config=config, in_pipeline=parent is not None,
                             project_id=project.pk)
    config = pin_custom_rewards(config, refs)
    now = timezone.now()
    external = stage == stages.EXTERNAL
    sent = queue and not external
    with transaction.atomic():
        run = Run.objects.create(
            project=project, name=name.strip(), stage=stage, config=config, launched_by=user, parent=parent,
            base_checkpoint=refs.base_checkpoint, input_dataset=refs.input_dataset,
            status=Status.RUNNING if external else Status.QUEUED,
            started_at=now if external else None, queued_at=now if sent else None,
            celery_task_id=str(uuid.uuid4()) if sent else "",
        )
        if sent:
            transaction.on_commit(lambda: enqueue(run))
    return run


def _check_run_fields(*, user: AuthUser, name: str, stage: str, config: Any, in_pipeline: bool,
                      project_id: int) -> References:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError({"name": "must be a non-empty string"})
    if len(name) > 200:
        raise ValidationError({"name": "must be at most 200 characters"})
    if stage not in stages.names():
        raise ValidationError({"stage": f"must be one of {', '.join(stages.names())}"})
    if not isinstance(config, dict):
        raise ValidationError({"config": "must be a JSON object"})
    if stage == stages.REVIEW and not in_pipeline:
        raise ValidationError({"stage": "a review gate is a pipeline stage: it reviews what the stage before made"})
    return config_check(user, stage, config, in_pipeline=in_pipeline, project_id=project_id)


def enqueue(run: Run) -> None:
    """Send a queued run to a worker of the kind its stage needs (after commit)."""
    queue.send(queue.RUN_STAGE, args=[run.pk], task_id=run.celery_task_id, queue_kind=stages.queue_kind(run.stage))


def run_enqueue(*, run: Run, changes: dict[str, Any] | None = None) -> Run:
    """Send a run that waits (a pipeline's next stage) to a worker, with `changes` to its
    fields (its inputs) saved first."""
    with transaction.atomic():
        Run.objects.filter(pk=run.pk).update(celery_task_id=str(uuid.uuid4()), queued_at=timezone.now(),
                                             **(changes or {}))
        run.refresh_from_db()
        transaction.on_commit(lambda: enqueue(run))
    return run


def run_claim(*, run_id: int, task_id: str, worker: str) -> bool:
    """queued → running for exactly one worker. A task redelivered after its worker died
    (same task id, acks_late) may take back its own running run."""
    now = timezone.now()
    claimed = Run.objects.filter(
        Q(status=Status.QUEUED) | Q(status=Status.RUNNING, celery_task_id=task_id), pk=run_id,
        celery_task_id=task_id,
    ).update(status=Status.RUNNING, started_at=now, heartbeat_at=now, worker=worker, error="")
    if claimed:
        announce_status(run_id)
    return claimed == 1


class LeaseLost(RuntimeError):
    """The task no longer holds the run (its lease lapsed and it was requeued, or it ended):
    it must stop without writing anything more."""


def held(*, run_id: int, task_id: str) -> Q:
    """Matches the run only while task `task_id` holds it (webapp/runs/leases.py)."""
    return Q(pk=run_id, status=Status.RUNNING, celery_task_id=task_id)


def _mine(run_id: int, task_id: str | None) -> Q:
    return held(run_id=run_id, task_id=task_id) if task_id else Q(pk=run_id)


def run_progress(*, run_id: int, step: int, total: int, eta_s: float | None, task_id: str | None = None) -> bool:
    """Record progress (and renew the lease of `task_id`, which must hold the run: LeaseLost
    otherwise); returns True when someone asked the run to stop."""
    updated = Run.objects.filter(_mine(run_id, task_id)).update(
        current_step=step, total_steps=total, eta_s=eta_s, heartbeat_at=timezone.now()
    )
    if task_id and not updated:
        raise LeaseLost(f"run {run_id} is no longer held by task {task_id}")
    broadcast.send_now(run_id, {"type": "progress", "status": "running", "step": step, "total": total, "eta_s": eta_s})
    return Run.objects.filter(pk=run_id, stop_requested=True).exists()


def run_finish(*, run_id: int, status: str, error: str = "", summary: dict[str, Any] | None = None,
               task_id: str | None = None) -> None:
    """End the run (with `task_id`: only while that task holds it; a run it lost stays
    with whoever has it now)."""
    if status not in FINISHED:
        raise ValueError(f"a run finishes as one of {', '.join(FINISHED)}, not {status!r}")
    fields: dict[str, Any] = {"status": status, "finished_at": timezone.now(), "error": error[:20000]}
    if summary is not None:
        fields["summary"] = summary
    with transaction.atomic():
        changed = Run.objects.filter(_mine(run_id, task_id)).exclude(status__in=FINISHED).update(**fields)
        transaction.on_commit(lambda: announce_status(run_id))
        if changed and status == Status.SUCCEEDED:
            pipeline_advance(run_id=run_id)
        elif changed:
            _block_after(run_id)


def pipeline_advance(*, run_id: int) -> Run | None:
    """Queue the stage after `run_id` in its pipeline, wiring in what `run_id` produced:
    `@previous` as a model or teacher becomes its last checkpoint, as a dataset the
    dataset it wrote. A stage whose input is missing fails with the reason."""
    run = Run.objects.get(pk=run_id)
    child = Run.objects.filter(parent=run, pipeline=run.pipeline_id, status=Status.QUEUED, celery_task_id="").first()
    if run.pipeline_id is not None and child is None and _pipeline_succeeded(run.pipeline_id):
        pipeline_id = run.pipeline_id  # the last stage: every stage's checkpoint is compared
        transaction.on_commit(lambda: queue.send(queue.PIPELINE_COMPARE, args=[pipeline_id], queue_kind="cpu"))
    if run.pipeline_id is None or child is None:
        return None
    if child.stage == stages.REVIEW:
        gates.gate_start(child, run)
        transaction.on_commit(lambda: announce_status(child.pk))
        return child
    config = dict(child.config)
    changes: dict[str, Any] = {}
    for key in ("model", "teacher"):
        if config.get(key) == PREVIOUS:
            checkpoint = Checkpoint.objects.filter(run=run).order_by("-step").first()
            if checkpoint is None:
                _blocked(child, f"{key}: the previous stage (#{run.pk}) saved no checkpoint")
                return None
            config[key] = f"{CHECKPOINT_REF}{checkpoint.pk}"
            changes["base_checkpoint"] = checkpoint
    if config.get("dataset") == PREVIOUS:
        if run.output_dataset_id is None:
            _blocked(child, f"dataset: the previous stage (#{run.pk}) produced no dataset")
            return None
        config["dataset"] = f"{DATASET_REF}{run.output_dataset_id}"
        changes["input_dataset_id"] = run.output_dataset_id
    return run_enqueue(run=child, changes={"config": config, **changes})


def _pipeline_succeeded(pipeline_id: int) -> bool:
    return not Run.objects.filter(pipeline=pipeline_id).exclude(status=Status.SUCCEEDED).exists()


def _blocked(child: Run, reason: str) -> None:
    """`child` cannot start: it shows `blocked` with the reason, and so do the stages after it."""
    Run.objects.filter(pk=child.pk, status=Status.QUEUED).update(
        status=Status.CANCELLED, finished_at=timezone.now(), blocked_reason=reason[:500])
    transaction.on_commit(lambda: announce_status(child.pk))
    _block_after(child.pk)


def _block_after(run_id: int) -> None:
    """The waiting stages after a pipeline stage that failed or was cancelled would wait in
    `queued` for ever: they become blocked, naming the stage, until the pipeline is resumed
    from it (`run_resume`) or abandoned."""
    run = Run.objects.filter(pk=run_id).exclude(pipeline=None).first()
    if run is None or run.pipeline_index is None:
        return
    shown = "blocked" if run.blocked_reason else run.status
    reason = f"stage {run.pipeline_index + 1} ({run.name}, #{run.pk}) is {shown}"
    later = Run.objects.filter(pipeline=run.pipeline_id, pipeline_index__gt=run.pipeline_index,
                               status=Status.QUEUED, celery_task_id="")
    ids = list(later.values_list("pk", flat=True))
    later.update(status=Status.CANCELLED, finished_at=timezone.now(), blocked_reason=reason[:500])
    for pk in ids:
        transaction.on_commit(functools.partial(announce_status, pk))


def run_cancel(*, run: Run, user: AuthUser) -> Run:
    """Queued runs, and running ones whose worker is gone, end at once; held ones stop at the
    next step boundary."""
    if not can_write(user, run.project_id):
        raise PermissionDenied("only project owners may cancel runs")
    with transaction.atomic():
        now = timezone.now()
        Run.objects.filter(pk=run.pk, status=Status.QUEUED).update(status=Status.CANCELLED, finished_at=now)
        # Ponder cannot stop a trainer elsewhere: its external run ends here now (what it
        # logs later is still stored).
        Run.objects.filter(pk=run.pk, status=Status.RUNNING, stage=stages.EXTERNAL).update(
            status=Status.CANCELLED, finished_at=now)
        # A run whose holder is gone (its lease lapsed) ends now; a held one at its next step.
        lapsed = Q(heartbeat_at__lt=now - timedelta(seconds=settings.PONDER_LEASE_SECONDS)) | Q(heartbeat_at=None)
        Run.objects.filter(lapsed, pk=run.pk, status=Status.RUNNING).exclude(stage=stages.EXTERNAL).update(
            status=Status.CANCELLED, finished_at=now, worker="", stop_requested=True)
        Run.objects.filter(pk=run.pk, status=Status.RUNNING).update(stop_requested=True)
        transaction.on_commit(lambda: announce_status(run.pk))
        if Run.objects.filter(pk=run.pk, status=Status.CANCELLED).exists():
            _block_after(run.pk)
    run.refresh_from_db()
    return run


def run_resume(*, run: Run, user: AuthUser, config: dict[str, Any] | None = None) -> Run:
    """Queue a failed or cancelled run again: the worker continues from its last checkpoint
    (or its results so far), with `config` instead of the old settings when given. A pipeline
    resumes from this stage: those before it must have succeeded, and the blocked ones after
    it wait again for their turn."""
    if not can_write(user, run.project_id):
        raise PermissionDenied("only project owners may resume runs")
    if run.stage == stages.EXTERNAL:
        raise ValidationError({"stage": "external runs are trained elsewhere and cannot be resumed here"})
    changes = _resume_changes(run, user, config)
    if run.pipeline_id is not None:
        _check_stages_before(run)
    never_started = run.pipeline_id is not None and run.parent_id is not None and run.started_at is None
    task_id = "" if never_started or run.stage == stages.REVIEW else str(uuid.uuid4())
    with transaction.atomic():
        updated = Run.objects.filter(
            pk=run.pk, status__in=[Status.FAILED, Status.CANCELLED]
        ).update(status=Status.QUEUED, queued_at=timezone.now(), finished_at=None, stop_requested=False,
                 celery_task_id=task_id, error="", blocked_reason="", **changes)
        if not updated:
            raise ValidationError({"status": "only failed, cancelled or blocked runs can be resumed"})
        if run.pipeline_id is not None:
            _unblock_after(run)
        run.refresh_from_db()
        if never_started or run.stage == stages.REVIEW:  # inputs come from the stage before, as if it just ended
            assert run.parent_id is not None
            pipeline_advance(run_id=run.parent_id)
        else:
            transaction.on_commit(lambda: enqueue(run))
        transaction.on_commit(lambda: announce_status(run.pk))
    run.refresh_from_db()
    return run


def _resume_changes(run: Run, user: AuthUser, config: dict[str, Any] | None) -> dict[str, Any]:
    """The new settings of a resumed run, checked like a new run's."""
    if config is None or config == run.config:
        return {}
    spec = stages.spec(run.stage)
    if run.started_at is not None and spec is not None and spec.resumes_from == "results":
        raise ValidationError({"config": f"{spec.label} resumes from its results so far, which were made with "
                                         "the old settings: resume it unchanged, or launch a new run to change them"})
    refs = _check_run_fields(user=user, name=run.name, stage=run.stage, config=config,
                             in_pipeline=run.pipeline_id is not None and run.parent_id is not None,
                             project_id=run.project_id)
    return {"config": pin_custom_rewards(config, refs), "base_checkpoint": refs.base_checkpoint,
            "input_dataset": refs.input_dataset}


def _check_stages_before(run: Run) -> None:
    first = (Run.objects.filter(pipeline=run.pipeline_id, pipeline_index__lt=run.pipeline_index)
             .exclude(status=Status.SUCCEEDED).order_by("pipeline_index").first())
    if first is not None and first.pipeline_index is not None:
        raise ValidationError({"status": f"stage {first.pipeline_index + 1} ({first.name}, #{first.pk}) has not "
                                         "succeeded: resume the pipeline from that stage"})


def _unblock_after(run: Run) -> None:
    """The blocked stages after `run` wait again, up to one that ended by itself."""
    ids = []
    for later in Run.objects.filter(pipeline=run.pipeline_id, pipeline_index__gt=run.pipeline_index
                                    ).order_by("pipeline_index"):
        if later.shown_status != "blocked":
            break
        ids.append(later.pk)
    Run.objects.filter(pk__in=ids).update(status=Status.QUEUED, finished_at=None, blocked_reason="",
                                          celery_task_id="", queued_at=None)
    for pk in ids:
        transaction.on_commit(functools.partial(announce_status, pk))


def announce_status(run_id: int) -> None:
    """The run's status line, to whoever watches it."""
    run = run_status(run_id)
    if run:
        broadcast.send_now(run_id, {"type": "status", **run})


def external_run_seen(*, run: Run) -> None:
    """An outside trainer logged into its run: it is alive (its idle clock starts again)."""
    if run.stage == stages.EXTERNAL and run.status == Status.RUNNING:
        Run.objects.filter(pk=run.pk, status=Status.RUNNING).update(heartbeat_at=timezone.now())


def external_run_finish(*, run: Run, status: str, summary: dict[str, Any]) -> None:
    """An outside trainer says its run ended (the client's `finish()`)."""
    if run.stage != stages.EXTERNAL:
        raise ValidationError({"stage": "only external runs are finished through the API; Ponder ends its own"})
    if status not in FINISHED:
        raise ValidationError({"status": f"must be one of {', '.join(FINISHED)}"})
    run_finish(run_id=run.pk, status=status, summary=summary)


def checkpoint_record(*, run: Run, step: int, path: str, summary: dict[str, Any]) -> Checkpoint:
    """Store (or update) the checkpoint a run saved at `step`, with its model summary."""
    checkpoint, _ = Checkpoint.objects.update_or_create(
        run=run, step=step,
        defaults={
            "path": path, "summary": summary,
            "architecture": str(summary.get("architecture", ""))[:200],
            "parameter_count": int(summary.get("parameters", 0) or 0),
        },
    )
    broadcast.send_on_commit(run.pk, [{"type": "checkpoint", "step": step, "id": checkpoint.pk}])
    return checkpoint


def run_log(run: Run, line: str) -> None:
    """Append a line to the run's log (the run page's log pane shows it live)."""
    path = run_dir(run) / "log.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")
    broadcast.send_on_commit(run.pk, [{"type": "log", "line": line[:2000]}])
