"""Data parallelism: two CPU processes on gloo train exactly like one process on the same
global batch (per-step losses and final weights), and stop together."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from engine.config import GRPOConfig, SFTConfig
from engine.distributed import shard_range
from engine.events import RecordingSink
from engine.grpo import run_grpo
from engine.sft import run_sft
from tests.engine.tiny_lm import build_tiny_model, letter_a

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-5



class StopSink(RecordingSink):
    def __init__(self, stop_after: int | None) -> None:
        super().__init__()
        self.stop_after = stop_after

    def should_stop(self) -> bool:
        return self.stop_after is not None and len(self.metric_points) >= self.stop_after


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-ddp") / "model")


def grpo_config(model: Path, out: Path, **kw: Any) -> dict[str, Any]:
    # 3 prompts on 2 ranks: uneven shards (2 groups + 1); micro-batches of 3 cut groups;
    # batch-scaled advantages and the token-level loss need the global rewards and counts.
    base = dict(model=str(model), output_dir=str(out), task="arithmetic", train_examples=24, eval_examples=3,
                rewards={"task": 1.0, "letter_a": 1.0}, group_size=4, prompts_per_step=3, max_new_tokens=8,
                steps=3, micro_batch_size=3, learning_rate=3e-3, seed=1, eval_every=2, scale_rewards="batch",
                loss_type="dapo", num_iterations=2, warmup_steps=0)
    return {**base, **kw}


def _stage_rank(rank: int, world_size: int, rendezvous: str, stage: str, config: dict[str, Any], report: str,
                stop_after: int | None, resume_from: str | None) -> None:
    """One process of a data-parallel GRPO or SFT run (spawned): reports what its run returned."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    try:
        sink = StopSink(stop_after)
        if stage == "grpo":
            result = run_grpo(GRPOConfig(**config), sink, reward_functions={"letter_a": letter_a},
                              resume_from=resume_from)
        else:
            result = run_sft(SFTConfig(**config), sink, resume_from=resume_from)
        summary = {"status": result.status, "step": result.step, "checkpoint": result.checkpoint,
                   "metrics": sink.metric_points, "rollouts": len(sink.rollout_records)}
        Path(f"{report}.{rank}").write_text(json.dumps(summary))
    finally:
        dist.destroy_process_group()


def spawn_stage(tmp: Path, config: dict[str, Any], stop_after: int | None = None,
               resume_from: str | None = None, stage: str = "grpo") -> list[dict[str, Any]]:
    """Run GRPO (or SFT) in two gloo processes; what each rank saw."""
    run = uuid.uuid4().hex  # a fresh rendezvous file and reports for every spawn
    report = str(tmp / f"report-{run}")
    mp.spawn(_stage_rank, args=(2, str(tmp / f"rendezvous-{run}"), stage, config, report, stop_after, resume_from),
             nprocs=2)
    return [json.loads(Path(f"{report}.{rank}").read_text()) for rank in range(2)]


def weights_model(path: str | Path) -> torch.nn.Module:
    from engine.checkpoint import load_checkpoint

    return load_checkpoint(path)[0]


def weights(path: str | Path) -> dict[str, torch.Tensor]:
    from engine.checkpoint import load_checkpoint

    model, _, _ = load_checkpoint(path)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: str | Path, b: str | Path, start: str | Path) -> None:
    wa, wb, w0 = weights(a), weights(b), weights(start)
    assert any(not torch.equal(wa[k], w0[k]) for k in wa), "training changed nothing"
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=TOLERANCE, rtol=0), name


def test_shards_cover_the_batch_in_rank_order() -> None:
    for n in range(0, 9):
        for size in (1, 2, 3):
            ranges = [shard_range(n, r, size) for r in range(size)]
            assert [i for a, b in ranges for i in range(a, b)] == list(range(n))
            assert max(b - a for a, b in ranges) - min(b - a for a, b in ranges) <= 1


@pytest.fixture(scope="module")
def grpo_single(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, RecordingSink]:
    """The reference: the GRPO run in one process."""
    single = RecordingSink()
    one = run_grpo(GRPOConfig(**grpo_config(tiny_model, tmp_path_factory.mktemp("grpo-one"))), single,
                   reward_functions={"letter_a": letter_a})
    return one, single


def assert_same_metrics(ours: list[Any], expected_points: list[Any]) -> None:
    assert [step for step, _ in ours] == [step for step, _ in expected_points] == [0, 1, 2, 3]
    for (step, mine), (_, expected) in zip(ours, expected_points, strict=True):
        assert set(mine) == set(expected)
        for name in ("loss", "reward/mean", "reward/std", "accuracy", "entropy", "clip_ratio", "grad_norm",
                     "eval/accuracy", "eval/reward", "response_length/mean", "frac_zero_std_groups"):
            if name in expected:
                assert math.isclose(mine[name], expected[name], rel_tol=1e-4, abs_tol=TOLERANCE), \
                    (step, name, mine[name], expected[name])
    assert all(m["grad_norm"] > 1e-3 for _, m in expected_points if "grad_norm" in m)  # it learned


def test_grpo_on_two_processes_matches_one_process_and_stops_together(
        tiny_model: Path, tmp_path: Path, grpo_single: tuple[Any, RecordingSink]) -> None:
    one, single = grpo_single
    # The same run set to 4 steps, stopped by rank 0's sink after step 3 (its 4th metrics point).
    rank0, rank1 = spawn_stage(tmp_path, grpo_config(tiny_model, tmp_path / "two", steps=4), stop_after=4)
    assert rank0["status"] == rank1["status"] == "cancelled" and rank0["step"] == rank1["step"] == 3
    assert rank1["checkpoint"] == rank0["checkpoint"] and rank1["metrics"] == [] and rank1["rollouts"] == 0
    assert rank0["rollouts"] == len(single.rollout_records) == 3 * 3 * 4  # every group, reported once
    assert_same_metrics(rank0["metrics"], single.metric_points[:4])  # step 0 (baseline eval) to step 3
    assert_same_weights(rank0["checkpoint"], one.checkpoint or "", tiny_model)


def sft_base(model: Path, tmp_path: Path) -> dict[str, Any]:
    rows = [{"prompt": f"Q: {a} plus {b}?", "completion": f" A: {a + b}" + " so" * a} for a in range(5) for b in range(4)]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # batch 5 on 2 ranks: 3 + 2 rows of different lengths; the loss is a global token mean.
    return dict(model=str(model), dataset=str(data), learning_rate=1e-2, batch_size=5, micro_batch_size=2,
                max_steps=3, max_length=64, seed=0, eval_fraction=0.2, eval_every=2)


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_sft_under_a_launcher_matches_one_process(launcher: str, tiny_model: Path, tmp_path: Path) -> None:
    base = sft_base(tiny_model, tmp_path)
    one = run_sft(SFTConfig(**base, output_dir=str(tmp_path / "one")), sink := RecordingSink())
    config = tmp_path / "sft.json"
    config.write_text(json.dumps({**base, "launcher": launcher, "nproc_per_node": 2}))
    out = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # CPU processes on gloo
    done = subprocess.run([sys.executable, "-m", "engine", "sft", "--config", str(config), "--output-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "succeeded" and result["step"] == 3
    assert "Data parallel: 2 processes on gloo." in done.stderr
    points = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [p["step"] for p in points if "loss" in p] == [1, 2, 3]  # once, from rank 0
    ours = {p["step"]: p for p in points if "loss" in p}
    theirs = {step: m for step, m in sink.metric_points if "loss" in m}
    for step in (1, 2, 3):
        assert math.isclose(ours[step]["loss"], theirs[step]["loss"], rel_tol=1e-5), step
    eval_ours = [p["eval/loss"] for p in points if "eval/loss" in p]
    eval_theirs = [m["eval/loss"] for _, m in sink.metric_points if "eval/loss" in m]
    assert len(eval_ours) == len(eval_theirs) == 3
    assert all(math.isclose(a, b, rel_tol=1e-5) for a, b in zip(eval_ours, eval_theirs, strict=True))
    assert_same_weights(result["checkpoint"], one.checkpoint or "", tiny_model)


def test_launch_settings_are_checked_with_a_sentence(tiny_model: Path) -> None:
    with pytest.raises(ValueError, match="nproc_per_node=2 needs launcher torchrun or accelerate"):
        SFTConfig(model=str(tiny_model), nproc_per_node=2)
    with pytest.raises(ValueError, match="sharding must be one of none, fsdp, got 'zero3'"):
        SFTConfig(model=str(tiny_model), launcher="torchrun", sharding="zero3")
    with pytest.raises(ValueError, match="sharding fsdp cannot train LoRA adapters"):
        SFTConfig(model=str(tiny_model), sharding="fsdp", lora={"r": 4})
    with pytest.raises(ValueError, match=r"prompts_per_step \(2\) must be at least nproc_per_node \(4\)"):
        GRPOConfig(model=str(tiny_model), launcher="torchrun", nproc_per_node=4, prompts_per_step=2)


def test_grpo_with_fsdp_matches_one_process_and_saves_a_whole_checkpoint(
        tiny_model: Path, tmp_path: Path, grpo_single: tuple[Any, RecordingSink]) -> None:
    from transformers import AutoModelForCausalLM

    one, single = grpo_single
    rank0, rank1 = spawn_stage(tmp_path, grpo_config(tiny_model, tmp_path / "fsdp", sharding="fsdp"))
    assert rank0["status"] == rank1["status"] == "succeeded" and rank0["checkpoint"] == rank1["checkpoint"]
    assert_same_metrics(rank0["metrics"][:4], single.metric_points[:4])
    assert_same_weights(rank0["checkpoint"], one.checkpoint or "", tiny_model)
    # The checkpoint is the whole model, as transformers knows it, with the whole optimizer state.
    loaded = AutoModelForCausalLM.from_pretrained(rank0["checkpoint"])
    assert type(loaded).__name__ == json.loads((Path(rank0["checkpoint"]) / "config.json").read_text())[
        "architectures"][0] == type(weights_model(tiny_model)).__name__
    ours, theirs = (torch.load(Path(p) / "trainer_state.pt", weights_only=True)["optimizer"]
                    for p in (rank0["checkpoint"], one.checkpoint))
    assert ours["param_groups"] == theirs["param_groups"] and ours["state"].keys() == theirs["state"].keys()
    for index, state in theirs["state"].items():
        for key, value in state.items():
            assert torch.allclose(ours["state"][index][key], value, atol=TOLERANCE, rtol=1e-4), (index, key)


def test_sft_with_fsdp_resumes_and_matches_one_process(tiny_model: Path, tmp_path: Path) -> None:
    base = sft_base(tiny_model, tmp_path)
    one = run_sft(SFTConfig(**base, output_dir=str(tmp_path / "one")), sink := RecordingSink())
    fsdp = {**base, "output_dir": str(tmp_path / "fsdp"), "sharding": "fsdp"}
    # Two steps, then a resumed run to step 3: the whole optimizer state goes back into shards.
    first, _ = spawn_stage(tmp_path, {**fsdp, "max_steps": 2}, stage="sft")
    assert first["status"] == "succeeded" and first["checkpoint"].endswith("checkpoint-2")
    rank0, _ = spawn_stage(tmp_path, fsdp, resume_from=first["checkpoint"], stage="sft")
    assert rank0["status"] == "succeeded" and rank0["step"] == 3
    ours = {step: m for step, m in first["metrics"] + rank0["metrics"] if "loss" in m}
    theirs = {step: m for step, m in sink.metric_points if "loss" in m}
    assert sorted(ours) == sorted(theirs) == [1, 2, 3]
    for step in (1, 2, 3):
        assert math.isclose(ours[step]["loss"], theirs[step]["loss"], rel_tol=1e-5), step
        assert math.isclose(ours[step]["grad_norm"], theirs[step]["grad_norm"], rel_tol=1e-4), step
    assert_same_weights(rank0["checkpoint"], one.checkpoint or "", tiny_model)
