"""Evaluation: k samples per question, scored as the R1 paper reports its benchmarks.

    result = run_eval(EvalConfig(model="var/runs/3/checkpoint-100", task="arithmetic", k=8), sink)
    result.metrics["eval/pass@1"]

Per question, with c of the k samples correct:
- pass@1 is c / k (mean correctness, sampled at temperature 0.6 and top-p 0.95);
- pass@k is the unbiased estimator `1 - C(k-c, k) / C(k, k)`, i.e. whether any sample is
  correct (`pass_at` adds estimates for smaller k from the same samples);
- cons@k grades the majority answer among the extracted answers (`engine.metrics`);
- length is the mean completion length in tokens.
The stage figures are means over questions. Per-question results go to
`<output_dir>/eval_results.jsonl`, every sample to the sink as a rollout at step 0.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import option, require
from engine.events import Sink
from engine.graded_sampling import (
    Example,
    GradedSample,
    GradedSampler,
    SamplingConfig,
    append_results,
    batches,
    open_results,
    rollout_record,
)
from engine.metrics import majority_by, majority_vote, pass_at_k
from engine.training import StageResult, StepClock, configure_threads, seed_everything

__all__ = ["RESULTS_FILE", "EvalConfig", "EvalStageResult", "eval_metrics", "question_result", "run_eval"]

RESULTS_FILE = "eval_results.jsonl"
VOTES = ("math", "exact")


@dataclass
class EvalConfig(SamplingConfig):
    """Settings of one evaluation: which model, on which questions, how many samples."""

    output_dir: str = option("var/runs/eval", "Folder for eval_results.jsonl.")
    pass_at: list[int] = option([], "Further k values (each at most `k`) whose unbiased pass@k estimate is "
                                "reported as eval/pass@<k>, from the same samples.")
    vote_by: str = option("math", "How cons@k groups the samples' answers: math (answers Math-Verify holds "
                          "equal vote together: 1/2 and 0.5) or exact (the same text).")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(all(1 <= j <= self.k for j in self.pass_at),
                f"Every pass_at value must be between 1 and k={self.k}: pass@j needs at least j samples.")
        require(self.vote_by in VOTES, f"vote_by must be one of {', '.join(VOTES)}, not {self.vote_by!r}.")


@dataclass
class EvalStageResult(StageResult):
    """A StageResult that also names the per-question results file."""

    results: str = ""


def run_eval(config: EvalConfig, sink: Sink, resume_from: str | Path | None = None) -> EvalStageResult:
    """Sample `k` completions per question from `config.model` and score them.

    Stops after the current batch of questions when `sink.should_stop()` turns true
    (status "cancelled", metrics over the questions done). `resume_from` is the output
    folder of an interrupted run of the same config: its questions are kept, not redone.
    """
    configure_threads(config.num_threads)
    seed_everything(config.seed)
    sampler = GradedSampler.load(config, sink.log)
    rows = open_results(config, RESULTS_FILE, resume_from)
    todo = batches(sampler.examples, config.prompts_per_batch, start=len(rows))
    sink.log(f"Eval: {len(sampler.examples)} questions x {config.k} samples of {config.model}"
             + (f", {len(rows)} done before" if rows else ""))
    clock, status = StepClock(), "succeeded"
    for n, (start, examples) in enumerate(todo):
        if sink.should_stop():
            status = "cancelled"
            break
        clock.start()
        new = _eval_batch(sampler, sink, examples, start, config.pass_at, _same(config.vote_by))
        append_results(config, RESULTS_FILE, new)
        rows.extend(new)
        clock.stop()
        sink.progress(len(rows), len(sampler.examples), eta_s=clock.eta(len(todo) - n - 1))
    return _finish(config, sink, rows, status)


def _same(vote_by: str) -> Callable[[str, str], bool] | None:
    if vote_by == "exact":
        return None
    from engine.rewards.math_reward import answers_equal

    return answers_equal


def _eval_batch(sampler: GradedSampler, sink: Sink, examples: list[Example], start: int,
                pass_at: list[int], same: Callable[[str, str], bool] | None = None) -> list[dict[str, Any]]:
    """Sample and grade one batch of questions; report its samples as rollouts."""
    groups = sampler.sample(examples, start, sink)
    rows = [question_result(ex, group, start + i, pass_at, same)
            for i, (ex, group) in enumerate(zip(examples, groups, strict=True))]
    # The question's index and cons@k travel with each sample, so a sink can store
    # per-question results (checkpoint comparisons) without reading the results file.
    sink.rollouts([rollout_record(ex, s, {"correct": s.correct, "majority": row["majority"],
                                          "question_index": row["index"], "cons": row["cons@k"]})
                   for ex, group, row in zip(examples, groups, rows, strict=True) for s in group])
    return rows


def question_result(example: Example, group: list[GradedSample], index: int,
                    pass_at: list[int] | None = None, same: Callable[[str, str], bool] | None = None
                    ) -> dict[str, Any]:
    """The per-question row of eval_results.jsonl: samples, counts and scores."""
    n, c = len(group), sum(s.correct for s in group)
    majority, cons = consensus(group, same)
    row: dict[str, Any] = {
        "index": index, "id": example.get("id"), "question": example.get("prompt", ""),
        "reference": str(example.get("answer", "")), "n": n, "correct": c, "pass@1": c / n,
        "pass@k": pass_at_k(n, c, n), "majority": majority, "cons@k": cons,
        "length_mean": sum(s.tokens for s in group) / n,
    }
    row.update({f"pass@{j}": pass_at_k(n, c, j) for j in pass_at or []})
    row["samples"] = [{"completion": s.text, "answer": s.answer, "correct": s.correct, "tokens": s.tokens,
                       "finish_reason": s.finish_reason, "rewards": s.rewards} for s in group]
    return row


def consensus(group: list[GradedSample], same: Callable[[str, str], bool] | None = None
              ) -> tuple[str | None, float]:
    """(majority answer, 1.0 if it is correct else 0.0) over the samples' extracted answers.

    Answers vote after whitespace is normalised, grouped by `same` when given (the eval's
    `vote_by: math` groups answers Math-Verify holds equal); the majority is as correct as the first
    sample that gave it (the grader judges completions, not bare answers). No answer
    extracted at all scores 0.0.
    """
    voted = [(normalize_answer(s.answer), s) for s in group if s.answer is not None and s.answer.strip()]
    if not voted:
        return None, 0.0
    answers = [a for a, _ in voted]
    majority = majority_by(answers, same) if same is not None else majority_vote(answers)
    first = next(s for a, s in voted if a == majority)
    return majority, float(first.correct)


def normalize_answer(answer: str) -> str:
    """Collapse whitespace so " 6 " and "6" vote together."""
    return re.sub(r"\s+", " ", answer).strip()


def eval_metrics(rows: list[dict[str, Any]], pass_at: list[int] | None = None) -> dict[str, float]:
    """Means over questions of the per-question scores."""
    if not rows:
        return {}

    def mean(key: str) -> float:
        return sum(float(r[key]) for r in rows) / len(rows)

    out = {"eval/pass@1": mean("pass@1"), "eval/pass@k": mean("pass@k"), "eval/cons@k": mean("cons@k"),
           "eval/length_mean": mean("length_mean"), "eval/questions": float(len(rows))}
    out.update({f"eval/pass@{j}": mean(f"pass@{j}") for j in pass_at or [] if j != 1})
    names = {name for r in rows for s in r["samples"] for name in s["rewards"]}
    for name in sorted(names):
        values = [s["rewards"][name] for r in rows for s in r["samples"] if name in s["rewards"]]
        out[f"eval/reward/{name}"] = sum(values) / len(values)
    return out


def _finish(config: EvalConfig, sink: Sink, rows: list[dict[str, Any]], status: str) -> EvalStageResult:
    """Report the final metrics and build the result."""
    metrics = eval_metrics(rows, config.pass_at)
    if metrics:
        sink.metrics(0, metrics)
        sink.log("Eval: " + ", ".join(f"{k.removeprefix('eval/')} {v:.3f}" for k, v in metrics.items()))
    return EvalStageResult(status=status, step=0, checkpoint=None, metrics=metrics,
                           history=[{"step": 0.0, **metrics}] if metrics else [],
                           results=str(Path(config.output_dir) / RESULTS_FILE))
