"""The engine on a CUDA device: sampling, GRPO and SFT where a GPU is present (skipped,
saying so, on CPU-only machines such as CI). Run on a GPU machine with

    python -m pytest tests/engine/test_cuda.py -p no:django
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.backends import make_generator
from engine.config import GRPOConfig, SFTConfig
from engine.events import RecordingSink
from engine.generation import SamplingParams
from engine.grpo import run_grpo
from engine.sft import run_sft
from engine.tasks.templates import r1_zero_prompt
from tests.engine.tiny_lm import build_tiny_model, letter_a

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")

PROMPTS = [r1_zero_prompt("Tom has 3 apples. Tom buys 5 more. How many apples does Tom have now?"),
           r1_zero_prompt("Ann has 9 pens. Ann loses 2. How many pens does Ann have now?")]



@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-cuda") / "model")


def grpo_config(model: Path, out: Path, **kw: Any) -> GRPOConfig:
    base = dict(model=str(model), output_dir=str(out), task="arithmetic", train_examples=24, eval_examples=4,
                rewards={"task": 1.0, "letter_a": 1.0}, group_size=4, prompts_per_step=3, max_new_tokens=8,
                steps=3, micro_batch_size=4, learning_rate=3e-3, seed=1, eval_every=0)
    return GRPOConfig(**{**base, **kw})


def losses(sink: RecordingSink) -> list[float]:
    return [m["loss"] for _, m in sink.metric_points if "loss" in m]


def test_sampling_on_cuda_gives_the_log_probs_of_a_cpu_forward_pass(tiny_starter: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_starter)
    cpu = AutoModelForCausalLM.from_pretrained(tiny_starter).eval()
    gpu = AutoModelForCausalLM.from_pretrained(tiny_starter).to("cuda").eval()
    params = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=24, seed=5)
    samples = make_generator("torch", gpu, tokenizer).generate(PROMPTS, 4, params)
    assert len(samples) == 8
    for s in samples:
        ids = torch.tensor([s.prompt_ids + s.completion_ids])
        with torch.no_grad():
            logp = torch.log_softmax(cpu(input_ids=ids).logits[0].float(), -1)
        start = len(s.prompt_ids) - 1
        expected = [logp[start + i, t].item() for i, t in enumerate(s.completion_ids)]
        assert max(abs(a - b) for a, b in zip(s.logprobs, expected, strict=True)) < 1e-3


def test_grpo_in_float32_on_cuda_takes_the_steps_it_takes_on_the_cpu(tiny_model: Path, tmp_path: Path) -> None:
    cpu_sink, gpu_sink = RecordingSink(), RecordingSink()
    run_grpo(grpo_config(tiny_model, tmp_path / "cpu"), cpu_sink, reward_functions={"letter_a": letter_a})
    run_grpo(grpo_config(tiny_model, tmp_path / "gpu", device="cuda"), gpu_sink,
             reward_functions={"letter_a": letter_a})
    cpu_losses, gpu_losses = losses(cpu_sink), losses(gpu_sink)
    assert len(cpu_losses) == len(gpu_losses) == 3
    # Same seeds, same random streams: the same completions, so the same losses up to
    # float rounding (cuBLAS sums in another order).
    assert all(math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-5) for a, b in zip(cpu_losses, gpu_losses, strict=True))


def test_an_offloaded_reference_gives_the_kl_a_resident_one_gives(tiny_model: Path, tmp_path: Path) -> None:
    """`ref_offload` keeps the reference copy in CPU memory between its passes; the KL
    penalty, and so the run, must not change."""
    sinks = {}
    for offload in (False, True):
        sinks[offload] = RecordingSink()
        run_grpo(grpo_config(tiny_model, tmp_path / str(offload), device="cuda", beta=0.1, ref_offload=offload),
                 sinks[offload], reward_functions={"letter_a": letter_a})
    kls = {k: [m["kl"] for _, m in sink.metric_points if "kl" in m] for k, sink in sinks.items()}
    assert len(kls[True]) == 3 and kls[True][-1] > 0
    assert all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-9) for a, b in zip(kls[False], kls[True], strict=True))


def test_grpo_in_bfloat16_on_cuda_trains_and_saves_a_checkpoint_the_cpu_loads(tiny_starter: Path,
                                                                             tmp_path: Path) -> None:
    from engine.checkpoint import load_checkpoint

    sink = RecordingSink()
    result = run_grpo(grpo_config(tiny_starter, tmp_path / "bf16", device="cuda", dtype="bfloat16", beta=0.04,
                                  rewards={"task": 1.0, "format": 0.5}), sink)
    assert result.status == "succeeded" and result.step == 3
    for _, metrics in sink.metric_points:
        assert all(math.isfinite(v) for v in metrics.values() if isinstance(v, float)), metrics
    assert any("kl" in m for _, m in sink.metric_points)
    trained, _, _ = load_checkpoint(result.checkpoint or "")
    start, _, _ = load_checkpoint(str(tiny_starter))
    before = dict(start.named_parameters())
    assert any(not torch.equal(p.float(), before[n].float()) for n, p in trained.named_parameters())


def test_sft_on_cuda_lowers_the_loss(tiny_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "sft.jsonl"
    rows = [{"prompt": f"{a} plus {b} is", "completion": f" {a + b}."} for a in range(8) for b in range(8)]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    sink = RecordingSink()
    result = run_sft(SFTConfig(model=str(tiny_model), dataset=str(data), output_dir=str(tmp_path / "sft"),
                               device="cuda", dtype="bfloat16", learning_rate=1e-2, batch_size=16,
                               max_steps=30, max_length=32, seed=0), sink)
    assert result.status == "succeeded"
    step_losses = [m["loss"] for _, m in sink.metric_points if "loss" in m]
    assert step_losses[-1] < 0.7 * step_losses[0]


def test_eval_on_cuda_scores_the_same_samples_as_on_the_cpu(tiny_starter: Path, tmp_path: Path) -> None:
    from engine.evaluate import EvalConfig, run_eval

    def evaluate(device: str) -> dict[str, Any]:
        config = EvalConfig(model=str(tiny_starter), output_dir=str(tmp_path / device), num_prompts=6, k=4,
                            max_new_tokens=48, seed=3, device=device)
        return run_eval(config, RecordingSink()).metrics

    cpu, gpu = evaluate("cpu"), evaluate("cuda")
    # The same random streams on both devices: the same completions, so the same scores.
    assert cpu["eval/pass@1"] == gpu["eval/pass@1"]
    assert cpu["eval/length_mean"] == gpu["eval/length_mean"]
