"""The GRPO stage end to end on a tiny random Qwen2 (CPU, a few seconds per run)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.behaviours import NAMES
from engine.events import RecordingSink
from engine.grpo import GRPOConfig, run_grpo
from tests.engine.tiny_lm import build_tiny_model, letter_a

torch.set_num_threads(1)



class StreamingSink(RecordingSink):
    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__()
        self.streamed: list[tuple[str, str, bool]] = []
        self.progress_calls: list[tuple[int, int, float | None]] = []
        self.stop_after = stop_after

    def tokens(self, stream_id: str, text: str, *, step: int, prompt: str, done: bool = False) -> None:
        self.streamed.append((stream_id, text, done))

    def progress(self, step: int, total: int, *, eta_s: float | None = None) -> None:
        self.progress_calls.append((step, total, eta_s))

    def should_stop(self) -> bool:
        return self.stop_after is not None and len(self.metric_points) >= self.stop_after


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def make_config(model: Path, out: Path, **kw: Any) -> GRPOConfig:
    base = dict(model=str(model), output_dir=str(out), task="arithmetic", train_examples=24, eval_examples=4,
                rewards={"task": 1.0, "letter_a": 1.0}, group_size=4, prompts_per_step=2, max_new_tokens=8,
                steps=3, micro_batch_size=3, learning_rate=3e-3, seed=1, stream_samples=2, eval_every=0)
    base.update(kw)
    return GRPOConfig(**base)


def run(config: GRPOConfig, sink: RecordingSink | None = None, **kw: Any) -> Any:
    return run_grpo(config, sink or StreamingSink(), reward_functions={"letter_a": letter_a}, **kw)


def weights(path: str | Path) -> dict[str, torch.Tensor]:
    from engine.checkpoint import load_checkpoint

    model, _, _ = load_checkpoint(path)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_run_trains_reports_and_checkpoints(tiny_model: Path, tmp_path: Path) -> None:
    sink = StreamingSink()
    result = run(make_config(tiny_model, tmp_path, steps=2, save_every=1), sink)
    assert result.status == "succeeded" and result.step == 2
    steps = [s for s, m in sink.metric_points if "loss" in m]
    assert steps == [1, 2]
    metrics = sink.metric_points[0][1]
    for key in ("reward/mean", "reward/task/mean", "reward/letter_a/std", "accuracy", "response_length/mean",
                "response_length/max", "clip_ratio", "entropy", "frac_zero_std_groups", "lr", "loss",
                "grad_norm", "step_time", "tokens_per_s"):
        assert key in metrics and math.isfinite(metrics[key]), key
    assert "eval/accuracy" in sink.metric_points[-1][1]
    assert len(sink.rollout_records) == 2 * 8
    record = sink.rollout_records[0]
    assert set(record.rewards) == {"task", "letter_a"} and record.prompt.startswith("A conversation")
    assert {r.sample_index for r in sink.rollout_records[:4]} == {0, 1, 2, 3}
    assert any(done for _, _, done in sink.streamed) and {s for s, _, _ in sink.streamed} <= {"1-0", "1-1", "2-0", "2-1"}
    assert [c[:2] for c in sink.progress_calls] == [(1, 2), (2, 2)] and sink.progress_calls[-1][2] == 0
    assert [c.step for c in sink.checkpoints] == [1, 2]
    # Parameters moved, and the checkpoint holds the trained weights.
    from engine.models import load_model

    before = load_model(str(tiny_model), dtype="float32", device="cpu").state_dict()
    after = weights(result.checkpoint)
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_resume_matches_uninterrupted_run(tiny_model: Path, tmp_path: Path) -> None:
    config = make_config(tiny_model, tmp_path / "full", steps=4, save_every=2, beta=0.05, ref_refresh_steps=3)
    full = run(config)
    resumed = run(replace(config, output_dir=str(tmp_path / "resumed")), resume_from=tmp_path / "full" / "checkpoint-2")
    assert resumed.status == "succeeded" and resumed.step == 4
    losses = {int(h["step"]): h["loss"] for h in full.history}
    assert [h["step"] for h in resumed.history] == [3.0, 4.0]
    for h in resumed.history:
        assert h["loss"] == pytest.approx(losses[int(h["step"])], rel=1e-5, abs=1e-7)
        assert h["kl"] >= 0
    a, b = weights(full.checkpoint), weights(resumed.checkpoint)
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_stop_request_saves_and_cancels(tiny_model: Path, tmp_path: Path) -> None:
    sink = StreamingSink(stop_after=1)
    result = run(make_config(tiny_model, tmp_path), sink)
    assert result.status == "cancelled" and result.step == 1
    assert result.checkpoint == str(tmp_path / "checkpoint-1") and Path(result.checkpoint).is_dir()
    assert [c.step for c in sink.checkpoints] == [1]


def test_micro_batch_size_does_not_change_the_update(tiny_model: Path, tmp_path: Path) -> None:
    for loss_type in ("dapo", "grpo", "dr_grpo"):
        results = [run(make_config(tiny_model, tmp_path / f"{loss_type}{mb}", steps=1, micro_batch_size=mb,
                                   loss_type=loss_type, eval_examples=0)) for mb in (8, 3)]
        one, many = (r.history[0] for r in results)
        assert one["loss"] == pytest.approx(many["loss"], rel=1e-4, abs=1e-6)
        assert one["grad_norm"] == pytest.approx(many["grad_norm"], rel=1e-4)


def test_sharing_the_prompt_cache_or_packing_gives_the_same_update(tiny_model: Path, tmp_path: Path) -> None:
    layouts = [{"batch_layout": "grouped"}, {"batch_layout": "padded"}, {"batch_layout": "packed"}]
    results = [run(make_config(tiny_model, tmp_path / str(i), steps=1, eval_examples=0, beta=0.1, num_iterations=2,
                               old_logprobs="recompute", **layout)) for i, layout in enumerate(layouts)]
    shared, plain, packed = (r.history[0] for r in results)
    for key in ("loss", "grad_norm", "entropy", "kl"):
        assert shared[key] == pytest.approx(plain[key], rel=1e-4, abs=1e-6), key
        assert packed[key] == pytest.approx(plain[key], rel=1e-4, abs=1e-6), key


def test_old_logprobs_from_the_sampler_give_the_update_a_forward_pass_gives(tiny_model: Path, tmp_path: Path
                                                                              ) -> None:
    """Three updates on one batch: the torch sampler's log-probs (fp32, temperature 1) stand
    in for the old policy's forward pass and the weights come out the same."""
    from transformers import AutoModelForCausalLM

    results = [run(make_config(tiny_model, tmp_path / source, steps=1, num_iterations=3, eval_examples=0,
                               old_logprobs=source)) for source in ("sampler", "recompute")]
    fast, slow = (AutoModelForCausalLM.from_pretrained(r.checkpoint) for r in results)
    for (name, a), b in zip(fast.state_dict().items(), slow.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name
    assert results[0].history[0]["time/reference"] < results[1].history[0]["time/reference"]


@pytest.mark.parametrize("variant", [
    {"loss_type": "cispo"},
    {"importance_sampling_level": "sequence", "loss_type": "grpo"},
    {"tis_cap": 2.0, "tis_mode": "mask"},
])
def test_newer_objectives_train_and_log_the_sampler_mismatch(tiny_model: Path, tmp_path: Path, variant: dict) -> None:
    result = run(make_config(tiny_model, tmp_path, steps=2, eval_examples=0, **variant))
    assert result.status == "succeeded"
    for h in result.history:
        assert math.isfinite(h["loss"]) and h["grad_norm"] > 0
        # The torch sampler in fp32 is the trainer up to rounding: no mismatch to correct.
        assert 0 <= h["mismatch/kl"] < 1e-6 and h["tis/capped"] == 0
        assert all(h[f"time/{part}"] >= 0 for part in ("generate", "score", "reference", "forward_backward",
                                                       "optimizer"))
        assert h["time/generate"] + h["time/forward_backward"] <= h["step_time"]


def test_variants_run(tiny_model: Path, tmp_path: Path) -> None:
    config = make_config(tiny_model, tmp_path, steps=2, num_iterations=2, dynamic_sampling=True,
                         mask_truncated_completions=True, scale_rewards="none", epsilon_high=0.28,
                         loss_type="grpo", eval_examples=0, lr_schedule="cosine", warmup_steps=1)
    result = run(config)
    assert result.status == "succeeded"
    assert all(math.isfinite(h["loss"]) for h in result.history)
    assert result.history[0]["lr"] == pytest.approx(3e-3 / 2)  # first of 1 warm-up step


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"group_size": 1}, "group_size must be at least 2: GRPO compares samples within a group"),
        ({"ref_refresh_steps": 5}, "ref_refresh_steps needs beta > 0"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"loss_type": "ppo"}, "grpo, bnpo, dapo, dr_grpo"),
        ({"scale_rewards": "std"}, "group, batch, none"),
        ({"task": None}, "exactly one of task or dataset"),
        ({"task": None, "dataset": "x.jsonl"}, "The `task` reward needs a built-in task"),
        ({"lr_schedule": "step"}, "constant, linear, cosine"),
        ({"epsilon_low": 1.0}, "epsilon_low must be in"),
    ],
)
def test_config_rejects_bad_combinations(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GRPOConfig(**kwargs)


def test_config_from_dict_names_unknown_keys_and_round_trips() -> None:
    with pytest.raises(ValueError, match=r"group_sizes \(did you mean group_size\?\)"):
        GRPOConfig.from_dict({"group_sizes": 4})
    config = GRPOConfig(group_size=4, rewards={"format": 1.0}, micro_batch_size=16)
    assert GRPOConfig.from_dict(config.to_dict()) == config
    assert config.batch_size == 32 and config.grad_accumulation_steps == 2
    assert all(GRPOConfig.help().values())


@pytest.mark.parametrize("arch", ["dense", "moe"])
def test_grpo_steps_on_the_starter_architectures(arch: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A cheap starter (3 pretraining steps) of each architecture goes through GRPO."""
    from engine.starter import StarterRecipe, ensure_starter

    recipe = StarterRecipe(arch=arch, steps=3, tokenizer_documents=1000, batch_size=4, seq_len=128, threads=1)
    model = ensure_starter(arch, data_dir=tmp_path_factory.mktemp(f"starter-{arch}"), recipe=recipe)
    out = tmp_path_factory.mktemp(f"grpo-{arch}")
    sink = StreamingSink()
    config = make_config(model, out, steps=2, rewards={"format": 0.5, "task": 1.0, "letter_a": 1.0},
                         max_new_tokens=12, eval_examples=2)
    result = run(config, sink)
    assert result.status == "succeeded" and result.step == 2
    assert all(math.isfinite(h["loss"]) for h in result.history if "loss" in h)
    assert set(sink.rollout_records[0].rewards) == {"format", "task", "letter_a"}
    summary = sink.checkpoints[-1].summary
    assert (summary["moe_layers"] > 0) == (arch == "moe")
    trained = next(m for _, m in sink.metric_points if "loss" in m)
    assert ("moe/layer1/imbalance" in trained) == (arch == "moe")  # the experts' load, drawn as curves
    if arch == "moe":
        assert trained["moe/layer1/imbalance"] >= 1.0 and sum(
            v for k, v in trained.items() if k.startswith("moe/layer1/expert")) > 0
    before = weights(model)
    after = weights(result.checkpoint)
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_grpo_trains_on_a_reasoning_gym_task(tiny_model: Path, tmp_path: Path) -> None:
    config = make_config(tiny_model, tmp_path / "gym", task="reasoning_gym:basic_arithmetic",
                         task_options={"min_terms": 2, "max_terms": 2}, rewards={"format": 0.5, "task": 1.0}, steps=1)
    sink = StreamingSink()
    result = run_grpo(config, sink)
    assert result.status == "succeeded"
    names = {name for _, values in sink.metric_points for name in values}
    assert {"reward/task/mean", "accuracy", "behaviour/self_verification", "behaviour/truncated"} <= names
    assert sink.rollout_records and all(r.prompt and r.reference for r in sink.rollout_records)
    assert all(set(r.metadata["behaviours"]) <= set(NAMES) for r in sink.rollout_records)
    truncated = [r for r in sink.rollout_records if r.finish_reason == "length"]
    assert all("truncated" in r.metadata["behaviours"] for r in truncated)


def half_flat(completion: str, example: dict) -> float:
    """No signal for every other prompt (all its samples score 0); for the rest, the
    parity of the completion's length."""
    import zlib

    return 0.0 if zlib.crc32(example["text"].encode()) % 2 else float(len(completion) % 2)


@pytest.mark.parametrize("refills", [3, 0])
def test_dynamic_sampling_refills_the_batch_with_groups_that_carry_signal(tiny_model: Path, tmp_path: Path,
                                                                          refills: int) -> None:
    """DAPO: groups whose rewards are all equal are replaced by newly sampled ones (up to
    max_refills more rounds) so the update trains on prompts_per_step groups with signal;
    with no refills they are only left out. Every sampled completion is still stored."""
    config = make_config(tiny_model, tmp_path, steps=4, prompts_per_step=2, group_size=4, rewards={"half": 1.0},
                         dynamic_sampling=True, max_refills=refills, eval_examples=0, train_examples=64)
    sink = StreamingSink()
    result = run_grpo(config, sink, reward_functions={"half": half_flat})
    per_step: dict[int, int] = {}
    for r in sink.rollout_records:
        per_step[r.step] = per_step.get(r.step, 0) + 1
    for h in result.history:
        rounds = int(h["sampling_rounds"])
        assert 1 <= rounds <= refills + 1
        assert per_step[int(h["step"])] == rounds * 2 * 4  # every round's completions, stored
        if refills == 0:
            assert h["groups_trained"] == round(2 * (1 - h["frac_zero_std_groups"]))
        elif rounds <= refills:  # it stopped early: the batch was full
            assert h["groups_trained"] == 2
    if refills:
        assert any(h["sampling_rounds"] > 1 for h in result.history)


def test_a_reasoning_gym_task_is_scored_by_its_own_library(tiny_model: Path, tmp_path: Path) -> None:
    """Every stored reward equals reasoning-gym's score_answer on the completion's answer
    (the run's scorer grades the examples its task made)."""
    from reasoning_gym import create_dataset

    from engine.tasks.base import extract_answer

    config = make_config(tiny_model, tmp_path, task="reasoning_gym:basic_arithmetic", steps=1,
                         task_options={"min_terms": 2, "max_terms": 2}, rewards={"task": 1.0})
    sink = StreamingSink()
    run(config, sink)
    library = create_dataset("basic_arithmetic", size=1, seed=1, min_terms=2, max_terms=2)
    assert not any("reward task" in line.lower() and "error" in line.lower() for line in sink.lines)
    for record in sink.rollout_records:
        entry = {"answer": record.reference}
        answer = extract_answer(record.completion)
        expected = 0.0 if answer is None else library.score_answer(answer=answer, entry=entry)
        assert record.rewards["task"] == pytest.approx(expected)
    # The reference answer itself scores 1.0 through the same scorer a run uses.
    from engine.scoring import RewardScorer
    from engine.tasks import get

    task = get("reasoning_gym:basic_arithmetic", min_terms=2, max_terms=2)
    [example] = task.examples("train", 1)
    other = RewardScorer({"task": 1.0}, get("reasoning_gym:basic_arithmetic", min_terms=2, max_terms=2), print)
    assert other.score(f"<think>x</think> <answer>{example['answer']}</answer>", example)[0] == 1.0


def test_a_curriculum_moves_up_a_level_when_accuracy_holds_and_resumes_there(tiny_model: Path, tmp_path: Path) -> None:
    def solved(completion: str, example: dict) -> float:
        return float(not example["id"].endswith("-3"))  # every prompt but one in ten-ish counts as solved

    rewards = {"letter_a": letter_a, "solved": solved}
    config = make_config(tiny_model, tmp_path / "full", task="reasoning_gym:basic_arithmetic", steps=4, save_every=1,
                         rewards={"task": 1.0, "letter_a": 1.0}, accuracy_reward="solved",
                         curriculum={"promote_at": 0.6, "window": 2})
    sink = StreamingSink()
    result = run_grpo(config, sink, reward_functions=rewards)
    levels = [h["curriculum/level"] for h in result.history if "curriculum/level" in h]
    accuracies = [h["accuracy"] for h in result.history if "curriculum/level" in h]
    expected, level, recent = [], 0, []
    for a in accuracies:  # each step trains at the level earned by the steps before it
        expected.append(float(level))
        recent = [*recent, a][-2:]
        if len(recent) == 2 and sum(recent) / 2 >= 0.6:
            level, recent = level + 1, []
    assert levels == expected and max(levels) >= 1, (levels, accuracies)
    promoted = next(line for line in sink.lines if "curriculum level 1 of 4" in line)
    assert "max_terms=3" in promoted and "max_digits=2" in promoted  # the library's next level
    resumed = run_grpo(replace(config, output_dir=str(tmp_path / "resumed")), StreamingSink(),
                       reward_functions=rewards, resume_from=tmp_path / "full" / "checkpoint-2")
    assert [h["curriculum/level"] for h in resumed.history] == levels[2:]
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in result.history[2:]], rel=1e-5,
                                                                  abs=1e-7)


@pytest.mark.parametrize(("curriculum", "task", "match"), [
    ({"window": 5}, "countdown", "curriculum needs a task with difficulty levels"),
    ({"promote_at": 1.5}, "reasoning_gym:basic_arithmetic", "curriculum.promote_at must be an accuracy in"),
    ({"pace": 2}, "reasoning_gym:basic_arithmetic", "curriculum has unknown keys pace"),
    ({}, "humaneval", "task humaneval is an evaluation set"),
])
def test_a_bad_curriculum_is_refused_naming_the_rule(curriculum: dict, task: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GRPOConfig(task=task, curriculum=curriculum)


def test_a_runs_own_detector_is_a_curve_and_marks_its_samples(tiny_model: Path, tmp_path: Path) -> None:
    sink = StreamingSink()
    run(make_config(tiny_model, tmp_path, steps=1, detectors={"vowel": "[aeiou]", "never": "zzzzqqq"}), sink)
    metrics = next(m for _, m in sink.metric_points if "loss" in m)
    marked = [r for r in sink.rollout_records if "vowel" in r.metadata["behaviours"]]
    assert metrics["behaviour/vowel"] == pytest.approx(len(marked) / len(sink.rollout_records))
    assert marked and all(any(v in r.completion.lower() for v in "aeiou") for r in marked)
    assert metrics["behaviour/never"] == 0.0


def test_token_views_hold_each_tokens_text_and_log_prob(tiny_model: Path, tmp_path: Path) -> None:
    sink = StreamingSink()
    run(make_config(tiny_model, tmp_path, steps=2, token_details=3), sink)
    for step in (1, 2):
        records = [r for r in sink.rollout_records if r.step == step]
        viewed = [r for r in records if "token_view" in r.metadata]
        assert len(viewed) == 3 and viewed == records[:3]
        for r in viewed:
            view = r.metadata["token_view"]
            assert len(view["pieces"]) == len(view["logprobs"]) == r.token_count
            assert "".join(view["pieces"]) == r.completion  # the pieces add up to the stored text
            assert all(lp <= 0 for lp in view["logprobs"])
    assert GRPOConfig(token_details=0).token_details == 0


def test_each_evaluation_reports_the_reward_hacking_alarm(tiny_model: Path, tmp_path: Path) -> None:
    from engine.metrics import reward_hacking

    sink = StreamingSink()
    result = run(make_config(tiny_model, tmp_path, steps=3, eval_every=1), sink)
    alarms = [(s, m["alarm/reward_hacking"]) for s, m in sink.metric_points if "alarm/reward_hacking" in m]
    assert [s for s, _ in alarms] == [1, 2]  # every evaluation but the baseline and the final one
    for step, value in alarms:  # as the pure function reads the history up to that step
        upto = [h for h in result.history if h["step"] <= step]
        assert value == float(reward_hacking(upto))


def test_the_arithmetic_task_has_a_curriculum_of_its_difficulties(tiny_model: Path, tmp_path: Path) -> None:
    from engine import tasks

    task = tasks.get("arithmetic")
    assert task.levels() == 4 and task.level_options(0) == {"difficulty": 1}
    easy, hard = task.examples("train", 20, level=0), task.examples("train", 20, level=3)
    assert max(len(e["steps"]) for e in easy) == 1 and min(len(e["steps"]) for e in hard) >= 3  # numbers - 1

    def solved(completion: str, example: dict) -> float:
        return 1.0

    config = make_config(tiny_model, tmp_path, task="arithmetic", steps=3, rewards={"task": 1.0, "letter_a": 1.0},
                         accuracy_reward="solved", curriculum={"promote_at": 0.5, "window": 1})
    sink = StreamingSink()
    result = run_grpo(config, sink, reward_functions={"letter_a": letter_a, "solved": solved})
    assert [h["curriculum/level"] for h in result.history] == [0.0, 1.0, 2.0]
    assert any("curriculum level 1 of 3" in line and "difficulty=2" in line for line in sink.lines)
