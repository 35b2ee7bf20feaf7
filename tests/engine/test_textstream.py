"""Streaming text token by token: characters split across byte-level tokens are held
back until whole, so a live view never shows U+FFFD, and the deltas add up to the text."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from engine.textstream import byte_table, make_stream_factory

TEXTS = [
    "<think>嗯，让我想一想：3 乘以 4 等于 12。</think> <answer>12</answer>",
    "Réfléchissons 🤔 : la réponse est 😀👍🏽 42 — voilà.",
    "数学很有趣 🧮🧠 and so is ∑ᵢ xᵢ² ≤ ∞",
]


def byte_level_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """A GPT-2 style byte-level BPE trained on a few lines: most CJK characters and every
    emoji stay split across several tokens, as in Qwen's and Llama 3's vocabularies."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"])
    tok.train_from_iterator(["the answer is 42", "<think> </think> <answer> </answer>"] * 50, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def stream(tokenizer, text: str, stop: list[str]) -> tuple[list[str], str]:
    s = make_stream_factory(tokenizer)(stop)
    deltas = []
    for token in tokenizer(text)["input_ids"]:
        delta, stopped = s.push(token)
        deltas.append(delta)
        if stopped:
            break
    deltas.append(s.flush())
    return deltas, s.text()


@pytest.mark.parametrize("text", TEXTS)
def test_byte_level_streams_show_no_replacement_character(text: str) -> None:
    tokenizer = byte_level_tokenizer(300)
    assert byte_table(tokenizer) is not None  # the O(1) byte-table path
    ids = tokenizer(text)["input_ids"]
    assert any("\ufffd" in tokenizer.decode([i]) for i in ids)  # characters really are split
    deltas, final = stream(tokenizer, text, [])
    assert final == text
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)


def test_a_stop_string_after_split_characters_cuts_the_text_cleanly() -> None:
    tokenizer = byte_level_tokenizer(300)
    deltas, final = stream(tokenizer, TEXTS[0], ["</answer>"])
    assert final == "<think>嗯，让我想一想：3 乘以 4 等于 12。</think> <answer>12"
    assert "".join(deltas) == final and not any("\ufffd" in d for d in deltas)


@pytest.mark.parametrize("text", TEXTS)
def test_the_generic_path_holds_back_unfinished_characters_too(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokenizers that are not byte-level BPE re-decode the completion each token."""
    import engine.textstream as ts

    tokenizer = byte_level_tokenizer(300)
    monkeypatch.setattr(ts, "byte_table", lambda _tok: None)
    deltas, final = stream(tokenizer, text, ["</answer>"])
    assert "".join(deltas) == final == text.split("</answer>")[0]
    assert not any("\ufffd" in d for d in deltas)
