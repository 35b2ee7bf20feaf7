"""What a worker does with a run: claim it, build the engine config, run the stage
through a DbSink, and record how it ended. Called by `workers.tasks.run_stage`."""

from __future__ import annotations

import importlib
import logging
import math
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from webapp.runs import launcher, services
from webapp.runs.models import Checkpoint, MetricPoint, Rollout, Run, Status
from webapp.runs.sink import DbSink
from webapp.runs.stages import validate_config

log = logging.getLogger(__name__)

# stage -> "module:function" taking (config, sink, resume_from=None) and returning a result
# whose `.status` is "succeeded" or "cancelled" (anything raised fails the run).
RUNNERS: dict[str, str] = {
    "grpo": "engine.grpo:run_grpo",
    "sft": "engine.sft:run_sft",
    "rejection": "engine.rejection:run_rejection",
    "distill": "engine.distill:run_distill",
    "eval": "engine.evaluate:run_eval",
    "pretrain": "engine.__main__:build_starter",
}


def run_dir(run: Run) -> Path:
    return Path(settings.PONDER_DATA_DIR) / "runs" / str(run.pk)


def execute_run(*, run_id: int, task_id: str, worker: str) -> str:
    if not services.run_claim(run_id=run_id, task_id=task_id, worker=worker):
        return "not-claimed"
    run = Run.objects.select_related("base_checkpoint").get(pk=run_id)
    sink = DbSink(run=run, log_path=run_dir(run) / "log.txt")
    try:
        result = _run_stage(run, sink)
        sink.close()
        if getattr(result, "dataset", None):
            _store_output_dataset(run, Path(result.dataset))
    except Exception as exc:  # the run failed; the worker lives on
        log.exception("run %s failed", run_id)
        _close_quietly(sink)
        services.run_finish(run_id=run_id, status=Status.FAILED, error=_error_text(exc))
        return Status.FAILED
    status = Status.CANCELLED if getattr(result, "status", "") == "cancelled" else Status.SUCCEEDED
    services.run_finish(run_id=run_id, status=status, summary=_summary(result))
    return status


def _run_stage(run: Run, sink: DbSink) -> Any:
    target = RUNNERS.get(run.stage)
    if target is None:
        raise ValueError(f"stage {run.stage!r} has no engine runner")
    module_name, _, attr = target.partition(":")
    runner = getattr(importlib.import_module(module_name), attr)
    config = _engine_config(run)
    _build_starters(config, sink)
    resume_from = _resume_point(run)
    if launcher.wants_launcher(config):  # data parallel: torchrun processes, events relayed to the sink
        return launcher.run_launched(stage=run.stage, config=config, sink=sink, output_dir=run_dir(run),
                                     resume_from=resume_from)
    return runner(config, sink, resume_from=resume_from)


def _build_starters(config: Any, sink: DbSink) -> None:
    """The offline starter is pretrained on first use (a few minutes): do it here, with
    its progress on the run's page, rather than silently inside the stage."""
    from engine.starter import STARTER_NAMES, ensure_starter

    names = {getattr(config, key, None) for key in ("model", "teacher", "student")} & set(STARTER_NAMES)
    for name in sorted(names):  # (none: nothing to build)
        started = time.monotonic()

        def progress(step: int, total: int, values: dict[str, float], name: str = name,
                     started: float = started) -> None:
            if step % 25 == 0 or step == total:
                # The bar and ETA show the pretraining until the stage reports its own steps.
                elapsed = time.monotonic() - started
                sink.progress(step, total, eta_s=elapsed / step * (total - step) if step else None)
                loss = values.get("loss")
                sink.log(f"Pretraining the offline {name} model: step {step}/{total}"
                         + (f", loss {loss:.3f}" if loss is not None else ""))

        ensure_starter(name, progress=progress)


def _engine_config(run: Run) -> Any:
    config = validate_config(run.stage, run.config)
    out = run_dir(run)
    overrides: dict[str, Any] = {}
    if hasattr(config, "output_dir"):
        overrides["output_dir"] = str(out)
    if run.base_checkpoint is not None and hasattr(config, "model"):
        overrides["model"] = run.base_checkpoint.path
    for key in ("dataset", "eval_dataset"):
        value = getattr(config, key, None)
        if isinstance(value, str) and value.startswith("dataset:"):
            overrides[key] = str(_dataset_file(run, value))
    return replace(config, **overrides) if overrides else config


def _dataset_file(run: Run, ref: str) -> Path:
    """`dataset:<id>` (checked against the launcher's projects when the run was created)
    becomes the dataset exported as JSONL, which every engine loader reads."""
    from webapp.datasets.models import Dataset
    from webapp.datasets.services import dataset_export_path

    dataset = Dataset.objects.get(pk=int(ref.split(":", 1)[1]), project=run.project)
    return dataset_export_path(dataset, "jsonl")


def _store_output_dataset(run: Run, path: Path) -> None:
    """A stage that wrote a dataset (rejection sampling, distillation traces) gets it stored
    as a new dataset version in the run's project, ready for the next stage."""
    from webapp.datasets import files
    from webapp.datasets.services import dataset_create

    kind = files.detect_kind(path)
    dataset = dataset_create(project=run.project, user=run.launched_by, name=f"{run.name} (output)", kind=kind,
                             prompts=files.read_prompts(path, kind), source={"type": "run", "run": run.pk})
    Run.objects.filter(pk=run.pk).update(output_dataset=dataset)


def _resume_point(run: Run) -> str | None:
    """The last checkpoint's path; data after its step is dropped so that the resumed
    run writes each step exactly once."""
    last = Checkpoint.objects.filter(run=run).order_by("-step").first()
    with transaction.atomic():
        after = last.step if last else -1
        Rollout.objects.filter(run=run, step__gt=after).delete()
        MetricPoint.objects.filter(run=run, step__gt=after).delete()
    return last.path if last else None


def _summary(result: Any) -> dict[str, Any]:
    """The figures a stage ended with (engine.training.StageResult.metrics), JSON-safe."""
    metrics = getattr(result, "metrics", None) or {}
    summary = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
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
