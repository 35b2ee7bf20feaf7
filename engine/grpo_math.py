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

from engine.config import ADVANTAGE_SCALES, IS_LEVELS, LOSS_TYPES, TIS_MODES

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
    importance_sampling_level: str = "token",
    sampler_logp: torch.Tensor | None = None,
    tis_cap: float | None = None,
    tis_mode: str = "truncate",
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate loss with an optional k3 KL penalty (PPO/GRPO family).

    Per token: ratio = exp(logp - old_logp),
    l = -min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A)
        + beta * (exp(ref_logp - logp) - (ref_logp - logp) - 1).

    Aggregation (`loss_type`):
        "grpo": mean over sequences of sum_t(l*m) / sum_t(m)  (DeepSeekMath);
        "bnpo", "dapo": sum(l*m) / sum(m), token-level (DAPO);
        "dr_grpo": sum(l*m) / (B * max_completion_length), constant normaliser (Dr. GRPO);
        "cispo": token-level like dapo, but the surrogate is CISPO's (MiniMax-M1):
            l = -sg(min(ratio, 1 + eps_high)) * A * logp. The weight is clipped, not the
            gradient: every token keeps a gradient, unlike PPO clipping which drops it.

    `importance_sampling_level="sequence"` is GSPO (Qwen3): every token of sequence i
    uses one ratio s_i = exp(sum_t m * (logp - old_logp) / sum_t m), the geometric mean of
    its token ratios, so clipping keeps or drops whole sequences.

    `sampler_logp` (B, T) are the log-probs the sampler reported (vLLM, bf16, another
    kernel). `old_logp` is the trainer's value for the same policy, so the two differ only
    by numerics; the policy-gradient term is multiplied by w = exp(old_logp - sampler_logp),
    the importance weight that corrects the mismatch (truncated importance sampling,
    Yao et al. 2025). With `tis_cap`, "truncate" uses min(w, cap); "mask" drops tokens whose
    w lies outside [1 / cap, cap] (masked importance sampling). The KL term is not weighted.

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
    _check_is_args(logp, max_completion_length, importance_sampling_level, sampler_logp, tis_cap, tis_mode)
    m = mask.to(logp.dtype)
    adv = advantages.detach().reshape(-1, 1).to(logp.dtype)  # (B, 1), broadcast over tokens
    ratio = importance_ratio(logp, old_logp, m, importance_sampling_level)  # (B, T) or (B, 1)
    if loss_type == "cispo":
        per_token = -torch.clamp(ratio, max=1.0 + epsilon_high).detach() * adv * logp  # (B, T)
    else:
        clipped = torch.clamp(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high)
        per_token = -torch.min(ratio * adv, clipped * adv)  # (B, T) or (B, 1)
    per_token = per_token.expand_as(logp)
    extra: dict[str, float] = {}
    if sampler_logp is not None:
        weight, keep, extra = mismatch_weights(old_logp.detach(), sampler_logp.detach(), m, tis_cap, tis_mode)
        per_token, m = per_token * weight, m * keep
    kl = None
    if beta > 0:
        assert ref_logp is not None  # checked above; narrows the type
        delta = ref_logp.detach() - logp
        kl = torch.exp(delta) - delta - 1.0  # (B, T), k3 estimator, >= 0
        per_token = per_token + beta * kl
    loss = _aggregate(per_token, m, loss_type, max_completion_length)
    stats = _loss_stats(ratio.detach().expand_as(logp), adv, m, epsilon_low, epsilon_high, kl)
    stats.update(extra)
    stats["loss"] = float(loss.detach())
    return loss, stats


def importance_ratio(logp: torch.Tensor, old_logp: torch.Tensor, m: torch.Tensor, level: str = "token"
                     ) -> torch.Tensor:
    """pi / pi_old per token, (B, T); or GSPO's per-sequence geometric mean, (B, 1).

    The sequence ratio is exp of the masked mean log-ratio; an all-masked row gets 1.
    """
    log_ratio = logp - old_logp.detach()  # (B, T)
    if level == "token":
        return torch.exp(log_ratio)
    per_seq = (log_ratio * m).sum(dim=1, keepdim=True) / m.sum(dim=1, keepdim=True).clamp(min=1.0)  # (B, 1)
    return torch.exp(per_seq)


def mismatch_weights(trainer_logp: torch.Tensor, sampler_logp: torch.Tensor, m: torch.Tensor,
                     cap: float | None, mode: str = "truncate") -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Importance weights between the trainer's and the sampler's log-probs of the same
    policy, and how far apart the two are.

    Args:
        trainer_logp, sampler_logp: (B, T) log-probs of the sampled tokens.
        m: (B, T) float mask of the tokens that count.
        cap: None leaves w = exp(trainer - sampler) as it is; "truncate" takes min(w, cap),
            "mask" keeps w but drops the tokens whose w lies outside [1 / cap, cap].

    Returns:
        (weight (B, T), keep (B, T) float mask, stats): `mismatch/kl` is the masked mean
        of the k3 estimate of KL(sampler || trainer), `mismatch/max_abs` the largest
        |log w|, `tis/weight_mean` the mean weight used and `tis/capped` the share of
        tokens the cap touched.
    """
    log_w = (trainer_logp - sampler_logp) * (m > 0)  # (B, T); padding would give nonsense
    w = torch.exp(log_w)
    keep = torch.ones_like(m)
    touched = torch.zeros_like(m)
    if cap is not None:
        outside = (w > cap) | (w < 1.0 / cap) if mode == "mask" else w > cap
        touched = outside.to(m.dtype)
        if mode == "mask":
            keep = 1.0 - touched
        else:
            w = torch.clamp(w, max=cap)
    denom = m.sum().clamp(min=1.0)
    k3 = torch.exp(-log_w) + log_w - 1.0  # >= 0: KL(sampler || trainer) estimated at sampled tokens
    stats = {
        "mismatch/kl": float((k3 * m).sum() / denom),
        "mismatch/max_abs": float((log_w.abs() * m).max()) if m.numel() else 0.0,
        "tis/weight_mean": float((w * keep * m).sum() / (keep * m).sum().clamp(min=1.0)),
        "tis/capped": float((touched * m).sum() / denom),
    }
    return w.detach(), keep, stats


def _aggregate(per_token: torch.Tensor, m: torch.Tensor, loss_type: str, max_len: int | None) -> torch.Tensor:
    """Reduce (B, T) per-token losses to a scalar as `loss_type` prescribes."""
    tiny = torch.finfo(per_token.dtype).tiny  # only guards all-masked rows/batches: 0 / tiny = 0
    if loss_type == "grpo":
        per_seq = (per_token * m).sum(dim=1) / m.sum(dim=1).clamp(min=tiny)  # (B,)
        return per_seq.mean()
    if loss_type in ("bnpo", "dapo", "cispo"):
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


def _check_is_args(logp: torch.Tensor, max_len: int | None, level: str, sampler_logp: torch.Tensor | None,
                   cap: float | None, mode: str) -> None:
    if max_len is not None and max_len <= 0:
        raise ValueError(f"max_completion_length must be a positive number of tokens, got {max_len}.")
    if level not in IS_LEVELS:
        raise ValueError(f"Unknown importance_sampling_level {level!r}: valid values are {', '.join(IS_LEVELS)}.")
    if mode not in TIS_MODES:
        raise ValueError(f"Unknown tis_mode {mode!r}: valid values are {', '.join(TIS_MODES)}.")
    if cap is not None and not cap > 1.0:
        raise ValueError(f"tis_cap must be > 1 (a bound on the importance weight), got {cap}.")
    if cap is not None and sampler_logp is None:
        raise ValueError("tis_cap needs sampler_logp: the weight is between the trainer's and the sampler's log-probs.")
    if sampler_logp is not None and tuple(sampler_logp.shape) != tuple(logp.shape):
        raise ValueError(f"sampler_logp must have the shape of logp {tuple(logp.shape)}, "
                         f"got {tuple(sampler_logp.shape)}.")


def _as_float_tensor(x: Any, name: str) -> torch.Tensor:
    """Accept a tensor or a sequence of numbers; integers become float32."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
    if not t.is_floating_point():
        t = t.to(torch.float32)
    return t
