"""Weighted sums of rewards that never raise: `score` for one completion, `score_batch`
for many (in parallel threads, so sandboxed code and Math-Verify helpers overlap).

>>> r = score("<think>1 + 1 = 2</think> \\\\boxed{2}", {"answer": "2"}, {"format": 0.5, "math": 1.0})
>>> r.total, r.components, r.errors
(1.5, {'format': 1.0, 'math': 1.0}, {})
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from engine.rewards.registry import RewardFn, resolve


@dataclass(frozen=True)
class ScoreResult:
    """`total` = sum of weight * component; `components` are unweighted, one per weight
    name; `errors` maps a reward that raised (or returned a non-finite value, or could
    not be resolved) to ``"ExceptionType: message"``; that component is 0.0."""

    total: float
    components: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def score(completion: str, example: dict[str, Any], weights: dict[str, float]) -> ScoreResult:
    """Scores one completion with `weights` ({reward name or dotted path: weight}).

    >>> score("no tags", {}, {"format": 1.0, "no_such_reward": 1.0}).errors["no_such_reward"][:20]
    'UnknownRewardError: '
    """
    components: dict[str, float] = {}
    errors: dict[str, str] = {}
    for name in weights:
        components[name], error = _component(name, completion, example)
        if error:
            errors[name] = error
    total = sum(float(weights[name]) * value for name, value in components.items())
    return ScoreResult(total=total, components=components, errors=errors)


def score_batch(
    completions: Sequence[str],
    examples: Sequence[dict[str, Any]] | dict[str, Any],
    weights: dict[str, float],
    *,
    concurrency: int | None = None,
) -> list[ScoreResult]:
    """`score` for each completion (with its example, or one shared example), in order.

    Runs on `concurrency` threads (default: the sandbox pool size): the `code` reward's
    sandboxes and the `math` reward's helper processes then work in parallel.

    >>> [r.total for r in score_batch(["<think>a</think> b", "b"], {}, {"format": 1.0})]
    [1.0, 0.0]
    """
    if isinstance(examples, dict):
        examples = [examples] * len(completions)
    if len(examples) != len(completions):
        raise ValueError(f"Got {len(completions)} completions but {len(examples)} examples.")
    if not completions:
        return []
    workers = concurrency or _default_concurrency()
    with ThreadPoolExecutor(max_workers=min(workers, len(completions))) as pool:
        return list(
            pool.map(lambda pair: score(pair[0], pair[1], weights), zip(completions, examples, strict=True))
        )


def _component(name: str, completion: str, example: dict[str, Any]) -> tuple[float, str]:
    try:
        fn: RewardFn = resolve(name)
        value = float(fn(completion, example))
    except Exception as exc:  # one broken reward must not sink the batch: it scores 0
        return 0.0, f"{type(exc).__name__}: {exc}"[:1000]
    if not math.isfinite(value):
        return 0.0, f"ValueError: reward returned {value}"
    return value, ""


def _default_concurrency() -> int:
    from engine.sandbox import load_settings

    return load_settings().concurrency
