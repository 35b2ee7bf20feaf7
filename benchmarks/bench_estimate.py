"""The launch form's estimate (`engine.estimate`) against real GRPO steps on this machine.

For the starter and random Qwen2 checkpoints of about 1M and 10M parameters
(`bench_grpo_scale.checkpoint`), full and LoRA: a few GRPO steps with the given settings,
then the estimated sampling and training seconds per step beside the measured ones
(`time/generate`, and `time/reference` + `time/forward_backward` + `time/optimizer`), and
their ratio. The rates are measured in the same process, on the run's threads.

    .venv/bin/python benchmarks/bench_estimate.py [--sizes 1M,10M] [--length 64] [--steps 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_grpo_scale import checkpoint  # noqa: E402

from engine.config import GRPOConfig  # noqa: E402
from engine.estimate import estimate, model_shape, rates  # noqa: E402
from engine.events import RecordingSink  # noqa: E402
from engine.grpo import run_grpo  # noqa: E402
from engine.models import load_tokenizer  # noqa: E402


def measured(config: GRPOConfig) -> dict[str, float]:
    sink = RecordingSink()
    run_grpo(config, sink)
    steps = [m for _, m in sink.metric_points if "time/generate" in m][1:]  # the first step warms up
    train = [m["time/reference"] + m["time/forward_backward"] + m["time/optimizer"] for m in steps]
    tokenizer = load_tokenizer(config.model)
    prompts = [len(tokenizer(r.prompt)["input_ids"]) for r in sink.rollout_records]
    return {"sampling": statistics.median(m["time/generate"] for m in steps), "training": statistics.median(train),
            "prompt": statistics.mean(prompts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1M,10M")
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    speed = rates("cpu", "float32")
    print(f"rates: {speed.flops / 1e9:.0f} GFLOP/s matmul, {speed.bandwidth / 1e9:.1f} GB/s copy ({speed.source})")
    print(f"{'model':<12} {'lora':<5} {'sampling est/meas (s)':>24} {'ratio':>6} {'training est/meas (s)':>24} {'ratio':>6}")
    for size in args.sizes.split(","):
        path, _ = checkpoint(size)
        for lora in (None, {"r": 8, "alpha": 16}):
            fields = dict(model=str(path), task="arithmetic", train_examples=64, eval_examples=0, eval_every=0,
                          steps=args.steps + 1, group_size=8, prompts_per_step=4, max_new_tokens=args.length,
                          micro_batch_size=32, beta=0.04, lora=lora, output_dir=str(Path("var/bench/estimate") / size),
                          learning_rate=1e-5, num_threads=args.threads)
            real = measured(GRPOConfig(**fields))
            # The estimate is given the prompt length the run measured (the form assumes one).
            est = estimate("grpo", fields, model_shape(path), speed, prompt_tokens=round(real["prompt"])).seconds
            print(f"{size:<12} {'yes' if lora else 'no':<5} {est['sampling']:>11.2f} / {real['sampling']:<10.2f} "
                  f"{est['sampling'] / real['sampling']:>6.2f} {est['training']:>11.2f} / {real['training']:<10.2f} "
                  f"{est['training'] / real['training']:>6.2f}")


if __name__ == "__main__":
    main()
