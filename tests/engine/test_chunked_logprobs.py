"""Log-probs of sampled tokens computed chunk by chunk equal the whole-batch log-softmax."""

from __future__ import annotations

import pytest
import torch

from engine import training
from engine.training import build_grouped_batch, build_token_batch, grouped_logprobs, token_logprobs
from tests.engine.tiny_lm import build_tiny_model


def reference(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    logp_all = torch.log_softmax(logits.float() / temperature, dim=-1)
    return logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1), -(logp_all.exp() * logp_all).sum(-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("chunk", [1, 3 * 5 * 50, 10**9])  # one row per chunk (and smaller), three rows, all
def test_chunks_give_the_same_values_and_gradients(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype,
                                                   temperature: float, chunk: int) -> None:
    monkeypatch.setattr(training, "LOGPROB_CHUNK_ELEMENTS", chunk)
    g = torch.Generator().manual_seed(0)
    base = (torch.randn(7, 5, 50, generator=g) * 3).to(dtype)
    targets = torch.randint(0, 50, (7, 5), generator=g)
    weights = torch.randn(7, 5, generator=g)
    a, b = base.clone().requires_grad_(True), base.clone().requires_grad_(True)
    logp, entropy = training._gather_logprobs(a, targets, temperature, with_entropy=True)
    want_logp, want_entropy = reference(b, targets, temperature)
    assert logp.dtype == torch.float32 and logp.shape == (7, 5)
    torch.testing.assert_close(logp, want_logp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(entropy, want_entropy.detach(), atol=1e-5, rtol=1e-5)
    (logp * weights).sum().backward()
    (want_logp * weights).sum().backward()
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(a.grad, b.grad, atol=tol, rtol=tol)


def test_a_model_batch_split_into_chunks_trains_the_same(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "m"))
    prompts, completions = [[5, 6, 7]] * 3 + [[8, 9]] * 2, [[10, 11], [12], [13, 14, 15], [16], [17, 18]]

    def run() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        model.zero_grad()
        values = []
        for batch, fn in ((build_token_batch(prompts, completions, 0), token_logprobs),
                          (build_grouped_batch(prompts, completions, 0), grouped_logprobs)):
            logp, _ = fn(model, batch)
            (logp * batch.mask).sum().backward()
            values.append(logp.detach()[batch.mask])
        return values, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    whole = run()
    monkeypatch.setattr(training, "LOGPROB_CHUNK_ELEMENTS", 1)
    chunked = run()
    for x, y in zip(whole[0] + whole[1], chunked[0] + chunked[1], strict=True):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-5)


def test_packed_sequences_give_the_padded_log_probs_and_gradients(tmp_path) -> None:
    """No padding at all (sequences end to end, positions restarting): the same log-probs
    and gradients as right-padded rows, to 1e-5 in fp32."""
    from transformers import AutoModelForCausalLM

    from engine.training import build_packed_batch, packed_logprobs

    model = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "m"))
    prompts = [[5, 6, 7, 8]] * 2 + [[9, 10]] + [[11, 12, 13]]
    completions = [[20, 21, 22, 23, 24], [25], [], [26, 27, 28]]  # an empty completion too
    results = []
    for build, fn in ((build_token_batch, token_logprobs), (build_packed_batch, packed_logprobs)):
        model.zero_grad()
        batch = build(prompts, completions, 0)
        logp, entropy = fn(model, batch, 0.8, with_entropy=True)
        weights = torch.arange(1.0, 1.0 + batch.mask.sum().item())
        (logp[batch.mask] * weights).sum().backward()
        results.append((logp[batch.mask].detach(), entropy[batch.mask],
                        [p.grad.clone() for p in model.parameters()]))
    (a, ea, ga), (b, eb, gb) = results
    assert a.shape == (9,)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ea, eb, atol=1e-5, rtol=1e-5)
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4)


def test_packing_is_checked_on_the_model(tmp_path) -> None:
    """A model whose attention reads restarting positions as new sequences passes; one that
    attends across them (positions ignored by its mask) is caught."""
    from transformers import AutoModelForCausalLM

    from engine.training import packing_supported

    model = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "m"))
    assert packing_supported(model)
    forward = model.forward

    def leaky(*args, position_ids=None, **kwargs):  # as a model that builds its own causal mask would
        if position_ids is not None:
            position_ids = torch.arange(position_ids.shape[1]).expand_as(position_ids)
        return forward(*args, position_ids=position_ids, **kwargs)

    model.forward = leaky
    assert not packing_supported(model)
