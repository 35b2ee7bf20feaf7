"""The generative judge: its verdict words, its settings, and garbage recorded as an error."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from engine.config import check_judge as check_settings
from engine.judge import Judge, parse_verdict
from engine.scoring import RewardScorer
from tests.engine.tiny_lm import build_tiny_model

torch.set_num_threads(1)


@pytest.mark.parametrize(("text", "verdict"), [
    (" correct", 1.0), (" Incorrect.", 0.0), ("Yes, it matches.", 1.0), (" no", 0.0), ("That is wrong", 0.0),
    ("The answer is right", 1.0), ("  hmm 42 ...", None), ("", None), ("incorrectly formatted", None),
])
def test_the_first_verdict_word_decides(text: str, verdict: float | None) -> None:
    assert parse_verdict(text) == verdict


@pytest.mark.parametrize(("settings", "rule"), [
    ({"max_new_tokens": 8}, "judge.model must name"),
    ({"model": "m", "temperature": 1}, "judge has unknown keys temperature"),
    ({"model": "m", "template": "no slot"}, r"an \{answer\} slot"),
])
def test_bad_settings_are_refused_naming_the_rule(settings: dict, rule: str) -> None:
    with pytest.raises(ValueError, match=rule):
        check_settings(settings)


@pytest.fixture(scope="module")
def garbage_judge(tmp_path_factory: pytest.TempPathFactory) -> Judge:
    return Judge.load({"model": str(build_tiny_model(tmp_path_factory.mktemp("judge") / "m")), "max_new_tokens": 4})


def test_a_judge_that_answers_garbage_is_an_error_not_a_score(garbage_judge: Judge) -> None:
    examples = [{"prompt": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(3)]
    completions = [f"<think>add</think> <answer>{2 * i}</answer>" for i in range(3)]
    results = garbage_judge.batch(completions, examples)
    texts = garbage_judge.last_texts
    assert len(results) == len(texts) == 3
    for (value, error), text in zip(results, texts, strict=True):
        if parse_verdict(text) is None:
            assert math.isnan(value) and error.startswith("the judge gave no verdict")
        else:
            assert value == parse_verdict(text) and error is None
    scorer = RewardScorer({"format": 0.5, "judge": 1.0}, custom={"judge": garbage_judge}, log=lambda _: None)
    scored = scorer.score_many(list(zip(completions, examples, strict=True)))
    notes = scorer.notes(3)
    for (total, comps), note, text in zip(scored, notes, scorer.custom["judge"].last_texts, strict=True):
        assert note["judge"] == text  # what the judge wrote, kept
        if parse_verdict(text) is None:
            assert "judge" not in comps and note["reward_errors"]["judge"].startswith("the judge gave no verdict")
            assert total == pytest.approx(0.5 * comps["format"])  # left out of the total, not scored 0
            assert not scorer.correct(completions[0], examples[0], comps, "judge")
        else:
            assert comps["judge"] == parse_verdict(text)


def test_grpo_with_a_judge_keeps_its_words_and_errors_per_sample(garbage_judge: Judge, tmp_path: Path) -> None:
    from engine.config import GRPOConfig
    from engine.events import RecordingSink
    from engine.grpo import run_grpo

    judge_model = str(build_tiny_model(tmp_path / "judge"))
    config = GRPOConfig(model=str(build_tiny_model(tmp_path / "policy", seed=1)), output_dir=str(tmp_path / "out"),
                        task="arithmetic", train_examples=8, eval_examples=0, eval_every=0, steps=1, group_size=2,
                        prompts_per_step=2, max_new_tokens=6, rewards={"format": 0.5, "judge": 1.0},
                        judge={"model": judge_model, "max_new_tokens": 4})
    sink = RecordingSink()
    assert run_grpo(config, sink).status == "succeeded"
    for r in sink.rollout_records:
        assert "judge" in r.metadata  # its words, beside the rule rewards
        assert ("judge" in r.rewards) != ("judge" in r.metadata.get("reward_errors", {}))
    with pytest.raises(ValueError, match="The judge reward needs judge settings"):
        GRPOConfig(rewards={"judge": 1.0})
