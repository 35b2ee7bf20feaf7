"""Pretraining the offline starter base model, a stage like the others.

    python -m engine pretrain --config pretrain.json      # {"arch": "moe"}; alias: starter

The weights come from `engine.starter` (deterministic, cached under
`<data_dir>/models/`, so a second run finds them at once). Stages that name `starter` or
`starter-moe` as a model get it built first by `ensure_starters`, with the pretraining's
progress on their own page.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import StageConfigMixin, option, require
from engine.events import Sink
from engine.starter import ARCHS, STARTER_NAMES, Progress, ensure_starter
from engine.training import StageResult

REPORT_EVERY = 10  # pretraining steps between progress reports (and metrics)
LOG_EVERY = 100  # ... and between log lines
MODEL_FIELDS = ("model", "teacher", "student")  # config fields that may name a starter


@dataclass
class PretrainConfig(StageConfigMixin):
    """Building the offline starter base model."""

    arch: str = option("dense", "Starter architecture: dense (Llama-style) or moe (DeepSeek-V3-style).")
    steps: int | None = option(None, "Pretraining steps (None: the recipe's default).")
    data_dir: str | None = option(None, "Data folder; the model lands in <data_dir>/models/ "
                                  "(None: PONDER_DATA_DIR, default var/).")
    output_dir: str = option("var/runs/starter", "Folder for the build's metrics and result.")

    def __post_init__(self) -> None:
        require(self.arch in ARCHS, f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}.")
        require(self.steps is None or self.steps >= 1, "steps must be at least 1 or None.")


def run_pretrain(config: PretrainConfig, sink: Sink, resume_from: str | Path | None = None) -> StageResult:
    """Build (or find) the starter, reporting the pretraining loss as this run's metrics."""
    progress = progress_reporter(sink, f"starter ({config.arch})", with_metrics=True)
    path = ensure_starter(config.arch, config.data_dir, progress, steps=config.steps)
    return StageResult(status="succeeded", step=config.steps or 0, checkpoint=str(path))


def ensure_starters(config: Any, sink: Sink) -> None:
    """Build the starters `config` names as a model, teacher or student before its stage
    starts (a few minutes, once per machine), with progress and an ETA in `sink`: the run's
    page shows the pretraining until the stage reports its own steps."""
    for name in sorted(starter_names(config)):
        ensure_starter(name, progress=progress_reporter(sink, name))


def starter_names(config: Any) -> set[str]:
    """The starter names among `config`'s model fields."""
    values: Iterable[Any] = (getattr(config, key, None) for key in MODEL_FIELDS)
    return {v for v in values if isinstance(v, str) and v in STARTER_NAMES}


def progress_reporter(sink: Sink, name: str, *, with_metrics: bool = False) -> Progress:
    """A pretraining progress callback: bar and ETA every few steps, a log line now and then, and the
    loss as metrics when the pretraining is the run itself (not a stage's preparation,
    whose step numbers are its own)."""
    started = time.monotonic()

    def progress(step: int, total: int, values: dict[str, float]) -> None:
        if step % REPORT_EVERY and step != total:
            return
        eta = (time.monotonic() - started) / step * (total - step) if step else None
        sink.progress(step, total, eta_s=eta)
        if with_metrics:
            sink.metrics(step, values)
        if step % LOG_EVERY and step != total:
            return
        loss = values.get("loss")
        sink.log(f"Pretraining the offline {name} model: step {step}/{total}"
                 + (f", loss {loss:.3f}" if loss is not None else "")
                 + (f", about {eta:.0f} s left" if eta else ""))

    return progress
