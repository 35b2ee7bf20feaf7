"""A user's reward function scoring one GRPO step's completions in the sandbox.

64 completions (8 prompts x 8 samples), the reward a brevity-and-answer function. Measured:
one sandbox for the whole step (`SandboxedReward.batch`, what Ponder does). Baselines in the
same run: one sandbox per completion on the sandbox thread pool (what a per-call design
pays), and the same function called in-process (no isolation: the floor).

    .venv/bin/python benchmarks/bench_custom_reward.py [--completions 64] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.rewards.sandboxed import SandboxedReward  # noqa: E402

SOURCE = '''
import re
def reward(completion, example):
    answer = completion.rsplit("</think>", 1)[-1]
    found = re.findall(r"-?\\d+", answer)
    right = 1.0 if found and found[-1] == example.get("answer") else 0.0
    return right + 0.1 / (1 + len(answer.split()))
'''


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--completions", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    completions = [f"<think>{i} plus {i} is {2 * i}</think> The answer is {2 * i}." for i in range(args.completions)]
    examples = [{"answer": str(2 * i if i % 3 else i)} for i in range(args.completions)]
    fn = SandboxedReward(SOURCE, name="bench")
    batch = timed(lambda: fn.batch(completions, examples), args.repeat)

    from concurrent.futures import ThreadPoolExecutor

    from engine.sandbox import load_settings

    workers = load_settings().concurrency
    with ThreadPoolExecutor(workers) as pool:
        per_call = timed(lambda: list(pool.map(fn, completions, examples)), max(1, args.repeat // 2))
    namespace: dict = {}
    exec(SOURCE, namespace)  # the floor only: Ponder never runs user code outside the sandbox
    local = timed(lambda: [namespace["reward"](c, e) for c, e in zip(completions, examples, strict=True)],
                  args.repeat)
    n = args.completions
    print(f"custom reward on one GRPO step of {n} completions (median of {args.repeat})")
    print(f"  one sandbox per step (Ponder)     {batch * 1000:8.1f} ms  {n / batch:8.0f} completions/s")
    print(f"  one sandbox per completion, {workers} threads {per_call * 1000:8.1f} ms  {n / per_call:8.0f} completions/s"
          f"  -> batching is {per_call / batch:.1f}x faster")
    print(f"  in-process, unsandboxed (floor)   {local * 1000:8.3f} ms  -> the sandbox costs {batch * 1000:.0f} ms a step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
