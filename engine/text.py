"""Splitting a completion into its reasoning and its answer (R1's <think> format)."""

from __future__ import annotations

import re
from typing import Any

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def split_reasoning(completion: str, *, open_tag: str = "<think>", close_tag: str = "</think>") -> tuple[str, str]:
    """Return (reasoning, answer).

    The reasoning is what lies between the first `<think>` (or the start, when the
    prompt pre-filled it) and the last `</think>`; the answer is what follows, with
    `<answer>` tags removed. Without `</think>` the whole completion is the answer.

    >>> split_reasoning("<think>2+2 is 4</think> <answer>4</answer>")
    ('2+2 is 4', '4')
    >>> split_reasoning("just 4")
    ('', 'just 4')
    """
    end = completion.rfind(close_tag)
    if end < 0:
        return "", completion.strip()
    head, tail = completion[:end], completion[end + len(close_tag):]
    start = head.find(open_tag)
    reasoning = head[start + len(open_tag):] if start >= 0 else head
    match = _ANSWER_TAG.search(tail)
    answer = match.group(1) if match else tail
    return reasoning.strip(), answer.strip()


def user_text(prompt: Any) -> str:
    """A prompt as text: itself, or for chat messages the user's turns joined by newlines."""
    if isinstance(prompt, list):
        return "\n".join(str(m.get("content", "")) for m in prompt if m.get("role") == "user")
    return str(prompt or "")
