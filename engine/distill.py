"""Distillation: a teacher writes verified reasoning traces, a smaller student learns them by SFT.

    result = run_distill(DistillConfig(teacher="var/runs/7/checkpoint-200", task="arithmetic"), sink)
    result.checkpoint   # the student's last checkpoint
    result.dataset      # <output_dir>/traces/dataset.jsonl, the traces it learned

R1's stage 6 (R1-RECIPE.md): small dense students fine-tuned by SFT only, no RL. Phase 1
is rejection sampling of the teacher (`engine.rejection`: k samples per prompt, keep the
verified, readable ones) into `<output_dir>/traces/`; phase 2 is `engine.sft.run_sft` of
the student on those traces, with checkpoints in `<output_dir>/checkpoint-<step>/`.

Both phases report through the one sink: the teacher's samples as rollouts and its
kept/dropped counts as metrics at step 0, the student's training from step 1 on, and
progress counted across both (prompts sampled, then optimizer steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from engine import distributed
from engine.config import (
    SFTConfig,
    StageConfigMixin,
    check_launch,
    launcher_option,
    nproc_option,
    option,
    require,
    sharding_option,
)
from engine.events import ForwardingSink, Sink
from engine.graded_sampling import DatasetStageResult
from engine.rejection import DATASET_FILE, RejectionConfig, run_rejection

__all__ = ["DatasetStageResult", "DistillConfig", "STUDENT_PRESETS", "resolve_student", "run_distill"]

TRACES_DIR = "traces"
# Students smaller than the starter, built on first use (same tokenizer recipe as the starter).
STUDENT_PRESETS: dict[str, dict[str, Any]] = {
    "starter-small": {"hidden_size": 64, "num_layers": 2, "intermediate_size": 192},
}


@dataclass
class DistillConfig(StageConfigMixin):
    """Settings of one distillation: teacher, student, the traces, and the student's SFT."""

    teacher: str = option("", "Checkpoint (or model name) that writes the reasoning traces.")
    student: str = option("starter", "Model fine-tuned on the traces: `starter` (the base model the teacher "
                          "grew from), `starter-small` (a 2-layer, 64-wide starter, pretrained on first use: "
                          "minutes of CPU), a Hugging Face name or a local path.")
    output_dir: str = option("var/runs/distill", "Folder for traces/ and the student's checkpoint-<step>/.")
    task: str | None = option("arithmetic", "Built-in task whose prompts the teacher answers; None when "
                              "`dataset` is given.")
    task_options: dict[str, Any] = option({}, "Options for the built-in task, e.g. {\"difficulty\": 2}.")
    dataset: str | None = option(None, "Path of a prompt dataset instead of a built-in task.")
    num_prompts: int | None = option(200, "Prompts the teacher answers (None: the whole train split).")
    k: int = option(4, "Teacher samples per prompt.")
    max_per_prompt: int = option(1, "Verified traces kept per prompt.")
    temperature: float = option(0.6, "Teacher sampling temperature.")
    top_p: float = option(0.95, "Teacher nucleus sampling threshold.")
    max_new_tokens: int = option(128, "Longest teacher trace in tokens.")
    accuracy_reward: str = option("task", "Reward whose value 1.0 verifies a trace (`task`: the task's grader).")
    rejection: dict[str, Any] = option({}, "Further RejectionConfig fields for the traces, e.g. "
                                       "{\"pass_rate_band\": [0.1, 0.9], \"min_language\": 0.95}.")
    learning_rate: float = option(5e-4, "Student's peak AdamW learning rate (tiny students; use ~1e-5 "
                                  "for billion-parameter ones).")
    epochs: float = option(2.0, "Passes over the traces (R1's distillation: 2).")
    batch_size: int = option(16, "Traces per optimizer step.")
    max_length: int = option(256, "Longest trace (prompt + completion) in tokens; longer ones are cut.")
    sft: dict[str, Any] = option({}, "Further SFTConfig fields for the student, e.g. {\"max_steps\": 100, "
                                 "\"warmup_steps\": 10}.")
    generation_backend: str = option("torch", "Teacher sampler: torch or vllm.")
    seed: int = option(0, "Seed for sampling, data order and the student's training.")
    dtype: str = option("float32", "Parameter dtype of both models.")
    device: str = option("cpu", "Torch device, e.g. cpu or cuda.")
    num_threads: int | None = option(None, "torch CPU threads (None leaves the process setting alone).")
    launcher: str = launcher_option()
    nproc_per_node: int = nproc_option()
    sharding: str = sharding_option()

    def __post_init__(self) -> None:
        check_launch(self.launcher, self.nproc_per_node, self.sharding)
        require(bool(self.teacher), "teacher must name the checkpoint that writes the traces.")
        require(bool(self.student), "student must name the model to fine-tune, e.g. starter.")
        require(self.student != self.teacher, "student must differ from teacher: distillation trains a "
                "different (usually smaller) model on the teacher's traces.")
        self.rejection_config()  # both phases validate their own fields; their sentences name the rule
        self.sft_config("student", "traces.jsonl")

    def rejection_config(self) -> RejectionConfig:
        """The teacher phase's config (writing into `<output_dir>/traces`)."""
        shared = {name: getattr(self, name) for name in ("task", "task_options", "dataset", "num_prompts", "k",
                  "max_per_prompt", "temperature", "top_p", "max_new_tokens", "accuracy_reward",
                  "generation_backend", "seed", "dtype", "device", "num_threads")}
        data = {**shared, "model": self.teacher, "split": "train",
                "output_dir": str(Path(self.output_dir) / TRACES_DIR), **self.rejection}
        return _build(RejectionConfig, data, "rejection")

    def sft_config(self, student_path: str, dataset: str) -> SFTConfig:
        """The student phase's config: SFT on `dataset` (prompts are used as written)."""
        shared = {name: getattr(self, name) for name in ("learning_rate", "epochs", "batch_size", "max_length",
                  "seed", "dtype", "device", "num_threads", "output_dir", "sharding")}
        data = {**shared, "model": student_path, "dataset": dataset, "template": "none",
                "micro_batch_size": self.batch_size, **self.sft}
        return _build(SFTConfig, data, "sft")


def _build(cls: Any, data: dict[str, Any], key: str) -> Any:
    """`cls.from_dict(data)`, naming `key` in the error when a field comes from it."""
    try:
        return cls.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{exc} (distill builds a {cls.__name__}; extra fields go in `{key}`)") from None


def resolve_student(name: str, data_dir: str | Path | None = None) -> str:
    """A loadable path or name for the student; presets are built on first use."""
    if name not in STUDENT_PRESETS:
        return name
    from engine.starter import StarterRecipe, ensure_starter

    return str(ensure_starter("dense", data_dir, recipe=StarterRecipe(**STUDENT_PRESETS[name])))


class _PhaseSink(ForwardingSink):
    """Passes everything to `inner`, with progress shifted into the stage-wide count."""

    def __init__(self, inner: Sink, offset: int, total: int | None = None) -> None:
        super().__init__(inner)
        self.offset, self.total = offset, total

    def progress(self, step: int, total: int, *, eta_s: float | None = None) -> None:
        whole = self.total if self.total is not None else self.offset + total
        self.inner.progress(self.offset + step, max(whole, self.offset + step), eta_s=eta_s)


def run_distill(config: DistillConfig, sink: Sink, resume_from: str | Path | None = None) -> DatasetStageResult:
    """Sample verified traces from the teacher, then fine-tune the student on them.

    A stop request ends the current phase early (status "cancelled"). `resume_from` is a
    student checkpoint of an earlier run with the same output_dir: the traces already
    written there are reused and the student's SFT carries on from the checkpoint.
    Under torchrun rank 0 samples the traces while the others wait; all train the student.
    """
    world = distributed.current()
    rej = config.rejection_config()
    traces = Path(rej.output_dir) / DATASET_FILE
    prompts = rej.num_prompts or 0
    phase1: DatasetStageResult | None = None
    if distributed.on_rank_zero(lambda: resume_from is None or not traces.exists(), world):
        phase1 = distributed.on_rank_zero(lambda: _teacher_traces(config, sink, rej, prompts), world)
        if phase1.status != "succeeded":
            return phase1
        prompts = int(phase1.metrics.get("rejection/prompts", prompts))
    else:
        sink.log(f"Distill: reusing the traces in {traces}")
    return _train_student(config, sink, str(traces), prompts, phase1, resume_from)


def _teacher_traces(config: DistillConfig, sink: Sink, rej: RejectionConfig, prompts: int) -> DatasetStageResult:
    """Phase 1: verified traces from the teacher (rejection sampling)."""
    sink.log(f"Distill, phase 1: traces from teacher {config.teacher}")
    estimate = _sft_steps(config, prompts * rej.max_per_prompt)
    phase1 = run_rejection(rej, _PhaseSink(sink, 0, prompts + estimate if prompts else None))
    if phase1.status == "succeeded" and phase1.dataset is None:
        raise ValueError("The teacher wrote no verified traces: nothing to distil. Check the teacher, "
                         "raise k or num_prompts, or loosen the rejection rules.")
    return phase1


def _train_student(config: DistillConfig, sink: Sink, traces: str, offset: int,
                   phase1: DatasetStageResult | None, resume_from: str | Path | None) -> DatasetStageResult:
    """Phase 2: SFT of the student on the traces; the result carries both phases' figures."""
    from engine.sft import run_sft

    student = distributed.on_rank_zero(lambda: resolve_student(config.student), distributed.current())
    sink.log(f"Distill, phase 2: SFT of student {config.student} on {traces}")
    result = run_sft(config.sft_config(student, traces), _PhaseSink(sink, offset), resume_from=resume_from)
    metrics = {**(phase1.metrics if phase1 else {}), **result.metrics}
    base = {f.name: getattr(result, f.name) for f in fields(result)}
    return DatasetStageResult(**{**base, "metrics": metrics}, dataset=traces)


def _sft_steps(config: DistillConfig, rows: int) -> int:
    """The student's optimizer steps for about `rows` traces (for the progress total)."""
    sft = config.sft_config("student", "traces.jsonl")
    return sft.max_steps or max(1, math.ceil(sft.epochs * math.ceil(max(rows, 1) / sft.batch_size)))
