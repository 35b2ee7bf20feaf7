"""Evaluation metrics over sampled answers: pass@k and majority voting (cons@k / maj@k).

>>> round(pass_at_k(n=10, c=3, k=1), 6)
0.3
>>> majority_vote(["4", "5", "5", "4", "6"])
'4'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T", bound=Hashable)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al., 2021): the chance that at least one of k samples,
    drawn without replacement from n of which c are correct, is correct:
    ``1 - C(n-c, k) / C(n, k)``, computed as ``1 - prod_{i=n-c+1..n} (1 - k/i)`` so large
    n neither overflows nor loses precision. 1.0 when ``n - c < k``.

    >>> pass_at_k(5, 0, 2), pass_at_k(5, 4, 2), round(pass_at_k(4, 1, 2), 6)
    (0.0, 1.0, 0.5)
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if n < 1:
        raise ValueError(f"n (samples) must be at least 1, got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"c (correct samples) must be between 0 and n={n}, got {c}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and n={n}, got {k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def majority_vote(answers: Sequence[T]) -> T:
    """The most common answer; on a tie, the tied answer seen first. Answers compare by
    equality, so normalize them first (e.g. strip spaces); None is an answer like any
    other (filter it out to vote only among extracted answers).

    Raises ValueError on an empty list: there is no majority to report.

    >>> majority_vote(["b", "a", "a", "b"])
    'b'
    """
    if not answers:
        raise ValueError("majority_vote needs at least one answer")
    counts: dict[T, int] = {}
    for answer in answers:
        counts[answer] = counts.get(answer, 0) + 1
    return max(counts, key=counts.__getitem__)  # max keeps the first of equal counts


def majority_by(answers: Sequence[T], same: Callable[[T, T], bool]) -> T:
    """`majority_vote` where answers `same` holds equal vote together (`1/2` and `0.5` under
    a mathematical `same`): the first answer of the largest group; on a tie, the group seen
    first. Each answer is compared with one member of each group.

    >>> majority_by(["0.5", "3", "1/2"], lambda a, b: eval(a) == eval(b))
    '0.5'
    """
    if not answers:
        raise ValueError("majority_by needs at least one answer")
    groups: list[list[T]] = []
    for answer in answers:
        home = next((g for g in groups if g[0] == answer or same(g[0], answer)), None)
        if home is None:
            groups.append([answer])
        else:
            home.append(answer)
    return max(groups, key=len)[0]  # max keeps the first of equal sizes


def cons_at_k(answers: Sequence[T | None], is_correct: Callable[[T], bool]) -> float:
    """cons@k (maj@k): 1.0 when the majority of the extracted answers (None = no answer,
    skipped) is correct, else 0.0; 0.0 when no answer was extracted.

    >>> cons_at_k(["4", None, "5", "4"], lambda answer: answer == "4")
    1.0
    """
    extracted = [answer for answer in answers if answer is not None]
    if not extracted:
        return 0.0
    return 1.0 if is_correct(majority_vote(extracted)) else 0.0


HACKING_MARGIN = 0.05  # a rise in training reward and a fall in held-out accuracy, each at least this


def reward_hacking(history: Sequence[dict[str, float]], margin: float = HACKING_MARGIN) -> bool:
    """Whether the latest evaluation shows reward hacking: the training reward rose over the
    last window between evaluations (against the window before) while held-out accuracy
    fell, each by at least `margin`. `history` is a run's metric rows in step order (`step`,
    `reward/mean` each step, `eval/accuracy` at evaluations, step 0's baseline included)."""
    evals = [(int(h["step"]), h["eval/accuracy"]) for h in history if "eval/accuracy" in h]
    if len(evals) < 3:
        return False
    (s0, _), (s1, a1), (s2, a2) = evals[-3:]

    def mean_reward(low: int, high: int) -> float | None:
        window = [h["reward/mean"] for h in history if low < h["step"] <= high and "reward/mean" in h]
        return sum(window) / len(window) if window else None

    before, after = mean_reward(s0, s1), mean_reward(s1, s2)
    return before is not None and after is not None and after - before >= margin and a1 - a2 >= margin
