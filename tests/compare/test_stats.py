"""The statistics behind the comparison pages, checked against cases worked out by hand
and against the conditions that define them."""

from itertools import combinations

import numpy as np
import pytest

from engine.metrics import pass_at_k
from webapp.compare.stats import bradley_terry, elo, elo_intervals, wilson_interval, win_matrix


@pytest.mark.parametrize("wins, n, low, high", [
    (5, 10, 0.2366, 0.7634),  # p = 1/2: centred
    (0, 10, 0.0, 0.2775),  # no wins still leaves room above 0
    (10, 10, 0.7225, 1.0),
    (81, 263, 0.2553, 0.3662),  # p = 0.308 on 263 games, worked out by hand
])
def test_wilson_interval_matches_the_formula_worked_by_hand(wins, n, low, high):
    lo, hi = wilson_interval(wins, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def test_wilson_interval_without_games_is_everything_and_shrinks_with_more():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    narrow, wide = wilson_interval(60, 100), wilson_interval(6, 10)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    with pytest.raises(ValueError, match="wins must be between 0 and n"):
        wilson_interval(11, 10)


def test_two_players_strength_ratio_is_the_ratio_of_wins():
    p = bradley_terry(np.array([[0.0, 3.0], [1.0, 0.0]]), prior=0.0)
    assert p[0] / p[1] == pytest.approx(3.0)
    ratings = elo(p)
    assert ratings[0] - ratings[1] == pytest.approx(400 * np.log10(3))
    assert ratings.mean() == pytest.approx(1000.0)


def test_counts_that_match_known_strengths_are_fitted_back_exactly():
    """Strengths 1, 2, 4 and 30 games per pair won in exactly the expected proportions:
    the likelihood's maximum is at those strengths."""
    truth = np.array([1.0, 2.0, 4.0])
    w = np.zeros((3, 3))
    for i, j in combinations(range(3), 2):
        w[i, j] = 30 * truth[i] / (truth[i] + truth[j])
        w[j, i] = 30 - w[i, j]
    p = bradley_terry(w, prior=0.0)
    assert p / p[0] == pytest.approx(truth, rel=1e-6)


def test_the_fit_solves_the_likelihood_equations_on_random_games():
    """At the maximum-likelihood estimate each player's expected wins equal their wins."""
    rng = np.random.default_rng(3)
    w = rng.integers(1, 20, (5, 5)).astype(float)
    np.fill_diagonal(w, 0)
    p = bradley_terry(w, prior=0.0)
    games = w + w.T
    expected = (games * p[:, None] / (p[:, None] + p[None, :])).sum(axis=1)
    assert expected == pytest.approx(w.sum(axis=1), rel=1e-6)
    stacked = bradley_terry(np.stack([w, w.T]), prior=0.0)  # many fits at once agree with one
    assert stacked[0] == pytest.approx(p, rel=1e-6) and stacked[1] == pytest.approx(1 / p, rel=1e-5)


def test_an_undefeated_checkpoint_keeps_a_finite_rating_with_the_prior():
    w = win_matrix(2, [(0, 1, 1.0)] * 5)
    ratings = elo(bradley_terry(w))
    assert np.isfinite(ratings).all() and ratings[0] > ratings[1]
    assert ratings[0] - ratings[1] == pytest.approx(400 * np.log10(5.25 / 0.25))  # 5 wins + half a virtual tie


def test_ties_count_half_a_win_each_way():
    assert win_matrix(2, [(0, 1, 0.5), (1, 0, 1.0)]).tolist() == [[0.0, 0.5], [1.5, 0.0]]


def test_bootstrap_intervals_hold_the_estimate_and_narrow_with_more_games():
    few = [(0, 1, 1.0)] * 6 + [(0, 1, 0.0)] * 3 + [(1, 2, 0.5)] * 3 + [(2, 0, 1.0)] * 2
    point = elo(bradley_terry(win_matrix(3, few)))
    low, high = elo_intervals(3, few)
    assert (low <= point + 1e-6).all() and (point - 1e-6 <= high).all()
    low10, high10 = elo_intervals(3, few * 10)
    assert ((high10 - low10) < (high - low)).all()
    again = elo_intervals(3, few)  # seeded: the same page shows the same interval
    assert again[0] == pytest.approx(low) and again[1] == pytest.approx(high)


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of the k-subsets of n samples (c of them correct) holding a correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(combinations(samples, k))
    return sum(any(s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n, c, k", [(4, 1, 2), (4, 0, 4), (5, 2, 3), (8, 3, 4), (6, 6, 1)])
def test_pass_at_k_is_the_unbiased_estimator(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k))
