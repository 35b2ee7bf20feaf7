"""GRPO step time against TRL's GRPOTrainer at several model sizes, and against the machine.

Plain Qwen2-architecture checkpoints (random init, seeded, saved with `save_pretrained`
with the starter's tokenizer: 861 tokens, so the parameters sit in the layers) of about
1M, 10M, 30M and 100M parameters; group size 8; each length in `--lengths`; the same
prompts, rewards and settings on both sides (`bench_grpo_vs_trl.interleaved`: one step
of each in turn in one process, the same threads). A random model seldom says EOS, so
completions run close to the length limit on both sides (mean lengths are printed).

The arithmetic: FLOPs a step needs (2N per token sampled, 6N per token trained on, the
prompt once per group both ways; attention left out, small at these lengths) against the
machine's fp32 matmul rate measured in the same run (square matmuls on the same threads).
Peak memory is not separable here (both trainers live in one process); `/usr/bin/time -v`
around `--only` runs of each gives it.

    .venv/bin/python benchmarks/bench_grpo_scale.py [--sizes 1M,10M,30M] [--lengths 64] [--steps 6]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_grpo_vs_trl import GROUP, LockstepSink, interleaved  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# hidden, layers, heads, kv heads, MLP width
SHAPES = {"1M": (128, 4, 4, 2, 512), "10M": (320, 6, 5, 1, 1280), "30M": (512, 10, 8, 2, 1536),
          "100M": (768, 14, 12, 2, 2304)}


def checkpoint(size: str) -> tuple[Path, int]:
    """A random Qwen2 of the named size in var/bench/models (made once), and its parameter count."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from engine.starter import ensure_starter

    path = ROOT / "var" / "bench" / "models" / f"qwen2-{size}"
    tokenizer = AutoTokenizer.from_pretrained(ensure_starter("dense"))
    if not (path / "config.json").exists():
        hidden, layers, heads, kv, mlp = SHAPES[size]
        torch.manual_seed(0)
        config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                             num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=mlp,
                             max_position_embeddings=2048, tie_word_embeddings=True,
                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
        Qwen2ForCausalLM(config).save_pretrained(path)
        tokenizer.save_pretrained(path)
    model = Qwen2ForCausalLM.from_pretrained(path)
    return path, model.num_parameters()


def matmul_rate(threads: int, n: int = 1024, rounds: int = 10) -> float:
    """The best fp32 GFLOP/s of n x n matmuls on `threads` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def useful_flops(params: int, prompts: int, prompt_len: float, length: float) -> float:
    """FLOPs one GRPO step must do: sample B = prompts x G completions and train on them."""
    completions = prompts * GROUP * length
    return 2 * params * (prompts * prompt_len + completions) + 6 * params * (prompts * prompt_len + completions)


def prompt_length(model: Path, prompts: int, steps: int) -> float:
    """Mean prompt tokens of the examples both sides train on."""
    from bench_grpo_vs_trl import ponder_config, ponder_prompt_order

    from engine.models import load_tokenizer

    tok = load_tokenizer(str(model))
    order = ponder_prompt_order(ponder_config(str(model), prompts, steps, 1, "/tmp/unused"))
    return statistics.mean(len(tok(ex["text"])["input_ids"]) for ex in order)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1M,10M,30M")
    ap.add_argument("--lengths", default="64", help="new tokens per completion, comma-separated")
    ap.add_argument("--steps", type=int, default=6, help="steps of each side (the median skips the first 2)")
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    rate = matmul_rate(args.threads)
    lp = prompt_length(checkpoint(args.sizes.split(",")[0])[0], args.prompts, args.steps)
    print(f"machine: {rate:.1f} GFLOP/s fp32 matmul on {args.threads} threads; {args.prompts} prompts x {GROUP} "
          f"completions, prompt ~{lp:.0f} tokens, {args.steps} steps each side, interleaved\n")
    rows = []
    for size in args.sizes.split(","):
        path, params = checkpoint(size)
        for length in (int(x) for x in args.lengths.split(",")):
            sink = LockstepSink()
            trl, ours, trl_len, our_len = interleaved(str(path), args.prompts, args.steps, args.threads, length, sink)
            t, p = statistics.median(trl[2:]), statistics.median(ours[2:])
            flops = [useful_flops(params, args.prompts, lp, statistics.mean(xs[2:])) for xs in (trl_len, our_len)]
            parts = {k: statistics.median(b[k] for b in sink.breakdown[2:]) for k in sink.breakdown[0]}
            rows.append((size, params, length, t, p, statistics.mean(trl_len[2:]), statistics.mean(our_len[2:]),
                         flops[0] / t / 1e9 / rate, flops[1] / p / 1e9 / rate, parts))
            print(f"{size:>5} ({params / 1e6:5.1f}M) {length:4d} tok: TRL {t:6.2f} s, Ponder {p:6.2f} s, "
                  f"ratio {p / t:.2f}; machine use TRL {rows[-1][7]:.0%}, Ponder {rows[-1][8]:.0%}; "
                  + ", ".join(f"{k[5:]} {v:.2f}" for k, v in parts.items()), flush=True)
    print("\n| size | params | new tokens | TRL step | Ponder step | Ponder / TRL | mean length TRL / Ponder "
          "| machine use TRL / Ponder |")
    print("|---|---|---|---|---|---|---|---|")
    for size, params, length, t, p, lt, lo, ut, uo, _ in rows:
        print(f"| {size} | {params / 1e6:.1f}M | {length} | {t:.2f} s | {p:.2f} s | {p / t:.2f} | {lt:.0f} / {lo:.0f} "
              f"| {ut:.0%} / {uo:.0%} |")
    return 0 if all(p / t <= 0.5 for _, _, _, t, p, *_ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
