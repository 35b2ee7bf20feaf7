"""GRPO on plain Hugging Face checkpoints that are not the starter: random-init Qwen2 and
Llama written with `save_pretrained`, with and without a chat template, with and without
LoRA; LoRA's reference without a second copy; gradient checkpointing; attention choice."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.__main__ import main
from engine.config import GRPOConfig
from engine.events import RecordingSink
from engine.grpo import run_grpo
from engine.models import checkpointing_layers, load_model
from tests.engine.tiny_lm import CHAT_TEMPLATE, build_tiny_model, letter_a

torch.set_num_threads(1)

LORA = {"r": 4, "alpha": 16}


def grpo_config(model: Path, out: Path, **kw: Any) -> GRPOConfig:
    base = dict(model=str(model), output_dir=str(out), task="arithmetic", train_examples=16, eval_examples=0,
                rewards={"task": 1.0, "letter_a": 1.0}, group_size=4, prompts_per_step=2, max_new_tokens=8,
                steps=3, micro_batch_size=4, learning_rate=3e-2, seed=3, eval_every=0, warmup_steps=0)
    return GRPOConfig(**{**base, **kw})


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("qwen2") / "model", arch="qwen2")


@pytest.mark.parametrize(("arch", "chat", "lora"), [("qwen2", False, None), ("qwen2", True, LORA),
                                                    ("llama", True, None), ("llama", False, LORA)])
def test_grpo_through_the_cli_on_a_plain_checkpoint(arch: str, chat: bool, lora: dict | None, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    model = build_tiny_model(tmp_path / "model", arch=arch, chat_template=CHAT_TEMPLATE if chat else None)
    letters = tmp_path / "letters.py"  # a reward random completions differ on, so every step has signal
    letters.write_text("def reward(completion, example):\n    return completion.count('a') / 4\n")
    config = {"model": str(model), "task": "arithmetic", "train_examples": 8, "eval_examples": 0, "group_size": 4,
              "prompts_per_step": 2, "steps": 2, "max_new_tokens": 8, "eval_every": 0, "lora": lora,
              "learning_rate": 1e-2, "warmup_steps": 0, "beta": 0.01 if lora else 0.0,
              "custom_rewards": {"letters": str(letters)}, "rewards": {"task": 1.0, "letters": 1.0}}
    (tmp_path / "grpo.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    assert main(["grpo", "--config", str(tmp_path / "grpo.json"), "--output-dir", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "succeeded"
    rollouts = lines(out / "rollouts.jsonl")
    assert len(rollouts) == 2 * 2 * 4
    # The chat template is used when the tokenizer has one; a base model gets R1-Zero's plain prompt.
    prompt = rollouts[0]["prompt"]
    assert (prompt.startswith("<|system|>") and "<|user|>" in prompt and prompt.endswith("<|assistant|>")) if chat \
        else prompt.startswith("A conversation")
    saved = out / "checkpoint-2"
    assert json.loads((saved / "config.json").read_text())["model_type"] == arch
    assert (saved / "adapter").is_dir() == (lora is not None)
    before, after = state(load_model(model)), state(load_model(saved))
    assert set(before) == set(after)  # merged: the same plain architecture, loadable anywhere
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_lora_reference_is_the_base_model_without_a_second_copy(qwen2: Path, tmp_path: Path) -> None:
    sink = RecordingSink()
    result = run_grpo(grpo_config(qwen2, tmp_path, lora=LORA, beta=0.1), sink, reward_functions={"letter_a": letter_a})
    assert any("adapter off (no second copy)" in line for line in sink.lines)
    kl = [m["kl"] for _, m in sink.metric_points if "kl" in m]
    # Step 1 measures the policy before any update: the fresh adapter adds nothing, so KL is 0.
    assert kl[0] == pytest.approx(0.0, abs=1e-9) and kl[-1] > 1e-6
    assert not (Path(result.checkpoint) / "ref_model.pt").exists()  # nothing to save: the base is in the adapter's model


def test_adapter_off_gives_the_base_models_log_probs(qwen2: Path) -> None:
    policy = load_model(qwen2, lora=LORA)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a trained adapter
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    with torch.no_grad():
        base = load_model(qwen2)(input_ids=ids).logits
        assert not torch.allclose(policy(input_ids=ids).logits, base, atol=1e-4)
        with policy.disable_adapter():
            torch.testing.assert_close(policy(input_ids=ids).logits, base)


def test_lora_run_resumes_from_its_adapter(qwen2: Path, tmp_path: Path) -> None:
    config = grpo_config(qwen2, tmp_path / "full", lora=LORA, beta=0.05, steps=4, save_every=2)
    full = run_grpo(config, RecordingSink(), reward_functions={"letter_a": letter_a})
    resumed = run_grpo(replace(config, output_dir=str(tmp_path / "resumed")), RecordingSink(),
                       reward_functions={"letter_a": letter_a}, resume_from=tmp_path / "full" / "checkpoint-2")
    assert resumed.status == "succeeded" and [h["step"] for h in resumed.history] == [3.0, 4.0]
    losses = {int(h["step"]): h for h in full.history}
    for h in resumed.history:
        assert h["loss"] == pytest.approx(losses[int(h["step"])]["loss"], rel=1e-5, abs=1e-7)
        assert h["kl"] == pytest.approx(losses[int(h["step"])]["kl"], rel=1e-4, abs=1e-9)
    a, b = state(load_model(full.checkpoint)), state(load_model(resumed.checkpoint))
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_gradient_checkpointing_recomputes_layers_and_gives_the_same_update(qwen2: Path, tmp_path: Path) -> None:
    model = load_model(qwen2, gradient_checkpointing=True)
    calls: list[int] = []
    model.model.layers[0].mlp.register_forward_pre_hook(lambda *_: calls.append(1))  # the replay calls it too
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    model(input_ids=ids).logits.sum().backward()
    assert len(calls) == 1  # the policy stays in eval mode: outside the block, nothing is recomputed
    calls.clear()
    with checkpointing_layers(model):
        model(input_ids=ids).logits.sum().backward()
    assert len(calls) == 2  # the forward, and its replay in the backward pass
    assert not model.model.layers[0].training and not model.training  # put back, and no dropout inside

    # The same layout on both sides: auto cannot pick grouped under checkpointing (see `_layout`).
    plain = run_grpo(grpo_config(qwen2, tmp_path / "plain", batch_layout="padded"), RecordingSink(),
                     reward_functions={"letter_a": letter_a})
    checkpointed = run_grpo(grpo_config(qwen2, tmp_path / "ckpt", batch_layout="padded", gradient_checkpointing=True),
                            RecordingSink(), reward_functions={"letter_a": letter_a})
    for h, g in zip(plain.history, checkpointed.history, strict=True):
        assert g["loss"] == pytest.approx(h["loss"], rel=1e-5, abs=1e-7)
    a, b = state(load_model(plain.checkpoint)), state(load_model(checkpointed.checkpoint))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)
    # With the auto layout too: the completions are not replayed without their prompt.
    auto = run_grpo(grpo_config(qwen2, tmp_path / "auto", gradient_checkpointing=True), RecordingSink(),
                    reward_functions={"letter_a": letter_a})
    for h, g in zip(plain.history, auto.history, strict=True):
        assert g["loss"] == pytest.approx(h["loss"], rel=1e-3, abs=1e-6)


def test_attention_implementation_is_the_one_asked_for(qwen2: Path, tmp_path: Path) -> None:
    assert load_model(qwen2, attn_implementation="eager").config._attn_implementation == "eager"
    assert load_model(qwen2).config._attn_implementation == "sdpa"  # auto: the model's default
    result = run_grpo(grpo_config(qwen2, tmp_path, attn_implementation="eager", steps=1), RecordingSink(),
                      reward_functions={"letter_a": letter_a})
    assert result.status == "succeeded"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"attn_implementation": "flash"}, "attn_implementation must be one of auto, eager, sdpa"),
    ({"attn_implementation": "flash_attention_2"}, "flash_attention_2 runs on CUDA only"),
    ({"ref_offload": True}, "ref_offload needs beta > 0"),
    ({"gradient_checkpointing": True, "batch_layout": "grouped"}, "grouped cannot go with gradient_checkpointing"),
])
def test_model_options_reject_what_cannot_run(kwargs: dict[str, Any], match: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=match):
        grpo_config(tmp_path, tmp_path, **kwargs)
