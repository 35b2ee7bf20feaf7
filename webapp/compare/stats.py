"""Statistics for pairwise judgments, as pure functions (no Django): the Wilson interval of
a win rate, a Bradley-Terry fit by minorization-maximization, Elo from its strengths, and
bootstrap intervals of those Elo ratings.

>>> lo, hi = wilson_interval(5, 10)
>>> round(lo, 4), round(hi, 4)
(0.2366, 0.7634)
>>> p = bradley_terry(np.array([[0.0, 3.0], [1.0, 0.0]]), prior=0.0)
>>> round(float(p[0] / p[1]), 6)
3.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

ELO_BASE = 1000.0
ELO_SCALE = 400.0  # Elo points per factor of 10 in the odds of winning


def wilson_interval(wins: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion `wins / n` (95% for z = 1.96). Unlike the
    normal approximation it stays inside [0, 1] and is honest for small n and rates near 0
    or 1. Ties may count as half a win, so `wins` may be fractional. (0, 1) when n = 0."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= wins <= n:
        raise ValueError(f"wins must be between 0 and n={n}, got {wins}")
    p, z2 = wins / n, z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def bradley_terry(wins: np.ndarray, *, prior: float = 0.5, iters: int = 5000, tol: float = 1e-9,
                  start: np.ndarray | None = None) -> np.ndarray:
    """Bradley-Terry strengths `p` (geometric mean 1) with P(i beats j) = p_i / (p_i + p_j).

    `wins` is (m, m), or (R, m, m) for R independent fits at once: `wins[i, j]` = times i
    beat j (a tie adds 0.5 to both cells). The fit is Hunter's (2004) MM iteration for the
    maximum-likelihood estimate,
        p_i <- W_i / sum_j n_ij / (p_i + p_j),   W_i = sum_j wins[i, j],  n_ij = wins[i, j] + wins[j, i],
    which raises the likelihood at every step. `prior` adds that many virtual ties to every
    pair that met, so a player who never won (or never lost) keeps a finite rating.
    Iteration stops when no log-strength moves by `tol` (1e-9 is 2e-7 Elo points); `start`
    (strengths of shape (m,)) warm-starts it, e.g. bootstrap refits from the full fit.
    """
    w = np.array(wins, dtype=float)
    m = w.shape[-1]
    if w.ndim not in (2, 3) or w.shape[-2] != m or (w < 0).any():
        raise ValueError("wins must be a square matrix (or a stack of them) of non-negative counts")
    eye = np.eye(m, dtype=bool)
    games = w + np.swapaxes(w, -1, -2)
    w = np.where(eye, 0.0, w + prior / 2 * (games > 0))
    games = np.where(eye, 0.0, w + np.swapaxes(w, -1, -2))
    total_wins = w.sum(axis=-1)
    p = np.ones(w.shape[:-1]) * (1.0 if start is None else np.asarray(start, dtype=float))
    for _ in range(iters):
        denom = (games / (p[..., :, None] + p[..., None, :])).sum(axis=-1)
        new = np.where(denom > 0, total_wins / np.where(denom > 0, denom, 1.0), p)
        new = np.maximum(new, 1e-12)  # a player who never won (prior 0) tends to 0
        new /= np.exp(np.log(new).mean(axis=-1, keepdims=True))
        if np.abs(np.log(new / p)).max() < tol:
            return new
        p = new
    return p


def elo(strengths: np.ndarray) -> np.ndarray:
    """Elo ratings from Bradley-Terry strengths: ELO_BASE + 400·log10(p), so a 400-point
    gap means 10:1 odds; with strengths of geometric mean 1 the mean rating is ELO_BASE."""
    return ELO_BASE + ELO_SCALE * np.log10(strengths)


def win_matrix(m: int, games: Sequence[tuple[int, int, float]]) -> np.ndarray:
    """(m, m) wins from games `(i, j, score)`: score 1 (i won), 0 (j won) or 0.5 (a tie)."""
    w = np.zeros((m, m))
    for i, j, score in games:
        w[i, j] += score
        w[j, i] += 1.0 - score
    return w


def elo_intervals(m: int, games: Sequence[tuple[int, int, float]], *, rounds: int = 200, seed: int = 0,
                  prior: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """95% bootstrap intervals (2.5th and 97.5th percentiles) of each player's Elo: the
    games are resampled with replacement `rounds` times and refit. Seeded, so a page shows
    the same interval on every load.

    Resampling n games with replacement is a multinomial draw over the distinct games
    (i, j, score), so each round is drawn as counts of those (at most 3·m² of them) rather
    than as n game indexes, and all rounds are fitted at once, warm-started from the full fit.
    """
    if not games:
        return np.full(m, ELO_BASE), np.full(m, ELO_BASE)
    rng = np.random.default_rng(seed)
    kinds, counts = np.unique(np.asarray(games, dtype=float), axis=0, return_counts=True)
    draws = rng.multinomial(len(games), counts / len(games), size=rounds).astype(float)  # (rounds, kinds)
    i, j, score = kinds[:, 0].astype(int), kinds[:, 1].astype(int), kinds[:, 2]
    cells = np.zeros((m * m, rounds))  # (cell i*m+j, round) -> wins of i over j
    np.add.at(cells, i * m + j, (draws * score).T)
    np.add.at(cells, j * m + i, (draws * (1.0 - score)).T)
    full = bradley_terry(win_matrix(m, games), prior=prior)
    fits = elo(bradley_terry(cells.T.reshape(rounds, m, m), prior=prior, tol=1e-5, start=full))  # 0.002 Elo
    return np.percentile(fits, 2.5, axis=0), np.percentile(fits, 97.5, axis=0)
