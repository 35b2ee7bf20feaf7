"""engine.metrics: pass@k against brute-force enumeration, majority voting."""

from __future__ import annotations

import itertools
import math
import re

import pytest

from engine.metrics import cons_at_k, majority_vote, pass_at_k


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of all k-subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_it_matches_brute_force_enumeration(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


def test_it_matches_the_binomial_formula_for_large_n() -> None:
    for n, c, k in [(200, 13, 10), (1000, 1, 100), (500, 250, 7)]:
        exact = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-9)


def test_it_stays_finite_and_in_range_for_huge_n() -> None:
    value = pass_at_k(10**6, 3, 1000)
    assert 0.0 < value < 1.0
    assert pass_at_k(10**6, 0, 1000) == 0.0


@pytest.mark.parametrize(
    ("n", "c", "k", "want"),
    [(5, 0, 1, 0.0), (5, 5, 1, 1.0), (5, 4, 2, 1.0), (10, 3, 1, 0.3), (4, 1, 2, 0.5), (1, 1, 1, 1.0)],
)
def test_it_gives_known_values(n: int, c: int, k: int, want: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(want)


@pytest.mark.parametrize(
    ("n", "c", "k", "message"),
    [
        (5, 1, 6, "k must be"),
        (5, 1, 0, "k must be"),
        (5, 6, 1, "c (correct"),
        (5, -1, 1, "c (correct"),
        (0, 0, 1, "n (samples)"),
        (5.0, 1, 1, "n must be an int"),
        (5, True, 1, "c must be an int"),
    ],
)
def test_it_rejects_bad_arguments(n, c, k, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        pass_at_k(n, c, k)


@pytest.mark.parametrize(
    ("answers", "want"),
    [
        (["4"], "4"),
        (["4", "5", "5"], "5"),
        (["4", "5", "5", "4"], "4"),  # tie: the one seen first
        (["b", "a", "a", "b", "c"], "b"),
        ([3, 1, 2, 2, 1], 1),  # tie between 1 and 2: 1 was seen first
        ([None, None, "x"], None),
        ([(1, 2), (1, 2), (2, 1)], (1, 2)),
    ],
)
def test_majority_vote_picks_the_most_common_answer(answers: list, want: object) -> None:
    assert majority_vote(answers) == want


def test_majority_vote_rejects_an_empty_list() -> None:
    with pytest.raises(ValueError, match="at least one answer"):
        majority_vote([])


def test_cons_at_k_votes_among_extracted_answers() -> None:
    assert cons_at_k(["4", None, None, None, "4", "5"], lambda a: a == "4") == 1.0
    assert cons_at_k(["5", "4", "5"], lambda a: a == "4") == 0.0
    assert cons_at_k([None, None], lambda a: True) == 0.0


def test_reward_hacking_is_reward_up_while_held_out_accuracy_goes_down():
    from engine.metrics import reward_hacking

    def history(rewards, evals):
        rows = [{"step": 0.0, "eval/accuracy": evals[0]}]
        for step, r in enumerate(rewards, start=1):
            rows.append({"step": float(step), "reward/mean": r, **({"eval/accuracy": evals[step]} if step in evals else {})})
        return rows

    rising = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert reward_hacking(history(rising, {0: 0.2, 4: 0.6, 8: 0.4}))  # reward up, accuracy down: hacking
    assert not reward_hacking(history(rising, {0: 0.2, 4: 0.6, 8: 0.8}))  # both up: learning
    assert not reward_hacking(history([0.5] * 8, {0: 0.2, 4: 0.6, 8: 0.4}))  # reward flat: just noise
    assert not reward_hacking(history(rising, {0: 0.2, 8: 0.1}))  # two evaluations: too early to say
