"""Format rewards: R1's `<think>...</think>` answer layout, optionally with `<answer>` tags.

The rule (``format``): after optional leading whitespace the completion opens exactly one
``<think>`` block, closes it with exactly one ``</think>``, and then gives a non-empty
answer. The reasoning itself may be empty.

Prompts that end with ``<think>`` (the R1-Zero template pre-fills it) produce completions
without the opening tag: set ``example["think_prefilled"] = True`` and the completion
must then contain no ``<think>`` and exactly one ``</think>``. Without the flag an opening
tag is required, so an unrelated ``</think>`` never earns the reward.

>>> format_think("<think>2 + 2 = 4</think> The answer is 4.", {})
1.0
"""

from __future__ import annotations

import re
from typing import Any

from engine.rewards.registry import RewardFn, register

THINK = ("<think>", "</think>")
ANSWER = ("<answer>", "</answer>")


def format_reward(
    think: tuple[str, str] = THINK,
    answer: tuple[str, str] | None = None,
) -> RewardFn:
    """Builds a format reward for the given tags.

    `think`: the (open, close) reasoning tags. `answer`: when given, the text after the
    reasoning must be exactly one non-empty (open, close) block, with only whitespace
    around it, as in the R1-Zero template.

    >>> fmt = format_reward(answer=("<answer>", "</answer>"))
    >>> fmt("<think>4</think>\\n<answer>4</answer>", {})
    1.0
    >>> fmt("<think>4</think> 4", {})
    0.0
    """
    open_tag, close_tag = think

    def reward(completion: str, example: dict[str, Any]) -> float:
        rest = _after_reasoning(completion, open_tag, close_tag, bool(example.get("think_prefilled")))
        if rest is None:
            return 0.0
        ok = _answer_ok(rest, answer) if answer else bool(rest.strip())
        return 1.0 if ok else 0.0

    return reward


def _after_reasoning(completion: str, open_tag: str, close_tag: str, prefilled: bool) -> str | None:
    """The text after the single reasoning block, or None when the layout is wrong."""
    if completion.count(close_tag) != 1:
        return None
    opens = completion.count(open_tag)
    if prefilled:
        if opens:
            return None
    elif opens != 1 or not completion.lstrip().startswith(open_tag):
        return None
    return completion.split(close_tag, 1)[1]


def _answer_ok(rest: str, answer: tuple[str, str]) -> bool:
    open_tag, close_tag = answer
    pattern = rf"\s*{re.escape(open_tag)}(.*?){re.escape(close_tag)}\s*"
    match = re.fullmatch(pattern, rest, flags=re.DOTALL)
    if match is None or rest.count(open_tag) != 1 or rest.count(close_tag) != 1:
        return False
    return bool(match.group(1).strip())


_think = format_reward()
_think_answer = format_reward(answer=ANSWER)


@register("format")
def format_think(completion: str, example: dict[str, Any]) -> float:
    """1.0 for ``<think>reasoning</think> answer`` (see the module docstring), else 0.0.

    >>> format_think("2 + 2 = 4</think> 4", {"think_prefilled": True})
    1.0
    >>> format_think("<think>no answer follows</think>", {})
    0.0
    >>> format_think("<think>a</think> b <think>c</think> d", {})
    0.0
    """
    return _think(completion, example)


@register("format_answer_tag")
def format_answer_tag(completion: str, example: dict[str, Any]) -> float:
    """The R1-Zero layout: ``<think>reasoning</think> <answer>answer</answer>``.

    >>> format_answer_tag("<think>2 + 2 = 4</think>\\n<answer>4</answer>", {})
    1.0
    >>> format_answer_tag("<think>2 + 2 = 4</think> 4", {})
    0.0
    """
    return _think_answer(completion, example)
