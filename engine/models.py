"""Loading models and tokenizers, and describing architectures.

    model = load_model("starter")                     # the offline starter, built if needed
    model = load_model("Qwen/Qwen2.5-0.5B", lora={"r": 16})
    model_summary(model)["text"]                       # "4 layers: 1 dense, 3 MoE, 8 routed experts, top-2, 1 shared"
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.starter import STARTER_NAMES, ensure_starter

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoraSettings:
    """LoRA adapter settings (peft)."""

    r: int = 8  # adapter rank
    alpha: int = 16  # scaling numerator: updates are scaled by alpha / r
    dropout: float = 0.0
    target_modules: list[str] | str = field(default_factory=lambda: "all-linear")  # peft names, or "all-linear"

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError("LoRA rank r must be at least 1.")
        if not 0 <= self.dropout < 1:
            raise ValueError("LoRA dropout must be in [0, 1).")


def resolve(name_or_path: str | Path, data_dir: str | Path | None = None) -> str:
    """A loadable id or path: starter names become their built directory."""
    name = str(name_or_path)
    if name in STARTER_NAMES:
        return str(ensure_starter(STARTER_NAMES[name], data_dir))
    return name


def load_tokenizer(name_or_path: str | Path, *, data_dir: str | Path | None = None) -> Any:
    """The tokenizer of a model, with a pad token (EOS when it has none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve(name_or_path, data_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    name_or_path: str | Path,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    lora: LoraSettings | dict[str, Any] | Path | None = None,
    data_dir: str | Path | None = None,
    attn_implementation: str = "auto",
    gradient_checkpointing: bool = False,
) -> Any:
    """A causal LM from a Hugging Face id or local directory ("starter", "starter-moe"
    build the offline starter first), on `device` in `dtype`, in eval mode, optionally
    wrapped with a fresh LoRA adapter, or the saved one in the folder `lora` names (only
    the adapter is then trainable), with the
    attention kernel asked for ("auto": the model's default) and with gradient
    checkpointing switched on if asked (see `checkpointing_layers`)."""
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}.")
    extra = {} if attn_implementation == "auto" else {"attn_implementation": attn_implementation}
    model = AutoModelForCausalLM.from_pretrained(resolve(name_or_path, data_dir), dtype=DTYPES[dtype],
                                                 device_map=device, **extra)
    model.eval()
    if gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if isinstance(lora, Path):
        from peft import PeftModel

        return PeftModel.from_pretrained(model, lora, is_trainable=True)
    elif lora is not None:
        model = with_lora(model, lora if isinstance(lora, LoraSettings) else LoraSettings(**lora))
    return model


def enable_gradient_checkpointing(model: Any) -> None:
    """Recompute layer activations in the backward pass. Non-reentrant checkpointing needs
    no input that requires grad, so it works under LoRA (frozen embeddings) as well."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ValueError(f"gradient_checkpointing: {type(model).__name__} does not support it.")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


@contextlib.contextmanager
def checkpointing_layers(model: Any) -> Iterator[None]:
    """Inside the block, the checkpointed layers of an eval-mode model recompute their
    activations. transformers checkpoints a layer only while it is in training mode, and a
    GRPO policy stays in eval mode (sampling and training must see the same policy, so no
    dropout): only the layer objects themselves are switched, not their children."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing]
    before = [m.training for m in layers]
    for m in layers:
        m.training = True
    try:
        yield
    finally:
        for m, was in zip(layers, before, strict=True):
            m.training = was


def with_lora(model: Any, settings: LoraSettings) -> Any:
    """`model` wrapped by peft with a new LoRA adapter."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
        target_modules=settings.target_modules, task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def _config_of(model_or_config: Any) -> Any:
    config = getattr(model_or_config, "config", model_or_config)
    return config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config


def moe_layout(config: Any) -> dict[str, int]:
    """Dense/MoE split, routed experts, top-k and shared experts from a config.

    Reads the conventions of DeepSeek-V2/V3 (`first_k_dense_replace`, `moe_layer_freq`,
    `n_routed_experts`, `n_shared_experts`), Qwen2/3-MoE (`num_experts`,
    `decoder_sparse_step`, `mlp_only_layers`, `shared_expert_intermediate_size`) and
    Mixtral (`num_local_experts`, every layer MoE).
    """
    layers = int(getattr(config, "num_hidden_layers", 0) or 0)
    experts = _first(config, "n_routed_experts", "num_experts", "num_local_experts")
    if not experts:
        return {"layers": layers, "dense_layers": layers, "moe_layers": 0, "routed_experts": 0, "top_k": 0, "shared_experts": 0}
    moe = [_is_moe_layer(config, i) for i in range(layers)]
    shared = _first(config, "n_shared_experts") or (1 if getattr(config, "shared_expert_intermediate_size", 0) else 0)
    return {
        "layers": layers, "dense_layers": moe.count(False), "moe_layers": moe.count(True),
        "routed_experts": experts, "top_k": _first(config, "num_experts_per_tok", "moe_top_k"),
        "shared_experts": shared,
    }


def _first(config: Any, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 0


def _is_moe_layer(config: Any, i: int) -> bool:
    if i < int(getattr(config, "first_k_dense_replace", 0) or 0):
        return False
    if i in (getattr(config, "mlp_only_layers", None) or []):
        return False
    if hasattr(config, "decoder_sparse_step"):  # Qwen-MoE counts layers from 1
        return (i + 1) % (int(config.decoder_sparse_step or 1)) == 0
    return i % int(getattr(config, "moe_layer_freq", 1) or 1) == 0


def count_parameters(model_or_config: Any) -> int:
    """Parameters of a model, or of the model a config describes (built on the meta device)."""
    if isinstance(model_or_config, torch.nn.Module):
        return sum(p.numel() for p in model_or_config.parameters())
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_or_config)
    return sum(p.numel() for p in model.parameters())


def model_summary(model_or_config: Any) -> dict[str, Any]:
    """What a checkpoint is: architecture, size, layers and dense/MoE layout, plus `text`,
    e.g. "4 layers: 1 dense, 3 MoE, 8 routed experts, top-2, 1 shared" or "2 layers, dense"."""
    config = _config_of(model_or_config)
    archs = getattr(config, "architectures", None) or []
    if isinstance(model_or_config, torch.nn.Module):
        base = getattr(model_or_config, "get_base_model", lambda: model_or_config)()
        archs = [type(base).__name__]
    layout = moe_layout(config)
    summary = {
        "architecture": archs[0] if archs else _causal_lm_name(config),
        "model_type": getattr(config, "model_type", ""),
        "parameters": count_parameters(model_or_config if isinstance(model_or_config, torch.nn.Module) else config),
        "hidden_size": getattr(config, "hidden_size", None),
        "vocab_size": getattr(config, "vocab_size", None),
        **layout,
    }
    summary["text"] = summary_text(layout)
    return summary


def _causal_lm_name(config: Any) -> str:
    """The causal-LM class a config belongs to, e.g. "DeepseekV3ForCausalLM"."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(getattr(config, "model_type", ""), type(config).__name__)


def summary_text(layout: dict[str, int]) -> str:
    if not layout["moe_layers"]:
        return f"{layout['layers']} layers, dense"
    shared = f", {layout['shared_experts']} shared" if layout["shared_experts"] else ""
    return (f"{layout['layers']} layers: {layout['dense_layers']} dense, {layout['moe_layers']} MoE, "
            f"{layout['routed_experts']} routed experts, top-{layout['top_k']}{shared}")

