"""Expert load of the MoE starter (DeepSeek-V3 style): counts sum to the tokens routed."""

from __future__ import annotations

import pytest
import torch

from engine.moe import expert_load, routers
from engine.starter import StarterRecipe, model_config


@pytest.fixture
def moe(tiny_model_and_tokenizer):
    from transformers import AutoModelForCausalLM

    _, tokenizer = tiny_model_and_tokenizer
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(model_config(StarterRecipe(arch="moe"), tokenizer)).eval()


def test_each_moe_layers_counts_sum_to_its_tokens_times_top_k(moe):
    found = routers(moe)
    assert [layer for layer, _ in found] == [1, 2, 3]  # the first layer is dense
    top_k, experts = found[0][1].top_k, found[0][1].num_experts
    ids = torch.randint(0, 100, (3, 7))
    with expert_load(moe) as load, torch.no_grad():
        moe(input_ids=ids)
    metrics = load.metrics()
    for layer in (1, 2, 3):
        counts = [metrics[f"moe/layer{layer}/expert{j}"] for j in range(experts)]
        assert sum(counts) == 3 * 7 * top_k
        assert metrics[f"moe/layer{layer}/imbalance"] == pytest.approx(max(counts) / (sum(counts) / experts))
        assert 0 < metrics[f"moe/layer{layer}/router_entropy"] <= 1
    with torch.no_grad():
        moe(input_ids=ids)  # outside the block: nothing counted any more
    assert load.metrics() == metrics


def test_replayed_layers_are_not_counted_twice(moe):
    from engine.models import checkpointing_layers, enable_gradient_checkpointing

    enable_gradient_checkpointing(moe)
    ids = torch.randint(0, 100, (2, 5))
    with checkpointing_layers(moe), expert_load(moe) as load:
        moe(input_ids=ids).logits.sum().backward()  # the backward replays every layer
    top_k = routers(moe)[0][1].top_k
    total = sum(v for k, v in load.metrics().items() if k.startswith("moe/layer1/expert"))
    assert total == 2 * 5 * top_k
