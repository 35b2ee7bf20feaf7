"""Rewards and fixtures shared by the eval, rejection, distill and CLI tests.

The tiny random model almost never solves a task, so these tests grade with a reward a
random completion passes about half the time (`has_letter_a`, found by dotted path) and
stop completions at the first "e", so most samples end by a stop string, not by length.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.events import RecordingSink

LENIENT = "tests.engine.graded_helpers:has_letter_a"
SAMPLING = {"accuracy_reward": LENIENT, "stop": ["e"], "max_new_tokens": 12, "num_prompts": 6, "k": 4,
            "prompts_per_batch": 4, "seed": 3}


def has_letter_a(completion: str, example: dict[str, Any]) -> float:
    """1.0 when the completion contains an `a`."""
    return float("a" in completion)


class TrackingSink(RecordingSink):
    """RecordingSink that also keeps progress calls and can ask to stop after n batches."""

    def __init__(self, stop_after_progress: int | None = None) -> None:
        super().__init__()
        self.progress_calls: list[tuple[int, int, float | None]] = []
        self.stop_after_progress = stop_after_progress

    def progress(self, step: int, total: int, *, eta_s: float | None = None) -> None:
        self.progress_calls.append((step, total, eta_s))

    def should_stop(self) -> bool:
        return self.stop_after_progress is not None and len(self.progress_calls) >= self.stop_after_progress


_BUILT: dict[str, Path] = {}  # name -> folder: each tiny model is built once per test session


def shared_tiny_model(name: str, factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 built once per session: `teacher` (seed 0) or `student` (seed 1,
    hence other weights and another tokenizer). Test modules wrap it in a fixture."""
    if name not in _BUILT:
        from tests.engine.tiny_lm import build_tiny_model

        _BUILT[name] = build_tiny_model(factory.mktemp("graded") / name, seed={"teacher": 0, "student": 1}[name])
    return _BUILT[name]
