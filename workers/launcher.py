"""Stages whose config says `launcher: torchrun` (or `accelerate`): run them as

    python -m torch.distributed.run --standalone --nproc_per_node N -m engine <stage> --config F
        --events <dir>/events.jsonl --stop-file <dir>/stop

(or `accelerate launch --num_processes N -m engine ...`)
and relay what rank 0 reports into the run's sink. Rank 0 writes every event as a JSON
line (`engine.events.EventLogSink`); this process follows the file and replays each line
into the DbSink, and turns the sink's stop request into the stop file the ranks watch.
The processes die with the worker (PR_SET_PDEATHSIG), so a killed worker leaves no
training behind and the run resumes from its last checkpoint like any other.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TextIO

from engine.distributed import launch_command
from engine.events import Sink, replay_event
from engine.stages import STAGES, StageSpec

POLL_SECONDS = 0.2
PR_SET_PDEATHSIG = 1


def wants_launcher(config: Any) -> bool:
    """True when the stage's config asks for torchrun or accelerate."""
    return getattr(config, "launcher", "none") != "none"


@dataclass
class LaunchFiles:
    """Where a launched stage's config, events, stop request and output log live."""

    folder: Path

    @property
    def config(self) -> Path:
        return self.folder / "config.json"

    @property
    def events(self) -> Path:
        return self.folder / "events.jsonl"

    @property
    def stop(self) -> Path:
        return self.folder / "stop"

    @property
    def output(self) -> Path:
        return self.folder / "output.txt"

    def fresh(self, config: Any) -> None:
        """Write the config; clear what an earlier attempt left (events, stop request)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config.write_text(json.dumps(config.to_dict()))
        for path in (self.events, self.stop):
            path.unlink(missing_ok=True)


def run_launched(*, spec: StageSpec, config: Any, sink: Sink, output_dir: Path, resume_from: str | None) -> Any:
    """Run the stage `spec` under its launcher with `config.nproc_per_node` processes,
    relaying its events to `sink`; returns its result (`status`, `step`, `checkpoint`,
    `metrics`, ...). Raises RuntimeError with the end of its output when it fails."""
    if not spec.parallel:
        parallel = ", ".join(s.name for s in STAGES.values() if s.parallel)
        raise ValueError(f"launcher {config.launcher} runs {parallel}, not {spec.name}.")
    stage = spec.name
    files = LaunchFiles(output_dir / "launch")
    files.fresh(config)
    result_file = output_dir / "result.json"
    result_file.unlink(missing_ok=True)
    args = ["-m", "engine", stage, "--config", str(files.config), "--output-dir", str(output_dir),
            "--events", str(files.events), "--stop-file", str(files.stop)]
    if resume_from:
        args += ["--resume", resume_from]
    with open(files.output, "w", encoding="utf-8") as output:
        process = subprocess.Popen(launch_command(config.launcher, config.nproc_per_node, args), stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
        _relay(process, files, sink)
    if not result_file.exists():  # a cancelled run exits non-zero but writes its result first
        tail = files.output.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise RuntimeError(f"The {stage} processes exited with status {process.returncode}:\n{tail}")
    return SimpleNamespace(**json.loads(result_file.read_text()))


def _relay(process: subprocess.Popen, files: LaunchFiles, sink: Sink) -> None:
    """Replay events into `sink` until the process ends; pass a stop request on."""
    reader = _EventReader(files.events)
    try:
        while process.poll() is None:
            reader.replay_new(sink)
            if not files.stop.exists() and sink.should_stop():
                files.stop.touch()
            time.sleep(POLL_SECONDS)
        reader.replay_new(sink)
    finally:
        reader.close()
        if process.poll() is None:  # this process is failing: take the ranks with it
            process.terminate()
            process.wait()


class _EventReader:
    """Follows a growing JSON-lines file, yielding only complete lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: TextIO | None = None
        self.partial = ""

    def replay_new(self, sink: Sink) -> None:
        if self.file is None:
            if not self.path.exists():
                return
            self.file = open(self.path, encoding="utf-8")  # noqa: SIM115 - kept open while following
        for line in self.file:  # reads to the current end; a line still being written has no newline
            self.partial += line
            if self.partial.endswith("\n"):
                replay_event(sink, self.partial)
                self.partial = ""

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the worker process dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the ranks outlive a killed worker
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
