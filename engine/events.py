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


class ForwardingSink:
    """Passes every event to `inner`; subclasses change what they need."""

    def __init__(self, inner: Sink) -> None:
        self.inner = inner

    def metrics(self, step: int, values: dict[str, float]) -> None:
        self.inner.metrics(step, values)

    def rollouts(self, records: list[RolloutRecord]) -> None:
        self.inner.rollouts(records)

    def tokens(self, stream_id: str, text: str, *, step: int, prompt: str, done: bool = False) -> None:
        self.inner.tokens(stream_id, text, step=step, prompt=prompt, done=done)

    def progress(self, step: int, total: int, *, eta_s: float | None = None) -> None:
        self.inner.progress(step, total, eta_s=eta_s)

    def checkpoint(self, record: CheckpointRecord) -> None:
        self.inner.checkpoint(record)

    def log(self, line: str) -> None:
        self.inner.log(line)

    def should_stop(self) -> bool:
        return self.inner.should_stop()


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


class EventLogSink(NullSink):
    """Writes every event as one JSON line to `path`, for another process to replay into
    its own sink (`replay_event`): how a stage run under torchrun reports to the web app.
    `should_stop` turns true once `stop_file` exists (or after `request_stop`)."""

    def __init__(self, path: str | Path, stop_file: str | Path | None = None) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the stage's lifetime
        self.stop_file = Path(stop_file) if stop_file is not None else None
        self.stop_requested = False

    def _emit(self, event: str, **data: Any) -> None:
        self._file.write(json.dumps({"event": event, **data}, ensure_ascii=False) + "\n")
        self._file.flush()  # the reader follows the file as it grows

    def metrics(self, step: int, values: dict[str, float]) -> None:
        self._emit("metrics", step=step, values=values)

    def rollouts(self, records: list[RolloutRecord]) -> None:
        self._emit("rollouts", records=[asdict(r) for r in records])

    def tokens(self, stream_id: str, text: str, *, step: int, prompt: str, done: bool = False) -> None:
        self._emit("tokens", stream_id=stream_id, text=text, step=step, prompt=prompt, done=done)

    def progress(self, step: int, total: int, *, eta_s: float | None = None) -> None:
        self._emit("progress", step=step, total=total, eta_s=eta_s)

    def checkpoint(self, record: CheckpointRecord) -> None:
        self._emit("checkpoint", record=asdict(record))

    def log(self, line: str) -> None:
        self._emit("log", line=line)

    def request_stop(self, signum: int, frame: Any) -> None:
        self.stop_requested = True

    def should_stop(self) -> bool:
        if not self.stop_requested and self.stop_file is not None and self.stop_file.exists():
            self.stop_requested = True
        return self.stop_requested

    def close(self) -> None:
        self._file.close()


def replay_event(sink: Sink, line: str) -> None:
    """Call on `sink` what one line of an EventLogSink's file records."""
    data = json.loads(line)
    event = data.pop("event")
    if event == "metrics":
        sink.metrics(data["step"], data["values"])
    elif event == "rollouts":
        sink.rollouts([RolloutRecord(**r) for r in data["records"]])
    elif event == "tokens":
        sink.tokens(data["stream_id"], data["text"], step=data["step"], prompt=data["prompt"], done=data["done"])
    elif event == "progress":
        sink.progress(data["step"], data["total"], eta_s=data["eta_s"])
    elif event == "checkpoint":
        sink.checkpoint(CheckpointRecord(**data["record"]))
    elif event == "log":
        sink.log(data["line"])
    else:
        raise ValueError(f"Unknown event {event!r} in an event log.")
