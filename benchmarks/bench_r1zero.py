"""R1-Zero on the offline starter model: GRPO straight on the base model, arithmetic task.

What R1-Zero showed, in miniature: with only verifiable rewards (format + correctness),
accuracy rises and so does response length, as the model learns to reason before
answering. Prints held-out accuracy and mean response length every few steps, and
plots both to a PNG under var/bench/.

    .venv/bin/python benchmarks/bench_r1zero.py            # the default ~10-minute run
    .venv/bin/python benchmarks/bench_r1zero.py --minutes 3 --arch moe

Target (2 CPU threads): eval accuracy from <= 30% to >= 70% within 10 minutes.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from engine.events import NullSink  # noqa: E402
from engine.grpo import GRPOConfig, run_grpo  # noqa: E402

BASELINE = {"start_accuracy_max": 0.30, "end_accuracy_min": 0.70, "minutes": 10.0}


def r1zero_config(model: str, output_dir: str) -> GRPOConfig:
    """GRPOConfig's defaults (tuned for the starter) with a fixed evaluation and a budget in steps
    large enough that the wall-clock deadline ends the run."""
    return GRPOConfig(
        model=model,
        output_dir=output_dir,
        task="arithmetic",
        rewards={"format": 0.5, "task": 1.0},
        steps=1000,
        eval_every=10,
        eval_examples=100,
        stream_samples=0,
        num_threads=2,
    )


class BenchSink(NullSink):
    """Prints accuracy and length as they come, and asks the run to stop at the deadline."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.started = time.monotonic()
        self.train: dict[int, dict[str, float]] = {}
        self.evals: dict[int, float] = {}

    def metrics(self, step: int, values: dict[str, float]) -> None:
        elapsed = time.monotonic() - self.started
        if "accuracy" in values:
            self.train[step] = {"accuracy": values["accuracy"], "length": values["response_length/mean"],
                                "minutes": elapsed / 60}
        if "eval/accuracy" in values:
            self.evals[step] = values["eval/accuracy"]
            train = self.train.get(step, {})
            print(f"step {step:4d}  {elapsed / 60:5.1f} min  eval accuracy {values['eval/accuracy']:.2f}  "
                  f"train accuracy {train.get('accuracy', float('nan')):.2f}  "
                  f"mean length {values['eval/response_length']:.1f} tokens", flush=True)

    def log(self, line: str) -> None:
        print(line, flush=True)

    def should_stop(self) -> bool:
        return time.monotonic() > self.deadline


def plot(sink: BenchSink, out: Path) -> Path:
    """Accuracy (eval and train batch) and mean response length against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_len) = plt.subplots(1, 2, figsize=(11, 4))
    steps = sorted(sink.train)
    ax_acc.plot(steps, [sink.train[s]["accuracy"] for s in steps], alpha=0.35, label="train batch (T=1)")
    ax_acc.plot(sorted(sink.evals), [sink.evals[s] for s in sorted(sink.evals)], "o-", label="held-out (greedy)")
    ax_acc.set(xlabel="step", ylabel="accuracy", ylim=(0, 1), title="R1-Zero on the starter: accuracy")
    ax_acc.legend()
    ax_len.plot(steps, [sink.train[s]["length"] for s in steps], color="tab:green")
    ax_len.set(xlabel="step", ylabel="mean completion tokens", title="response length")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=BASELINE["minutes"], help="wall-clock budget")
    parser.add_argument("--arch", default="dense", choices=["dense", "moe"])
    parser.add_argument("--steps", type=int, default=None, help="override the number of steps")
    parser.add_argument("--out", default=str(ROOT / "var" / "bench"))
    args = parser.parse_args()
    torch.set_num_threads(2)

    from engine.starter import ensure_starter

    started = time.monotonic()
    model = ensure_starter(args.arch)
    print(f"starter ({args.arch}) ready at {model} after {time.monotonic() - started:.0f} s", flush=True)
    out = Path(args.out)
    config = r1zero_config(str(model), str(out / f"r1zero-{args.arch}"))
    if args.steps:
        config = replace(config, steps=args.steps)
    sink = BenchSink(deadline=time.monotonic() + args.minutes * 60)
    result = run_grpo(config, sink)
    if result.metrics.get("eval/accuracy") is not None:
        sink.evals[result.step] = result.metrics["eval/accuracy"]
    return report(sink, result.step, plot(sink, out / f"r1zero-{args.arch}.png"))


def report(sink: BenchSink, steps: int, png: Path) -> int:
    evals = [sink.evals[s] for s in sorted(sink.evals)]
    lengths = [sink.train[s]["length"] for s in sorted(sink.train)]
    start, end = evals[0], evals[-1]
    early, late = sum(lengths[:5]) / max(1, len(lengths[:5])), sum(lengths[-5:]) / max(1, len(lengths[-5:]))
    print(f"\nplot: {png}")
    print(f"eval accuracy: start {start:.2f} (baseline <= {BASELINE['start_accuracy_max']:.2f}), "
          f"end {end:.2f} after {steps} steps (baseline >= {BASELINE['end_accuracy_min']:.2f})")
    print(f"mean response length: first 5 steps {early:.1f} tokens, last 5 steps {late:.1f} tokens")
    ok = start <= BASELINE["start_accuracy_max"] and end >= BASELINE["end_accuracy_min"]
    print("R1-Zero target " + ("met" if ok else "NOT met"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
