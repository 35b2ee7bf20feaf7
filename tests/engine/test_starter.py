"""The offline starter: tokenizer, deterministic build, cached and locked `ensure_starter`."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest
from safetensors.torch import load_file

from engine.starter import STARTER_NAMES, StarterRecipe, build_starter, ensure_starter, starter_dir_name
from engine.tokenizer import TAG_TOKENS

from .conftest import TINY

FASTEST = dataclasses.replace(TINY, steps=3, tokenizer_documents=500)


def test_tokenizer_keeps_tags_whole_and_round_trips(tiny_model_and_tokenizer: tuple) -> None:
    _, tokenizer = tiny_model_and_tokenizer
    for tag in TAG_TOKENS:
        assert len(tokenizer(tag)["input_ids"]) == 1
    text = "<think> Tom has 3 apples, so 3 + 5 = 8. </think> <answer> 8 </answer> 日本"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode(ids + [tokenizer.eos_token_id], skip_special_tokens=True) == text
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.pad_token == "<|pad|>"


def test_auto_tokenizer_encodes_like_the_trained_tokenizer(tiny_starter: Path) -> None:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    trained = Tokenizer.from_file(str(tiny_starter / "tokenizer.json"))
    loaded = AutoTokenizer.from_pretrained(tiny_starter)
    text = "User: Mia has 13 apples. Then Mia buys 5 more apples.\nAssistant: <think> So 13 + 5 = 18. </think>"
    assert loaded(text)["input_ids"] == trained.encode(text, add_special_tokens=False).ids


def test_the_starter_is_a_hugging_face_directory(tiny_starter: Path) -> None:
    assert (tiny_starter / "model.safetensors").exists()
    assert (tiny_starter / "tokenizer.json").exists()
    meta = json.loads((tiny_starter / "ponder_starter.json").read_text())
    assert meta["recipe"]["steps"] == TINY.steps


def test_build_is_deterministic(tmp_path: Path) -> None:
    first = build_starter(tmp_path / "a", FASTEST)
    second = build_starter(tmp_path / "b", FASTEST)
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)
    assert (first / "tokenizer.json").read_text() == (second / "tokenizer.json").read_text()


def test_ensure_starter_builds_once_even_when_raced(tmp_path: Path) -> None:
    builds: list[int] = []

    def progress(step: int, total: int, values: dict) -> None:
        if step == total:
            builds.append(step)

    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(ensure_starter("dense", tmp_path, progress,
                                                                             recipe=FASTEST)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1
    assert results[0] == results[1] and results[0].exists()
    assert ensure_starter("dense", tmp_path, progress, recipe=FASTEST) == results[0]
    assert len(builds) == 1
    assert not [p for p in (tmp_path / "models").iterdir() if p.is_dir() and p != results[0]]  # no temp dirs left


def test_names_and_recipes() -> None:
    assert STARTER_NAMES["starter"] == "dense" and STARTER_NAMES["starter-moe"] == "moe"
    assert starter_dir_name(StarterRecipe()) == "starter-dense"
    assert starter_dir_name(StarterRecipe.for_arch("moe")) == "starter-moe"
    assert starter_dir_name(FASTEST).startswith("starter-dense-")
    with pytest.raises(ValueError, match="arch must be one of dense, moe"):
        StarterRecipe(arch="rnn")


def test_corpus_is_deterministic_and_mixes_modes() -> None:
    from engine.corpus import CorpusConfig, documents

    docs = list(documents(600, seed=3))
    assert docs == list(documents(600, seed=3))
    templated = [d.split("Assistant:", 1)[1] for d in docs if d.startswith("A conversation") and "How many" in d]
    reasoned = [c for c in templated if c.startswith(" <think>") and " So " in c]
    direct = [c for c in templated if c.startswith(" <answer>")]
    assert 0.1 < len(reasoned) / len(templated) < 0.35
    assert len(direct) / len(templated) > 0.5
    practice = [d for d in docs if d.startswith("User:")]
    assert practice and all("<think>" in d for d in practice)
    with pytest.raises(ValueError, match="must not exceed 1"):
        CorpusConfig(reason_share=0.8, lazy_share=0.5)
