"""The vLLM generation backend, run in var/vllm-venv (`make vllm`): it samples like the
torch backend's interface promises and follows the policy's weights after a step.

vLLM pins its own torch and transformers, so it cannot live in the main venv: each
test runs tests/engine/vllm_probe.py with that venv's Python and asserts on what it
reports. Without the venv the tests skip, saying how to build it.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from engine.config import GRPOConfig
from engine.graded_sampling import SamplingConfig

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / "var" / "vllm-venv"
PROBE = Path(__file__).with_name("vllm_probe.py")
TOLERANCE = 1e-4  # fp32 log-probs of the same tokens, vLLM kernels vs transformers


def _vllm_python() -> Path:
    if not list(VENV.glob(".ponder-vllm-*")):
        failed = ROOT / "var" / "vllm-venv.failed"
        reason = failed.read_text().strip() if failed.exists() else "run make vllm"
        pytest.skip(f"vLLM not installed ({VENV.relative_to(ROOT)}): {reason}")
    return VENV / "bin" / "python"


def _probe(mode: str, model: Path, out: Path, timeout: int) -> dict[str, Any]:
    proc = subprocess.run([str(_vllm_python()), str(PROBE), mode, str(model), str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def seen(starter_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _probe("generation", starter_model, tmp_path_factory.mktemp("vllm") / "generation.json", 600)


def _tokens(samples: list[dict[str, Any]]) -> list[tuple[int, int, list[int], str]]:
    return [(s["prompt"], s["sample"], s["ids"], s["finish"]) for s in samples]


def _assert_logprobs_are_the_models(samples: list[dict[str, Any]]) -> None:
    for s in samples:
        assert len(s["logprobs"]) == len(s["ids"]) >= 1
        assert s["logprobs"] == pytest.approx(s["reference"], abs=TOLERANCE)


@pytest.mark.slow
def test_it_samples_n_completions_per_prompt_with_the_models_logprobs(seen: dict[str, Any]) -> None:
    samples = seen["sampled"]
    assert [(s["prompt"], s["sample"]) for s in samples] == [(i, j) for i in range(3) for j in range(3)]
    assert len({tuple(s["ids"]) for s in samples}) > 3  # samples of a prompt differ
    for s in samples:
        assert 1 <= len(s["ids"]) <= 24 and "=" not in s["text"]
        assert s["finish"] == "stop" or len(s["ids"]) == 24
    _assert_logprobs_are_the_models(samples)


@pytest.mark.slow
def test_a_seed_repeats_samples_whatever_prompts_share_the_call(seen: dict[str, Any]) -> None:
    assert _tokens(seen["again"]) == _tokens(seen["sampled"])
    shard = [(p + 1, j, ids, f) for p, j, ids, f in _tokens(seen["shard"])]
    assert shard == _tokens(seen["sampled"])[3:]


@pytest.mark.slow
def test_streamed_text_adds_up_to_each_completion(seen: dict[str, Any]) -> None:
    assert _tokens(seen["streamed_samples"]) == _tokens(seen["sampled"])
    for s in seen["streamed_samples"]:
        assert seen["streamed"].get(f"{s['prompt']}-{s['sample']}", "") == s["text"]


@pytest.mark.slow
def test_greedy_completions_match_the_torch_backend(seen: dict[str, Any]) -> None:
    assert _tokens(seen["greedy"]) == _tokens(seen["torch_greedy"])
    _assert_logprobs_are_the_models(seen["greedy"])
    assert seen["rng_kept"] and seen["threads_settable"]  # starting vLLM leaves the process as it was


@pytest.mark.slow
def test_it_samples_from_new_weights_after_an_optimizer_step(seen: dict[str, Any]) -> None:
    assert _tokens(seen["stepped"]) != _tokens(seen["greedy"])
    assert _tokens(seen["stepped"]) == _tokens(seen["torch_stepped"])
    _assert_logprobs_are_the_models(seen["stepped"])  # the reference is the stepped model
    assert _tokens(seen["restored"]) == _tokens(seen["greedy"])
    assert [s["logprobs"] for s in seen["restored"]] == [s["logprobs"] for s in seen["greedy"]]


@pytest.mark.slow
def test_grpo_samples_with_vllm_from_the_policy_it_trains(starter_model: Path, tmp_path: Path) -> None:
    """Two GRPO steps of a LoRA policy: vLLM serves the merged weights of every step."""
    seen = _probe("grpo", starter_model, tmp_path / "grpo.json", 600)
    assert seen["status"] == "succeeded" and len(seen["history"]) == 2
    for reported in seen["seen"]:  # the engine holds the weights of the step just taken
        _assert_logprobs_are_the_models(reported["greedy"])
    by_step = {r["step"]: [s["logprobs"] for s in r["greedy"]] for r in seen["seen"]}
    assert {1, 2} <= set(by_step) and by_step[1] != by_step[2]


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed in this venv")
@pytest.mark.parametrize("config", [lambda: GRPOConfig(task="arithmetic", generation_backend="vllm"),
                                    lambda: SamplingConfig(model="starter", task="arithmetic", generation_backend="vllm")])
def test_choosing_vllm_without_it_says_how_to_install_it(config: Any) -> None:
    with pytest.raises(ValueError, match=r"generation_backend vllm needs vLLM.*make vllm.*ponder\[vllm\]"):
        config()
