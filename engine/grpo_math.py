"""GRPO's pure tensor math: group-relative advantages and the clipped policy loss, in the
style of verl's `core_algos.py` (contracts in `../shared/CONTRACTS.md`; re-exported by
`engine.grpo`).

Shapes: B = number of sampled completions in a batch (n_groups * group_size),
T = padded completion length.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from engine.config import ADVANTAGE_SCALES, LOSS_TYPES

STD_EPS = 1e-4  # added to the std so groups with tiny spread do not explode


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group") -> torch.Tensor:
    """Group-relative advantages (DeepSeekMath GRPO; Dr. GRPO with `scale="none"`).

    Args:
        rewards: (B,) float rewards laid out group by group, B = n_groups * group_size.
        group_size: G, completions sampled per prompt (at least 2).
        scale: "group" → (r - group_mean) / (group_std + 1e-4), Bessel-corrected std
            of each group; "batch" → the same numerator over the Bessel-corrected std
            of the whole batch (+ 1e-4); "none" → r - group_mean (Dr. GRPO).

    Returns:
        (B,) advantages, one per completion (every token of a completion shares it).
    """
    rewards = _as_float_tensor(rewards, "rewards")
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be a 1-D tensor (B,), got shape {tuple(rewards.shape)}.")
    if scale not in ADVANTAGE_SCALES:
        raise ValueError(f"Unknown advantage scale {scale!r}: valid values are {', '.join(ADVANTAGE_SCALES)}.")
    if isinstance(group_size, bool) or not isinstance(group_size, int):
        raise ValueError(f"group_size must be an int, got {group_size!r}.")
    if group_size < 2:
        # A group of one has no peers: its advantage is always 0, and its Bessel std is NaN.
        raise ValueError(f"group_size must be at least 2: GRPO compares samples within a group (got {group_size}).")
    if rewards.numel() % group_size != 0:
        raise ValueError(
            f"The number of rewards ({rewards.numel()}) must be a multiple of group_size ({group_size}): "
            "rewards are laid out group by group."
        )
    grouped = rewards.view(-1, group_size)  # (n_groups, G)
    centred = (grouped - grouped.mean(dim=1, keepdim=True)).reshape(-1)  # (B,)
    if scale == "group":
        std = grouped.std(dim=1, keepdim=True).expand_as(grouped).reshape(-1)  # (B,)
        return centred / (std + STD_EPS)
    if scale == "batch":
        return centred / (rewards.std() + STD_EPS)
    return centred


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    loss_type: str = "dapo",
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    beta: float = 0.0,
    max_completion_length: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate loss with an optional k3 KL penalty (PPO/GRPO family).

    Per token: ratio = exp(logp - old_logp),
    l = -min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A)
        + beta * (exp(ref_logp - logp) - (ref_logp - logp) - 1).

    Aggregation (`loss_type`):
        "grpo": mean over sequences of sum_t(l*m) / sum_t(m)  (DeepSeekMath);
        "bnpo", "dapo": sum(l*m) / sum(m), token-level (DAPO);
        "dr_grpo": sum(l*m) / (B * max_completion_length), constant normaliser (Dr. GRPO).

    Args:
        logp: (B, T) log-probs of the sampled tokens under the current policy (the only
            input that receives gradients).
        old_logp: (B, T) log-probs under the policy that sampled them.
        ref_logp: (B, T) log-probs under the reference policy, or None when beta == 0.
        advantages: (B,) one advantage per sequence.
        mask: (B, T) bool or float, 1 for completion tokens that count.
        max_completion_length: the dr_grpo normaliser, defaults to T.

    Returns:
        (loss, stats): a 0-dim tensor and python floats `clip_ratio`, `clip_ratio/low`,
        `clip_ratio/high`, `ratio/mean` and, when beta > 0, `kl` (masked mean of k3).
    """
    _check_loss_args(logp, old_logp, ref_logp, advantages, mask, loss_type, epsilon_low, epsilon_high, beta)
    if max_completion_length is not None and max_completion_length <= 0:
        raise ValueError(f"max_completion_length must be a positive number of tokens, got {max_completion_length}.")
    m = mask.to(logp.dtype)
    adv = advantages.detach().reshape(-1, 1).to(logp.dtype)  # (B, 1), broadcast over tokens
    ratio = torch.exp(logp - old_logp.detach())  # (B, T)
    clipped = torch.clamp(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high)
    per_token = -torch.min(ratio * adv, clipped * adv)  # (B, T)
    kl = None
    if beta > 0:
        assert ref_logp is not None  # checked above; narrows the type
        delta = ref_logp.detach() - logp
        kl = torch.exp(delta) - delta - 1.0  # (B, T), k3 estimator, >= 0
        per_token = per_token + beta * kl
    loss = _aggregate(per_token, m, loss_type, max_completion_length)
    stats = _loss_stats(ratio.detach(), adv, m, epsilon_low, epsilon_high, kl)
    stats["loss"] = float(loss.detach())
    return loss, stats


def _aggregate(per_token: torch.Tensor, m: torch.Tensor, loss_type: str, max_len: int | None) -> torch.Tensor:
    """Reduce (B, T) per-token losses to a scalar as `loss_type` prescribes."""
    tiny = torch.finfo(per_token.dtype).tiny  # only guards all-masked rows/batches: 0 / tiny = 0
    if loss_type == "grpo":
        per_seq = (per_token * m).sum(dim=1) / m.sum(dim=1).clamp(min=tiny)  # (B,)
        return per_seq.mean()
    if loss_type in ("bnpo", "dapo"):
        return (per_token * m).sum() / m.sum().clamp(min=tiny)
    length = per_token.shape[1] if max_len is None else max_len
    return (per_token * m).sum() / (per_token.shape[0] * length)


def _loss_stats(
    ratio: torch.Tensor, adv: torch.Tensor, m: torch.Tensor, eps_low: float, eps_high: float, kl: torch.Tensor | None
) -> dict[str, float]:
    """Masked token means of clipping activity (TRL's definition) and KL."""
    denom = m.sum().clamp(min=torch.finfo(m.dtype).tiny)
    # Clipping only bites when the clipped branch is the min: pushing a ratio further
    # in the direction the advantage favours.
    low = ((ratio < 1.0 - eps_low) & (adv < 0)).to(m.dtype)
    high = ((ratio > 1.0 + eps_high) & (adv > 0)).to(m.dtype)
    stats = {
        "clip_ratio": float(((low + high) * m).sum() / denom),
        "clip_ratio/low": float((low * m).sum() / denom),
        "clip_ratio/high": float((high * m).sum() / denom),
        "ratio/mean": float((ratio * m).sum() / denom),
    }
    if kl is not None:
        stats["kl"] = float((kl.detach() * m).sum() / denom)
    return stats


def _check_loss_args(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    loss_type: str,
    epsilon_low: float,
    epsilon_high: float,
    beta: float,
) -> None:
    """Raise a ValueError that states the rule for any inconsistent input."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"Unknown loss_type {loss_type!r}: valid values are {', '.join(LOSS_TYPES)}.")
    if logp.dim() != 2:
        raise ValueError(f"logp must be (B, T), got shape {tuple(logp.shape)}.")
    named = {"old_logp": old_logp, "mask": mask}
    if ref_logp is not None:
        named["ref_logp"] = ref_logp
    for name, tensor in named.items():
        if tuple(tensor.shape) != tuple(logp.shape):
            raise ValueError(f"{name} must have the shape of logp {tuple(logp.shape)}, got {tuple(tensor.shape)}.")
    if advantages.numel() != logp.shape[0] or advantages.dim() > 2:
        raise ValueError(f"advantages must be (B,) with B={logp.shape[0]}, got shape {tuple(advantages.shape)}.")
    if beta < 0 or math.isnan(beta):
        raise ValueError(f"beta must be >= 0, got {beta}.")
    if beta > 0 and ref_logp is None:
        raise ValueError("ref_logp is required when beta > 0: the KL penalty compares to the reference policy.")
    if epsilon_low < 0 or epsilon_high < 0:
        raise ValueError(f"epsilon_low and epsilon_high must be >= 0, got {epsilon_low} and {epsilon_high}.")


def _as_float_tensor(x: Any, name: str) -> torch.Tensor:
    """Accept a tensor or a sequence of numbers; integers become float32."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
    if not t.is_floating_point():
        t = t.to(torch.float32)
    return t
