"""Ratings on the comparison pages: Bradley-Terry + Elo with 200 bootstrap resamples,
fitted all at once (stacked MM iterations) against the baseline of one fit per resample.

    python benchmarks/bench_ratings.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webapp.compare.stats import bradley_terry, elo, elo_intervals  # noqa: E402

ROUNDS = 200


def games(m: int, n: int, seed: int = 0) -> list[tuple[int, int, float]]:
    """n judgments among m checkpoints whose true Elo is spread over 400 points."""
    rng = np.random.default_rng(seed)
    truth = np.linspace(0, 400, m)
    out = []
    for _ in range(n):
        i, j = rng.choice(m, 2, replace=False)
        p = 1 / (1 + 10 ** ((truth[j] - truth[i]) / 400))
        u = rng.random()
        out.append((int(i), int(j), 0.5 if abs(u - p) < 0.05 else float(u < p)))
    return out


def looped(m: int, g: list[tuple[int, int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """The baseline: resample and fit one round at a time."""
    rng = np.random.default_rng(0)
    arr = np.asarray(g)
    fits = []
    for _ in range(ROUNDS):
        pick = arr[rng.integers(0, len(arr), len(arr))]
        w = np.zeros((m, m))
        np.add.at(w, (pick[:, 0].astype(int), pick[:, 1].astype(int)), pick[:, 2])
        np.add.at(w, (pick[:, 1].astype(int), pick[:, 0].astype(int)), 1 - pick[:, 2])
        fits.append(elo(bradley_terry(w, tol=1e-5)))
    return np.percentile(fits, 2.5, axis=0), np.percentile(fits, 97.5, axis=0)


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    print(f"{'checkpoints':>11} {'judgments':>9} {'stacked ms':>10} {'looped ms':>9} {'ratio':>6}")
    for m, n in ((2, 30), (4, 300), (8, 2000), (20, 5000)):
        g = games(m, n)
        stacked = best_of(lambda: elo_intervals(m, g, rounds=ROUNDS))  # noqa: B023
        loop = best_of(lambda: looped(m, g))  # noqa: B023
        print(f"{m:>11} {n:>9} {1000 * stacked:>10.1f} {1000 * loop:>9.1f} {loop / stacked:>6.1f}x")


if __name__ == "__main__":
    main()
