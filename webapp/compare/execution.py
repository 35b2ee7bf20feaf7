"""What a worker does with a comparison: claim it, then run the engine's evaluation
(`engine.evaluate.run_eval`) on each checkpoint in turn with the same prompts, sampling
settings, rewards and seed, storing every sample and per-prompt result through a sink.
Called by `workers.tasks.compare_checkpoints`."""

from __future__ import annotations

import logging
import math
import traceback
from collections import defaultdict
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from engine.events import NullSink, RolloutRecord
from webapp.compare.models import (
    Comparison,
    ComparisonPrompt,
    ComparisonSample,
    PromptResult,
    Status,
)
from webapp.runs.models import Checkpoint

log = logging.getLogger(__name__)
PROMPTS_PER_BATCH = 8  # progress is reported, and a stop request honoured, after each batch


class ComparisonSink(NullSink):
    """Stores one checkpoint's samples of a comparison as the evaluation reports them."""

    def __init__(self, comparison: Comparison, checkpoint: Checkpoint, done_before: int) -> None:
        self.comparison, self.checkpoint, self.done_before = comparison, checkpoint, done_before

    def rollouts(self, records: list[RolloutRecord]) -> None:
        by_prompt: dict[int, list[RolloutRecord]] = defaultdict(list)
        for r in records:
            by_prompt[int(r.metadata["question_index"])].append(r)
        with transaction.atomic():  # a redelivered task writes the same rows: kept once
            ComparisonPrompt.objects.bulk_create(
                [ComparisonPrompt(comparison=self.comparison, index=i, question=_clean(rs[0].metadata["question"]),
                                  reference=_clean(rs[0].reference)) for i, rs in by_prompt.items()],
                ignore_conflicts=True)
            ComparisonSample.objects.bulk_create([self._sample(i, r) for i, rs in by_prompt.items() for r in rs],
                                                 ignore_conflicts=True)
            PromptResult.objects.bulk_create([self._result(i, rs) for i, rs in by_prompt.items()],
                                             ignore_conflicts=True)

    def _sample(self, index: int, r: RolloutRecord) -> ComparisonSample:
        rewards = {k: v for k, v in r.rewards.items() if k != "correct"}
        return ComparisonSample(
            comparison=self.comparison, checkpoint=self.checkpoint, prompt_index=index,
            sample_index=r.sample_index, completion=_clean(r.completion), reasoning=_clean(r.reasoning),
            answer=_clean(r.answer), rewards=rewards, correct=bool(r.metadata.get("correct")),
            total=sum(self.comparison.rewards.get(k, 0.0) * v for k, v in rewards.items()),
            token_count=r.token_count, finish_reason=r.finish_reason[:16])

    def _result(self, index: int, rs: list[RolloutRecord]) -> PromptResult:
        return PromptResult(
            comparison=self.comparison, checkpoint=self.checkpoint, prompt_index=index, n=len(rs),
            correct=sum(bool(r.metadata.get("correct")) for r in rs), cons=float(rs[0].metadata.get("cons", 0.0)),
            majority=_clean(rs[0].metadata.get("majority") or ""),
            length_mean=sum(r.token_count for r in rs) / len(rs))

    def progress(self, step: int, total: int, *, eta_s: float | None = None) -> None:
        Comparison.objects.filter(pk=self.comparison.pk).update(done=self.done_before + step)

    def log(self, line: str) -> None:
        log.info("comparison %s: %s", self.comparison.pk, line)

    def should_stop(self) -> bool:
        return Comparison.objects.filter(pk=self.comparison.pk, stop_requested=True).exists()


def _clean(text: Any) -> str:
    """PostgreSQL text holds no NUL characters; a model may still write one."""
    return str(text).replace("\x00", "\ufffd")


def comparison_claim(*, comparison_id: int, task_id: str) -> bool:
    """queued → running for the task holding the comparison's task id; a redelivered task
    (same id, after its worker died) takes its own running comparison back."""
    return Comparison.objects.filter(
        pk=comparison_id, celery_task_id=task_id, status__in=[Status.QUEUED, Status.RUNNING]).update(
        status=Status.RUNNING, started_at=timezone.now(), error="") == 1


def execute_comparison(*, comparison_id: int, task_id: str) -> str:
    if not comparison_claim(comparison_id=comparison_id, task_id=task_id):
        return "not-claimed"
    comparison = Comparison.objects.select_related("dataset").get(pk=comparison_id)
    try:
        status = _sample_all(comparison)
    except Exception as exc:  # the comparison failed; the worker lives on
        log.exception("comparison %s failed", comparison_id)
        _finish(comparison_id, Status.FAILED, error="".join(traceback.format_exception(exc))[-8000:])
        return Status.FAILED
    _finish(comparison_id, status)
    return status


def _sample_all(comparison: Comparison) -> str:
    from engine.evaluate import run_eval

    entries = list(comparison.entries.select_related("checkpoint").order_by("position"))
    for position, entry in enumerate(entries):
        config = engine_config(comparison, entry.checkpoint)
        sink = ComparisonSink(comparison, entry.checkpoint, done_before=position * comparison.num_prompts)
        result = run_eval(config, sink)
        _store_figures(comparison, entry.checkpoint, result.metrics)
        if result.status == "cancelled":
            return Status.CANCELLED
    return Status.SUCCEEDED


def engine_config(comparison: Comparison, checkpoint: Checkpoint) -> Any:
    """The evaluation config of one checkpoint: everything but the model is shared."""
    from engine.evaluate import EvalConfig

    dataset = None
    if comparison.dataset is not None:
        from webapp.datasets.services import dataset_export_path

        dataset = str(dataset_export_path(comparison.dataset, "jsonl"))
    out = Path(settings.PONDER_DATA_DIR) / "comparisons" / str(comparison.pk) / str(checkpoint.pk)
    return EvalConfig(
        model=checkpoint.path, output_dir=str(out), task=comparison.task or None, dataset=dataset,
        split=comparison.split, num_prompts=comparison.num_prompts, k=comparison.k,
        temperature=comparison.temperature, top_p=comparison.top_p, max_new_tokens=comparison.max_new_tokens,
        rewards=dict(comparison.rewards), accuracy_reward=comparison.accuracy_reward, seed=comparison.seed,
        prompts_per_batch=PROMPTS_PER_BATCH, device=_device())


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _store_figures(comparison: Comparison, checkpoint: Checkpoint, metrics: dict[str, float]) -> None:
    """The engine's own figures for the checkpoint (pass@1, pass@k, cons@k, ...), kept as
    reported; the pages compute the same from the stored rows while a job runs."""
    figures = {k.removeprefix("eval/"): v for k, v in metrics.items() if math.isfinite(v)}
    with transaction.atomic():
        row = Comparison.objects.select_for_update().get(pk=comparison.pk)
        row.results = {**row.results, str(checkpoint.pk): figures}
        row.save(update_fields=["results"])


def _finish(comparison_id: int, status: str, error: str = "") -> None:
    done = {"done": F("total")} if status == Status.SUCCEEDED else {}
    Comparison.objects.filter(pk=comparison_id).update(status=status, error=error, finished_at=timezone.now(),
                                                       **done)
