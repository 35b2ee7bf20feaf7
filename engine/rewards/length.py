"""Length rewards: DAPO's soft over-long punishment and the cosine length scaling of
"Demystifying Long Chain-of-Thought Reasoning in LLMs" (Yeo et al., 2025).

Length is ``example["completion_tokens"]`` when the trainer provides it, else the
completion's length in characters; limits are in the same unit. The registered
defaults read ``example["max_length"]`` (default `DEFAULT_MAX_LENGTH`) and, for ``length``,
``example["overlong_buffer"]`` (default a quarter of ``max_length``).

>>> overlong_penalty(max_length=100, buffer=20)("x" * 90, {})
-0.5
"""

from __future__ import annotations

import math
from typing import Any

from engine.rewards.math_reward import math_reward
from engine.rewards.registry import RewardFn, register

DEFAULT_MAX_LENGTH = 4096


def completion_length(completion: str, example: dict[str, Any]) -> int:
    """``example["completion_tokens"]`` if given, else ``len(completion)``."""
    tokens = example.get("completion_tokens")
    return int(tokens) if tokens is not None else len(completion)


def overlong_penalty(max_length: int, buffer: int) -> RewardFn:
    """DAPO's soft over-long punishment (eq. 13): 0 up to ``max_length - buffer``, then
    falling linearly to -1 at ``max_length``, and -1 beyond.

    >>> penalty = overlong_penalty(max_length=100, buffer=20)
    >>> [penalty("x" * n, {}) for n in (10, 80, 90, 100, 150)]
    [0.0, 0.0, -0.5, -1.0, -1.0]
    """
    if not 0 < buffer <= max_length:
        raise ValueError(f"Need 0 < buffer <= max_length, got buffer={buffer}, max_length={max_length}.")

    def reward(completion: str, example: dict[str, Any]) -> float:
        length = completion_length(completion, example)
        soft_start = max_length - buffer
        if length <= soft_start:
            return 0.0
        if length <= max_length:
            return (soft_start - length) / buffer
        return -1.0

    return reward


def cosine_length_reward(
    max_length: int,
    *,
    min_correct: float = 0.5,
    max_correct: float = 1.0,
    min_wrong: float = -1.0,
    max_wrong: float = -0.5,
    exceed: float = -1.0,
    correct: RewardFn = math_reward,
) -> RewardFn:
    """Cosine-scaled correctness: correct answers earn from `max_correct` (length 0) down
    to `min_correct` (at `max_length`); wrong answers are punished from `min_wrong`
    (length 0) easing to `max_wrong` (at `max_length`), so short wrong answers cost most
    and thinking longer is cheap when wrong. Beyond `max_length`: `exceed`.
    `correct(completion, example) >= 1.0` decides correctness.

    >>> always = lambda completion, example: 1.0
    >>> cosine_length_reward(100, correct=always)("x" * 50, {})
    0.75
    """

    def reward(completion: str, example: dict[str, Any]) -> float:
        length = completion_length(completion, example)
        if length > max_length:
            return exceed
        cosine = math.cos(length * math.pi / max_length)  # 1 at length 0, -1 at max
        if correct(completion, example) >= 1.0:
            lo, hi = min_correct, max_correct
        else:
            lo, hi = max_wrong, min_wrong
        return lo + 0.5 * (hi - lo) * (1.0 + cosine)

    return reward


def length_reward(completion: str, example: dict[str, Any]) -> float:
    """`overlong_penalty` with ``example["max_length"]`` and ``example["overlong_buffer"]``.

    >>> length_reward("x" * 10, {"max_length": 8, "overlong_buffer": 2})
    -1.0
    """
    max_length = int(example.get("max_length", DEFAULT_MAX_LENGTH))
    buffer = int(example.get("overlong_buffer", max(1, max_length // 4)))
    return overlong_penalty(max_length, buffer)(completion, example)


def length_cosine_reward(completion: str, example: dict[str, Any]) -> float:
    """`cosine_length_reward` with ``example["max_length"]``, judged by the `math` reward.

    >>> length_cosine_reward("<think>x</think> 7", {"answer": "7", "max_length": 10_000}) > 0.99
    True
    """
    max_length = int(example.get("max_length", DEFAULT_MAX_LENGTH))
    return cosine_length_reward(max_length)(completion, example)


register("length")(length_reward)
register("length_cosine")(length_cosine_reward)
