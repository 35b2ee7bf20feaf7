"""What a worker does with a run: claim it, build the engine config, run the stage
through a DbSink (in this process, or under torchrun / accelerate through
`workers.launcher`), and record how it ended. Called by `workers.tasks.run_stage`."""

from __future__ import annotations

import logging
import math
import traceback
from pathlib import Path
from typing import Any

from django.db import transaction

from engine import stages
from engine.events import Sink
from engine.graded_sampling import CONFIG_FILE as RESULTS_CONFIG
from engine.pretrain import ensure_starters
from webapp.datasets import files
from webapp.datasets.services import dataset_store_output
from webapp.runs import services
from webapp.runs.configs import engine_config, run_dir
from webapp.runs.leases import run_hand_back
from webapp.runs.models import Checkpoint, MetricPoint, Rollout, Run, Status
from workers import launcher
from workers.leases import HandBack, LeaseKeeper
from workers.sink import DbSink, stage_sink, with_db_retry

log = logging.getLogger(__name__)


def execute_run(*, run_id: int, task_id: str, worker: str) -> str:
    if not services.run_claim(run_id=run_id, task_id=task_id, worker=worker):
        return "not-claimed"
    run = Run.objects.get(pk=run_id)
    lease = LeaseKeeper(run_id, task_id)
    lease.start()
    with HandBack() as hand_back:
        sink = DbSink(run=run, log_path=run_dir(run) / "log.txt", task_id=task_id, lease=lease, hand_back=hand_back)
        try:
            return _execute(run, sink, task_id)
        except services.LeaseLost:  # requeued while this task stalled: the new holder carries on
            log.warning("run %s: task %s lost its lease and stops without writing", run_id, task_id)
            return "lease-lost"
        finally:
            lease.stop()


def _execute(run: Run, sink: DbSink, task_id: str) -> str:
    try:
        result = _run_stage(run, stage_sink(sink))
        if sink.lease.lost:  # the stage stopped because the run went to another worker
            raise services.LeaseLost(f"run {run.pk} was requeued")
        sink.close()
        if getattr(result, "dataset", None):
            _store_output_dataset(run, Path(result.dataset))
    except services.LeaseLost:
        raise
    except Exception as exc:  # the run failed; the worker lives on
        log.exception("run %s failed", run.pk)
        _close_quietly(sink)
        error = _error_text(exc)
        with_db_retry(lambda: services.run_finish(run_id=run.pk, status=Status.FAILED, error=error, task_id=task_id))
        return Status.FAILED
    stopped = getattr(result, "status", "") == "cancelled"
    if stopped and sink.hand_back.requested:  # SIGTERM, not a person: the next worker continues
        run_hand_back(run_id=run.pk, task_id=task_id, step=int(getattr(result, "step", 0) or 0))
        return "handed-back"
    status = Status.CANCELLED if stopped else Status.SUCCEEDED
    with_db_retry(lambda: services.run_finish(run_id=run.pk, status=status, summary=_summary(result),
                                              task_id=task_id))
    return status


def _run_stage(run: Run, sink: Sink) -> Any:
    """The stage's result (`.status` "succeeded" or "cancelled"; anything raised fails the run)."""
    spec = stages.get(run.stage)
    config = engine_config(run)
    ensure_starters(config, sink)
    resume_from = _resume_point(run, spec)
    if launcher.wants_launcher(config):  # data parallel: torchrun processes, events relayed to the sink
        return launcher.run_launched(spec=spec, config=config, sink=sink, output_dir=run_dir(run),
                                     resume_from=resume_from)
    return spec.run(config, sink, resume_from=resume_from)


def _store_output_dataset(run: Run, path: Path) -> None:
    """A stage that wrote a dataset (rejection sampling, distillation traces) gets it stored
    as a new dataset version in the run's project, ready for the next stage."""
    kind = files.detect_kind(path)
    dataset = dataset_store_output(project=run.project, created_by=run.launched_by, name=f"{run.name[:190]} (output)",
                                   kind=kind, prompts=files.read_prompts(path, kind),
                                   source={"type": "run", "run": run.pk})
    Run.objects.filter(pk=run.pk).update(output_dataset=dataset)


def _resume_point(run: Run, spec: stages.StageSpec) -> str | None:
    """Where an interrupted run continues. From its last checkpoint: data after that step
    is dropped first, so the resumed run writes each step exactly once. From its results so
    far (sampling stages): the run's folder, keeping what was stored (a batch redone is
    stored once, by its rollouts' identity)."""
    if spec.resumes_from == "results":
        folder = run_dir(run)
        return str(folder) if (folder / RESULTS_CONFIG).exists() else None
    last = Checkpoint.objects.filter(run=run).order_by("-step").first()
    with transaction.atomic():
        after = last.step if last else -1
        Rollout.objects.filter(run=run, step__gt=after).delete()
        MetricPoint.objects.filter(run=run, step__gt=after).delete()
    return last.path if last else None


def _summary(result: Any) -> dict[str, Any]:
    """The figures a stage ended with (engine.training.StageResult.metrics), JSON-safe."""
    metrics = getattr(result, "metrics", None) or {}
    summary: dict[str, Any] = {k: v for k, v in metrics.items()
                               if isinstance(v, (int, float)) and math.isfinite(v)}
    if getattr(result, "checkpoint", None):
        summary["checkpoint"] = str(result.checkpoint)
    return summary


def _error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))[-8000:]


def _close_quietly(sink: DbSink) -> None:
    try:
        sink.close()
    except Exception:  # the original error matters more
        log.exception("could not flush the sink of a failed run")
