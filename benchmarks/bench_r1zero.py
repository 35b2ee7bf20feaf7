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
import json
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

    def __init__(self, deadline: float, print_every: int = 5) -> None:
        self.deadline = deadline
        self.print_every = print_every
        self.started = time.monotonic()
        self.train: dict[int, dict[str, float]] = {}
        self.evals: dict[int, dict[str, float]] = {}

    def metrics(self, step: int, values: dict[str, float]) -> None:
        elapsed = time.monotonic() - self.started
        if "accuracy" in values:
            self.train[step] = {"accuracy": values["accuracy"], "length": values["response_length/mean"],
                                "format": values.get("reward/format/mean", float("nan")),
                                "step_time": values.get("step_time", float("nan")), "minutes": elapsed / 60}
        if "eval/accuracy" in values:
            self.evals[step] = {"accuracy": values["eval/accuracy"], "length": values["eval/response_length"],
                                "minutes": elapsed / 60}
        train = self.train.get(step, {})
        if "eval/accuracy" in values or (train and step % self.print_every == 0):
            held_out = (f"eval accuracy {values['eval/accuracy']:.2f} (length {values['eval/response_length']:4.1f})"
                        if "eval/accuracy" in values else " " * 34)
            batch = (f"  train accuracy {train['accuracy']:.2f}  format {train['format']:.2f}  "
                     f"mean length {train['length']:4.1f} tokens  step {train['step_time']:.1f} s" if train else "")
            print(f"step {step:4d}  {elapsed / 60:5.1f} min  {held_out}{batch}", flush=True)

    def log(self, line: str) -> None:
        print(line, flush=True)

    def should_stop(self) -> bool:
        return time.monotonic() > self.deadline


def plot(sink: BenchSink, out: Path) -> Path:
    """Accuracy (held-out and train batch) and mean response length against wall-clock minutes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_len) = plt.subplots(1, 2, figsize=(11, 4))
    steps, evals = sorted(sink.train), sorted(sink.evals)
    t_train = [sink.train[s]["minutes"] for s in steps]
    t_eval = [sink.evals[s]["minutes"] for s in evals]
    ax_acc.plot(t_train, [sink.train[s]["accuracy"] for s in steps], alpha=0.35, label="train batch (T=1)")
    ax_acc.plot(t_eval, [sink.evals[s]["accuracy"] for s in evals], "o-", label="held-out (greedy)")
    ax_acc.set(xlabel="minutes (2 CPU threads)", ylabel="accuracy", ylim=(0, 1),
               title="R1-Zero on the starter: accuracy")
    ax_acc.legend()
    ax_len.plot(t_train, [sink.train[s]["length"] for s in steps], color="tab:green", alpha=0.5,
                label="train batch (T=1)")
    ax_len.plot(t_eval, [sink.evals[s]["length"] for s in evals], "o-", color="tab:olive", label="held-out (greedy)")
    ax_len.set(xlabel="minutes (2 CPU threads)", ylabel="mean completion tokens", title="response length")
    ax_len.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=BASELINE["minutes"], help="wall-clock budget")
    parser.add_argument("--arch", default="dense", choices=["dense", "moe"])
    parser.add_argument("--steps", type=int, default=None, help="override the number of steps")
    parser.add_argument("--out", default=str(ROOT / "var" / "bench"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a GRPOConfig field (JSON value), e.g. --set learning_rate=2e-4")
    parser.add_argument("--tag", default="", help="suffix for the plot and run folder names")
    args = parser.parse_args()
    torch.set_num_threads(2)

    from engine.starter import ensure_starter

    started = time.monotonic()
    model = ensure_starter(args.arch)
    print(f"starter ({args.arch}) ready at {model} after {time.monotonic() - started:.0f} s", flush=True)
    out = Path(args.out)
    config = r1zero_config(str(model), str(out / f"r1zero-{args.arch}{args.tag}"))
    if args.steps:
        config = replace(config, steps=args.steps)
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    if overrides:
        config = replace(config, **overrides)
        print(f"overrides: {overrides}", flush=True)
    sink = BenchSink(deadline=time.monotonic() + args.minutes * 60)
    result = run_grpo(config, sink)
    if result.metrics.get("eval/accuracy") is not None and result.step not in sink.evals:
        sink.evals[result.step] = {"accuracy": result.metrics["eval/accuracy"],
                                   "length": result.metrics["eval/response_length"],
                                   "minutes": (time.monotonic() - sink.started) / 60}
    return report(sink, result.step, plot(sink, out / f"r1zero-{args.arch}{args.tag}.png"))


def report(sink: BenchSink, steps: int, png: Path) -> int:
    evals = [sink.evals[s]["accuracy"] for s in sorted(sink.evals)]
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
