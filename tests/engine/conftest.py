"""Shared fixtures: a tiny starter model built once per test session (a few seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.corpus import CorpusConfig
from engine.starter import StarterRecipe

torch.set_num_threads(min(2, torch.get_num_threads()))

# Small enough to build in seconds, trained enough to write the answer format now and then.
TINY = StarterRecipe(
    steps=40, batch_size=8, seq_len=128, lr=5e-3, warmup_steps=5, vocab_size=512,
    tokenizer_documents=2000, hidden_size=64, num_layers=2, intermediate_size=128,
    corpus=CorpusConfig(),
)


@pytest.fixture(scope="session")
def tiny_starter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine.starter import ensure_starter

    return ensure_starter("dense", tmp_path_factory.mktemp("data"), recipe=TINY)


@pytest.fixture()
def tiny_model_and_tokenizer(tiny_starter: Path) -> tuple:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_starter).eval()
    return model, AutoTokenizer.from_pretrained(tiny_starter)


@pytest.fixture(scope="session", autouse=True)
def _clean_redis() -> None:
    """Overrides the web tests' Redis flush: engine tests touch no Redis, and under
    `-p no:django` Django settings are not configured."""
