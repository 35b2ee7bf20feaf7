"""Small pieces every training stage shares: seeding, optimiser and schedule,
per-token log-probs, deterministic data order, timing, and the stage result.

Shapes: B = sequences in a batch, L = padded sequence length, V = vocabulary.
"""

from __future__ import annotations

import functools
import inspect
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.config import TrainConfig


@dataclass
class StageResult:
    """What a stage returns: how it ended and where its last checkpoint is."""

    status: str  # "succeeded" | "cancelled"
    step: int
    checkpoint: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch so initialisation and sampling repeat."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_threads(num_threads: int | None) -> None:
    """Apply the config's CPU thread count (None leaves the process setting)."""
    if num_threads is not None and torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (LoRA leaves the base frozen)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameters: check the LoRA settings.")
    return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then constant, linear decay or cosine decay to 0 at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)  # never exactly 0: the first step still learns
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class TokenBatch:
    """Prompt+completion sequences, right-padded, with the scored-token mask.

    input_ids, attention_mask: (B, L). mask: (B, L - 1 - start), True where the
    token at position j + 1 + start is a completion token (so it is scored).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    mask: torch.Tensor
    start: int
    sampler_logp: torch.Tensor | None = None  # (B, L - 1 - start), see `attach_sampler_logprobs`


def build_token_batch(
    prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int, device: str = "cpu"
) -> TokenBatch:
    """Concatenate each prompt with its completion; score completion tokens only."""
    rows = [(list(p) + list(c), [False] * len(p) + [True] * len(c)) for p, c in zip(prompts, completions, strict=True)]
    return build_masked_batch(rows, pad_id, device)


def build_masked_batch(rows: Sequence[tuple[list[int], list[bool]]], pad_id: int, device: str = "cpu") -> TokenBatch:
    """Right-pad `(ids, scored)` rows; `scored[t]` marks token t as a target of the loss."""
    width = max(max(len(ids) for ids, _ in rows), 2)
    ids_t = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    scored = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (ids, flags) in enumerate(rows):
        ids_t[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attn[i, : len(ids)] = 1
        scored[i, : len(flags)] = torch.tensor(flags, dtype=torch.bool)
    scored[:, 0] = False  # nothing predicts the first token
    # Logits before the first scored token of any row never score anything: skip them.
    any_scored = scored.any(dim=0).nonzero()
    start = max(0, int(any_scored[0]) - 1) if len(any_scored) else 0
    return TokenBatch(ids_t.to(device), attn.to(device), scored[:, start + 1 :].to(device), start)


def attach_sampler_logprobs(batch: TokenBatch | GroupedBatch | PackedBatch, logprobs: Sequence[Sequence[float]]) -> None:
    """Lay the sampler's per-token log-probs of each completion out like `batch.mask`
    (call before masking rows out). Skipped when a row's count does not match its tokens."""
    scored = batch.mask
    counts = scored.sum(dim=1).tolist()
    if len(logprobs) != len(counts) or any(len(lp) != c for lp, c in zip(logprobs, counts, strict=True)):
        return
    out = torch.zeros(scored.shape, dtype=torch.float32, device=scored.device)
    flat = [v for row in logprobs for v in row]
    # Boolean-mask assignment fills row by row, left to right: each row's tokens in order.
    out[scored] = torch.tensor(flat, dtype=torch.float32, device=scored.device)
    batch.sampler_logp = out


def token_logprobs(
    model: torch.nn.Module, batch: TokenBatch, temperature: float = 1.0, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of each next token under `model`, from position `batch.start` on.

    Returns logp (B, L - 1 - start) and, if asked, the entropy of each predictive
    distribution (same shape, no gradient). Logits are divided by the sampling
    temperature so the log-probs describe the distribution that was sampled.
    """
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits  # (B, L, V)
    return _gather_logprobs(logits[:, batch.start : -1], batch.input_ids[:, batch.start + 1 :],
                            temperature, with_entropy)


@dataclass
class GroupedBatch:
    """Completions that share prompts (a GRPO group), so each prompt runs once.

    prompt_ids, prompt_mask: (P, Lp), left-padded so every prompt ends in the last
    column. owner: (B,) index of each completion's prompt. completion_ids,
    completion_mask: (B, T), right-padded. mask: (B, T), the scored tokens (the real
    completion tokens unless a caller masks more out).
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    owner: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    mask: torch.Tensor
    sampler_logp: torch.Tensor | None = None  # (B, T), see `attach_sampler_logprobs`


def build_grouped_batch(
    prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int, device: str = "cpu"
) -> GroupedBatch:
    """Collapse runs of identical consecutive prompts and pad both parts."""
    unique: list[list[int]] = []
    owner: list[int] = []
    for p in prompts:
        if not unique or unique[-1] != list(p):
            unique.append(list(p))
        owner.append(len(unique) - 1)
    lp, t = max(len(p) for p in unique), max(1, max(len(c) for c in completions))
    p_ids = torch.full((len(unique), lp), pad_id, dtype=torch.long)
    p_mask = torch.zeros((len(unique), lp), dtype=torch.long)
    for i, p in enumerate(unique):
        p_ids[i, lp - len(p) :] = torch.tensor(p, dtype=torch.long)
        p_mask[i, lp - len(p) :] = 1
    c_ids = torch.full((len(completions), t), pad_id, dtype=torch.long)
    c_mask = torch.zeros((len(completions), t), dtype=torch.bool)
    for i, c in enumerate(completions):
        c_ids[i, : len(c)] = torch.tensor(list(c), dtype=torch.long)
        c_mask[i, : len(c)] = True
    return GroupedBatch(p_ids.to(device), p_mask.to(device), torch.tensor(owner, device=device),
                        c_ids.to(device), c_mask.to(device), c_mask.clone().to(device))


def grouped_logprobs(
    model: torch.nn.Module, batch: GroupedBatch, temperature: float = 1.0, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Like `token_logprobs` for a GroupedBatch: logp (B, T) of each completion token.

    The prompts run once; their key/value cache is indexed out to the completions
    (differentiably, so gradients still reach the prompt positions) and the
    completions run on top of it. For a group of G samples of an Lp-token prompt
    that is G times fewer prompt tokens than `token_logprobs` processes.
    """
    p_pos = (batch.prompt_mask.cumsum(-1) - 1).clamp(min=0)
    keep = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}
    first = model(input_ids=batch.prompt_ids, attention_mask=batch.prompt_mask, position_ids=p_pos,
                  use_cache=True, **keep)
    cache = getattr(first, "cache", None) or first.past_key_values
    cache.batch_select_indices(batch.owner)  # (P, ...) -> (B, ...): each completion gets its prompt
    c_mask = batch.completion_mask.long()
    attention = torch.cat([batch.prompt_mask[batch.owner], c_mask], dim=1)  # (B, Lp + T)
    c_pos = batch.prompt_mask.sum(-1)[batch.owner].unsqueeze(1) + torch.arange(c_mask.shape[1], device=c_mask.device)
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    rest = model(input_ids=batch.completion_ids, attention_mask=attention, position_ids=c_pos,
                 use_cache=True, **{cache_arg: cache})
    # Token 0 is predicted by the prompt's last position, token t by completion position t - 1.
    logits = torch.cat([first.logits[:, -1:][batch.owner], rest.logits[:, :-1]], dim=1)  # (B, T, V)
    return _gather_logprobs(logits, batch.completion_ids, temperature, with_entropy)


@dataclass
class PackedBatch:
    """Prompt + completion sequences laid end to end, positions restarting at each one, in
    as few rows as hold them (first fit, longest first, rows as long as the longest
    sequence): next to no padding. transformers reads the restarts as a block-diagonal
    causal mask; with flash-attention that is its variable-length kernel.

    input_ids, position_ids: (R, L). keep: (R, L) bool, the positions whose logits
    predict a completion token; targets: (M,) those tokens and dest: (M,) where each lands
    in the flattened (B, T) layout, both in keep's row-major order. completion_mask:
    (B, T), right-padded; mask: (B, T), the scored tokens.
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    keep: torch.Tensor
    targets: torch.Tensor
    dest: torch.Tensor
    completion_mask: torch.Tensor
    mask: torch.Tensor
    sampler_logp: torch.Tensor | None = None


def build_packed_batch(
    prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int, device: str = "cpu"
) -> PackedBatch:
    """Pack each prompt with its completion into rows; the rest of a row is `pad_id`
    tokens forming a sequence of their own (their logits are never read)."""
    seqs = [list(p) + list(c) for p, c in zip(prompts, completions, strict=True)]
    width = max(2, max(len(x) for x in seqs))
    rows: list[list[int]] = []  # sequence numbers per row
    room: list[int] = []
    for i in sorted(range(len(seqs)), key=lambda i: -len(seqs[i])):
        fit = next((r for r, free in enumerate(room) if free >= len(seqs[i])), None)
        if fit is None:
            rows.append([])
            room.append(width)
            fit = len(rows) - 1
        rows[fit].append(i)
        room[fit] -= len(seqs[i])
    t = max(1, max(len(c) for c in completions))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    keep = torch.zeros((len(rows), width), dtype=torch.bool)
    targets: list[int] = []
    dest: list[int] = []
    for r, members in enumerate(rows):
        at = 0
        for i in members:
            n, lp = len(seqs[i]), len(prompts[i])
            ids[r, at : at + n] = torch.tensor(seqs[i], dtype=torch.long)
            positions[r, at : at + n] = torch.arange(n)
            keep[r, at + lp - 1 : at + n - 1] = True  # position j predicts token j + 1
            targets += seqs[i][lp:]
            dest += range(i * t, i * t + n - lp)
            at += n
        positions[r, at:] = torch.arange(width - at)  # the padding: one more sequence
    c_mask = torch.zeros((len(completions), t), dtype=torch.bool)
    for i, c in enumerate(completions):
        c_mask[i, : len(c)] = True
    return PackedBatch(ids.to(device), positions.to(device), keep.to(device),
                       torch.tensor(targets, dtype=torch.long, device=device),
                       torch.tensor(dest, dtype=torch.long, device=device), c_mask.to(device), c_mask.clone().to(device))


def packed_logprobs(
    model: torch.nn.Module, batch: PackedBatch, temperature: float = 1.0, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Like `token_logprobs` for a PackedBatch: logp (B, T) of each completion token, with
    logits computed only at the M positions that predict one."""
    kwargs = {"logits_to_keep": batch.keep} if _accepts(model, "logits_to_keep") and _keeps_by_mask() else {}
    logits = model(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False, **kwargs).logits
    if logits.dim() == 3:  # a model that computed every position's logits
        logits = logits[batch.keep]
    # (M, 1, V): one position per row, so the chunks of _gather_logprobs split positions.
    logp, entropy = _gather_logprobs(logits.unsqueeze(1), batch.targets.unsqueeze(1), temperature, with_entropy)
    shape = batch.completion_mask.shape
    out = logp.new_zeros(shape[0] * shape[1]).index_put((batch.dest,), logp.squeeze(1)).view(shape)
    if entropy is not None:
        entropy = entropy.new_zeros(shape[0] * shape[1]).index_put((batch.dest,), entropy.squeeze(1)).view(shape)
    return out, entropy


@functools.cache
def _keeps_by_mask() -> bool:
    """Whether this transformers takes a (B, L) boolean `logits_to_keep` (5.2x and later)."""
    import transformers.modeling_utils as modeling_utils

    return hasattr(modeling_utils, "slice_logits_to_keep")


def packing_supported(model: torch.nn.Module) -> bool:
    """Whether `model` reads restarting position ids as separate sequences (transformers'
    packed-sequence masks do; a model with its own attention mask code may not): the
    log-probs of three short sequences, two of them sharing a packed row, match the
    sequences run one by one."""
    device = next(model.parameters()).device
    vocab = int(getattr(getattr(model, "config", None), "vocab_size", 16) or 16)
    seqs = [[t % vocab for t in seq] for seq in ([1, 2, 3, 4], [5, 6], [7, 8])]
    try:
        with torch.no_grad():
            batch = build_packed_batch([s[:1] for s in seqs], [s[1:] for s in seqs], 0, str(device))
            packed = packed_logprobs(model, batch)[0][batch.mask]
            alone = torch.cat([token_logprobs(model, build_token_batch([s[:1]], [s[1:]], 0, str(device)))[0][0]
                               for s in seqs])
    except Exception:  # noqa: BLE001 - a model that cannot even run packed rows does not support them
        return False
    return bool(torch.allclose(packed, alone, atol=1e-3))


def sequence_logprobs(
    model: torch.nn.Module, batch: TokenBatch | GroupedBatch | PackedBatch, temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`token_logprobs`, `grouped_logprobs` or `packed_logprobs`, whichever fits the batch."""
    if isinstance(batch, GroupedBatch):
        return grouped_logprobs(model, batch, temperature, with_entropy)
    if isinstance(batch, PackedBatch):
        return packed_logprobs(model, batch, temperature, with_entropy)
    return token_logprobs(model, batch, temperature, with_entropy)


# Logit elements turned into float32 log-probs at a time (~256 MB): a 150k vocabulary
# fits without a float32 copy of the whole batch's logits.
LOGPROB_CHUNK_ELEMENTS = 64 * 1024 * 1024


def _gather_logprobs(
    logits: torch.Tensor, targets: torch.Tensor, temperature: float, with_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log_softmax(logits / temperature) at `targets` (B, T), and optionally the entropy.

    logits: (B, T, V) in the model's dtype. Rows go through in chunks of about
    LOGPROB_CHUNK_ELEMENTS (`_ChunkedLogprobs`): the float32 log-softmax of a chunk exists
    only while that chunk is computed, forward and backward, so the peak is the logits,
    their gradient and one chunk instead of two more float32 copies of the whole batch.
    """
    rows = max(1, LOGPROB_CHUNK_ELEMENTS // max(1, logits.shape[1] * logits.shape[2]))
    logp = _ChunkedLogprobs.apply(logits, targets, temperature, rows)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            parts = []
            for start in range(0, logits.shape[0], rows):
                logp_all = torch.log_softmax(_scaled(logits[start : start + rows], temperature), dim=-1)
                parts.append(-(logp_all.exp() * logp_all).sum(-1))
            entropy = torch.cat(parts)
    return logp, entropy


def _scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    x = logits.float()
    return x / temperature if temperature != 1.0 else x


class _ChunkedLogprobs(torch.autograd.Function):
    """(B, T, V) logits, (B, T) targets -> (B, T) float32 log-probs, `rows` rows at a time.

    Backward writes d logp / d logits = (onehot(target) - softmax) / temperature chunk by
    chunk into one gradient tensor, from the saved per-position log-sum-exp.
    """

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, targets: torch.Tensor, temperature: float, rows: int
                ) -> torch.Tensor:
        out = torch.empty(logits.shape[:2], dtype=torch.float32, device=logits.device)
        lse = torch.empty_like(out)
        for s in range(0, logits.shape[0], rows):
            x = _scaled(logits[s : s + rows], temperature)
            lse[s : s + rows] = torch.logsumexp(x, dim=-1)
            out[s : s + rows] = x.gather(-1, targets[s : s + rows].unsqueeze(-1)).squeeze(-1) - lse[s : s + rows]
        ctx.save_for_backward(logits, targets, lse)
        ctx.temperature, ctx.rows = temperature, rows
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        logits, targets, lse = ctx.saved_tensors
        grad = torch.empty_like(logits)
        in_place = logits.dtype == torch.float32 and ctx.temperature == 1.0
        for s in range(0, logits.shape[0], ctx.rows):
            e = s + ctx.rows
            g = grad_out[s:e].unsqueeze(-1).float()  # (b, T, 1)
            if in_place:  # the softmax is written straight into the gradient: no temporary at all
                gx = torch.sub(logits[s:e], lse[s:e].unsqueeze(-1), out=grad[s:e])
            else:
                gx = _scaled(logits[s:e], ctx.temperature).sub_(lse[s:e].unsqueeze(-1))
            gx.exp_().mul_(-g).scatter_add_(-1, targets[s:e].unsqueeze(-1), g)
            if not in_place:
                grad[s:e] = gx.div_(ctx.temperature) if ctx.temperature != 1.0 else gx
        return grad, None, None, None


def _accepts(model: torch.nn.Module, name: str) -> bool:
    params = inspect.signature(model.forward).parameters
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


class DataCursor:
    """Deterministic data order: a seeded permutation per epoch and a position in it.

    Its `state()` goes into each checkpoint so a resumed run reads the same examples.
    """

    def __init__(self, size: int, seed: int, epoch: int = 0, position: int = 0, shuffle: bool = True) -> None:
        if size <= 0:
            raise ValueError("The dataset is empty: there is nothing to train on.")
        self.size, self.seed, self.epoch, self.position, self.shuffle = size, seed, epoch, position, shuffle
        self._order = self._permutation()

    def _permutation(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        gen = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        return torch.randperm(self.size, generator=gen).tolist()

    def take(self, k: int) -> list[int]:
        """The next `k` indices, wrapping into a freshly shuffled epoch when needed."""
        out: list[int] = []
        while len(out) < k:
            if self.position >= self.size:
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._permutation()
            n = min(k - len(out), self.size - self.position)
            out.extend(self._order[self.position : self.position + n])
            self.position += n
        return out

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    @classmethod
    def restore(cls, size: int, seed: int, state: dict[str, Any] | None, shuffle: bool = True) -> DataCursor:
        state = state or {}
        return cls(size, seed, int(state.get("epoch", 0)), int(state.get("position", 0)), shuffle)


class StepClock:
    """Times steps and estimates the time left from the mean of recent ones."""

    def __init__(self, window: int = 10) -> None:
        self.window = window
        self.durations: list[float] = []
        self._start = time.perf_counter()

    def start(self) -> None:
        self._start = time.perf_counter()

    def stop(self) -> float:
        took = time.perf_counter() - self._start
        self.durations.append(took)
        return took

    def eta(self, steps_left: int) -> float | None:
        if not self.durations:
            return None
        recent = self.durations[-self.window :]
        return steps_left * sum(recent) / len(recent)


def micro_batches(n: int, size: int) -> list[list[int]]:
    """Row indices 0..n-1 cut into consecutive chunks of at most `size`."""
    return [list(range(i, min(i + size, n))) for i in range(0, n, size)]


def load_policy(config: TrainConfig, resume_from: str | Path | None) -> tuple[Any, Any, dict[str, Any]]:
    """(model, tokenizer, state): the configured model, or the one saved at `resume_from`
    with its training state (step, optimizer, scheduler, data position) and RNGs restored."""
    from engine.models import load_model, load_tokenizer

    options: dict[str, Any] = {"dtype": config.dtype, "device": config.device, "attn_implementation": config.attn_implementation,
               "gradient_checkpointing": config.gradient_checkpointing}
    if resume_from is not None:
        from engine.checkpoint import load_checkpoint, restore_rng

        adapter = Path(resume_from) / "adapter"
        if config.lora is not None and adapter.is_dir():
            # The checkpoint's weights are merged; LoRA training goes on from the base model
            # and the saved adapter, so the optimizer state fits the adapter's parameters.
            model = load_model(config.model, lora=adapter, **options)
            _, tokenizer, saved = load_checkpoint(resume_from, with_model=False)
        else:
            model, tokenizer, saved = load_checkpoint(resume_from, **options)
        state = {f.name: getattr(saved, f.name) for f in fields(saved)}
        restore_rng(state.get("rng") or {})
        return model, tokenizer, state
    # `starter` / `starter-moe` are built on first use by engine.models.
    return load_model(config.model, lora=config.lora, **options), load_tokenizer(config.model), {}


def restore_training_state(optimizer: torch.optim.Optimizer, scheduler: Any, state: dict[str, Any],
                           model: torch.nn.Module | None = None) -> None:
    """Load optimizer and scheduler state saved by `save_stage_checkpoint` (pass the
    model when it may be sharded: the saved optimizer state is whole)."""
    if state.get("optimizer") is not None:
        if model is not None:
            from engine.distributed import load_optimizer_state

            load_optimizer_state(model, optimizer, state["optimizer"])
        else:
            optimizer.load_state_dict(state["optimizer"])
    if state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])


def save_stage_checkpoint(path: Path, model: Any, tokenizer: Any, **kw: Any) -> Any:
    """`engine.checkpoint.save_checkpoint`, returning its CheckpointRecord."""
    from engine.checkpoint import save_checkpoint

    return save_checkpoint(path, model, tokenizer, **kw)


def dummy_rows(pad_id: int) -> list[tuple[list[int], list[bool]]]:
    """One two-token row with no targets: what a rank with no rows left feeds a sharded
    model so that it runs as many passes as the others (its loss is multiplied by 0)."""
    return [([pad_id, pad_id], [False, False])]


def dummy_batch(pad_id: int, device: str = "cpu") -> TokenBatch:
    """`dummy_rows` as a batch."""
    return build_masked_batch(dummy_rows(pad_id), pad_id, device)


def pad_token_id(tokenizer: Any) -> int:
    """The pad id, else EOS, else 0 (padding is masked out, so any id works)."""
    for attr in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int):
            return value
    return 0
