"""Training forward + backward time of one GRPO batch in each layout, on the CPU.

A batch of `--prompts` prompts x 8 completions whose lengths vary as sampled ones do
(uniform between 4 and `--length` tokens), through `engine.training.sequence_logprobs`
and a backward pass, in the three layouts GRPO can use: padded rows (prompt + completion,
right-padded: the baseline), grouped (each prompt once, its cache reused by its
completions: the default) and packed (sequences end to end, no padding). Medians of
interleaved rounds. Same model, same threads.

    .venv/bin/python benchmarks/bench_batch_layouts.py [--model var/bench/models/qwen2-10M] [--length 256]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(ROOT / "var" / "models" / "starter-dense"))
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--prompt-length", type=int, default=60)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    from engine.training import build_grouped_batch, build_packed_batch, build_token_batch, sequence_logprobs

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.eval()
    rng = random.Random(0)
    vocab = model.config.vocab_size
    prompts, completions = [], []
    for _ in range(args.prompts):
        prompt = [rng.randrange(2, vocab) for _ in range(args.prompt_length)]
        for _ in range(8):
            prompts.append(prompt)
            completions.append([rng.randrange(2, vocab) for _ in range(rng.randint(4, args.length))])
    layouts = {"padded rows (baseline)": build_token_batch, "grouped (default)": build_grouped_batch,
               "packed": build_packed_batch}
    times: dict[str, list[float]] = {name: [] for name in layouts}
    for _ in range(args.rounds + 1):
        for name, build in layouts.items():
            batch = build(prompts, completions, 0)
            model.zero_grad(set_to_none=True)
            t = time.perf_counter()
            logp, _ = sequence_logprobs(model, batch)
            (logp * batch.mask).sum().backward()
            times[name].append(time.perf_counter() - t)
    tokens = sum(len(c) for c in completions)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"{args.model} ({params:.1f}M), {len(completions)} completions of 4..{args.length} tokens "
          f"({tokens} in all, {tokens / len(completions) / args.length:.0%} of the longest), prompts of "
          f"{args.prompt_length}, {args.threads} threads; median of {args.rounds} rounds after a warm-up")
    base = statistics.median(times["padded rows (baseline)"][1:])
    for name, values in times.items():
        med = statistics.median(values[1:])
        print(f"  {name:<24} {med * 1000:8.1f} ms   {med / base:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
