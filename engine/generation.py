"""Sampling completions behind one interface: a fast torch backend and an optional vLLM one.

    gen = make_generator("torch", model, tokenizer)   # engine.backends
    samples = gen.generate(prompts, n=8, params=SamplingParams(max_new_tokens=64, seed=0))
    ...optimizer.step()...
    gen.update_weights(model)

`Sample.logprobs` are the model's true log-probabilities of the kept tokens: the
log-softmax of the raw (temperature-1, untruncated) logits, whatever `temperature` and
`top_p` the sampling used. That is what GRPO's importance ratio compares against.

Why the torch backend beats `model.generate` (see benchmarks/bench_generation.py): each
distinct prompt is prefilled once and its cache copied for its `n` samples; the KV cache
is preallocated and written in place (no `torch.cat` per step); rows that finished are
dropped from the batch instead of being decoded until the longest row ends; and there is
no logits-processor machinery, only temperature, top-p and one multinomial draw.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from engine.decode_attention import decode_attention
from engine.textstream import TextStream, make_stream_factory

OnToken = Callable[[int, int, str], None]


@dataclass
class SamplingParams:
    """How to sample. `temperature=0` means greedy; `seed=None` draws from torch's global RNG."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    stop: list[str] = field(default_factory=list)
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError("temperature must be 0 (greedy) or positive.")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1].")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1.")
        if any(not s for s in self.stop):
            raise ValueError("stop strings must not be empty.")


@dataclass
class Sample:
    """One completion.

    `completion_ids` are the tokens kept: cut after the token that completed a stop
    string, or after EOS (EOS included when produced). `text` is their decoding without
    special tokens and without the stop string. `logprobs[i]` is the true log-prob of
    `completion_ids[i]` (see the module docstring).
    """

    prompt_index: int
    sample_index: int
    prompt_ids: list[int]
    completion_ids: list[int]
    text: str
    logprobs: list[float]
    finish_reason: str  # "stop" (EOS or stop string) | "length"


class Generator(Protocol):
    def generate(
        self, prompts: list[str], n: int, params: SamplingParams, on_token: OnToken | None = None,
        *, first_prompt: int = 0,
    ) -> list[Sample]:
        """`len(prompts) * n` samples, prompt by prompt; `on_token(prompt_index,
        sample_index, text_delta)` streams text as it is produced. With a seed, a
        completion does not depend on the other prompts of the call; `first_prompt` is
        the index of `prompts[0]` when the call samples a shard of a larger batch."""
        ...

    def update_weights(self, model: torch.nn.Module) -> None:
        """Sample from `model`'s current weights from now on (call after optimizer steps)."""
        ...


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of a prompt, adding BOS unless the text already starts with it."""
    bos = getattr(tokenizer, "bos_token", None)
    add = not (bos and prompt.startswith(bos))
    return list(tokenizer(prompt, add_special_tokens=add)["input_ids"])


def with_stop_string(sample: Sample, stop: list[str], tokenizer: Any, eos: set[int]) -> str:
    """The completion as the model wrote it: `text` without its stop string is what graders
    read, but what is stored, shown, reviewed and trained on must keep it (a model fine-tuned
    on `... <answer> 9` would never learn to close its answer)."""
    ids = sample.completion_ids
    if sample.finish_reason != "stop" or not stop or (ids and ids[-1] in eos):
        return sample.text
    full = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    found = [s for s in stop if full.startswith(s, len(sample.text))]
    return sample.text + (found[0] if found else stop[0])


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every id that ends a completion: the generation config's EOS ids and the tokenizer's."""
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), getattr(model, "config", None), tokenizer):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


class _BufferLayer(DynamicLayer):
    """A KV-cache layer written in place into preallocated storage.

    Storage is `(rows, heads, capacity, head_dim)`; `keys`/`values` are views of the
    filled part, so attention sees exactly what a `DynamicLayer` would hold, without a
    `torch.cat` of the whole cache per generated token.
    """

    is_croppable = False

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.length = 0
        self._k = self._v = torch.empty(0)

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        b, h, _, dk = key_states.shape
        self._k = key_states.new_empty(b, h, self.capacity, dk)
        self._v = value_states.new_empty(b, value_states.shape[1], self.capacity, value_states.shape[-1])
        self.device = key_states.device
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self._k.shape[2]:  # longer than planned: grow rather than fail
            self._k = torch.cat([self._k, torch.empty_like(self._k)[:, :, : end - self._k.shape[2] + self.capacity]], 2)
            self._v = torch.cat([self._v, torch.empty_like(self._v)[:, :, : end - self._v.shape[2] + self.capacity]], 2)
        self._k[:, :, self.length : end] = key_states
        self._v[:, :, self.length : end] = value_states
        self.length = end
        self._refresh()
        return self.keys, self.values

    def _refresh(self) -> None:
        self.keys, self.values = self._k[:, :, : self.length], self._v[:, :, : self.length]

    def get_seq_length(self) -> int:
        return self.length

    def reset(self) -> None:
        self.length = 0
        self._refresh()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self._k, self._v = self._k[indices], self._v[indices]
            self._refresh()

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self._k = self._k.repeat_interleave(repeats, dim=0)
            self._v = self._v.repeat_interleave(repeats, dim=0)
            self._refresh()


@contextlib.contextmanager
def _sdpa_gqa() -> Iterator[None]:
    """Let transformers' SDPA attention use grouped-query heads as they are.

    With a padding mask transformers copies each key/value head to every query head
    (`repeat_kv`) before attention, every step; SDPA's own `enable_gqa` does the same
    maths without the copies, ~5x faster on CPUs for the starter's 4 query / 2 KV heads.
    """
    before = os.environ.get("TRANSFORMERS_SDPA_FORCE_GQA")
    os.environ["TRANSFORMERS_SDPA_FORCE_GQA"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TRANSFORMERS_SDPA_FORCE_GQA", None)
        else:
            os.environ["TRANSFORMERS_SDPA_FORCE_GQA"] = before


def new_cache(model: Any, capacity: int) -> Any:
    """A `DynamicCache` whose full-attention layers are preallocated `_BufferLayer`s."""
    try:
        cache = DynamicCache(config=model.config)
    except Exception:  # configs the helper cannot read: a plain lazily grown cache still works
        return DynamicCache()
    cache.layers = [_BufferLayer(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def sample_next(logits: torch.Tensor, params: SamplingParams, uniforms: torch.Tensor | None) -> tuple:
    """Draw one token per row.

    logits: (A, V) raw logits; uniforms: (A,) draws from U[0, 1), one per row (unused
    when greedy). Returns (tokens (A,), logprobs (A,)) where logprobs are under the raw
    logits, not the temperature/top-p distribution that drew them.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    if params.temperature == 0 or uniforms is None:
        tokens = logp.argmax(dim=-1)
    else:
        scaled = logits.float() if params.temperature == 1 else logits.float() / params.temperature
        probs = torch.softmax(scaled, dim=-1)
        if params.top_p < 1.0:
            probs = _top_p(probs, params.top_p)
        tokens = _draw(probs, uniforms)
    return tokens, logp.gather(1, tokens[:, None]).squeeze(1)


def _draw(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """One index per row of `probs` (A, V), by inverting the cumulative distribution at
    `uniforms` (A,): the same distribution as `torch.multinomial`, at a tenth of its cost
    on CPUs. `right=True` never lands on a zero-probability token (a flat step of the CDF)."""
    cdf = probs.cumsum(dim=-1)
    u = uniforms.to(cdf.dtype).unsqueeze(1) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=probs.shape[1] - 1)


def row_uniforms(seed: int, first_prompt: int, n_prompts: int, n: int, steps: int) -> torch.Tensor:
    """(n_prompts * n, steps) draws from U[0, 1), row p * n + j for sample j of prompt
    `first_prompt + p`, each row from its own generator seeded by (seed, prompt, sample).

    A completion thus samples the same tokens whichever other prompts share its batch:
    a data-parallel rank sampling its shard of a step's prompts gets exactly what one
    process sampling them all would.
    """
    out = torch.empty(n_prompts * n, steps)
    gen = torch.Generator()
    for p in range(n_prompts):
        for j in range(n):
            gen.manual_seed(_mix(seed, first_prompt + p, j))
            torch.rand(steps, generator=gen, out=out[p * n + j])
    return out


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (splitmix64 steps): nearby inputs give unrelated seeds."""
    h = 0
    for v in values:
        h = (h ^ (v & 0xFFFFFFFFFFFFFFFF)) + 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h >> 1


def _top_p(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero all but the smallest set of most likely tokens whose mass reaches `top_p`."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    outside = sorted_probs.cumsum(dim=-1) - sorted_probs > top_p  # mass before the token already enough
    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
    return torch.zeros_like(probs).scatter_(1, order, sorted_probs)


@dataclass
class _Row:
    """Bookkeeping of one sequence being sampled."""

    prompt_index: int
    sample_index: int
    prompt_ids: list[int]
    stream: TextStream
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str | None = None


class TorchGenerator:
    """Batched KV-cache sampling with plain torch and a Hugging Face causal LM."""

    def __init__(self, model: Any, tokenizer: Any, *, max_batch_rows: int = 512, ignore_eos: bool = False,
                 share_prefix: bool = True) -> None:
        """`max_batch_rows` caps prompts x n sampled at once; `ignore_eos` samples to
        `max_new_tokens` regardless of EOS (benchmarks); `share_prefix=False` prefills
        every row's prompt by itself instead of once per group (the reference the shared
        prefill is tested and measured against)."""
        self.model = model
        self.share_prefix = share_prefix
        self.tokenizer = tokenizer
        self.max_batch_rows = max_batch_rows
        self.eos = set() if ignore_eos else eos_ids(model, tokenizer)
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = int(pad if pad is not None else min(self.eos, default=0))
        self._stream_factory = make_stream_factory(tokenizer)
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._keep_arg = "logits_to_keep" in params or "kwargs" in params

    def update_weights(self, model: torch.nn.Module) -> None:
        # Sampling runs on the module itself, so pointing at the trained module is the sync.
        self.model = model

    def generate(
        self, prompts: list[str], n: int, params: SamplingParams, on_token: OnToken | None = None,
        *, first_prompt: int = 0,
    ) -> list[Sample]:
        """`first_prompt`: the index of `prompts[0]` in a larger batch this call samples a
        shard of (it picks the random streams, see `row_uniforms`; `prompt_index` stays
        the index into `prompts`)."""
        if n < 1:
            raise ValueError("n (completions per prompt) must be at least 1.")
        encoded = [encode_prompt(self.tokenizer, p) for p in prompts]
        uniforms = None
        if params.temperature > 0:
            seed = int(torch.randint(0, 2**62, (1,)).item()) if params.seed is None else params.seed
            uniforms = row_uniforms(seed, first_prompt, len(prompts), n, params.max_new_tokens)
        per_chunk = max(1, self.max_batch_rows // n)
        out: list[Sample] = []
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(), _sdpa_gqa(), decode_attention(self.model):
                for start in range(0, len(prompts), per_chunk):
                    chunk = encoded[start : start + per_chunk]
                    draws = None if uniforms is None else uniforms[start * n : (start + len(chunk)) * n]
                    out.extend(self._generate_chunk(chunk, start, n, params, draws, on_token))
        finally:
            self.model.train(was_training)
        return out

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any) -> torch.Tensor:
        """Logits of the last position, (rows, V), appending this call's keys/values to `cache`."""
        kwargs: dict[str, Any] = {self._cache_arg: cache, "use_cache": True}
        if self._keep_arg:
            kwargs["logits_to_keep"] = 1
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, **kwargs)
        return out.logits[:, -1, :]

    def _generate_chunk(
        self,
        prompts: list[list[int]],
        offset: int,
        n: int,
        params: SamplingParams,
        uniforms: torch.Tensor | None,
        on_token: OnToken | None,
    ) -> list[Sample]:
        """`uniforms`: (len(prompts) * n, max_new_tokens) random draws, None when greedy."""
        device = next(self.model.parameters()).device
        width = max(len(p) for p in prompts)
        capacity = width + params.max_new_tokens
        prefilled = prompts if self.share_prefix else [p for p in prompts for _ in range(n)]
        # Left padding: every row's next token lands in the same column.
        mask = torch.zeros(len(prefilled), capacity, dtype=torch.long, device=device)
        ids = torch.full((len(prefilled), width), self.pad_id, dtype=torch.long, device=device)
        for i, p in enumerate(prefilled):
            ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p) : width] = 1
        positions = (mask[:, :width].cumsum(-1) - 1).clamp(min=0)
        cache = new_cache(self.model, capacity)
        logits = self._forward(ids, mask[:, :width], positions, cache)
        # Prefill once per prompt, then copy for its n samples: (P, ...) -> (P*n, ...).
        if n > 1 and self.share_prefix:
            cache.batch_repeat_interleave(n)
            logits, mask = logits.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
        rows = [
            _Row(offset + i, j, prompts[i], self._stream_factory(params.stop))
            for i in range(len(prompts))
            for j in range(n)
        ]
        next_pos = mask[:, :width].sum(-1, keepdim=True)  # (rows, 1): position of the next token
        draws = None if uniforms is None else uniforms.to(device)
        self._decode(rows, logits, mask, next_pos, width, cache, params, draws, on_token)
        return [self._finish(r) for r in rows]

    def _decode(
        self,
        rows: list[_Row],
        logits: torch.Tensor,
        mask: torch.Tensor,
        next_pos: torch.Tensor,
        width: int,
        cache: Any,
        params: SamplingParams,
        uniforms: torch.Tensor | None,
        on_token: OnToken | None,
    ) -> None:
        """The sampling loop. `active[k]` is the row at batch position k; rows that
        finish stay in the batch (their tokens ignored) until a quarter of the batch is
        finished, then the batch and its cache are compacted: copying the cache for
        every single finished row would cost more than decoding a few idle rows."""
        active = list(range(len(rows)))
        alive = [True] * len(rows)
        for step in range(params.max_new_tokens):
            # Each row reads its own random stream, wherever compaction has moved it.
            draws = None if uniforms is None else uniforms[active, step]
            tokens, logprobs = sample_next(logits, params, draws)
            last = step == params.max_new_tokens - 1
            for k, (t, lp) in enumerate(zip(tokens.tolist(), logprobs.tolist(), strict=True)):
                if alive[k]:
                    alive[k] = self._accept(rows[active[k]], t, lp, last, on_token)
            live = sum(alive)
            if live == 0:
                return
            col = width + step
            mask[:, col] = 1
            if (len(active) - live) * 4 >= len(active):
                index = torch.tensor([k for k in range(len(active)) if alive[k]], device=mask.device)
                cache.batch_select_indices(index)
                tokens, mask, next_pos = tokens[index], mask[index], next_pos[index]
                active = [a for a, keep in zip(active, alive, strict=True) if keep]
                alive = [True] * len(active)
            logits = self._forward(tokens[:, None], mask[:, : col + 1], next_pos, cache)
            next_pos = next_pos + 1

    def _accept(self, row: _Row, token: int, logprob: float, last: bool, on_token: OnToken | None) -> bool:
        """Record one sampled token; True while the row goes on."""
        row.ids.append(token)
        row.logprobs.append(logprob)
        if token in self.eos:
            row.finish_reason = "stop"
        else:
            delta, stopped = row.stream.push(token)
            if on_token is not None and delta:
                on_token(row.prompt_index, row.sample_index, delta)
            if stopped:
                row.finish_reason = "stop"
                return False
            if last:
                row.finish_reason = "length"
        if row.finish_reason is not None:
            tail = row.stream.flush()
            if on_token is not None and tail:
                on_token(row.prompt_index, row.sample_index, tail)
            return False
        return True

    def _finish(self, row: _Row) -> Sample:
        return Sample(
            prompt_index=row.prompt_index,
            sample_index=row.sample_index,
            prompt_ids=row.prompt_ids,
            completion_ids=row.ids,
            text=row.stream.text(),
            logprobs=row.logprobs,
            finish_reason=row.finish_reason or "length",
        )
