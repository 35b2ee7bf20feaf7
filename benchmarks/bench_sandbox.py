"""Sandboxed executions per second (`engine.sandbox.run_many` at the default concurrency)
against plain ``subprocess.run([python, "-c", code])`` at the same concurrency, measured
in the same run, with the ratio (the price of isolation).

    .venv/bin/python benchmarks/bench_sandbox.py            # 200 runs of each
    .venv/bin/python benchmarks/bench_sandbox.py --runs 500

Both sides start the same interpreter with the same flags (``-I -S``), so the ratio is
the cost of bubblewrap, the runner and the status protocol, not of Python's start-up.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.sandbox import Job, check_available, load_settings, run_many  # noqa: E402

CODE = "def add(a, b):\n    return a + b\nprint(add(2, 3))\n"
TESTS = "assert add(2, 3) == 5\n"
ROUNDS = 5


def sandboxed_seconds(runs: int, concurrency: int) -> float:
    start = time.perf_counter()
    results = run_many([Job(CODE, tests=TESTS)] * runs, concurrency=concurrency)
    elapsed = time.perf_counter() - start
    bad = [r for r in results if not r.passed]
    if bad:
        raise SystemExit(f"{len(bad)} sandboxed runs did not pass: {bad[0].status} {bad[0].detail}")
    return elapsed


def plain_seconds(runs: int, concurrency: int, python: str) -> float:
    argv = [python, "-I", "-S", "-c", CODE + TESTS]

    def once(_: int) -> int:
        return subprocess.run(argv, capture_output=True).returncode

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        codes = list(pool.map(once, range(runs)))
    elapsed = time.perf_counter() - start
    if any(codes):
        raise SystemExit("plain subprocess runs failed")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    settings = load_settings()
    isolation = check_available()
    sandboxed_seconds(8, settings.concurrency)  # warm-up: the bwrap probe and page cache
    # Interleaved rounds, so load from other work on the machine hits both sides alike.
    rounds = max(1, min(ROUNDS, args.runs))
    per_round = args.runs // rounds
    plain_s = sandboxed_s = 0.0
    for _ in range(rounds):
        plain_s += plain_seconds(per_round, settings.concurrency, settings.python)
        sandboxed_s += sandboxed_seconds(per_round, settings.concurrency)
    plain, sandboxed = rounds * per_round / plain_s, rounds * per_round / sandboxed_s
    print(f"isolation: {isolation}, concurrency: {settings.concurrency}, runs: {args.runs}")
    print(f"sandboxed run_python: {sandboxed:7.1f} executions/s")
    print(f"baseline subprocess:  {plain:7.1f} executions/s (plain `python -I -S -c`)")
    print(f"ratio sandboxed/baseline: {sandboxed / plain:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
