"""The offline starter: a tiny base model Ponder builds for itself, no download needed.

    path = ensure_starter("dense")          # var/models/starter-dense/, built on first use
    model = AutoModelForCausalLM.from_pretrained(path)

Two architectures: "dense" (a Llama-style decoder, ~0.7M parameters) and "moe" (a
miniature DeepSeek-V3: multi-head latent attention, the first layer dense and the rest
mixture-of-experts with 8 routed experts, top-2, and 1 shared expert). Both learn the
synthetic corpus of `engine.corpus`, which makes them base models in R1's sense: they
write the answer format, reason only sometimes, and are right mostly when they do.

Pretraining is deterministic (fixed seeds, fixed batch order, one thread) and takes a
few minutes for the dense model on a CPU core.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from engine.corpus import CorpusConfig, documents
from engine.tokenizer import train_tokenizer

STARTER_NAMES: dict[str, str] = {"starter": "dense", "starter-dense": "dense", "starter-moe": "moe"}
ARCHS = ("dense", "moe")
RECIPE_VERSION = 2  # bump when the recipe changes, so cached starters get rebuilt
Progress = Callable[[int, int, dict[str, float]], None]  # (step, total_steps, {"loss": ...})


@dataclass(frozen=True)
class StarterRecipe:
    """Everything that decides the starter's weights; saved next to them."""

    arch: str = "dense"
    steps: int = 1000  # optimizer steps
    batch_size: int = 16  # sequences per step
    seq_len: int = 128  # tokens per sequence (documents packed, masked from each other)
    lr: float = 5e-3
    warmup_steps: int = 30
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    weight_decay: float = 0.01
    vocab_size: int = 1024
    tokenizer_documents: int = 20_000
    seed: int = 0
    threads: int = 1  # one thread: deterministic, and on a busy 2-core machine faster than two
    hidden_size: int = 128  # dense model width
    num_layers: int = 3  # dense model depth
    intermediate_size: int = 384  # dense model MLP width
    corpus: CorpusConfig = field(default_factory=CorpusConfig)

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"Starter arch must be one of {', '.join(ARCHS)}, not {self.arch!r}.")
        if self.steps < 1 or self.batch_size < 1 or self.seq_len < 8:
            raise ValueError("Starter steps and batch_size must be positive and seq_len at least 8.")

    @classmethod
    def for_arch(cls, arch: str) -> StarterRecipe:
        """The default recipe of an architecture. The MoE model costs ~3x more per step
        (transformers runs its experts one by one), so it gets fewer steps: it is there to
        show the architecture, the dense model is the R1-Zero demo."""
        return cls(arch=arch, steps=400) if arch == "moe" else cls(arch=arch)

    def documents_needed(self) -> int:
        """Documents to generate so the packed stream covers every step once (~60 tokens each)."""
        return max(self.tokenizer_documents, self.steps * self.batch_size * self.seq_len // 40)


def model_config(recipe: StarterRecipe, tokenizer: Any) -> Any:
    """The transformers config of the recipe's architecture for `tokenizer`."""
    common = dict(
        vocab_size=len(tokenizer),
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if recipe.arch == "dense":
        # Llama, not Qwen2: transformers 5 loads a qwen2 directory's tokenizer as
        # Qwen2Tokenizer, which rebuilds the pre-tokenizer (one token per digit) and so
        # no longer encodes like the tokenizer the model was trained with.
        from transformers import LlamaConfig

        return LlamaConfig(
            hidden_size=recipe.hidden_size, intermediate_size=recipe.intermediate_size,
            num_hidden_layers=recipe.num_layers, num_attention_heads=4, num_key_value_heads=2, **common,
        )
    from transformers import DeepseekV3Config

    return DeepseekV3Config(
        hidden_size=96, intermediate_size=256, moe_intermediate_size=64, num_hidden_layers=4,
        first_k_dense_replace=1, n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1,
        n_group=1, topk_group=1, routed_scaling_factor=1.0, norm_topk_prob=True,
        num_attention_heads=4, num_key_value_heads=4, q_lora_rank=None, kv_lora_rank=32,
        qk_rope_head_dim=16, qk_nope_head_dim=16, v_head_dim=24, rope_interleave=True, **common,
    )


@dataclass
class Batch:
    """One pretraining batch of packed documents.

    input_ids, position_ids: (B, T); attention_mask: (B, 1, T, T) bool, causal and
    block-diagonal by document, so a token never attends across an EOS into another
    document and positions restart at 0 per document, exactly as at inference.
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor


def packed_batches(token_ids: list[list[int]], eos_id: int, recipe: StarterRecipe) -> Iterator[Batch]:
    """`recipe.steps` batches cut from the documents joined by EOS, in an order fixed by
    the seed; the stream is reused if it runs short.

    Why documents are masked from each other: the corpus' skill is copying from the
    question, and with packing the same words ("has 3") appear in earlier documents of
    the window too; masking removes that ambiguity, and copying forms several times sooner.
    """
    stream = torch.tensor([t for ids in token_ids for t in (*ids, eos_id)], dtype=torch.long)
    ends = stream == eos_id
    doc = torch.cumsum(ends, 0) - ends.long()  # the EOS belongs to the document it ends
    starts = torch.ones_like(stream, dtype=torch.bool)
    starts[1:] = doc[1:] != doc[:-1]
    first = torch.cummax(torch.where(starts, torch.arange(len(stream)), 0), 0).values
    position = torch.arange(len(stream)) - first
    width = recipe.seq_len
    usable = len(stream) // width * width
    blocks, docs, positions = (t[:usable].view(-1, width) for t in (stream, doc, position))
    causal = torch.tril(torch.ones(width, width, dtype=torch.bool))
    generator = torch.Generator().manual_seed(recipe.seed)
    order = torch.randperm(len(blocks), generator=generator)
    for step in range(recipe.steps):
        rows = order[torch.arange(step * recipe.batch_size, (step + 1) * recipe.batch_size) % len(blocks)]
        same_doc = docs[rows][:, :, None] == docs[rows][:, None, :]
        yield Batch(blocks[rows], positions[rows], (same_doc & causal)[:, None])


def lr_at(step: int, recipe: StarterRecipe) -> float:
    """Linear warm-up, then cosine decay to `lr * min_lr_ratio`."""
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return recipe.lr * (recipe.min_lr_ratio + (1 - recipe.min_lr_ratio) * cosine)


def pretrain(model: torch.nn.Module, batches: Iterator[Batch], recipe: StarterRecipe,
             progress: Progress | None = None) -> float:
    """Next-token training on `batches`; returns the mean loss of the last 20 steps."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "norm" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "norm" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=recipe.lr, betas=(0.9, 0.95),
    )
    model.train()
    recent: list[float] = []
    for step, batch in enumerate(batches):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, recipe)
        loss = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                     position_ids=batch.position_ids, labels=batch.input_ids).loss  # shifted inside
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        recent = (recent + [loss.item()])[-20:]
        if progress is not None:
            progress(step + 1, recipe.steps, {"loss": recent[-1], "lr": lr_at(step, recipe)})
    model.eval()
    return sum(recent) / max(1, len(recent))


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_starter(out_dir: str | Path, recipe: StarterRecipe, progress: Progress | None = None) -> Path:
    """Train the tokenizer and the model of `recipe` and save both into `out_dir`
    (a Hugging Face directory: config, safetensors, tokenizer, `ponder_starter.json`)."""
    from transformers import AutoModelForCausalLM

    out = Path(out_dir)
    started = time.monotonic()
    docs = list(documents(recipe.documents_needed(), seed=recipe.seed, config=recipe.corpus))
    tokenizer = train_tokenizer(docs[: recipe.tokenizer_documents], recipe.vocab_size)
    token_ids = [e.ids for e in tokenizer.backend_tokenizer.encode_batch(docs, add_special_tokens=False)]
    with _threads(recipe.threads):
        torch.manual_seed(recipe.seed)
        model = AutoModelForCausalLM.from_config(model_config(recipe, tokenizer))
        final_loss = pretrain(model, packed_batches(token_ids, tokenizer.eos_token_id, recipe), recipe, progress)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    meta = {"recipe": _recipe_dict(recipe), "recipe_version": RECIPE_VERSION, "final_loss": final_loss,
            "build_seconds": round(time.monotonic() - started, 1)}
    (out / "ponder_starter.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def _recipe_dict(recipe: StarterRecipe) -> dict[str, Any]:
    return asdict(recipe)  # nested CorpusConfig included


def resolve_data_dir(path: str | Path | None = None) -> Path:
    """`PONDER_DATA_DIR` (default `var/`), or `path` when given."""
    return Path(path if path is not None else os.environ.get("PONDER_DATA_DIR", "var"))


def starter_dir_name(recipe: StarterRecipe) -> str:
    """`starter-dense`; a recipe other than the default gets a suffix so it never shadows it."""
    default = StarterRecipe.for_arch(recipe.arch)
    return f"starter-{recipe.arch}" if recipe == default else f"starter-{recipe.arch}-{_short_hash(recipe)}"


def _short_hash(recipe: StarterRecipe) -> str:
    import hashlib

    return hashlib.sha1(json.dumps(_recipe_dict(recipe), sort_keys=True).encode()).hexdigest()[:8]


def ensure_starter(arch: str = "dense", data_dir: str | Path | None = None, progress: Progress | None = None,
                   *, steps: int | None = None, recipe: StarterRecipe | None = None) -> Path:
    """The starter model's directory, building it first if it is not there yet.

    `arch` may also be a name from `STARTER_NAMES`. Two processes never build at once (a
    lock file); the build happens in a temporary directory renamed into place, so a
    directory that exists is complete. `steps` or `recipe` give a cheaper or different
    recipe (tests), cached under its own name.
    """
    arch = STARTER_NAMES.get(arch, arch)
    recipe = recipe or StarterRecipe.for_arch(arch)
    if steps is not None:
        recipe = replace(recipe, steps=steps)
    models_dir = resolve_data_dir(data_dir) / "models"
    target = models_dir / starter_dir_name(recipe)
    if _complete(target):
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with open(models_dir / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if we crash
        if _complete(target):  # another process built it while we waited
            return target
        for stale in models_dir.glob(f".{target.name}.*"):  # left by a build that was killed
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=models_dir))
        tmp.chmod(0o755)  # mkdtemp makes it private; the web app and workers read it too
        try:
            build_starter(tmp, recipe, progress)
            if target.exists():  # an incomplete leftover of an older layout
                shutil.rmtree(target)
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def built_starter(arch: str, data_dir: str | Path | None = None) -> Path | None:
    """The starter's directory when it is built already, else None (nothing is built)."""
    target = resolve_data_dir(data_dir) / "models" / starter_dir_name(StarterRecipe.for_arch(STARTER_NAMES.get(arch, arch)))
    return target if _complete(target) else None


def _complete(path: Path) -> bool:
    meta = path / "ponder_starter.json"
    if not meta.exists():
        return False
    return json.loads(meta.read_text()).get("recipe_version") == RECIPE_VERSION
