"""The one interface through which every stage reports what it does.

A stage never knows whether it writes to a terminal, a JSONL folder or PostgreSQL:
it calls a `Sink`. The web app's worker implements one that batches into the
database and publishes to websockets; `JsonlSink` backs `python -m engine`.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO


@dataclass
class RolloutRecord:
    """One sampled completion with its scores, as stored and shown."""

    step: int
    prompt: str
    completion: str
    rewards: dict[str, float]
    reward: float
    sample_index: int = 0
    reasoning: str = ""
    answer: str = ""
    reference: str = ""
    token_count: int = 0
    finish_reason: str = "stop"  # "stop" | "length"
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckpointRecord:
    step: int
    path: str
    summary: dict[str, Any]


class Sink(Protocol):
    def metrics(self, step: int, values: dict[str, float]) -> None: ...
    def rollouts(self, records: list[RolloutRecord]) -> None: ...
    def tokens(self, stream_id: str, text: str, *, step: int, prompt: str, done: bool = False) -> None: ...
    def progress(self, step: int, total: int, *, eta_s: float | None = None) -> None: ...
    def checkpoint(self, record: CheckpointRecord) -> None: ...
    def log(self, line: str) -> None: ...
    def should_stop(self) -> bool: ...


class NullSink:
    """Drops everything; handy in tests and benchmarks."""

    def metrics(self, step: int, values: dict[str, float]) -> None:
        pass

    def rollouts(self, records: list[RolloutRecord]) -> None:
        pass

    def tokens(self, stream_id: str, text: str, *, step: int, prompt: str, done: bool = False) -> None:
        pass

    def progress(self, step: int, total: int, *, eta_s: float | None = None) -> None:
        pass

    def checkpoint(self, record: CheckpointRecord) -> None:
        pass

    def log(self, line: str) -> None:
        pass

    def should_stop(self) -> bool:
        return False


class RecordingSink(NullSink):
    """Keeps everything in memory (tests, notebooks)."""

    def __init__(self) -> None:
        self.metric_points: list[tuple[int, dict[str, float]]] = []
        self.rollout_records: list[RolloutRecord] = []
        self.checkpoints: list[CheckpointRecord] = []
        self.lines: list[str] = []
        self.stop_requested = False

    def metrics(self, step: int, values: dict[str, float]) -> None:
        self.metric_points.append((step, dict(values)))

    def rollouts(self, records: list[RolloutRecord]) -> None:
        self.rollout_records.extend(records)

    def checkpoint(self, record: CheckpointRecord) -> None:
        self.checkpoints.append(record)

    def log(self, line: str) -> None:
        self.lines.append(line)

    def should_stop(self) -> bool:
        return self.stop_requested


class JsonlSink(NullSink):
    """Writes metrics.jsonl, rollouts.jsonl and checkpoints.jsonl into `out_dir`,
    and progress to a terminal stream."""

    def __init__(self, out_dir: str | Path, stream: TextIO = sys.stderr) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.stream = stream
        self._started = time.monotonic()

    def _append(self, name: str, rows: list[dict[str, Any]]) -> None:
        with open(self.out_dir / name, "a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def metrics(self, step: int, values: dict[str, float]) -> None:
        self._append("metrics.jsonl", [{"step": step, **values}])

    def rollouts(self, records: list[RolloutRecord]) -> None:
        self._append("rollouts.jsonl", [asdict(r) for r in records])

    def checkpoint(self, record: CheckpointRecord) -> None:
        self._append("checkpoints.jsonl", [asdict(record)])

    def progress(self, step: int, total: int, *, eta_s: float | None = None) -> None:
        eta = f" eta {eta_s:.0f}s" if eta_s is not None else ""
        self.stream.write(f"\r[{step}/{total}]{eta}  ")
        self.stream.flush()

    def log(self, line: str) -> None:
        self.stream.write(line + "\n")
