"""The eval stage on a tiny random Qwen2: metrics agree with the per-question results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.evaluate import EvalConfig, consensus, run_eval
from engine.graded_sampling import GradedSample
from engine.metrics import majority_by, pass_at_k
from engine.rewards.math_reward import answers_equal
from tests.engine.graded_helpers import SAMPLING, TrackingSink, shared_tiny_model

torch.set_num_threads(1)

@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_tiny_model("teacher", tmp_path_factory)


def make_config(model: Path, out: Path, **kw: Any) -> EvalConfig:
    return EvalConfig(**{"model": str(model), "output_dir": str(out), "pass_at": [2], **SAMPLING, **kw})


def read_rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "eval_results.jsonl").read_text().splitlines()]


def direct_cons(row: dict[str, Any]) -> float:
    """cons@k recomputed from the written samples: grade the first sample giving the majority."""
    answers = [(" ".join(s["answer"].split()), s) for s in row["samples"] if s["answer"] and s["answer"].strip()]
    if not answers:
        return 0.0
    majority = majority_by([a for a, _ in answers], answers_equal)  # the default vote_by: math
    return float(next(s for a, s in answers if a == majority)["correct"])


def test_metrics_agree_with_the_written_results(tiny_teacher: Path, tmp_path: Path) -> None:
    sink = TrackingSink()
    result = run_eval(make_config(tiny_teacher, tmp_path), sink)
    assert result.status == "succeeded" and result.results == str(tmp_path / "eval_results.jsonl")
    rows = read_rows(tmp_path)
    assert [r["index"] for r in rows] == list(range(6)) and all(len(r["samples"]) == 4 for r in rows)
    correct = [sum(s["correct"] for s in r["samples"]) for r in rows]
    assert all(s["correct"] == ("a" in s["completion"]) for r in rows for s in r["samples"])
    want = {
        "eval/pass@1": sum(c / 4 for c in correct) / 6,
        "eval/pass@k": sum(pass_at_k(4, c, 4) for c in correct) / 6,
        "eval/pass@2": sum(pass_at_k(4, c, 2) for c in correct) / 6,
        "eval/cons@k": sum(direct_cons(r) for r in rows) / 6,
        "eval/length_mean": sum(s["tokens"] for r in rows for s in r["samples"]) / 24,
    }
    assert 0 < want["eval/pass@1"] < 1  # the reward separates samples: the figures mean something
    for key, value in want.items():
        assert result.metrics[key] == pytest.approx(value), key
    assert result.metrics["eval/pass@k"] >= result.metrics["eval/pass@2"] >= result.metrics["eval/pass@1"]
    assert all(r["pass@k"] >= r["pass@1"] for r in rows)
    assert sink.metric_points == [(0, result.metrics)]


def test_samples_become_rollouts_and_progress_reaches_the_end(tiny_teacher: Path, tmp_path: Path) -> None:
    sink = TrackingSink()
    run_eval(make_config(tiny_teacher, tmp_path), sink)
    records = sink.rollout_records
    assert len(records) == 24 and {r.step for r in records} == {0}
    assert {r.sample_index for r in records} == {0, 1, 2, 3}
    assert all(r.reward == float("a" in r.completion) for r in records)
    assert records[0].prompt.startswith("A conversation") and "correct" in records[0].metadata
    assert [(s, t) for s, t, _ in sink.progress_calls] == [(4, 6), (6, 6)]
    assert sink.progress_calls[0][2] is not None  # an ETA after the first batch


def test_stop_then_resume_matches_an_uninterrupted_run(tiny_teacher: Path, tmp_path: Path) -> None:
    full = run_eval(make_config(tiny_teacher, tmp_path / "full"), TrackingSink())
    stopped = run_eval(make_config(tiny_teacher, tmp_path / "part"), TrackingSink(stop_after_progress=1))
    assert stopped.status == "cancelled" and stopped.metrics["eval/questions"] == 4
    resumed = run_eval(make_config(tiny_teacher, tmp_path / "rest"), TrackingSink(), resume_from=tmp_path / "part")
    assert resumed.status == "succeeded"
    assert read_rows(tmp_path / "rest") == read_rows(tmp_path / "full")
    assert resumed.metrics == full.metrics
    with pytest.raises(ValueError, match="fields differ: k"):
        run_eval(make_config(tiny_teacher, tmp_path / "other", k=2), TrackingSink(), resume_from=tmp_path / "part")


def sample(answer: str | None, correct: bool) -> GradedSample:
    return GradedSample(0, "", "", 3, "stop", correct, {}, 0.0, answer)


def test_consensus_groups_answers_that_are_the_same_number() -> None:
    group = [sample("3", False), sample("1/2", True), sample("0.5", True)]
    assert consensus(group) == ("3", 0.0)  # by text: three answers, the first wins the tie
    assert consensus(group, answers_equal) == ("1/2", 1.0)  # 1/2 and 0.5 vote together


def test_consensus_votes_on_normalised_answers() -> None:
    assert consensus([sample("7", False), sample(" 6", True), sample("6 ", True)]) == ("6", 1.0)
    assert consensus([sample("7", False), sample("7", False), sample("6", True)]) == ("7", 0.0)
    assert consensus([sample(None, True), sample("  ", True)]) == (None, 0.0)


@pytest.mark.parametrize(("fields", "rule"), [
    ({"pass_at": [9]}, "Every pass_at value must be between 1 and k=4"),
    ({"task": None}, "Give exactly one of task or dataset"),
    ({"temperature": 0.0}, "Greedy decoding .* use k = 1"),
    ({"task": None, "dataset": "d.jsonl", "accuracy_reward": "task"}, "The `task` reward needs a built-in task"),
    ({"top_p": 0.0}, "top_p must be in \\(0, 1\\]"),
])
def test_bad_configs_state_the_rule(fields: dict[str, Any], rule: str) -> None:
    with pytest.raises(ValueError, match=rule):
        EvalConfig(**{"k": 4, **fields})


def test_from_dict_names_unknown_keys_and_round_trips() -> None:
    with pytest.raises(ValueError, match="temprature \\(did you mean temperature\\?\\)"):
        EvalConfig.from_dict({"temprature": 0.6})
    config = EvalConfig(k=2, pass_at=[1, 2])
    assert EvalConfig.from_dict(config.to_dict()) == config
    assert config.temperature == 0.6 and config.top_p == 0.95 and "pass@k" in EvalConfig.help()["pass_at"]


def test_eval_streams_the_first_prompts_samples_live_and_samples_the_same(tiny_teacher: Path, tmp_path: Path) -> None:
    from engine.events import RecordingSink

    class Streams(RecordingSink):
        def __init__(self) -> None:
            super().__init__()
            self.streamed: dict[str, list[tuple[str, bool]]] = {}

        def tokens(self, stream_id: str, text: str, *, step: int, prompt: str, done: bool = False) -> None:
            self.streamed.setdefault(stream_id, []).append((text, done))

    model = tiny_teacher
    watched, quiet = Streams(), Streams()
    run_eval(EvalConfig(model=str(model), output_dir=str(tmp_path / "a"), **SAMPLING), watched)
    run_eval(EvalConfig(model=str(model), output_dir=str(tmp_path / "b"), **SAMPLING, stream_samples=0), quiet)
    assert set(watched.streamed) == {"batch0-0", "batch0-1", "batch4-0", "batch4-1"}  # 6 prompts, 4 a batch
    assert all(parts[-1] == ("", True) for parts in watched.streamed.values()) and not quiet.streamed
    first = [r for r in watched.rollout_records if r.metadata.get("question_index") == 0 and r.sample_index == 0][0]
    assert "".join(text for text, _ in watched.streamed["batch0-0"]) in first.completion
    assert [r.completion for r in watched.rollout_records] == [r.completion for r in quiet.rollout_records]
