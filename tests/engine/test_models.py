"""Loading models (LoRA too), architecture summaries and checkpoints."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.backends import make_generator
from engine.checkpoint import load_checkpoint, restore_rng, save_checkpoint
from engine.generation import SamplingParams
from engine.models import load_model, load_tokenizer, model_summary
from engine.starter import StarterRecipe, model_config


def _moe_config(tokenizer) -> object:
    return model_config(StarterRecipe(arch="moe"), tokenizer)


def test_summary_of_the_moe_starter(tiny_model_and_tokenizer: tuple) -> None:
    _, tokenizer = tiny_model_and_tokenizer
    summary = model_summary(_moe_config(tokenizer))
    assert summary["text"] == "4 layers: 1 dense, 3 MoE, 8 routed experts, top-2, 1 shared"
    assert summary["architecture"] == "DeepseekV3ForCausalLM"
    assert (summary["dense_layers"], summary["moe_layers"], summary["routed_experts"]) == (1, 3, 8)
    assert 500_000 < summary["parameters"] < 2_000_000


def test_summary_of_a_dense_model(tiny_model_and_tokenizer: tuple) -> None:
    model, _ = tiny_model_and_tokenizer
    summary = model_summary(model)
    assert summary["text"] == "2 layers, dense"
    assert summary["parameters"] == sum(p.numel() for p in model.parameters())
    assert summary["architecture"] == "LlamaForCausalLM"


def test_summary_reads_other_moe_conventions() -> None:
    from transformers import MixtralConfig, Qwen2MoeConfig

    mixtral = MixtralConfig(num_hidden_layers=2, num_local_experts=4, num_experts_per_tok=2)
    assert model_summary(mixtral)["text"] == "2 layers: 0 dense, 2 MoE, 4 routed experts, top-2"
    qwen = Qwen2MoeConfig(num_hidden_layers=4, num_experts=8, num_experts_per_tok=2, decoder_sparse_step=2,
                          hidden_size=64, intermediate_size=64, moe_intermediate_size=32, vocab_size=100,
                          shared_expert_intermediate_size=32, num_attention_heads=4, num_key_value_heads=4)
    assert model_summary(qwen)["text"] == "4 layers: 2 dense, 2 MoE, 8 routed experts, top-2, 1 shared"


def test_moe_model_generates_with_true_logprobs(tiny_model_and_tokenizer: tuple) -> None:
    _, tokenizer = tiny_model_and_tokenizer
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(_moe_config(tokenizer)).eval()
    [s] = make_generator("torch", model, tokenizer).generate(["User: hi\nAssistant:"], 1,
                                                               SamplingParams(max_new_tokens=6, seed=0))
    ids = torch.tensor([s.prompt_ids + s.completion_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0], -1)
    expected = [logp[len(s.prompt_ids) - 1 + i, t].item() for i, t in enumerate(s.completion_ids)]
    assert np.allclose(s.logprobs, expected, atol=1e-4)


def test_load_model_with_lora_trains_only_the_adapter(tiny_starter: Path) -> None:
    model = load_model(tiny_starter, lora={"r": 4, "alpha": 8})
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert load_tokenizer(tiny_starter).pad_token == "<|pad|>"
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_model(tiny_starter, dtype="int3")


@dataclass
class _StageConfig:
    lr: float = 1e-3
    group_size: int = 4


def test_checkpoint_round_trip_restores_model_and_state(tmp_path: Path, tiny_model_and_tokenizer: tuple) -> None:
    model, tokenizer = tiny_model_and_tokenizer
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    batch = torch.tensor([tokenizer("Tom has 3 apples.")["input_ids"]])
    model.train()
    model(input_ids=batch, labels=batch).loss.backward()
    optimizer.step()
    scheduler.step()
    model.eval()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    record = save_checkpoint(tmp_path / "ckpt", model, tokenizer, step=7, optimizer=optimizer, scheduler=scheduler,
                             data_state={"epoch": 1, "position": 42}, config=_StageConfig())
    expected_draws = (random.random(), np.random.rand(), torch.rand(1).item())
    assert record.step == 7 and record.path == str(tmp_path / "ckpt")
    assert record.summary["text"] == "2 layers, dense"

    loaded, loaded_tokenizer, state = load_checkpoint(tmp_path / "ckpt")
    with torch.no_grad():
        assert torch.allclose(model(input_ids=batch).logits, loaded(input_ids=batch).logits, atol=1e-6)
    assert loaded_tokenizer("Tom")["input_ids"] == tokenizer("Tom")["input_ids"]
    assert (state.step, state.data_state, state.config) == (7, {"epoch": 1, "position": 42}, {"lr": 1e-3, "group_size": 4})
    fresh = torch.optim.AdamW(loaded.parameters(), lr=1e-3)
    fresh.load_state_dict(state.optimizer)
    assert fresh.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    assert state.scheduler["last_epoch"] == 1
    restore_rng(state.rng)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected_draws


def test_saving_again_replaces_the_checkpoint_atomically(tmp_path: Path, tiny_model_and_tokenizer: tuple) -> None:
    model, tokenizer = tiny_model_and_tokenizer
    save_checkpoint(tmp_path / "ckpt", model, tokenizer, step=1)
    save_checkpoint(tmp_path / "ckpt", model, tokenizer, step=2)
    assert load_checkpoint(tmp_path / "ckpt")[2].step == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary or old directories left


def test_a_lora_checkpoint_holds_merged_weights_and_the_adapter(tmp_path: Path, tiny_starter: Path) -> None:
    model = load_model(tiny_starter, lora={"r": 2})
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.01)  # make the adapter change the outputs
    batch = torch.tensor([[5, 6, 7, 8]])
    save_checkpoint(tmp_path / "ckpt", model, load_tokenizer(tiny_starter), step=1)
    assert (tmp_path / "ckpt" / "adapter" / "adapter_config.json").exists()
    loaded, _, _ = load_checkpoint(tmp_path / "ckpt")
    assert not hasattr(loaded, "peft_config")
    with torch.no_grad():
        assert torch.allclose(model(input_ids=batch).logits, loaded(input_ids=batch).logits, atol=1e-5)
