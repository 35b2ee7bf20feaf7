"""Rejection sampling: many samples per prompt, keep the verified and readable ones as SFT data.

    result = run_rejection(RejectionConfig(model="var/runs/3/checkpoint-100", k=8), sink)
    result.dataset   # <output_dir>/dataset.jsonl: {"prompt", "completion", "id", "answer"} rows

R1's stage 3 (R1-RECIPE.md): sample the interim model k times per prompt, keep only
correct samples, and drop those with mixed-language reasoning, over-long paragraphs or
code blocks cluttering the reasoning of a non-code problem. On top, near-duplicates of a
sample already kept for the same prompt are dropped (word 3-gram Jaccard), at most
`max_per_prompt` samples are kept per prompt (best reward first, then shortest), and
optionally only prompts whose pass rate lies strictly inside `pass_rate_band` keep
theirs (too easy teaches nothing, too hard is mostly luck).

Every dropped sample is counted under the first rule it fails, in the order of
`DROP_REASONS`. Per-prompt statistics go to `<output_dir>/rejection_stats.jsonl`, every
sample to the sink as a rollout at step 0 (metadata says kept or why not).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import option, require
from engine.events import Sink
from engine.graded_sampling import (
    DatasetStageResult,
    Example,
    GradedSample,
    GradedSampler,
    SamplingConfig,
    append_results,
    batches,
    open_results,
    rollout_record,
)
from engine.rewards.language import count_units, language_reward, reasoning_text
from engine.training import StepClock, configure_threads, seed_everything

__all__ = [
    "DATASET_FILE", "DROP_REASONS", "STATS_FILE", "DatasetStageResult", "RejectionConfig", "drop_reason",
    "has_code_in_reasoning", "has_long_paragraph", "is_language_mixed", "jaccard", "near_duplicate",
    "run_rejection", "select_samples",
]

DATASET_FILE = "dataset.jsonl"
STATS_FILE = "rejection_stats.jsonl"
DROP_REASONS = ("incorrect", "truncated", "no_reasoning", "language", "long_paragraph", "code", "duplicate",
                "surplus", "too_easy", "too_hard")
NGRAM = 3  # word n-grams compared for near-duplicates
_FENCE = re.compile(r"```")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_WORD = re.compile(r"\w+|[^\w\s]")


@dataclass
class RejectionConfig(SamplingConfig):
    """Settings of one rejection-sampling run: what to sample and what to keep."""

    output_dir: str = option("var/runs/rejection", "Folder for dataset.jsonl and rejection_stats.jsonl.")
    split: str = option("train", "Split of the task (train or test), or of a saved datasets directory.")
    num_prompts: int | None = option(200, "How many prompts to sample, from the start of the split "
                                     "(None: the whole split).")
    max_per_prompt: int = option(1, "Verified samples kept per prompt: 1 keeps the best one (highest "
                                 "`rewards` score, then shortest), m keeps up to m distinct ones.")
    min_language: float = option(0.9, "Drop samples whose reasoning has less than this share in the prompt's "
                                 "language (engine.rewards `language`); 0 keeps mixed-language reasoning.")
    max_paragraph_chars: int = option(1500, "Drop samples with a paragraph (text between blank lines) longer "
                                      "than this many characters; 0 disables the rule.")
    drop_code_in_reasoning: bool = option(True, "Drop samples whose reasoning holds a ``` code block when the "
                                          "prompt is not a coding problem.")
    require_reasoning: bool = option(False, "Drop samples with an empty <think> block or none at all.")
    dedup_threshold: float | None = option(0.8, "Drop a sample whose word 3-gram Jaccard similarity to one "
                                           "already kept for the same prompt is at least this (1.0: only "
                                           "exact duplicates after normalising case and spaces; None: keep all).")
    pass_rate_band: list[float] | None = option(None, "[low, high]: keep only prompts whose pass rate p "
                                                "satisfies low < p < high, e.g. [0.1, 0.9]; None keeps all.")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.max_per_prompt >= 1, f"max_per_prompt must be at least 1, got {self.max_per_prompt}.")
        require(0 <= self.min_language <= 1, f"min_language must be in [0, 1], got {self.min_language}.")
        require(self.max_paragraph_chars >= 0, "max_paragraph_chars must be >= 0 (0 disables the rule).")
        require(self.dedup_threshold is None or 0 < self.dedup_threshold <= 1,
                f"dedup_threshold must be in (0, 1] or None, got {self.dedup_threshold}.")
        band = self.pass_rate_band
        require(band is None or (len(band) == 2 and 0 <= band[0] < band[1] <= 1),
                f"pass_rate_band must be [low, high] with 0 <= low < high <= 1, got {band}.")


# ----------------------------------------------------------------------------
# The rules, one pure function each
# ----------------------------------------------------------------------------


def is_language_mixed(completion: str, example: Example, min_share: float) -> bool:
    """Whether the reasoning has less than `min_share` of its words in the prompt's
    language. Reasoning without words (only numbers and symbols) is not mixed."""
    if min_share <= 0 or sum(count_units(reasoning_text(completion)).values()) == 0:
        return False
    return language_reward(completion, {**example, "language": example.get("language") or "auto"}) < min_share


def has_long_paragraph(completion: str, max_chars: int) -> bool:
    """Whether any paragraph (text between blank lines) is longer than `max_chars`."""
    return max_chars > 0 and any(len(p.strip()) > max_chars for p in _PARAGRAPH_BREAK.split(completion))


def has_code_in_reasoning(completion: str) -> bool:
    """Whether the reasoning (the think block, else the whole text) holds a ``` fence."""
    return bool(_FENCE.search(reasoning_text(completion)))


def is_code_example(example: Example) -> bool:
    """Coding problems (unit tests, or the python task) may reason in code."""
    return bool(example.get("tests")) or example.get("task") == "python"


def has_reasoning(completion: str) -> bool:
    """Whether the completion has a non-empty <think> block."""
    return "</think>" in completion and bool(reasoning_text(completion).strip())


def normalize_text(text: str) -> str:
    """Lower case, single spaces: formatting differences do not make samples distinct."""
    return re.sub(r"\s+", " ", text).strip().lower()


def ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    """Word (and punctuation) n-grams of the normalised text; the whole text when shorter."""
    words = _WORD.findall(normalize_text(text))
    if len(words) < n:
        return {tuple(words)}
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set[Any], b: set[Any]) -> float:
    """|a ∩ b| / |a ∪ b| (1.0 for two empty sets)."""
    return len(a & b) / len(a | b) if a or b else 1.0


def near_duplicate(text: str, kept: list[str], threshold: float | None) -> bool:
    """Whether `text` equals (after normalising) or is `threshold`-similar to a kept text."""
    if threshold is None:
        return False
    norm, grams = normalize_text(text), ngrams(text)
    return any(normalize_text(k) == norm or jaccard(grams, ngrams(k)) >= threshold for k in kept)


def drop_reason(sample: GradedSample, example: Example, config: RejectionConfig) -> str | None:
    """The first per-sample rule `sample` fails, or None when it may be kept."""
    text = sample.completion
    checks = (
        ("incorrect", not sample.correct),
        ("truncated", sample.finish_reason == "length"),
        ("no_reasoning", config.require_reasoning and not has_reasoning(text)),
        ("language", is_language_mixed(text, example, config.min_language)),
        ("long_paragraph", has_long_paragraph(text, config.max_paragraph_chars)),
        ("code", config.drop_code_in_reasoning and not is_code_example(example) and has_code_in_reasoning(text)),
    )
    return next((reason for reason, failed in checks if failed), None)


def band_reason(pass_rate: float, band: list[float] | None) -> str | None:
    """"too_easy" / "too_hard" when the pass rate lies outside the open band."""
    if band is None:
        return None
    if pass_rate >= band[1]:
        return "too_easy"
    return "too_hard" if pass_rate <= band[0] else None


def select_samples(group: list[GradedSample], example: Example, config: RejectionConfig,
                   kept_before: list[str] | None = None) -> list[str | None]:
    """Per sample of one prompt, why it is dropped (None: kept).

    Candidates that pass every rule are taken best first (highest score, then fewest
    tokens), skipping near-duplicates of texts kept so far (`kept_before`: earlier
    samples kept for the same prompt text), up to `max_per_prompt`.
    """
    reasons: list[str | None] = [drop_reason(s, example, config) for s in group]
    outside = band_reason(sum(s.correct for s in group) / max(len(group), 1), config.pass_rate_band)
    kept = list(kept_before or [])
    taken = 0
    candidates = [i for i, r in enumerate(reasons) if r is None]
    for i in sorted(candidates, key=lambda i: (-group[i].score, group[i].tokens, i)):
        if near_duplicate(group[i].completion, kept, config.dedup_threshold):
            reasons[i] = "duplicate"
        elif taken >= config.max_per_prompt:
            reasons[i] = "surplus"
        elif outside is not None:
            reasons[i] = outside
        else:
            kept.append(group[i].completion)
            taken += 1
    return reasons


# ----------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------


def run_rejection(config: RejectionConfig, sink: Sink,
                  resume_from: str | Path | None = None) -> DatasetStageResult:
    """Sample `k` completions per prompt from `config.model`, keep the verified, readable,
    distinct ones and write them as an SFT dataset.

    Stops after the current batch when `sink.should_stop()` turns true (status
    "cancelled"; the dataset then holds what was kept so far). `resume_from` is the output
    folder of an interrupted run of the same config: its prompts are kept, not redone.
    """
    configure_threads(config.num_threads)
    seed_everything(config.seed)
    sampler = GradedSampler.load(config, sink.log)
    stats = open_results(config, STATS_FILE, resume_from)
    kept = _kept_by_prompt(stats)
    todo = batches(sampler.examples, config.prompts_per_batch, start=len(stats))
    sink.log(f"Rejection sampling: {len(sampler.examples)} prompts x {config.k} samples of {config.model}"
             + (f", {len(stats)} done before" if stats else ""))
    clock, status = StepClock(), "succeeded"
    for n, (start, examples) in enumerate(todo):
        if sink.should_stop():
            status = "cancelled"
            break
        clock.start()
        new = _reject_batch(sampler, sink, examples, start, kept)
        append_results(config, STATS_FILE, new)
        stats.extend(new)
        clock.stop()
        sink.progress(len(stats), len(sampler.examples), eta_s=clock.eta(len(todo) - n - 1))
    return _finish(config, sink, stats, status)


def _reject_batch(sampler: GradedSampler, sink: Sink, examples: list[Example], start: int,
                  kept: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Sample, grade and filter one batch; report every sample as a rollout."""
    cfg = sampler.config
    assert isinstance(cfg, RejectionConfig)
    rows, records = [], []
    for i, (ex, group) in enumerate(zip(examples, sampler.sample(examples, start, sink), strict=True)):
        reasons = select_samples(group, ex, cfg, kept.get(ex["text"]))
        chosen = [s for s, r in zip(group, reasons, strict=True) if r is None]
        kept.setdefault(ex["text"], []).extend(s.completion for s in chosen)
        rows.append(_prompt_stats(ex, group, reasons, chosen, start + i, cfg))
        records += [rollout_record(ex, s, {"correct": s.correct, "kept": r is None, "drop_reason": r})
                    for s, r in zip(group, reasons, strict=True)]
    sink.rollouts(records)
    return rows


def _prompt_stats(example: Example, group: list[GradedSample], reasons: list[str | None],
                  chosen: list[GradedSample], index: int, config: RejectionConfig) -> dict[str, Any]:
    """One row of rejection_stats.jsonl (with the kept rows, so a resumed run can rebuild
    the dataset)."""
    correct = sum(s.correct for s in group)
    dropped = {r: reasons.count(r) for r in DROP_REASONS if r in reasons}
    return {
        "index": index, "id": example.get("id"), "question": example.get("prompt", ""),
        "reference": str(example.get("answer", "")), "samples": len(group), "correct": correct,
        "pass_rate": correct / max(len(group), 1), "kept": len(chosen), "dropped": dropped,
        "in_band": band_reason(correct / max(len(group), 1), config.pass_rate_band) is None,
        "rows": [{"prompt": example["text"], "completion": s.completion, "id": example.get("id"),
                  "answer": str(example.get("answer", ""))} for s in chosen],
    }


def _kept_by_prompt(stats: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Prompt text → completions kept for it, from stats rows (for near-duplicate checks)."""
    kept: dict[str, list[str]] = {}
    for row in stats:
        for r in row["rows"]:
            kept.setdefault(r["prompt"], []).append(r["completion"])
    return kept


def rejection_metrics(stats: list[dict[str, Any]]) -> dict[str, float]:
    """Kept and dropped counts (by reason), prompts and mean pass rate."""
    if not stats:
        return {}
    out = {
        "rejection/prompts": float(len(stats)),
        "rejection/samples": float(sum(r["samples"] for r in stats)),
        "rejection/kept": float(sum(r["kept"] for r in stats)),
        "rejection/prompts_with_rows": float(sum(r["kept"] > 0 for r in stats)),
        "rejection/prompts_out_of_band": float(sum(not r["in_band"] for r in stats)),
        "rejection/pass_rate": sum(r["pass_rate"] for r in stats) / len(stats),
    }
    for reason in DROP_REASONS:
        out[f"rejection/dropped/{reason}"] = float(sum(r["dropped"].get(reason, 0) for r in stats))
    return out


def _finish(config: RejectionConfig, sink: Sink, stats: list[dict[str, Any]], status: str) -> DatasetStageResult:
    """Write the dataset, report the counts and build the result."""
    from engine.datasets import save_sft_dataset

    rows = [r for row in stats for r in row["rows"]]
    target = Path(config.output_dir) / DATASET_FILE
    target.unlink(missing_ok=True)  # a dataset left by an earlier run in this folder is not ours
    path = save_sft_dataset(rows, target) if rows else None
    metrics = rejection_metrics(stats)
    if metrics:
        sink.metrics(0, metrics)
    sink.log(f"Rejection sampling: kept {len(rows)} of {int(metrics.get('rejection/samples', 0))} samples"
             + (f" in {path}" if path else "; no dataset written"))
    return DatasetStageResult(status=status, step=0, checkpoint=None, metrics=metrics,
                              history=[{"step": 0.0, **metrics}] if metrics else [],
                              dataset=str(path) if path else None)
