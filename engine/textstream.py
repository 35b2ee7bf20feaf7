"""Incremental detokenization with stop strings, for streaming sampled text.

A `TextStream` takes one token id at a time and returns the text that may be shown now.
It holds back a tail that could still become a stop string, so the deltas a caller
streams always add up exactly to the final `text()` (which excludes the stop string).

Byte-level BPE tokenizers (GPT-2 style: the starter's, Qwen's, Llama 3's) decode with a
per-token byte table and an incremental UTF-8 decoder, O(1) per token; any other
tokenizer falls back to re-decoding the whole completion each token (O(T) per token).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import Any


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (byte-level BPE)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, map(chr, chars), strict=True))


def byte_table(tokenizer: Any) -> list[bytes] | None:
    """The bytes each token id decodes to (b"" for special tokens), or None when the
    tokenizer is not byte-level BPE."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or type(backend.decoder).__name__ != "ByteLevel":
        return None
    byte_of = {c: b for b, c in bytes_to_unicode().items()}
    added = {i: t for i, t in tokenizer.added_tokens_decoder.items()}
    table: list[bytes] = []
    for i, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))):
        if i in added:
            table.append(b"" if added[i].special else added[i].content.encode("utf-8"))
        elif token is None or any(c not in byte_of for c in token):
            return None
        else:
            table.append(bytes(byte_of[c] for c in token))
    return table


class TextStream:
    """Text of one completion, token by token, cut at the first stop string."""

    def __init__(self, stop: list[str], decode_piece: Callable[[int], str], finish: Callable[[], str]) -> None:
        self.stop = stop
        self._longest = max((len(s) for s in stop), default=0)
        self._decode_piece = decode_piece
        self._finish = finish
        self._text = ""
        self._emitted = 0
        self.stopped = False

    def push(self, token: int) -> tuple[str, bool]:
        """Add one token; returns (text to emit now, whether a stop string was reached)."""
        before = len(self._text)
        self._text = self._decode_piece(token)
        if self.stop and self._cut_at_stop(before):
            return self._emit(len(self._text)), True
        return self._emit(len(self._text) - self._held_back()), False

    def flush(self) -> str:
        """End of the completion: decode what is pending and return the rest of the text."""
        if not self.stopped:
            self._text = self._finish()
            if self.stop:
                self._cut_at_stop(0)
        return self._emit(len(self._text))

    def text(self) -> str:
        """The completion's text so far (final once flushed or stopped)."""
        return self._text

    def _emit(self, upto: int) -> str:
        delta = self._text[self._emitted : upto] if upto > self._emitted else ""
        self._emitted = max(self._emitted, upto)
        return delta

    def _cut_at_stop(self, before: int) -> bool:
        """Truncate at the earliest stop string that ends in the new text."""
        start = max(0, before - self._longest + 1)
        hits = [p for p in (self._text.find(s, start) for s in self.stop) if p >= 0]
        if not hits:
            return False
        self._text = self._text[: min(hits)]
        self.stopped = True
        return True

    def _held_back(self) -> int:
        """Characters at the end that could be the start of a stop string."""
        for k in range(min(self._longest - 1, len(self._text)), 0, -1):
            tail = self._text[-k:]
            if any(s.startswith(tail) for s in self.stop):
                return k
        return 0


def make_stream_factory(tokenizer: Any) -> Callable[[list[str]], TextStream]:
    """A function that opens a `TextStream` per completion for `tokenizer`."""
    table = byte_table(tokenizer)
    if table is not None:
        return lambda stop: _byte_stream(stop, table)
    return lambda stop: _generic_stream(stop, tokenizer)


def _byte_stream(stop: list[str], table: list[bytes]) -> TextStream:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = [""]  # one mutable cell shared by the two closures

    def piece(token: int) -> str:
        text[0] += decoder.decode(table[token] if token < len(table) else b"")
        return text[0]

    def finish() -> str:
        text[0] += decoder.decode(b"", final=True)
        return text[0]

    return TextStream(stop, piece, finish)


def _generic_stream(stop: list[str], tokenizer: Any) -> TextStream:
    ids: list[int] = []

    def decode() -> str:
        return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def piece(token: int) -> str:
        ids.append(token)
        return decode().rstrip("\ufffd")  # an unfinished multi-byte character waits for its next token

    return TextStream(stop, piece, decode)
