"""Expert load of mixture-of-experts models, measured on the forward passes of a block.

    with expert_load(model) as load:          # hooks on every router (DeepSeek-V3, Qwen-MoE style)
        model(input_ids=ids)
    load.metrics()   # {"moe/layer1/expert0": 37.0, ..., "moe/layer1/imbalance": 1.4, "moe/layer1/router_entropy": 0.9}

Per MoE layer: the tokens routed to each expert (each token counts once per expert it is
sent to, so a layer's counts sum to tokens x top-k), the imbalance (the busiest expert's
count over the mean: 1.0 is perfectly even), and the router's entropy over all experts,
normalised to [0, 1] (1: it cannot tell experts apart; near 0: it is sure).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch


def routers(model: torch.nn.Module) -> list[tuple[int, torch.nn.Module]]:
    """(layer index, router) for every MoE router of `model`: a module with `top_k` and
    `num_experts` whose forward returns the chosen experts (transformers' `*TopkRouter`s)."""
    out: list[tuple[int, torch.nn.Module]] = []
    for name, module in model.named_modules():
        if type(module).__name__.endswith(("Router", "TopkRouter")) and hasattr(module, "top_k") and hasattr(
                module, "num_experts"):
            layer = next((int(p) for p in name.split(".") if p.isdigit()), len(out))
            out.append((layer, module))
    return out


@dataclass
class ExpertLoad:
    counts: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (num_experts,) tokens routed
    entropy_sum: dict[int, float] = field(default_factory=dict)
    tokens: dict[int, int] = field(default_factory=dict)
    experts: dict[int, int] = field(default_factory=dict)

    def record(self, layer: int, num_experts: int, output: Any) -> None:
        if _in_backward():  # a checkpointed layer replayed: these tokens were counted on the way forward
            return
        logits, indices = _logits_and_indices(output, num_experts)
        if indices is None:
            return
        counts = torch.bincount(indices.reshape(-1).detach().cpu(), minlength=num_experts)
        self.counts[layer] = self.counts.get(layer, torch.zeros(num_experts, dtype=torch.long)) + counts
        self.experts[layer] = num_experts
        if logits is not None:
            p = torch.softmax(logits.detach().float(), dim=-1)
            entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(-1)  # (tokens,)
            self.entropy_sum[layer] = self.entropy_sum.get(layer, 0.0) + float(entropy.sum())
            self.tokens[layer] = self.tokens.get(layer, 0) + int(entropy.numel())

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for layer, counts in sorted(self.counts.items()):
            for j, n in enumerate(counts.tolist()):
                out[f"moe/layer{layer}/expert{j}"] = float(n)
            mean = float(counts.float().mean())
            out[f"moe/layer{layer}/imbalance"] = float(counts.max()) / mean if mean else 0.0
            if self.tokens.get(layer):
                out[f"moe/layer{layer}/router_entropy"] = (
                    self.entropy_sum[layer] / self.tokens[layer] / math.log(self.experts[layer]))
        return out


def _logits_and_indices(output: Any, num_experts: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The router's logits (the float tensor over all experts) and chosen experts (the integer one)."""
    parts = output if isinstance(output, tuple | list) else (output,)
    tensors = [t for t in parts if isinstance(t, torch.Tensor)]
    indices = next((t for t in tensors if not t.is_floating_point()), None)
    logits = next((t for t in tensors if t.is_floating_point() and t.dim() == 2 and t.shape[-1] == num_experts), None)
    return logits, indices


def _hook(load: ExpertLoad, layer: int, num_experts: int, _module: Any, _inputs: Any, output: Any) -> None:
    load.record(layer, num_experts, output)


def _experts(router: torch.nn.Module) -> int:
    value: Any = router.num_experts
    return int(value)


def _in_backward() -> bool:
    """Whether autograd is running a backward pass now (where checkpointed layers replay)."""
    task = getattr(torch._C, "_current_graph_task_id", None)
    return task is not None and task() != -1


@contextlib.contextmanager
def expert_load(model: torch.nn.Module) -> Iterator[ExpertLoad]:
    """Count the tokens every router sends to each expert during the block."""
    load = ExpertLoad()
    handles = [module.register_forward_hook(functools.partial(_hook, load, layer, _experts(module)))
               for layer, module in routers(model)]
    try:
        yield load
    finally:
        for h in handles:
            h.remove()
