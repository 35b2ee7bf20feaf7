"""GRPO step time: Ponder's GRPO stage against TRL's `GRPOTrainer`, same model and workload.

    .venv/bin/python benchmarks/bench_grpo_vs_trl.py               # 12 steps each, 2 threads
    .venv/bin/python benchmarks/bench_grpo_vs_trl.py --steps 20 --prompts 8 --threads 2

Both sides train their own copy of the offline dense starter (var/models/starter-dense,
built if missing) on the same arithmetic prompts, in the same order (Ponder's data order;
TRL's shuffling is off and its dataset is laid out in that order), with group size 8,
at most 64 new tokens, temperature 1.0, the same rewards (task accuracy + 0.5 x format),
the same learning rate, constant schedule, token-level (dapo) loss, no KL, one update per
batch, on the same CPU threads. Ponder's `</answer>` stop string is turned off so both
sides sample until EOS or the length limit (mean completion lengths are printed: they
must be comparable for the step times to be).

The two runs are interleaved step by step in one process: TRL's trainer runs in the main
thread and, from a callback at the end of each of its steps, lets Ponder's `run_grpo`
(in a second thread, blocked in its sink between steps) run exactly one step; only one
of them computes at any time. Step time: TRL from `on_step_begin` to `on_step_end`
(generation, reward, loss, backward, optimizer step); Ponder its own `step_time` metric
(the same work, timed by the stage). Reported: the median of steps 3..N of each.

TRL settings follow /work/shared/notes/trl-grpo-on-cpu.md: use_cpu=True, bf16=False,
report_to="none", activation_checkpointing=False, beta=0.0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from engine.events import NullSink  # noqa: E402

GROUP, MAX_NEW, LR, FORMAT_WEIGHT = 8, 64, 1e-5, 0.5


class LockstepSink(NullSink):
    """Ponder's side: waits for a turn before each step, reports each step's time."""

    def __init__(self) -> None:
        self.ready = threading.Event()  # set once run_grpo has loaded everything
        self.turn = threading.Semaphore(0)
        self.done = threading.Semaphore(0)
        self.step_times: list[float] = []
        self.lengths: list[float] = []
        self.breakdown: list[dict[str, float]] = []  # the stage's time/* metrics, step by step
        self.error: BaseException | None = None

    def should_stop(self) -> bool:  # called at every step boundary, before the step's clock starts
        self.ready.set()
        self.turn.acquire()
        return False

    def metrics(self, step: int, values: dict[str, float]) -> None:
        if "step_time" in values:
            self.step_times.append(values["step_time"])
            self.lengths.append(values["response_length/mean"])
            self.breakdown.append({k: v for k, v in values.items() if k.startswith("time/")})
            self.done.release()


def ponder_config(model: str, prompts: int, steps: int, threads: int, output_dir: str, max_new: int = MAX_NEW):
    from engine.grpo import GRPOConfig

    return GRPOConfig(model=model, output_dir=output_dir, task="arithmetic",
                      rewards={"format": FORMAT_WEIGHT, "task": 1.0}, group_size=GROUP, prompts_per_step=prompts,
                      max_new_tokens=max_new, temperature=1.0, top_p=1.0, stop=[], steps=steps, learning_rate=LR,
                      warmup_steps=0, lr_schedule="constant", loss_type="dapo", beta=0.0, num_iterations=1,
                      epsilon_low=0.2, epsilon_high=0.28, max_grad_norm=1.0, eval_every=0, eval_examples=0,
                      stream_samples=0, num_threads=threads, seed=0)


def ponder_prompt_order(config) -> list[dict]:
    """The examples Ponder's stage will take, step by step (same cursor, same seed)."""
    from engine.grpo import _load_prompts, _task
    from engine.models import load_tokenizer
    from engine.training import DataCursor

    train, _ = _load_prompts(config, load_tokenizer(config.model), _task(config))
    cursor = DataCursor.restore(len(train), config.seed, None)
    return [train[i] for _ in range(config.steps) for i in cursor.take(config.prompts_per_step)]


def trl_trainer(model_path: str, examples: list[dict], prompts: int, steps: int, output_dir: str,
                max_new: int = MAX_NEW):
    """TRL's GRPOTrainer on the starter, with the same rewards and data order."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer

    from engine.rewards.formats import format_think
    from engine.tasks import get as get_task

    task = get_task("arithmetic")

    def task_reward(completions, answer, **_):
        return [float(task.evaluate(c, {"answer": a})) for c, a in zip(completions, answer, strict=True)]

    def format_reward(completions, **_):
        return [format_think(c, {}) for c in completions]

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    data = Dataset.from_list([{"prompt": ex["text"], "answer": str(ex["answer"])} for ex in examples])
    args = TRLConfig(
        output_dir=output_dir, use_cpu=True, bf16=False, report_to="none", disable_tqdm=True,
        per_device_train_batch_size=prompts * GROUP, num_generations=GROUP, max_completion_length=max_new,
        temperature=1.0, top_p=1.0, learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0,
        beta=0.0, loss_type="dapo", scale_rewards="group", epsilon=0.2, epsilon_high=0.28, num_iterations=1,
        max_grad_norm=1.0, reward_weights=[1.0, FORMAT_WEIGHT], max_steps=steps, logging_steps=1,
        save_strategy="no", seed=0, shuffle_dataset=False, activation_checkpointing=False,
        gradient_checkpointing=False, dataloader_num_workers=0,
    )
    return GRPOTrainer(model=model, reward_funcs=[task_reward, format_reward], args=args, train_dataset=data,
                       processing_class=tokenizer)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="steps of each (the median skips the first 2)")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step (x 8 completions)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from engine.starter import ensure_starter

    model_path = str(ensure_starter("dense"))
    print(f"{args.steps} steps each, {args.prompts} prompts x {GROUP} completions, <= {MAX_NEW} new tokens, "
          f"{args.threads} threads, model {model_path}, interleaved step by step", flush=True)
    return report(*interleaved(model_path, args.prompts, args.steps, args.threads))


def interleaved(model_path: str, prompts: int, steps: int, threads: int, max_new: int = MAX_NEW
                , sink: LockstepSink | None = None) -> tuple[list[float], list[float], list[float], list[float]]:
    """TRL's and Ponder's step times and mean completion lengths, one step of each in turn
    (`sink`, if given, keeps Ponder's per-step breakdown)."""
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", category=FutureWarning)
    from transformers import TrainerCallback

    from engine.grpo import run_grpo

    scratch = Path(tempfile.mkdtemp(prefix="bench-grpo-trl-"))
    config = ponder_config(model_path, prompts, steps, threads, str(scratch / "ponder"), max_new)
    trainer = trl_trainer(model_path, ponder_prompt_order(config), prompts, steps, str(scratch / "trl"), max_new)

    sink = sink or LockstepSink()

    def ponder() -> None:
        torch.set_num_threads(threads)
        try:
            run_grpo(config, sink)
        except BaseException as exc:  # surfaced in the main thread
            sink.error = exc
            sink.ready.set()
            sink.done.release()

    trl_times: list[float] = []
    trl_lengths: list[float] = []

    class Lockstep(TrainerCallback):
        """After each TRL step, time it, then let Ponder run one step and wait for it."""

        def on_step_begin(self, *_, **__):
            self.started = time.perf_counter()

        def on_step_end(self, *_, **__):
            trl_times.append(time.perf_counter() - self.started)
            sink.turn.release()
            sink.done.acquire()
            if sink.error is not None:
                raise sink.error

        def on_log(self, _args, _state, _control, logs=None, **__):
            if logs and "completions/mean_length" in logs:
                trl_lengths.append(logs["completions/mean_length"])

    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # TRL's per-step log dicts; the summary is printed below
    trainer.add_callback(Lockstep())
    worker = threading.Thread(target=ponder, daemon=True)
    worker.start()
    sink.ready.wait()  # Ponder's setup must not overlap TRL's first step
    if sink.error is not None:
        raise sink.error
    trainer.train()
    sink.turn.release()  # lets run_grpo reach its end (save) and return
    worker.join(timeout=120)
    return trl_times, sink.step_times, trl_lengths, sink.lengths


def report(trl: list[float], ours: list[float], trl_len: list[float], our_len: list[float]) -> int:
    for i, (a, b) in enumerate(zip(trl, ours, strict=False), start=1):
        la = f"{trl_len[i - 1]:5.1f}" if i <= len(trl_len) else "    ?"
        lb = f"{our_len[i - 1]:5.1f}" if i <= len(our_len) else "    ?"
        print(f"step {i:3d}  TRL {a:6.2f} s ({la} tokens)   Ponder {b:6.2f} s ({lb} tokens)")
    t, p = statistics.median(trl[2:]), statistics.median(ours[2:])
    mean = lambda xs: sum(xs) / max(1, len(xs))  # noqa: E731
    print(f"\nmedian step time, steps 3..{len(trl)}: TRL GRPOTrainer {t:.2f} s, Ponder {p:.2f} s, "
          f"ratio Ponder/TRL {p / t:.2f} (target <= 0.50)")
    print(f"mean completion length: TRL {mean(trl_len):.1f} tokens, Ponder {mean(our_len):.1f} tokens")
    return 0 if p / t <= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
