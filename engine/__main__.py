"""Run a stage from the command line, without the web app.

    python -m engine grpo --config grpo.json --output-dir var/runs/r1zero
    python -m engine eval --config eval.json
    python -m engine sft --config sft.json --resume var/runs/sft/checkpoint-40
    python -m engine distill --help-config

Stages (engine/stages.py): grpo, sft, rejection, distill, eval, and pretrain (alias
starter) to build the offline starter model. The config is a JSON (or, with PyYAML
installed, YAML) object of the stage's config fields; `--help-config` lists them with
defaults and help. A bad config exits with status 2 and the sentence that states the
rule. Metrics, rollouts and checkpoints go to
`<output-dir>/{metrics,rollouts,checkpoints}.jsonl`, progress to stderr, and the result to `<output-dir>/result.json` and stdout. Ctrl-C asks the stage
to stop at its next step boundary (a checkpoint is saved); a second Ctrl-C aborts.

Data parallel: `torchrun --nproc_per_node 2 -m engine grpo --config F` (or `accelerate
launch --multi_gpu --num_processes 2 -m engine grpo --config F`) runs grpo, sft or distill in
two processes (rank 0 reports and saves); a config with `"launcher": "torchrun"` (or
`"accelerate"`) starts that command itself. `--events FILE` writes every event as JSON lines
(`engine.events.EventLogSink`) for a parent process to relay, and `--stop-file FILE`
stops the stage at its next step boundary once FILE exists.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from engine import distributed, stages
from engine.events import EventLogSink, JsonlSink, NullSink, Sink

EXIT_BAD_CONFIG = 2
EXIT_FAILED = 1
EXIT_CANCELLED = 130  # 128 + SIGINT, as shells report an interrupted command


class CliSink(JsonlSink):
    """JsonlSink whose `should_stop` turns true after a SIGINT or SIGTERM, or once
    `stop_file` exists."""

    def __init__(self, out_dir: str | Path, stop_file: str | None = None) -> None:
        super().__init__(out_dir)
        self.stop_requested = False
        self.stop_file = Path(stop_file) if stop_file else None
        self._mid_line = False  # a progress line is open: a log line must start on a fresh one

    def progress(self, step: int, total: int, *, eta_s: float | None = None) -> None:
        super().progress(step, total, eta_s=eta_s)
        self._mid_line = True

    def log(self, line: str) -> None:
        super().log(("\n" if self._mid_line else "") + line)
        self._mid_line = False

    def end_line(self) -> None:
        """Finish an open progress line."""
        if self._mid_line:
            self.stream.write("\n")
            self._mid_line = False

    def request_stop(self, signum: int, frame: Any) -> None:
        self.stop_requested = True
        self.log("\nStopping at the next step boundary (Ctrl-C again to abort).")
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def should_stop(self) -> bool:
        if self.stop_file is not None and self.stop_file.exists():
            self.stop_requested = True
        return self.stop_requested


def config_help(config_cls: Any) -> str:
    """Every field of a config class: name, type, default and help text."""
    lines = [f"{config_cls.__name__}: {(config_cls.__doc__ or '').strip().splitlines()[0]}", ""]
    for f in dataclasses.fields(config_cls):
        if not f.init:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        lines.append(f"  {f.name} ({f.type}, default {json.dumps(default)})")
        lines.append(f"      {f.metadata.get('help', '')}")
    return "\n".join(lines)


def read_config(path: str | None) -> dict[str, Any]:
    """The JSON (or YAML) object in `path`; {} without a path."""
    if path is None:
        return {}
    text = Path(path).read_text(encoding="utf-8")
    if Path(path).suffix in (".yaml", ".yml"):
        try:
            import yaml  # optional: JSON needs nothing extra
        except ImportError:
            raise ValueError("YAML configs need PyYAML installed; use a JSON file instead.") from None
        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold an object of config fields, not {type(data).__name__}.")
    return data


def build_config(config_cls: Any, path: str | None, output_dir: str | None) -> Any:
    """The stage config from the file, with `--output-dir` applied; ValueError states the rule."""
    try:
        data = read_config(path)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"Cannot read the config {path}: {exc}") from None
    if output_dir is not None and "output_dir" in {f.name for f in dataclasses.fields(config_cls)}:
        data["output_dir"] = output_dir
    try:
        return config_cls.from_dict(data)
    except TypeError as exc:  # a value of the wrong type trips a comparison in a check
        raise ValueError(f"A config value has the wrong type: {exc}.") from None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m engine", description="Run one stage of the R1 recipe.")
    parser.add_argument("stage", choices=stages.all_names())
    parser.add_argument("--config", help="JSON (or YAML) file with the stage's config fields")
    parser.add_argument("--output-dir", help="where results go (overrides output_dir in the config)")
    parser.add_argument("--resume", metavar="CHECKPOINT", help="continue from a checkpoint (or, for eval "
                        "and rejection, from an earlier run's output folder)")
    parser.add_argument("--help-config", action="store_true", help="list the config fields and exit")
    parser.add_argument("--events", metavar="FILE", help="write every event to FILE as JSON lines (for a parent "
                        "process to relay) instead of the output folder's JSONL files")
    parser.add_argument("--stop-file", metavar="FILE", help="stop at the next step boundary once FILE exists")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = parse_args(argv)
    spec = stages.get(args.stage)
    if args.help_config:
        print(config_help(spec.config))
        return 0
    try:
        config = build_config(spec.config, args.config, args.output_dir)
    except ValueError as exc:
        print(f"python -m engine {args.stage}: bad config: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    if getattr(config, "launcher", "none") != "none" and not distributed.launched():
        return _launch(config.launcher, config.nproc_per_node, list(sys.argv[1:] if argv is None else argv))
    if distributed.launched() and not spec.parallel:
        parallel = [s.name for s in stages.STAGES.values() if s.parallel]
        print(f"python -m engine {args.stage}: only {', '.join(parallel)} run data-parallel.", file=sys.stderr)
        return EXIT_BAD_CONFIG
    world = distributed.init(getattr(config, "device", "cpu"))
    out = Path(args.output_dir or getattr(config, "output_dir", None) or f"var/runs/{args.stage}")
    sink = _make_sink(args, out, world)
    restore = _catch_signals(sink)
    try:
        result = spec.run(config, sink, resume_from=args.resume)
    except ValueError as exc:  # data or setup problems the stage explains in a sentence
        print(f"python -m engine {args.stage}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        restore()
        _close(sink)
        distributed.shutdown()
    return _report(result, out) if world.is_main else _exit_code(getattr(result, "status", ""))


def _launch(launcher: str, nproc_per_node: int, argv: list[str]) -> int:
    """Run this very command in `nproc_per_node` processes under `launcher`; its exit status."""
    command = distributed.launch_command(launcher, nproc_per_node, ["-m", "engine", *argv])
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the ranks themselves
    try:
        return subprocess.call(command)
    finally:
        signal.signal(signal.SIGINT, previous)


def _make_sink(args: argparse.Namespace, out: Path, world: distributed.World) -> Sink:
    """Rank 0 reports (to an event log or the output folder); other ranks stay silent."""
    if not world.is_main:
        return _FollowerSink()
    if args.events:
        return EventLogSink(args.events, args.stop_file)
    return CliSink(out, args.stop_file)


class _FollowerSink(NullSink):
    """Ranks other than 0 report nothing; on Ctrl-C they carry on to the step boundary
    where rank 0's stop decision reaches them."""

    def request_stop(self, signum: int, frame: Any) -> None:
        pass


def _close(sink: Sink) -> None:
    if isinstance(sink, CliSink):
        sink.end_line()
    elif isinstance(sink, EventLogSink):
        sink.close()


def _catch_signals(sink: Sink) -> Callable[[], None]:
    """Route SIGINT/SIGTERM to a graceful stop; returns what puts the old handlers back."""
    request_stop = getattr(sink, "request_stop", None)
    if request_stop is None or threading.current_thread() is not threading.main_thread():  # only the main one may
        return lambda: None
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def _report(result: Any, out: Path) -> int:
    """Write result.json, print it, and map the status to an exit code."""
    summary: dict[str, Any] = {"status": str(result)}
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        summary = dataclasses.asdict(result)
    summary.pop("history", None)
    metrics: dict[str, float] = summary.get("metrics") or {}
    summary["metrics"] = {k: v for k, v in metrics.items() if math.isfinite(v)}
    text = json.dumps(summary, indent=2)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(text + "\n")
    print(text)
    return _exit_code(summary.get("status"))


def _exit_code(status: Any) -> int:
    return 0 if status == "succeeded" else EXIT_CANCELLED


if __name__ == "__main__":
    sys.exit(main())
