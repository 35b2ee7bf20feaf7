"""A tiny randomly initialised Qwen2 and a small BPE tokenizer for stage tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def build_tiny_model(out: Path, seed: int = 0) -> Path:
    """Save a ~40k-parameter Qwen2 with a 300-token BPE tokenizer into `out`."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from engine.corpus import documents
    from engine.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(list(documents(300, seed=seed)), vocab_size=300)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def letter_a(completion: str, example: dict[str, Any]) -> float:
    """A custom reward that varies a lot between random completions, so GRPO advantages
    on the tiny model are never all zero."""
    return completion.count("a") / 4
