"""Rejection sampling: each rule on crafted completions, then one run on a tiny random Qwen2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.graded_sampling import GradedSample
from engine.rejection import (
    DROP_REASONS,
    RejectionConfig,
    drop_reason,
    has_code_in_reasoning,
    has_long_paragraph,
    is_language_mixed,
    near_duplicate,
    run_rejection,
    select_samples,
)
from engine.sft import read_sft_rows
from tests.engine.graded_helpers import SAMPLING, TrackingSink, has_letter_a, shared_tiny_model

torch.set_num_threads(1)

@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_tiny_model("teacher", tmp_path_factory)

EXAMPLE = {"prompt": "Tom has 3 apples...", "answer": "8", "language": "en", "task": "arithmetic", "tests": None}
CLEAN = "<think> Tom has 3 apples and buys 5 more, so 3 + 5 = 8. </think> <answer> 8 </answer>"


def graded(completion: str = CLEAN, correct: bool = True, *, index: int = 0, score: float = 1.0,
           tokens: int = 20, finish: str = "stop") -> GradedSample:
    return GradedSample(index, completion, completion, tokens, finish, correct, {"format": score}, score, "8")


def config(**kw: Any) -> RejectionConfig:
    return RejectionConfig(**kw)


def test_language_rule() -> None:
    mixed = "<think> 我们 add 一下 the numbers 然后 写 答案 </think> <answer> 8 </answer>"
    assert is_language_mixed(mixed, EXAMPLE, 0.9)
    assert not is_language_mixed(CLEAN, EXAMPLE, 0.9)
    assert not is_language_mixed("<think> 3 + 5 = 8 </think> 8", EXAMPLE, 0.9)  # no words: nothing to mix
    assert not is_language_mixed(mixed, EXAMPLE, 0.0)  # 0 disables the rule
    assert not is_language_mixed("<think>我们 计算 一下</think> 8", {**EXAMPLE, "language": "zh"}, 0.9)


def test_long_paragraph_rule() -> None:
    assert has_long_paragraph("<think> " + "word " * 20 + "</think> 8", 60)
    assert not has_long_paragraph("<think> " + "word " * 10 + "\n\n" + "word " * 10 + "</think> 8", 60)
    assert not has_long_paragraph("x" * 5000, 0)


def test_code_in_reasoning_rule() -> None:
    assert has_code_in_reasoning("<think> ```python\nprint(3 + 5)\n``` </think> <answer> 8 </answer>")
    assert not has_code_in_reasoning("<think> 3 + 5 = 8 </think> ```python\nprint(8)\n```")
    cfg, code = config(), "<think> ```python\nprint(3 + 5)\n``` </think> <answer> 8 </answer>"
    assert drop_reason(graded(code), EXAMPLE, cfg) == "code"
    assert drop_reason(graded(code), {**EXAMPLE, "task": "python", "tests": "assert f() == 8"}, cfg) is None
    assert drop_reason(graded(code), EXAMPLE, config(drop_code_in_reasoning=False)) is None


def test_near_duplicate_rule() -> None:
    assert near_duplicate(CLEAN.upper().replace(" ", "  "), [CLEAN], 1.0)  # same after normalising
    assert near_duplicate(CLEAN.replace("buys", "gets"), [CLEAN], 0.6)
    assert not near_duplicate(CLEAN.replace("buys", "gets"), [CLEAN], 1.0)
    assert not near_duplicate("<think> 8 - 5 = 3 </think> <answer> 3 </answer>", [CLEAN], 0.8)
    assert not near_duplicate(CLEAN, [CLEAN], None)


def test_every_per_sample_reason() -> None:
    cfg = config(require_reasoning=True, max_paragraph_chars=200)
    cases = {
        "incorrect": graded(correct=False),
        "truncated": graded(finish="length"),
        "no_reasoning": graded("<think> </think> <answer> 8 </answer>"),
        "language": graded("<think> 我们 add 一下 the numbers 然后 写 </think> <answer> 8 </answer>"),
        "long_paragraph": graded("<think> " + "so 3 + 5 = 8. " * 30 + "</think> <answer> 8 </answer>"),
        "code": graded("<think> ```\n3 + 5\n``` </think> <answer> 8 </answer>"),
    }
    assert {reason: drop_reason(s, EXAMPLE, cfg) for reason, s in cases.items()} == {r: r for r in cases}
    assert drop_reason(graded(), EXAMPLE, cfg) is None


def test_selection_keeps_the_best_verified_distinct_samples() -> None:
    other = "<think> 3 and 5 make 8 apples in all. </think> <answer> 8 </answer>"  # Jaccard 0.31 to CLEAN
    reworded = CLEAN.replace("Tom", "He")  # Jaccard 0.81 to CLEAN
    group = [graded(correct=False, index=0), graded(index=1, score=0.5), graded(CLEAN + " ", index=2),
             graded(other, index=3, tokens=25), graded(reworded, index=4, tokens=30)]
    # Best first: index 2 (top score, then shortest), so index 1 is its exact duplicate.
    assert select_samples(group, EXAMPLE, config()) == ["incorrect", "duplicate", None, "surplus", "duplicate"]
    assert select_samples(group, EXAMPLE, config(max_per_prompt=3)) == ["incorrect", "duplicate", None, None,
                                                                        "duplicate"]
    loose = select_samples(group, EXAMPLE, config(max_per_prompt=3, dedup_threshold=1.0))
    assert loose == ["incorrect", "duplicate", None, None, None]
    # A sample kept earlier for the same prompt text counts for near-duplicates too.
    assert select_samples(group[2:3], EXAMPLE, config(), kept_before=[CLEAN]) == ["duplicate"]


def test_pass_rate_band() -> None:
    band = config(pass_rate_band=[0.1, 0.9])
    assert select_samples([graded(index=i) for i in range(4)], EXAMPLE, band)[0] == "too_easy"
    hard = [graded(correct=False, index=i) for i in range(19)] + [graded(index=19)]
    assert select_samples(hard, EXAMPLE, band)[-1] == "too_hard"  # 1 in 20 is a pass rate of 0.05
    middle = [graded(index=0), graded(correct=False, index=1)]
    assert select_samples(middle, EXAMPLE, band) == [None, "incorrect"]
    with pytest.raises(ValueError, match="pass_rate_band must be \\[low, high\\]"):
        config(pass_rate_band=[0.9, 0.1])


def test_run_keeps_only_verified_samples_and_counts_every_drop(tiny_teacher: Path, tmp_path: Path) -> None:
    sink = TrackingSink()
    cfg = RejectionConfig(**{"model": str(tiny_teacher), "output_dir": str(tmp_path), **SAMPLING,
                             "max_per_prompt": 2})
    result = run_rejection(cfg, sink)
    assert result.status == "succeeded" and result.dataset == str(tmp_path / "dataset.jsonl")
    rows = read_sft_rows(result.dataset)
    assert rows and all(has_letter_a(r["completion"], {}) == 1.0 for r in rows)
    assert all(r["prompt"].startswith("A conversation") for r in rows)
    # The stop string that ended a completion is put back: SFT must learn to write it.
    stopped = [r for r in sink.rollout_records if r.metadata["kept"] and r.finish_reason == "stop"]
    assert stopped and all(row["completion"].endswith("e") for row in rows)
    stats = [json.loads(line) for line in (tmp_path / "rejection_stats.jsonl").read_text().splitlines()]
    assert len(stats) == 6 and sum(s["kept"] for s in stats) == len(rows)
    m = result.metrics
    assert m["rejection/kept"] == len(rows) and m["rejection/samples"] == 24
    assert m["rejection/kept"] + sum(m[f"rejection/dropped/{r}"] for r in DROP_REASONS) == 24
    assert m["rejection/dropped/incorrect"] > 0
    kept = [r for r in sink.rollout_records if r.metadata["kept"]]
    assert len(sink.rollout_records) == 24 and len(kept) == len(rows) and all(r.reward == 1.0 for r in kept)
    assert all(r.metadata["drop_reason"] in DROP_REASONS for r in sink.rollout_records if not r.metadata["kept"])
    assert sink.metric_points == [(0, m)]


def test_a_run_that_keeps_nothing_writes_no_dataset(tiny_teacher: Path, tmp_path: Path) -> None:
    cfg = RejectionConfig(**{"model": str(tiny_teacher), "output_dir": str(tmp_path), **SAMPLING,
                             "num_prompts": 2, "pass_rate_band": [0.99, 1.0]})
    result = run_rejection(cfg, TrackingSink())
    assert result.status == "succeeded" and result.dataset is None
    assert not (tmp_path / "dataset.jsonl").exists() and result.metrics["rejection/kept"] == 0
