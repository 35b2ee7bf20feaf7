"""Sampling throughput of Ponder's torch generation backend against transformers'
`model.generate` on the same model, prompts and lengths, measured in the same run.

    .venv/bin/python benchmarks/bench_generation.py                  # the dense starter (built if needed)
    .venv/bin/python benchmarks/bench_generation.py --model starter-moe --rounds 5

Workload: 64 completions (8 arithmetic prompts x 8 samples), up to 128 new tokens,
temperature 1.0. Two scenarios:
- "natural": completions end at EOS, as in GRPO rollouts (tokens counted up to EOS);
- "fixed": EOS ignored on both sides, every completion is 128 tokens.
Rounds alternate the two implementations; the median of each is reported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.generation import SamplingParams, TorchGenerator  # noqa: E402
from engine.models import load_model, load_tokenizer  # noqa: E402
from engine.tasks import get as get_task  # noqa: E402
from engine.tasks.templates import r1_zero_prompt  # noqa: E402

PROMPTS, SAMPLES, MAX_NEW = 8, 8, 128


def ours(model, tokenizer, prompts: list[str], ignore_eos: bool, seed: int) -> tuple[int, float]:
    """(completion tokens, seconds) for the torch backend."""
    gen = TorchGenerator(model, tokenizer, ignore_eos=ignore_eos)
    start = time.perf_counter()
    samples = gen.generate(prompts, SAMPLES, SamplingParams(max_new_tokens=MAX_NEW, seed=seed))
    return sum(len(s.completion_ids) for s in samples), time.perf_counter() - start


def baseline(model, tokenizer, prompts: list[str], ignore_eos: bool, seed: int) -> tuple[int, float]:
    """(completion tokens up to and including EOS, seconds) for `model.generate`."""
    batch = tokenizer([p for p in prompts for _ in range(SAMPLES)], return_tensors="pt", padding=True,
                      padding_side="left")
    eos = None if ignore_eos else tokenizer.eos_token_id
    torch.manual_seed(seed)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**batch, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=MAX_NEW,
                             eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
    seconds = time.perf_counter() - start
    new = out[:, batch["input_ids"].shape[1]:]
    if eos is None:
        return new.numel(), seconds
    ended = (new == eos).int()
    first = torch.where(ended.any(1), ended.argmax(1) + 1, torch.full_like(ended[:, 0], new.shape[1]))
    return int(first.sum()), seconds


def measure(model, tokenizer, prompts: list[str], ignore_eos: bool, rounds: int) -> tuple[float, float]:
    rates: dict[str, list[float]] = {"ours": [], "generate": []}
    for r in range(rounds + 1):
        for name, fn in (("ours", ours), ("generate", baseline)):
            tokens, seconds = fn(model, tokenizer, prompts, ignore_eos, seed=r)
            if r > 0:  # round 0 warms up both
                rates[name].append(tokens / seconds)
    return statistics.median(rates["ours"]), statistics.median(rates["generate"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="starter", help="model id or path (default: the dense starter)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model), load_tokenizer(args.model)
    prompts = [r1_zero_prompt(e["prompt"]) for e in get_task("arithmetic").examples("test", PROMPTS)]
    print(f"{SAMPLES * PROMPTS} completions x up to {MAX_NEW} tokens, temperature 1.0, "
          f"{args.threads} threads, model {args.model}")
    for label, ignore_eos in (("natural (stop at EOS)", False), ("fixed 128 tokens", True)):
        fast, slow = measure(model, tokenizer, prompts, ignore_eos, args.rounds)
        print(f"{label:22s} torch backend {fast:8.0f} tok/s   model.generate {slow:8.0f} tok/s   "
              f"ratio {fast / slow:.2f}x")


if __name__ == "__main__":
    main()
