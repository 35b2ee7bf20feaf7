"""A tiny randomly initialised Qwen2 and a small BPE tokenizer for stage tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

# A plain chat template of the kind instruct models ship (role markers, a generation prompt).
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def build_tiny_model(out: Path, seed: int = 0, *, arch: str = "qwen2", chat_template: str | None = None) -> Path:
    """Save a ~40k-parameter random Qwen2 (or Llama) with a 300-token BPE tokenizer into
    `out` with `save_pretrained`, as any Hugging Face checkpoint is laid out; with
    `chat_template` the tokenizer carries one, as instruct models' do."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from engine.corpus import documents
    from engine.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(list(documents(300, seed=seed)), vocab_size=300)
    config_class, model_class = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}[arch]
    config = config_class(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = model_class(config)
    model.save_pretrained(out, safe_serialization=True)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(out)
    return out


def letter_a(completion: str, example: dict[str, Any]) -> float:
    """A custom reward that varies a lot between random completions, so GRPO advantages
    on the tiny model are never all zero."""
    return completion.count("a") / 4
