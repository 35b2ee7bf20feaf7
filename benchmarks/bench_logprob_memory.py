"""Peak memory of the sampled tokens' log-probs (forward and backward) at a large vocabulary.

Logits of B x T positions over a V-token vocabulary (Qwen2's 151,936 by default), the
log-prob of one target per position, and a backward pass: Ponder's chunked path
(`engine.training._gather_logprobs`) against the whole-batch `log_softmax` + `gather`
it replaced, each in a fresh process (peak RSS from the kernel, minus the process's RSS
before the logits exist), and the time of each.

    .venv/bin/python benchmarks/bench_logprob_memory.py [--rows 8] [--length 256] [--vocab 151936]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(way: str, rows: int, length: int, vocab: int, dtype: str) -> tuple[float, float]:
    import torch

    sys.path.insert(0, str(ROOT))
    from engine.training import _gather_logprobs

    torch.manual_seed(0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    logits = torch.randn(rows, length, vocab, dtype=getattr(torch, dtype)).requires_grad_(True)
    targets = torch.randint(0, vocab, (rows, length))
    t = time.perf_counter()
    if way == "chunked":
        logp, _ = _gather_logprobs(logits, targets, 1.0, with_entropy=False)
    else:
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    logp.sum().backward()
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (peak - before) / 1024, seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=151_936)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--way", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.way:
        mib, seconds = measure(args.way, args.rows, args.length, args.vocab, args.dtype)
        print(f"{mib} {seconds}")
        return 0
    logits_mib = args.rows * args.length * args.vocab * (4 if args.dtype == "float32" else 2) / 2**20
    print(f"{args.rows} x {args.length} positions x {args.vocab} vocabulary, {args.dtype} logits "
          f"({logits_mib:,.0f} MiB of logits; their gradient is as large again)")
    results = {}
    for way in ("whole-batch log_softmax (before)", "chunked"):
        out = subprocess.run([sys.executable, __file__, "--way", way.split()[0] if way == "chunked" else "whole",
                              "--rows", str(args.rows), "--length", str(args.length), "--vocab", str(args.vocab),
                              "--dtype", args.dtype], capture_output=True, text=True, check=True).stdout.split()
        results[way] = (float(out[0]), float(out[1]))
        print(f"  {way:<36} peak +{results[way][0]:8,.0f} MiB   {results[way][1]:6.2f} s")
    (a, ta), (b, tb) = results.values()
    print(f"  chunked / before: memory {b / a:.2f}x, time {tb / ta:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
