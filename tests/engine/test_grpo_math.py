"""engine.grpo's pure math against straightforward loop implementations."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from engine.grpo import group_advantages, policy_loss

torch.set_num_threads(1)


# ---------------------------------------------------------------- loop references


def loop_advantages(rewards: list[float], g: int, scale: str) -> list[float]:
    batch_std = statistics.stdev(rewards)
    out = []
    for start in range(0, len(rewards), g):
        group = rewards[start : start + g]
        mean = sum(group) / g
        std = statistics.stdev(group)
        for r in group:
            if scale == "group":
                out.append((r - mean) / (std + 1e-4))
            elif scale == "batch":
                out.append((r - mean) / (batch_std + 1e-4))
            else:
                out.append(r - mean)
    return out


def loop_loss(logp, old, ref, adv, mask, loss_type, el, eh, beta, max_len=None):  # noqa: ANN001, ANN201
    b, t = len(logp), len(logp[0])
    per_row_sums, per_row_counts = [], []
    total, count = 0.0, 0.0
    clipped, kl_sum = 0.0, 0.0
    for i in range(b):
        row_sum, row_count = 0.0, 0.0
        for j in range(t):
            ratio = math.exp(logp[i][j] - old[i][j])
            a = adv[i]
            clip = min(max(ratio, 1 - el), 1 + eh)
            loss = -min(ratio * a, clip * a)
            if beta > 0:
                d = ref[i][j] - logp[i][j]
                k3 = math.exp(d) - d - 1
                loss += beta * k3
                kl_sum += k3 * mask[i][j]
            if (ratio < 1 - el and a < 0) or (ratio > 1 + eh and a > 0):
                clipped += mask[i][j]
            row_sum += loss * mask[i][j]
            row_count += mask[i][j]
        per_row_sums.append(row_sum)
        per_row_counts.append(row_count)
        total += row_sum
        count += row_count
    if loss_type == "grpo":
        value = sum(s / c if c else 0.0 for s, c in zip(per_row_sums, per_row_counts, strict=True)) / b
    elif loss_type in ("bnpo", "dapo"):
        value = total / count
    else:
        value = total / (b * (max_len or t))
    return value, clipped / count, kl_sum / count


def random_case(seed: int, b: int, t: int, float_mask: bool = False):  # noqa: ANN201
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(b, t, generator=g, dtype=torch.float64) * 3
    old = logp + torch.randn(b, t, generator=g, dtype=torch.float64) * 0.3  # ratios well outside the clip range
    ref = logp + torch.randn(b, t, generator=g, dtype=torch.float64) * 0.2
    adv = torch.randn(b, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    lengths[0] = 1  # a row with a single token
    mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    if float_mask:
        mask = mask.to(torch.float64) * torch.rand(b, t, generator=g, dtype=torch.float64).add(0.5)
    return logp, old, ref, adv, mask


# ---------------------------------------------------------------- advantages


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
@pytest.mark.parametrize("seed,g,n", [(0, 2, 1), (1, 4, 3), (2, 8, 5), (3, 16, 2)])
def test_advantages_match_loop(scale: str, seed: int, g: int, n: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.randint(0, 3, (g * n,), generator=gen).to(torch.float64) / 2
    got = group_advantages(rewards, g, scale)
    want = torch.tensor(loop_advantages(rewards.tolist(), g, scale), dtype=torch.float64)
    assert got.shape == (g * n,)
    torch.testing.assert_close(got, want)


def test_advantages_hand_computed() -> None:
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0])
    std = math.sqrt(0.25)  # Bessel std of [1, 0, 0, 0] is 0.5
    expected = [0.75 / (std + 1e-4), -0.25 / (std + 1e-4), -0.25 / (std + 1e-4), -0.25 / (std + 1e-4)] + [0.0] * 4
    torch.testing.assert_close(group_advantages(rewards, 4), torch.tensor(expected))
    torch.testing.assert_close(group_advantages(rewards, 4, "none"), torch.tensor([0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0]))


def test_equal_rewards_give_zero_advantage() -> None:
    assert torch.equal(group_advantages(torch.ones(6), 3), torch.zeros(6))


def test_advantages_accept_int_rewards() -> None:
    got = group_advantages(torch.tensor([1, 0]), 2, "none")
    torch.testing.assert_close(got, torch.tensor([0.5, -0.5]))


@pytest.mark.parametrize(
    "args,match",
    [
        ((torch.ones(6), 4), "multiple of group_size"),
        ((torch.ones(4), 1), "at least 2"),
        ((torch.ones(4), 0), "at least 2"),
        ((torch.ones(4), 2, "mean"), "group, batch, none"),
        ((torch.ones(2, 2), 2), "1-D"),
    ],
)
def test_advantages_reject_bad_input(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        group_advantages(*args)


# ---------------------------------------------------------------- policy loss


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dapo", "dr_grpo"])
@pytest.mark.parametrize("seed,b,t", [(0, 4, 5), (1, 8, 12), (2, 3, 1), (3, 16, 7)])
@pytest.mark.parametrize("eps,beta", [((0.2, 0.2), 0.0), ((0.2, 0.28), 0.04), ((0.1, 0.3), 0.5)])
def test_policy_loss_matches_loop(loss_type: str, seed: int, b: int, t: int, eps: tuple, beta: float) -> None:
    logp, old, ref, adv, mask = random_case(seed, b, t, float_mask=seed == 3)
    loss, stats = policy_loss(
        logp, old, ref if beta else None, adv, mask, loss_type=loss_type, epsilon_low=eps[0], epsilon_high=eps[1], beta=beta
    )
    m = mask.to(torch.float64).tolist()
    want, clip, kl = loop_loss(logp.tolist(), old.tolist(), ref.tolist(), adv.tolist(), m, loss_type, *eps, beta)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert stats["clip_ratio"] == pytest.approx(clip, abs=1e-12)
    assert all(isinstance(v, float) for v in stats.values())
    if beta:
        assert stats["kl"] == pytest.approx(kl, rel=1e-9)
    else:
        assert "kl" not in stats


def test_dr_grpo_uses_max_completion_length() -> None:
    logp, old, _, adv, mask = random_case(5, 4, 6)
    loss, _ = policy_loss(logp, old, None, adv, mask, loss_type="dr_grpo", max_completion_length=10)
    m = mask.to(torch.float64).tolist()
    want, _, _ = loop_loss(logp.tolist(), old.tolist(), None, adv.tolist(), m, "dr_grpo", 0.2, 0.2, 0.0, 10)
    assert loss.item() == pytest.approx(want)


def test_hand_computed_case() -> None:
    # Two sequences; ratio 1 everywhere so the loss is -A per token.
    logp = torch.log(torch.tensor([[0.5, 0.5, 0.5], [0.25, 0.25, 0.25]]))
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    adv = torch.tensor([1.0, -2.0])
    dapo, stats = policy_loss(logp, logp, None, adv, mask)
    assert dapo.item() == pytest.approx((-1 - 1 + 2) / 3)
    assert stats["clip_ratio"] == 0.0
    grpo, _ = policy_loss(logp, logp, None, adv, mask, loss_type="grpo")
    assert grpo.item() == pytest.approx(((-2 / 2) + (2 / 1)) / 2)
    dr, _ = policy_loss(logp, logp, None, adv, mask, loss_type="dr_grpo")
    assert dr.item() == pytest.approx(0.0 / (2 * 3))


def test_clipping_hand_computed() -> None:
    # ratio 1.5 with A>0 → clipped at 1.2; ratio 0.5 with A<0 → clipped at 0.8.
    old = torch.zeros(2, 1)
    logp = torch.log(torch.tensor([[1.5], [0.5]]))
    adv = torch.tensor([1.0, -1.0])
    loss, stats = policy_loss(logp, old, None, adv, torch.ones(2, 1), loss_type="bnpo", epsilon_high=0.2)
    assert loss.item() == pytest.approx((-1.2 + 0.8) / 2)
    assert stats["clip_ratio"] == 1.0
    # Asymmetric clip-higher: ratio 1.5 is inside [0.8, 1.6].
    loss, stats = policy_loss(logp, old, None, adv, torch.ones(2, 1), epsilon_high=0.6)
    assert loss.item() == pytest.approx((-1.5 + 0.8) / 2)
    assert stats["clip_ratio/high"] == 0.0 and stats["clip_ratio/low"] == 0.5


def test_kl_hand_computed() -> None:
    logp = torch.tensor([[0.0]])
    ref = torch.tensor([[math.log(2.0)]])  # k3 = 2 - ln 2 - 1
    loss, stats = policy_loss(logp, logp, ref, torch.tensor([0.0]), torch.ones(1, 1), beta=0.5)
    assert stats["kl"] == pytest.approx(1 - math.log(2))
    assert loss.item() == pytest.approx(0.5 * (1 - math.log(2)))


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_gradients_flow_through_logp_only(loss_type: str) -> None:
    logp, old, ref, adv, mask = random_case(7, 5, 6)
    tensors = [x.clone().requires_grad_(True) for x in (logp, old, ref, adv)]
    loss, _ = policy_loss(*tensors[:4], mask, loss_type=loss_type, beta=0.1)
    loss.backward()
    assert tensors[0].grad is not None and tensors[0].grad.abs().sum() > 0
    assert all(t.grad is None for t in tensors[1:])
    # Masked-out tokens receive no gradient.
    assert torch.all(tensors[0].grad[~mask] == 0)


def test_gradient_matches_finite_difference() -> None:
    logp, old, ref, adv, mask = random_case(11, 3, 4)
    logp.requires_grad_(True)
    loss, _ = policy_loss(logp, old, ref, adv, mask, beta=0.3, epsilon_high=0.28)
    (grad,) = torch.autograd.grad(loss, logp)
    h = 1e-6
    for i, j in [(1, 0), (2, 1), (0, 0)]:
        bumped = logp.detach().clone()
        bumped[i, j] += h
        up, _ = policy_loss(bumped, old, ref, adv, mask, beta=0.3, epsilon_high=0.28)
        bumped[i, j] -= 2 * h
        down, _ = policy_loss(bumped, old, ref, adv, mask, beta=0.3, epsilon_high=0.28)
        assert grad[i, j].item() == pytest.approx(((up - down) / (2 * h)).item(), abs=1e-6)


def test_fully_masked_row_is_harmless() -> None:
    logp, old, _, adv, mask = random_case(3, 4, 5)
    mask = mask.clone()
    mask[2] = False
    logp.requires_grad_(True)
    loss, _ = policy_loss(logp, old, None, adv, mask, loss_type="grpo")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logp.grad).all()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"loss_type": "ppo"}, "grpo, bnpo, dapo, dr_grpo"),
        ({"beta": 0.1}, "ref_logp is required"),
        ({"beta": -1.0}, "beta must be"),
        ({"max_completion_length": 0}, "max_completion_length"),
    ],
)
def test_policy_loss_rejects_bad_options(kwargs: dict, match: str) -> None:
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=match):
        policy_loss(x, x, None, torch.zeros(2), torch.ones(2, 3), **kwargs)


@pytest.mark.parametrize(
    "shapes,match",
    [
        (((2, 3), (2, 4), (2,), (2, 3)), "old_logp"),
        (((2, 3), (2, 3), (3,), (2, 3)), "advantages"),
        (((2, 3), (2, 3), (2,), (3, 2)), "mask"),
        (((6,), (6,), (1,), (6,)), r"\(B, T\)"),
    ],
)
def test_policy_loss_rejects_shape_mismatch(shapes: tuple, match: str) -> None:
    logp, old, adv, mask = (torch.zeros(s) for s in shapes)
    with pytest.raises(ValueError, match=match):
        policy_loss(logp, old, None, adv, mask)
