"""R1-Zero on the offline starter model: GRPO straight on the base model, arithmetic task.

What R1-Zero showed, in miniature: with only verifiable rewards (format + correctness),
accuracy rises and so does response length, as the model learns to reason before
answering. Runs `run_grpo` with GRPOConfig's defaults, prints a row at each held-out
evaluation (step, elapsed seconds, held-out pass@1 at R1's evaluation temperature and
its mean length, the training batches' accuracy and length since the last row), a
verdict against the target, and plots both curves to a PNG under var/bench/.

    .venv/bin/python benchmarks/bench_r1zero.py            # the default 10-minute run
    .venv/bin/python benchmarks/bench_r1zero.py --minutes 3 --set learning_rate=3e-4 --tag=-lr3e-4
    .venv/bin/python benchmarks/bench_r1zero.py --steps 60 --minutes 60   # judge by steps on a busy box
    .venv/bin/python benchmarks/bench_r1zero.py --data gsm8k-layout      # a GSM8K-layout file, math-verify
    .venv/bin/python benchmarks/bench_r1zero.py --data reasoning_gym:basic_arithmetic   # the library's task and scorer
    .venv/bin/python benchmarks/bench_r1zero.py --data arithmetic-curriculum   # difficulty 2 -> 4, tested on 4

Target (2 CPU threads): held-out accuracy from <= 30% at step 0 to >= 70% within 10
minutes, with the mean response length rising (the model learns to reason first).
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
LENGTH_RISE = 1.5  # the final greedy length must be at least this multiple of step 0's


def r1zero_config(model: str, output_dir: str, eval_every: int) -> GRPOConfig:
    """GRPOConfig's defaults (tuned for the starter) with a fixed evaluation and a budget in
    steps large enough that the wall-clock deadline ends the run."""
    return GRPOConfig(
        model=model,
        output_dir=output_dir,
        task="arithmetic",
        steps=1000,
        eval_every=eval_every,
        eval_examples=100,
        stream_samples=0,
        num_threads=2,
    )


class BenchSink(NullSink):
    """Collects training and held-out metrics, prints a row per evaluation, and asks the
    run to stop at the deadline."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.started = time.monotonic()
        self.train: dict[int, dict[str, float]] = {}
        self.evals: dict[int, dict[str, float]] = {}
        print(f"{'step':>5} {'elapsed s':>9} {'eval acc':>8} {'eval len':>8} {'train acc':>9} "
              f"{'train len':>9} {'step s':>6}", flush=True)

    def metrics(self, step: int, values: dict[str, float]) -> None:
        elapsed = time.monotonic() - self.started
        if "accuracy" in values:
            self.train[step] = {"accuracy": values["accuracy"], "length": values["response_length/mean"],
                                "step_time": values.get("step_time", float("nan")), "seconds": elapsed}
        if "eval/accuracy" in values:
            self.evals[step] = {"accuracy": values["eval/accuracy"], "length": values["eval/response_length"],
                                "seconds": elapsed}
            print(self.row(step), flush=True)

    def since_last_eval(self, step: int) -> list[dict[str, float]]:
        """The training steps after the evaluation before `step`, up to `step`."""
        before = max((s for s in self.evals if s < step), default=-1)
        return [self.train[s] for s in sorted(self.train) if before < s <= step]

    def row(self, step: int) -> str:
        ev, window = self.evals[step], self.since_last_eval(step)

        def mean(key: str) -> str:
            return f"{sum(t[key] for t in window) / len(window):.2f}" if window else "-"

        return (f"{step:5d} {ev['seconds']:9.0f} {ev['accuracy']:8.2f} {ev['length']:8.1f} {mean('accuracy'):>9} "
                f"{mean('length'):>9} {mean('step_time'):>6}")

    def log(self, line: str) -> None:
        print(line, flush=True)

    def should_stop(self) -> bool:
        return time.monotonic() > self.deadline


def gsm8k_layout(out: Path) -> tuple[Path, Path]:
    """Train and test JSONL files in GSM8K's published layout (`question`, and `answer` with
    the working and `#### n`), written from the arithmetic task's word problems: Ponder must
    recognise the layout and grade with math-verify, not with the task's own grader."""
    from engine import tasks

    task = tasks.get("arithmetic")
    paths = []
    for split, n in (("train", 2000), ("test", 100)):
        path = out / f"gsm8k-layout-{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as f:
            for ex in task.examples(split, n):
                working, total = [], ex["start"]
                for op, k in ex["steps"]:
                    new = total + k if op == "+" else total - k
                    working.append(f"{total} {op} {k} = <<{total}{op}{k}={new}>>{new}")
                    total = new
                f.write(json.dumps({"question": ex["prompt"], "answer": "\n".join(working) + f"\n#### {total}"}) + "\n")
        paths.append(path)
    return paths[0], paths[1]


def data_overrides(data: str, out: Path) -> dict[str, object]:
    """Config fields for `--data`: the built-in arithmetic task, a GSM8K-layout file, or a
    reasoning_gym task (its easiest settings, which the starter can read)."""
    if data == "arithmetic":
        return {}
    if data == "arithmetic-curriculum":  # from the starter's own level (3 numbers) up; evaluate on the hardest
        return {"task_options": {"difficulty": 4}, "curriculum": {"promote_at": 0.8, "window": 3, "start_level": 1}}
    if data == "gsm8k-layout":
        train, test = gsm8k_layout(out)
        return {"task": None, "dataset": str(train), "eval_dataset": str(test),
                "rewards": {"format": 0.5, "math": 1.0}, "accuracy_reward": "math"}
    if data.startswith("reasoning_gym:"):
        return {"task": data, "task_options": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}
                if data == "reasoning_gym:basic_arithmetic" else {}}
    raise SystemExit(f"--data: arithmetic, arithmetic-curriculum, gsm8k-layout or reasoning_gym:<name>, not {data!r}")


def plot(sink: BenchSink, out: Path, eval_label: str, data: str = "arithmetic") -> Path:
    """Accuracy (held-out and train batch) and mean response length against training steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_len) = plt.subplots(1, 2, figsize=(11, 4))
    steps, evals = sorted(sink.train), sorted(sink.evals)
    ax_acc.plot(steps, [sink.train[s]["accuracy"] for s in steps], alpha=0.35, label="train batch (T=1)")
    ax_acc.plot(evals, [sink.evals[s]["accuracy"] for s in evals], "o-", label=eval_label)
    ax_acc.set(xlabel="step", ylabel="accuracy", ylim=(0, 1), title=f"R1-Zero on the starter ({data}): accuracy")
    ax_acc.legend(loc="lower right")
    ax_len.plot(steps, [sink.train[s]["length"] for s in steps], color="tab:green", alpha=0.5,
                label="train batch (T=1)")
    ax_len.plot(evals, [sink.evals[s]["length"] for s in evals], "o-", color="tab:olive", label=eval_label)
    ax_len.set(xlabel="step", ylabel="mean completion tokens", ylim=(0, None), title="response length")
    ax_len.legend(loc="lower right")
    if evals:  # wall-clock on a secondary axis: steps are what the run controls, seconds what users wait
        seconds = [sink.evals[s]["seconds"] for s in evals]
        fig.suptitle(f"{evals[-1]} steps in {seconds[-1]:.0f} s (2 CPU threads)", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=BASELINE["minutes"], help="wall-clock budget")
    parser.add_argument("--arch", default="dense", choices=["dense", "moe"])
    parser.add_argument("--steps", type=int, default=None, help="stop after this many steps (or at the deadline)")
    parser.add_argument("--eval-every", type=int, default=2, help="steps between held-out evaluations")
    parser.add_argument("--out", default=str(ROOT / "var" / "bench"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a GRPOConfig field (JSON value), e.g. --set learning_rate=2e-4")
    parser.add_argument("--data", default="arithmetic",
                        help="arithmetic (the built-in task), arithmetic-curriculum, gsm8k-layout, or reasoning_gym:<name>")
    parser.add_argument("--tag", default="", help="suffix for the plot and run folder names (write --tag=-x)")
    args = parser.parse_args()
    torch.set_num_threads(2)

    from engine.starter import ensure_starter

    started = time.monotonic()
    model = ensure_starter(args.arch)
    print(f"starter ({args.arch}) ready at {model} after {time.monotonic() - started:.0f} s", flush=True)
    out = Path(args.out)
    config = r1zero_config(str(model), str(out / f"r1zero-{args.arch}{args.tag}"), args.eval_every)
    overrides = {**data_overrides(args.data, out),
                 **{k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}}
    if args.steps:
        overrides["steps"] = args.steps
    if overrides:
        config = replace(config, **overrides)
        print(f"overrides: {overrides}", flush=True)
    print(f"GRPO: lr {config.learning_rate:g}, {config.prompts_per_step} prompts x {config.group_size} samples, "
          f"<= {config.max_new_tokens} new tokens, loss {config.loss_type}, budget {args.minutes:g} min", flush=True)
    sink = BenchSink(deadline=time.monotonic() + args.minutes * 60)
    result = run_grpo(config, sink)
    if result.metrics.get("eval/accuracy") is not None and result.step not in sink.evals:  # the final evaluation
        sink.evals[result.step] = {"accuracy": result.metrics["eval/accuracy"],
                                   "length": result.metrics["eval/response_length"],
                                   "seconds": time.monotonic() - sink.started}
    held_out = "held-out (greedy)" if config.eval_temperature == 0 else f"held-out (T={config.eval_temperature:g})"
    return report(sink, args.minutes, plot(sink, out / f"r1zero-{args.arch}{args.tag}.png", held_out, args.data))


def report(sink: BenchSink, minutes: float, png: Path) -> int:
    """The evaluations as a markdown table, the rates, and the verdict against the target."""
    evals = sorted(sink.evals)
    if not evals:
        print("no held-out evaluation ran: nothing to judge")
        return 1
    first, last = sink.evals[evals[0]], sink.evals[evals[-1]]
    reached = next((s for s in evals if sink.evals[s]["accuracy"] >= BASELINE["end_accuracy_min"]), None)
    steps = max(sink.train, default=0)
    train_seconds = sum(t["step_time"] for t in sink.train.values())
    print(f"\nplot: {png}\n")
    print("| step | elapsed s | eval accuracy | eval length | train accuracy | train length |")
    print("|---:|---:|---:|---:|---:|---:|")
    for s in evals:
        cells = sink.row(s).split()
        print("| " + " | ".join(cells[:6]) + " |")
    print(f"\n{steps} steps in {last['seconds']:.0f} s: {steps / max(last['seconds'], 1e-9):.3f} steps/s overall, "
          f"{train_seconds / max(steps, 1):.1f} s per training step (evaluations excluded)")
    if reached is not None:
        print(f">= {BASELINE['end_accuracy_min']:.0%} first at step {reached}, "
              f"{sink.evals[reached]['seconds']:.0f} s")
    accuracy_ok = first["accuracy"] <= BASELINE["start_accuracy_max"] and last["accuracy"] >= BASELINE["end_accuracy_min"]
    length_ok = last["length"] >= LENGTH_RISE * first["length"]
    verdict = "met" if accuracy_ok and length_ok else "NOT met"
    print(f"VERDICT: R1-Zero target {verdict}: eval accuracy {first['accuracy']:.2f} -> {last['accuracy']:.2f} "
          f"(target <= {BASELINE['start_accuracy_max']:.2f} -> >= {BASELINE['end_accuracy_min']:.2f} within "
          f"{minutes:g} min), mean response length {first['length']:.1f} -> {last['length']:.1f} tokens "
          f"({'rising' if length_ok else 'NOT rising'}: target >= {LENGTH_RISE}x)")
    return 0 if accuracy_ok and length_ok else 1


if __name__ == "__main__":
    sys.exit(main())
