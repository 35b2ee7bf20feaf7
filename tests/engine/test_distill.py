"""Distillation on tiny random Qwen2s: teacher traces, then SFT of a different student."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from engine.distill import DistillConfig, run_distill
from engine.sft import read_sft_rows
from tests.engine.graded_helpers import LENIENT, TrackingSink, has_letter_a, shared_tiny_model

torch.set_num_threads(1)

@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_tiny_model("teacher", tmp_path_factory)


@pytest.fixture(scope="module")
def tiny_student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_tiny_model("student", tmp_path_factory)


def make_config(teacher: Path, student: Path, out: Path, **kw: Any) -> DistillConfig:
    base: dict[str, Any] = dict(
        teacher=str(teacher), student=str(student), output_dir=str(out), num_prompts=6, k=4, max_per_prompt=2,
        max_new_tokens=12, accuracy_reward=LENIENT, rejection={"stop": ["e"], "prompts_per_batch": 3},
        learning_rate=1e-2, batch_size=4, sft={"max_steps": 3}, seed=3)
    return DistillConfig(**{**base, **kw})


def weights(path: str | Path) -> dict[str, torch.Tensor]:
    from engine.checkpoint import load_checkpoint

    model, _, _ = load_checkpoint(path)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_student_learns_the_verified_traces(tiny_teacher: Path, tiny_student: Path, tmp_path: Path) -> None:
    sink = TrackingSink()
    result = run_distill(make_config(tiny_teacher, tiny_student, tmp_path), sink)
    assert result.status == "succeeded" and result.step == 3
    assert result.dataset == str(tmp_path / "traces" / "dataset.jsonl")
    traces = read_sft_rows(result.dataset)
    assert traces and all(has_letter_a(t["completion"], {}) == 1.0 for t in traces)
    # The student's checkpoint loads, and its weights moved away from the student's start.
    assert result.checkpoint == str(tmp_path / "checkpoint-3")
    before, after = weights(tiny_student), weights(result.checkpoint)
    assert {k: v.shape for k, v in before.items()} == {k: v.shape for k, v in after.items()}
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # One sink across both phases: teacher samples and counts at step 0, student training after.
    assert len(sink.rollout_records) == 24 and {r.step for r in sink.rollout_records} == {0}
    steps = [step for step, values in sink.metric_points if "loss" in values]
    assert steps == [1, 2, 3] and sink.metric_points[0][0] == 0 and "rejection/kept" in sink.metric_points[0][1]
    assert {"rejection/kept", "loss"} <= set(result.metrics)
    done = [step for step, _, _ in sink.progress_calls]
    assert done == sorted(done) and sink.progress_calls[-1][:2] == (9, 9)  # 6 prompts + 3 steps
    assert [c.step for c in sink.checkpoints] == [3]


def test_resume_reuses_the_traces(tiny_teacher: Path, tiny_student: Path, tmp_path: Path) -> None:
    config = make_config(tiny_teacher, tiny_student, tmp_path, sft={"max_steps": 4, "save_every": 2})
    stopped = run_distill(config, TrackingSink(stop_after_progress=2 + 2))  # 2 sampling batches, 2 SFT steps
    assert stopped.status == "cancelled" and stopped.step == 2
    sink = TrackingSink()
    resumed = run_distill(config, sink, resume_from=stopped.checkpoint)
    assert resumed.status == "succeeded" and resumed.step == 4
    assert not sink.rollout_records  # the teacher did not sample again
    assert resumed.dataset == stopped.dataset


@pytest.mark.parametrize(("fields", "rule"), [
    ({"student": "same"}, "student must differ from teacher"),
    ({"teacher": ""}, "teacher must name the checkpoint"),
    ({"rejection": {"min_languag": 0.9}}, "min_languag \\(did you mean min_language\\?\\).*`rejection`"),
    ({"sft": {"epochs": 0}}, "epochs must be > 0"),
    ({"k": 0}, "k \\(samples per prompt\\) must be at least 1"),
])
def test_bad_configs_state_the_rule(fields: dict[str, Any], rule: str) -> None:
    base = {"teacher": "same", "student": "other", **fields}
    with pytest.raises(ValueError, match=rule):
        DistillConfig.from_dict(base)
