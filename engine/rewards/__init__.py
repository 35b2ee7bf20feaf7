"""Verifiable rewards: plain functions `(completion, example) -> float`, by name.

    from engine import rewards
    rewards.names()   # ['code', 'code_speed', 'format', 'format_answer_tag', 'language', ...]
    rewards.get("math")("<think>...</think> \\\\boxed{1/2}", {"answer": "0.5"})        # 1.0
    rewards.score(completion, example, {"format": 0.2, "math": 1.0}).total
    rewards.score_batch(completions, examples, {"code": 1.0})  # sandboxes in parallel

Custom rewards are named by dotted path: ``resolve("my_pkg.rewards:brevity")``.
Built-ins: `format`, `format_answer_tag`, `math`, `code`, `code_speed`, `language`,
`length` (DAPO over-long penalty), `length_cosine` (cosine-scaled correctness).
"""

from engine.rewards import code_reward, language, math_reward  # noqa: F401  (registers built-ins)
from engine.rewards.combine import ScoreResult, score, score_batch
from engine.rewards.formats import format_reward
from engine.rewards.length import cosine_length_reward, overlong_penalty
from engine.rewards.registry import RewardFn, UnknownRewardError, get, names, register, resolve

__all__ = [
    "RewardFn",
    "ScoreResult",
    "UnknownRewardError",
    "cosine_length_reward",
    "format_reward",
    "get",
    "names",
    "overlong_penalty",
    "register",
    "resolve",
    "score",
    "score_batch",
]
