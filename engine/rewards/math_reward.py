"""The `math` reward: is the completion's final answer mathematically the reference?

The final answer is, in order: the last complete ``\\boxed{...}`` (nested braces allowed,
``\\fbox`` too); else the text after the last ``</think>`` (``<answer>`` tags dropped;
without ``</think>``, the content of ``<answer>`` tags), from which Math-Verify extracts
the answer (bare math such as ``[1,2)`` is read as LaTeX); else the last number.
It is compared with ``example["answer"]`` by Math-Verify (``0.5 == \\frac{1}{2} == 1/2``,
``50\\% == 0.5``, sets and intervals, units and ``^\\circ`` ignored), after a cheap exact
text match that also covers non-math answers such as multiple-choice letters.

Never raises on garbage: inputs are capped (`MAX_ANSWER_CHARS`), and a comparison that
runs past its timeout (``PONDER_MATH_TIMEOUT_S``, default 2 s per parse or verify step)
scores 0.0. Math-Verify runs in helper processes (`engine.rewards._math_worker`), which
makes timeouts work from any thread.

>>> math_reward("<think>Half of 1.</think> The answer is $\\\\boxed{\\\\frac{1}{2}}$.", {"answer": "0.5"})
1.0
>>> math_reward("<think>...</think> 0.6", {"answer": "0.5"})
0.0
"""

from __future__ import annotations

import atexit
import os
import re
import threading
from typing import Any

from engine.rewards._math_worker import HelperCrashed, HelperPool, MathTimeout
from engine.rewards.registry import register
from engine.text import split_reasoning

MAX_ANSWER_CHARS = 2_000  # a longer extracted answer is not a final answer: 0.0
TAIL_CHARS = 20_000  # only the end of a huge completion is searched for the answer
MAX_BOX_TRIES = 20  # unclosed \\boxed{ occurrences skipped before giving up
_BOX_COMMANDS = ("\\boxed", "\\fbox")
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_DELIMITERS = ("$", "\\(", "\\[", "\\boxed")
_COMMAND = re.compile(r"\\[A-Za-z]+")
_WORD = re.compile(r"[A-Za-z]{2,}")
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}")

_pool: HelperPool | None = None
_pool_lock = threading.Lock()


def math_reward(completion: str, example: dict[str, Any]) -> float:
    """1.0 when the final answer equals ``example["answer"]`` mathematically, else 0.0.

    >>> math_reward("so x = \\\\boxed{\\\\{1, 2\\\\}}", {"answer": "\\\\{2, 1\\\\}"})
    1.0
    >>> math_reward("no answer at all", {"answer": "3"})
    0.0
    """
    gold = str(example["answer"]).strip()
    pred = extract_answer(completion)
    if not pred or not gold or len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
        return 0.0
    if _normalize(pred) and _normalize(pred) == _normalize(gold):
        return 1.0
    try:
        ok = _helpers().verify(gold, pred, _timeout_s(), hard_timeout_s=3 * _timeout_s() + 2)
    except (MathTimeout, HelperCrashed):  # pathological input: the helper was killed
        return 0.0
    return 1.0 if ok else 0.0


def answers_equal(a: str, b: str) -> bool:
    """Whether two final answers are the same mathematics (`1/2` and `0.5`), by the same
    rules as `math_reward`: how majority votes group answers."""
    return a.strip() == b.strip() or math_reward(f"<answer>{b}</answer>", {"answer": a}) == 1.0


def extract_answer(completion: str) -> str | None:
    """The final answer as text for Math-Verify's `parse` (see the module docstring).

    >>> extract_answer("<think>try \\\\boxed{1}</think> so \\\\boxed{\\\\frac{a}{b}} wins")
    '\\\\boxed{\\\\frac{a}{b}}'
    >>> extract_answer("<think>2+2</think><answer> 4 </answer>")
    '\\\\boxed{4}'
    >>> extract_answer("it is 12 or maybe 13.5")
    '13.5'
    """
    boxed = last_boxed(completion)
    if boxed is not None:
        return f"\\boxed{{{boxed}}}" if boxed.strip() else None
    if "</think>" in completion or _ANSWER_TAG.search(completion[-TAIL_CHARS:]):
        _, answer = split_reasoning(completion)
        answer = _ANSWER_TAG.sub(r"\1", answer[-TAIL_CHARS:]).strip()
        return _parse_input(answer[-MAX_ANSWER_CHARS:])
    numbers = _NUMBER.findall(completion[-TAIL_CHARS:])
    return numbers[-1] if numbers else None


def last_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{...}``/``\\fbox{...}``, braces balanced,
    within the last `TAIL_CHARS` characters (bounded work on hostile input).

    >>> last_boxed("\\\\boxed{1} then \\\\boxed{\\\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    >>> last_boxed("\\\\boxed{unclosed") is None
    True
    """
    text = text[-TAIL_CHARS:]
    end = len(text)
    for _ in range(MAX_BOX_TRIES):
        start = max(text.rfind(cmd, 0, end) for cmd in _BOX_COMMANDS)
        if start < 0:
            return None
        content = _braced_after(text, start + (6 if text.startswith("\\boxed", start) else 5))
        if content is not None:
            return content
        end = start
    return None


def _parse_input(answer: str) -> str | None:
    """Bare math ("[1,2)", "2\\sqrt{3}") goes to Math-Verify in a box, which it parses as
    LaTeX; prose or delimited math ("The answer is $5$.") goes as is, to be extracted."""
    if not answer:
        return None
    delimited = any(mark in answer for mark in _DELIMITERS)
    words = _WORD.findall(_COMMAND.sub(" ", _TEXT_WRAPPER.sub(" ", answer)))
    return answer if delimited or words else f"\\boxed{{{answer}}}"


def _braced_after(text: str, i: int) -> str | None:
    """The balanced ``{...}`` content starting at text[i] (after spaces), else None."""
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


def _normalize(answer: str) -> str:
    """Loose text form for the exact-match shortcut: `\\boxed{ \\text{B} }.` -> `B`."""
    inner = last_boxed(answer)
    text = inner if inner is not None else answer
    text = _TEXT_WRAPPER.sub(r"\1", text)
    return re.sub(r"\s+|\$|\\[,;!]", "", text).rstrip(".")


def _timeout_s() -> int:
    return max(1, int(os.environ.get("PONDER_MATH_TIMEOUT_S", "2")))


def _helpers() -> HelperPool:
    global _pool
    with _pool_lock:
        if _pool is None:
            size = int(os.environ.get("PONDER_MATH_WORKERS", "0")) or min(4, os.cpu_count() or 1)
            _pool = HelperPool(size)
            atexit.register(_pool.close)
        return _pool


register("math")(math_reward)
