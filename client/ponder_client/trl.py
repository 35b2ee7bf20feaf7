"""TRL integration: `PonderCallback` sends what a `GRPOTrainer` logs to a Ponder run.

    from ponder_client.trl import PonderCallback

    trainer = GRPOTrainer(model=..., reward_funcs=[...], args=GRPOConfig(logging_steps=1, ...),
                          train_dataset=..., callbacks=[PonderCallback(name="my GRPO run")])
    trainer.train()

At every log event it sends the metrics (`loss`, `reward`, `rewards/<func>/mean`, `kl`,
...) and the completions TRL keeps for logging (`trainer._logs`: prompt, completion, the
reward of each reward function, advantage, and any `log_extra` columns) as rollouts
at `state.global_step`: the same rows TRL writes to `completions/*.parquet` with
`log_completions=True`. The run has stage `external`; it is created at train begin (or
pass `run=` / `run_id=`) and marked succeeded at train end when the callback made it.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

try:
    from transformers import TrainerCallback
except ImportError as exc:  # pragma: no cover
    raise ImportError("ponder_client.trl needs transformers and trl: pip install 'ponder-client[trl]'") from exc

from ponder_client.records import MAX_TEXT
from ponder_client.run import ClientOptions, FinishReport, Run


def content_text(content: Any) -> str:
    """A message's content as text: multimodal parts become their text, or `[image]`."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(p.get("text", "") if p.get("type") == "text" else f"[{p.get('type', 'part')}]"
                       for p in content if isinstance(p, Mapping))
    return "" if content is None else str(content)


def as_text(value: Any) -> str:
    """A prompt or completion as Ponder stores it: text as is; a conversation as `role: content`
    lines (a lone assistant message as its content); NUL characters replaced."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, Sequence) and value and all(isinstance(m, Mapping) for m in value):
        if len(value) == 1 and value[0].get("role") == "assistant":
            text = content_text(value[0].get("content"))
        else:
            text = "\n".join(f"{m.get('role', 'user')}: {content_text(m.get('content'))}" for m in value)
    else:
        text = json.dumps(value, default=str, ensure_ascii=False)
    return text.replace("\x00", "\ufffd")[:MAX_TEXT]


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "tolist"):
        return _json_safe(value.tolist())
    return str(value)


def completion_rows(logs: Mapping[str, Any], step: int, *, split: str = "train") -> list[dict[str, Any]]:
    """Rollouts from a GRPOTrainer's `_logs`: one per completion, `sample_index` numbering the
    completions of the same prompt; unscored rewards (None/NaN) are left out and named."""
    prompts, completions = list(logs["prompt"]), list(logs["completion"])
    rewards = {name: list(values) for name, values in logs["rewards"].items()}
    advantages = list(logs["advantages"])
    extra = {name: list(values) for name, values in logs.get("extra", {}).items()}
    seen: dict[str, int] = {}
    rows = []
    for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=False)):
        text = as_text(prompt)
        seen[text] = seen.get(text, -1) + 1
        scores = {name: _finite(values[i]) if i < len(values) else None for name, values in rewards.items()}
        metadata: dict[str, Any] = {"advantage": _finite(advantages[i]) if i < len(advantages) else None}
        metadata.update({name: _json_safe(values[i]) for name, values in extra.items() if i < len(values)})
        if any(v is None for v in scores.values()):
            metadata["unscored"] = [name for name, v in scores.items() if v is None]
        if split != "train":
            metadata["split"] = split
        rows.append({"step": step, "prompt": text, "completion": as_text(completion), "sample_index": seen[text],
                     "rewards": {k: v for k, v in scores.items() if v is not None}, "metadata": metadata})
    return rows


def trainer_config(args: Any) -> dict[str, Any]:
    """The trainer's arguments as plain JSON (for the run's `config`)."""
    raw = args.to_dict() if hasattr(args, "to_dict") else dict(vars(args))
    return {k: v for k, v in _json_safe(raw).items() if not k.startswith("_")}


def find_trainer(callback: Any, depth: int = 12) -> Any:
    """The trainer whose `log` is calling us: a caller's `self` that holds `_logs` and this callback."""
    frame = sys._getframe(1)
    for _ in range(depth):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        handler = getattr(owner, "callback_handler", None)
        if hasattr(owner, "_logs") and handler is not None and callback in handler.callbacks:
            return owner
        frame = frame.f_back
    return None


class PonderCallback(TrainerCallback):
    """Sends a (GRPO)Trainer's metrics, completions and checkpoints to a Ponder run."""

    def __init__(self, run: Run | None = None, *, run_id: int | None = None, name: str | None = None,
                 project: str | None = None, config: Mapping[str, Any] | None = None, base_url: str | None = None,
                 token: str | None = None, spool_dir: str | Path | None = None, options: ClientOptions | None = None,
                 log_completions: bool = True, finish_run: bool | None = None, trainer: Any = None):
        self.run = run
        self.report: FinishReport | None = None
        self._open_args = {"run_id": run_id, "name": name, "project": project, "config": config,
                           "base_url": base_url, "token": token, "spool_dir": spool_dir, "options": options}
        self._log_completions = log_completions
        self._finish_run = finish_run if finish_run is not None else (run is None and run_id is None)
        self._trainer = trainer
        self._last_sent: list[Any] = []

    def bind(self, trainer: Any) -> PonderCallback:
        """Name the trainer explicitly (otherwise it is found from the call stack at the first log)."""
        self._trainer = trainer
        return self

    def _open(self, args: Any) -> Run:
        o = self._open_args
        common = {"base_url": o["base_url"], "token": o["token"], "spool_dir": o["spool_dir"], "options": o["options"]}
        if o["run_id"] is not None:
            return Run.attach(o["run_id"], **common)
        name = o["name"] or getattr(args, "run_name", None) or os.path.basename(os.path.normpath(args.output_dir))
        config = {**trainer_config(args), **dict(o["config"] or {})}
        return Run.create(name, project=o["project"], config=config, **common)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero and self.run is None:
            self.run = self._open(args)

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
               **kwargs: Any) -> None:
        if not state.is_world_process_zero or self.run is None:
            return
        logs = logs or {}
        metrics = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if metrics:
            self.run.log_metrics(state.global_step, metrics)
        if self._log_completions:
            split = "eval" if any(k.startswith("eval_") for k in logs) else "train"
            self._send_completions(state.global_step, split)

    def _send_completions(self, step: int, split: str) -> None:
        trainer = self._trainer or find_trainer(self)
        logs = getattr(trainer, "_logs", None)
        if not logs or not logs.get("completion"):
            return
        self._trainer = trainer
        completions = list(logs["completion"])
        if len(completions) == len(self._last_sent) and all(a is b for a, b in zip(completions, self._last_sent, strict=True)):
            return  # nothing generated since the last log (num_iterations > 1, or logging twice a step)
        self._last_sent = completions  # holding them keeps their identity unique
        self.run.log_rollouts(completion_rows(logs, step, split=split))

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero and self.run is not None:
            path = os.path.join(os.path.abspath(args.output_dir), f"checkpoint-{state.global_step}")
            self.run.log_checkpoint(state.global_step, path)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero or self.run is None:
            return
        if self._finish_run:
            self.report = self.run.finish("succeeded")
        else:
            self.run.flush(timeout_s=60)
