"""The single-token attention the CPU sampler uses equals SDPA's, and the model gets its
own attention back after sampling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.backends import make_generator
from engine.decode_attention import grouped_decode_attention
from engine.generation import SamplingParams


@pytest.mark.parametrize("mask_kind", ["none", "bool", "float"])
@pytest.mark.parametrize(("heads", "kv_heads"), [(4, 2), (6, 1), (3, 3)])
def test_it_matches_sdpa_with_repeated_heads(mask_kind: str, heads: int, kv_heads: int) -> None:
    g = torch.Generator().manual_seed(heads * 10 + kv_heads)
    b, length, d = 5, 17, 8
    query = torch.randn(b, heads, 1, d, generator=g)
    store = torch.randn(2, b, kv_heads, length + 6, d, generator=g)
    key, value = store[0, :, :, :length], store[1, :, :, :length]  # views of a bigger cache, as in sampling
    keep = torch.rand(b, 1, 1, length, generator=g) > 0.3
    keep[..., -1] = True  # a row always sees its own new token
    mask = {"none": None, "bool": keep,
            "float": torch.zeros(keep.shape).masked_fill(~keep, float("-inf"))}[mask_kind]
    got = grouped_decode_attention(query, key, value, mask, scaling=0.3)
    rep = heads // kv_heads
    expected = F.scaled_dot_product_attention(query, key.repeat_interleave(rep, 1), value.repeat_interleave(rep, 1),
                                              attn_mask=mask, scale=0.3).transpose(1, 2)
    assert got.shape == (b, 1, heads, d)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_sampling_leaves_the_model_on_its_own_attention(tiny_model_and_tokenizer: tuple) -> None:
    model, tokenizer = tiny_model_and_tokenizer
    before = model.config._attn_implementation
    make_generator("torch", model, tokenizer).generate(["a b"], 2, SamplingParams(max_new_tokens=4, seed=0))
    assert model.config._attn_implementation == before == "sdpa"
