"""The explorer's rollouts as a table (CSV or Parquet): every rollout of the runs that the
explorer's filter matches, a reward component per column."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from webapp.review.filters import ExplorerFilter, apply_filter
from webapp.review.selectors import reward_names
from webapp.runs.models import Rollout, Run

COLUMNS = ["run", "step", "sample_index", "prompt", "completion", "reasoning", "final_answer", "reference",
           "reward", "token_count", "finish_reason", "created_at"]
NUMBERS = {"run": "int64", "step": "int64", "sample_index": "int64", "reward": "float64", "token_count": "int64"}


def rollout_table(runs: list[Run], flt: ExplorerFilter) -> tuple[list[str], Iterator[dict[str, Any]], dict[str, str]]:
    """(columns, rows, pyarrow type names): the filter's rollouts run by run in step order,
    with `reward/<name>` for every reward component the runs logged."""
    components = reward_names([r.pk for r in runs])
    columns = COLUMNS[:9] + [f"reward/{n}" for n in components] + COLUMNS[9:]

    def rows() -> Iterator[dict[str, Any]]:
        for run in runs:
            qs = apply_filter(Rollout.objects.filter(run_id=run.pk), flt).order_by("step", "sample_index", "pk")
            for r in qs.iterator(chunk_size=2_000):
                row = {"run": run.pk, "step": r.step, "sample_index": r.sample_index, "prompt": r.prompt,
                       "completion": r.completion, "reasoning": r.reasoning, "final_answer": r.final_answer,
                       "reference": r.reference, "reward": r.reward, "token_count": r.token_count,
                       "finish_reason": r.finish_reason, "created_at": r.created_at.isoformat()}
                row.update({f"reward/{n}": _float(r.rewards.get(n)) for n in components})
                yield row

    return columns, rows(), {**NUMBERS, **{f"reward/{n}": "float64" for n in components}}


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None
