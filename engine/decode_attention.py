"""Attention for one new token per row (decoding), registered with transformers'
`AttentionInterface` as "ponder_decode".

On CPUs, `scaled_dot_product_attention` with a padding mask costs ~2x a plain pair of
matmuls when the query is a single token: its kernels are built for long queries. This
implementation groups the query heads that share a key/value head (no `repeat_kv`
copies) and does the two matmuls itself. Anything else (prompt prefill, dropout,
soft-capping, attention sinks) goes to transformers' SDPA path unchanged.

    with decode_attention(model):   # switches a model on "sdpa", restores it after
        model(...)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

NAME = "ponder_decode"
_registered = False


def grouped_decode_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             mask: torch.Tensor | None, scaling: float) -> torch.Tensor:
    """softmax(q k^T * scaling + mask) v for a single query position.

    Args:
        query: (B, H, 1, D); H a multiple of the key/value heads.
        key, value: (B, KV, L, D).
        mask: None, or (B, 1, 1, L) bool (True = attend) or additive float.

    Returns:
        (B, 1, H, D), the layout transformers' attention functions return.
    """
    b, h, _, d = query.shape
    kv = key.shape[1]
    q = query.reshape(b, kv, h // kv, d)  # (B, KV, G, D): the heads that share a key/value head
    scores = torch.matmul(q, key.transpose(-1, -2)) * scaling  # (B, KV, G, L)
    if mask is not None:  # bool: True = attend; float: added to the scores
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    probs = torch.softmax(scores.float(), dim=-1).to(value.dtype)
    out = torch.matmul(probs, value)  # (B, KV, G, D)
    return out.reshape(b, h, 1, d).transpose(1, 2)


def _attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                       **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature; SDPA for everything but plain decoding."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    plain = (query.shape[2] == 1 and not (dropout and module.training) and kwargs.get("softcap") is None
             and kwargs.get("s_aux") is None and kwargs.get("sinks") is None
             and kwargs.get("position_bias") is None and key.shape[-1] == value.shape[-1]
             and (attention_mask is None or attention_mask.shape[1] == 1))
    if not plain:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    return grouped_decode_attention(query, key, value, attention_mask, scale), None


def register() -> None:
    """Add "ponder_decode" to transformers' attention and mask registries (once)."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, _attention_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)  # the same boolean masks SDPA gets
    _registered = True


@contextlib.contextmanager
def decode_attention(model: Any) -> Iterator[None]:
    """Use "ponder_decode" inside the block for a model on the CPU whose attention is
    "sdpa"; any other model (CUDA, where SDPA's kernels are the fast path; eager; flash)
    is left alone."""
    config = getattr(model, "config", None)
    switch = (getattr(config, "_attn_implementation", None) == "sdpa" and hasattr(model, "set_attn_implementation")
              and next(model.parameters()).device.type == "cpu")
    if not switch:
        yield
        return
    register()
    model.set_attn_implementation(NAME)
    try:
        yield
    finally:
        model.set_attn_implementation("sdpa")
