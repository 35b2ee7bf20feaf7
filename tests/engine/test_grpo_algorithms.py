"""GSPO, CISPO and truncated / masked importance sampling in `policy_loss`, against loops."""

from __future__ import annotations

import math

import pytest
import torch

from engine.config import GRPOConfig
from engine.grpo import policy_loss


def loop_loss(logp, old, sampler, adv, mask, *, loss_type, level, el, eh, beta=0.0, ref=None,  # noqa: ANN001, ANN201
              cap=None, mode="truncate"):
    """The loss and the sampler/trainer stats, one token at a time (bool masks)."""
    b, t = len(logp), len(logp[0])
    ratios = []
    for i in range(b):
        if level == "token":
            ratios.append([math.exp(logp[i][j] - old[i][j]) for j in range(t)])
        else:
            n = sum(mask[i])
            mean = sum(logp[i][j] - old[i][j] for j in range(t) if mask[i][j]) / max(n, 1)
            ratios.append([math.exp(mean)] * t)
    total = count = 0.0
    rows = []
    for i in range(b):
        row_sum = row_count = 0.0
        for j in range(t):
            r, a = ratios[i][j], adv[i]
            if loss_type == "cispo":
                loss = -min(r, 1 + eh) * a * logp[i][j]
            else:
                loss = -min(r * a, min(max(r, 1 - el), 1 + eh) * a)
            keep = 1.0
            if sampler is not None:
                w = math.exp(old[i][j] - sampler[i][j])
                if cap is not None and mode == "truncate":
                    w = min(w, cap)
                if cap is not None and mode == "mask" and not (1 / cap <= w <= cap):
                    keep = 0.0
                loss *= w
            if beta:
                d = ref[i][j] - logp[i][j]
                loss += beta * (math.exp(d) - d - 1)
            m = float(mask[i][j]) * keep
            row_sum += loss * m
            row_count += m
        rows.append((row_sum, row_count))
        total += row_sum
        count += row_count
    if loss_type == "grpo":
        return sum(s / c if c else 0.0 for s, c in rows) / b
    return total / count


def case(seed: int, b: int = 6, t: int = 7) -> tuple:
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(b, t, generator=g, dtype=torch.float64) * 3
    old = logp + torch.randn(b, t, generator=g, dtype=torch.float64) * 0.3
    sampler = old + torch.randn(b, t, generator=g, dtype=torch.float64) * 0.4  # a visible mismatch
    ref = logp + torch.randn(b, t, generator=g, dtype=torch.float64) * 0.2
    adv = torch.randn(b, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    return logp, old, sampler, ref, adv, mask


def lists(*tensors: torch.Tensor) -> list:
    return [x.tolist() for x in tensors]


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "cispo"])
@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gspo_and_cispo_match_the_loop(loss_type: str, level: str, seed: int) -> None:
    logp, old, _, ref, adv, mask = case(seed)
    loss, stats = policy_loss(logp, old, ref, adv, mask, loss_type=loss_type, importance_sampling_level=level,
                              epsilon_low=0.2, epsilon_high=0.28, beta=0.04)
    want = loop_loss(*lists(logp, old), None, adv.tolist(), mask.tolist(), loss_type=loss_type, level=level,
                     el=0.2, eh=0.28, beta=0.04, ref=ref.tolist())
    assert loss.item() == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert 0.0 <= stats["clip_ratio"] <= 1.0


@pytest.mark.parametrize("cap,mode", [(None, "truncate"), (2.0, "truncate"), (1.5, "mask")])
@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
def test_importance_sampling_correction_matches_the_loop(cap: float | None, mode: str, loss_type: str) -> None:
    logp, old, sampler, _, adv, mask = case(5, b=8, t=9)
    loss, stats = policy_loss(logp, old, None, adv, mask, loss_type=loss_type, sampler_logp=sampler,
                              tis_cap=cap, tis_mode=mode)
    want = loop_loss(*lists(logp, old, sampler), adv.tolist(), mask.tolist(), loss_type=loss_type,
                     level="token", el=0.2, eh=0.2, cap=cap, mode=mode)
    assert loss.item() == pytest.approx(want, rel=1e-9, abs=1e-12)
    log_w = (old - sampler)[mask]
    assert stats["mismatch/kl"] == pytest.approx(float((torch.exp(-log_w) + log_w - 1).mean()), rel=1e-9)
    if cap is None:
        assert stats["tis/capped"] == 0.0
    else:
        w = torch.exp(log_w)
        touched = (w > cap) | (w < 1 / cap) if mode == "mask" else w > cap
        assert 0 < stats["tis/capped"] == pytest.approx(float(touched.double().mean()))


def test_gspo_clips_whole_sequences() -> None:
    """One sequence whose mean ratio is far above 1 + eps with a positive advantage gets
    no gradient at all under GSPO, while token-level clipping still trains its tokens
    whose own ratio is inside the range."""
    logp = torch.tensor([[-1.0, -1.0, -1.0]], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([[-1.0, -2.0, -2.0]], dtype=torch.float64)  # token ratios 1, e, e
    adv, mask = torch.tensor([1.0], dtype=torch.float64), torch.ones(1, 3, dtype=torch.bool)
    seq, _ = policy_loss(logp, old, None, adv, mask, importance_sampling_level="sequence")
    (g_seq,) = torch.autograd.grad(seq, logp)
    tok, _ = policy_loss(logp, old, None, adv, mask)
    (g_tok,) = torch.autograd.grad(tok, logp)
    assert torch.all(g_seq == 0)
    assert g_tok[0, 0] < 0 and torch.all(g_tok[0, 1:] == 0)


def test_cispo_keeps_the_gradient_of_clipped_tokens() -> None:
    """Where PPO clipping zeroes a token's gradient, CISPO keeps it, scaled by the capped weight."""
    logp = torch.tensor([[-1.0, -1.0]], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([[-1.0, -3.0]], dtype=torch.float64)  # ratios 1 and e^2
    adv, mask = torch.tensor([2.0], dtype=torch.float64), torch.ones(1, 2, dtype=torch.bool)
    loss, _ = policy_loss(logp, old, None, adv, mask, loss_type="cispo", epsilon_high=0.28)
    (grad,) = torch.autograd.grad(loss, logp)
    # d/dlogp of -sg(w) * A * logp, token mean over 2 tokens.
    assert grad[0].tolist() == pytest.approx([-1.0 * 2.0 / 2, -1.28 * 2.0 / 2])
    ppo, _ = policy_loss(logp, old, None, adv, mask, epsilon_high=0.28)
    (ppo_grad,) = torch.autograd.grad(ppo, logp)
    assert ppo_grad[0, 1] == 0


def test_no_mismatch_leaves_the_loss_unchanged() -> None:
    logp, old, _, _, adv, mask = case(9)
    plain, _ = policy_loss(logp, old, None, adv, mask)
    same, stats = policy_loss(logp, old, None, adv, mask, sampler_logp=old.clone(), tis_cap=2.0)
    assert same.item() == pytest.approx(plain.item(), rel=1e-12)
    assert stats["mismatch/kl"] == 0.0 and stats["tis/weight_mean"] == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs,match", [
    ({"importance_sampling_level": "sentence"}, "importance_sampling_level"),
    ({"tis_mode": "clip", "sampler_logp": "same"}, "tis_mode"),
    ({"tis_cap": 1.0, "sampler_logp": "same"}, "tis_cap must be > 1"),
    ({"tis_cap": 2.0}, "tis_cap needs sampler_logp"),
    ({"sampler_logp": "short"}, "sampler_logp must have the shape"),
])
def test_bad_options_are_refused_by_name(kwargs: dict, match: str) -> None:
    logp, old, _, _, adv, mask = case(1)
    if kwargs.get("sampler_logp") == "same":
        kwargs["sampler_logp"] = old
    elif kwargs.get("sampler_logp") == "short":
        kwargs["sampler_logp"] = old[:, :-1]
    with pytest.raises(ValueError, match=match):
        policy_loss(logp, old, None, adv, mask, **kwargs)


def test_the_config_refuses_tis_at_another_temperature() -> None:
    with pytest.raises(ValueError, match="tis_cap needs temperature 1.0"):
        GRPOConfig(task="countdown", tis_cap=2.0, temperature=0.7)
    with pytest.raises(ValueError, match="importance_sampling_level must be one of token, sequence"):
        GRPOConfig(task="countdown", importance_sampling_level="group")
    GRPOConfig(task="countdown", tis_cap=2.0, loss_type="cispo", importance_sampling_level="sequence")
