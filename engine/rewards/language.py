"""The `language` reward: R1's language-consistency reward, the share of the reasoning
written in ``example["language"]`` (``"en"`` or ``"zh"``).

Reasoning is the text inside the ``<think>`` block (up to ``</think>``; the opening tag
may have been pre-filled by the prompt), else the whole completion. Before counting,
fenced code, LaTeX math (``$...$``, ``\\(...\\)``, ``\\[...\\]``) and LaTeX commands are
removed: formulas belong to no language. Units then are:

- an English word: a run of ASCII letters (with inner apostrophes) of at least two
  letters, or the words "a" and "I" (single letters are mostly variables);
- a Chinese unit: one CJK ideograph (Chinese is not written with spaces);
- any other word (Cyrillic, Arabic, kana runs, accented Latin, ...): one unit of no
  target language.

The reward is target units / all units, in [0, 1]; reasoning with no units scores 0.0.

>>> language_reward("<think>Let me add the numbers.</think> 4", {"language": "en"})
1.0
>>> language_reward("<think>我们 add 一下</think> 4", {"language": "zh"})
0.8
"""

from __future__ import annotations

import re
from typing import Any

from engine.rewards.registry import register

LANGUAGES = ("en", "zh")
MAX_CHARS = 200_000  # a longer reasoning is judged on its first MAX_CHARS characters
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff"
_STRIP = re.compile(
    r"```.*?```|\$\$.*?\$\$|\$[^$]*\$|\\\(.*?\\\)|\\\[.*?\\\]|\\[A-Za-z]+",
    re.DOTALL,
)
_UNIT = re.compile(rf"[{_CJK}]|[A-Za-z]+(?:'[A-Za-z]+)*|[^\W\d_{_CJK}]+")


def language_reward(completion: str, example: dict[str, Any]) -> float:
    """Share of the reasoning's units in ``example["language"]`` (see the module doc).

    >>> language_reward("<think>计算 2+2 等于 4</think>", {"language": "zh"})
    1.0
    >>> language_reward("", {"language": "en"})
    0.0
    """
    language = example.get("language", "en")
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, got {language!r}")
    counts = count_units(reasoning_text(completion)[:MAX_CHARS])
    total = sum(counts.values())
    return counts[language] / total if total else 0.0


def reasoning_text(completion: str) -> str:
    """The text inside the think block, else the whole completion.

    >>> reasoning_text("<think> a b </think> c")
    ' a b '
    >>> reasoning_text("prefilled thinking</think> c")
    'prefilled thinking'
    """
    end = completion.find("</think>")
    if end < 0:
        start = completion.find("<think>")
        return completion if start < 0 else completion[start + len("<think>") :]
    head = completion[:end]
    start = head.find("<think>")
    return head if start < 0 else head[start + len("<think>") :]


def count_units(text: str) -> dict[str, int]:
    """{"en": English words, "zh": CJK ideographs, "other": other words}.

    >>> count_units("I have 3 苹果 and x = y, привет")
    {'en': 3, 'zh': 2, 'other': 1}
    """
    counts = {"en": 0, "zh": 0, "other": 0}
    for unit in _UNIT.findall(_STRIP.sub(" ", text)):
        if re.fullmatch(f"[{_CJK}]", unit):
            counts["zh"] += 1
        elif unit.isascii():
            counts["en"] += len(unit) > 1 or unit in ("a", "I")
        else:
            counts["other"] += 1
    return counts


register("language")(language_reward)
