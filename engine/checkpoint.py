"""Checkpoints: a Hugging Face model directory plus everything needed to resume.

    DIR/config.json, model.safetensors, tokenizer files   loadable by transformers and vLLM
    DIR/trainer_state.pt   step, optimizer, scheduler, RNG states (python, numpy, torch), data position
    DIR/stage_config.json  the stage's config dataclass as JSON
    DIR/ponder_checkpoint.json  step and model summary (what the UI lists)

Writes are atomic: everything goes into a temporary sibling directory that is renamed
into place, so a reader never sees half a checkpoint.
"""

from __future__ import annotations

import copy
import dataclasses
import errno
import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.events import CheckpointRecord
from engine.models import model_summary

STATE_FILE = "trainer_state.pt"
CONFIG_FILE = "stage_config.json"
META_FILE = "ponder_checkpoint.json"


@dataclass
class TrainerState:
    """What `load_checkpoint` gives back besides the model and tokenizer.

    `optimizer` and `scheduler` are state dicts to pass to `.load_state_dict`;
    `rng` feeds `restore_rng`; `data_state` is whatever the stage saved (e.g. epoch and
    position in its prompt order); `config` is the stage config as a dict.
    """

    step: int = 0
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    rng: dict[str, Any] = field(default_factory=dict)
    data_state: dict[str, Any] | None = None
    config: dict[str, Any] | None = None


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states in plain types (safe for `weights_only` loading)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": _plain(random.getstate()),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put the RNGs back where `rng_state` found them."""
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def config_dict(config: Any) -> dict[str, Any] | None:
    """A stage config (dataclass or mapping) as a JSON-ready dict."""
    if config is None:
        return None
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    return json.loads(json.dumps(dict(config), default=str))


def save_checkpoint(
    directory: str | Path,
    model: Any,
    tokenizer: Any,
    *,
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    data_state: dict[str, Any] | None = None,
    config: Any = None,
    full_state: tuple[dict[str, Any] | None, dict[str, Any] | None] | None = None,
) -> CheckpointRecord:
    """Write a checkpoint of `model` at `step` into `directory`, replacing any there.

    For a sharded (FSDP) model pass `full_state`: the (weights, optimizer state) that
    `engine.distributed.full_state` gathered; they are written instead of the shards."""
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the web app and workers read it too
    try:
        weights, optimizer_state = full_state or (None, optimizer.state_dict() if optimizer is not None else None)
        summary = _write(tmp, model, tokenizer, step, (weights, optimizer_state), scheduler, data_state, config)
        _swap_into_place(tmp, target)
    except Exception as exc:
        if _is_disk_full(exc):
            raise DiskFull(_disk_full_message(step, target)) from exc
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return CheckpointRecord(step=step, path=str(target), summary=summary)


class DiskFull(OSError):
    """A checkpoint did not fit on its disk; nothing of it was left behind."""


def _is_disk_full(exc: BaseException) -> bool:
    # safetensors and torch.save report ENOSPC in their own exception types, with the OS text
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(text in str(exc) for text in (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT)))


def _disk_full_message(step: int, target: Path) -> str:
    free_mb = shutil.disk_usage(target.parent).free / 2**20
    return (f"checkpoint at step {step}: no space left on the disk of {target.parent} ({free_mb:.0f} MB free); "
            "the half-written checkpoint was removed and the earlier ones are intact. Free some space "
            "(or set a larger save_every), then resume the run.")


def _write(tmp: Path, model: Any, tokenizer: Any, step: int, state: tuple[Any, Any], scheduler: Any,
           data_state: dict[str, Any] | None, config: Any) -> dict[str, Any]:
    weights, optimizer_state = state
    _save_weights(tmp, model, weights)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    torch.save({
        "step": step,
        "optimizer": optimizer_state,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(),
        "data_state": data_state,
    }, tmp / STATE_FILE)
    (tmp / CONFIG_FILE).write_text(json.dumps(config_dict(config), indent=2) + "\n")
    summary = model_summary(model.config if weights is not None else model)
    (tmp / META_FILE).write_text(json.dumps({"step": step, "summary": summary}, indent=2) + "\n")
    return summary


def _save_weights(tmp: Path, model: Any, weights: dict[str, Any] | None = None) -> None:
    """Full weights at the top (what transformers and vLLM load); for a peft model the
    LoRA-merged weights there and the adapter alone in `adapter/` (to resume LoRA training
    on the original base model)."""
    if hasattr(model, "peft_config") and hasattr(model, "merge_and_unload"):
        model.save_pretrained(tmp / "adapter")
        merged = copy.deepcopy(model).merge_and_unload()  # a copy: the trainer keeps its adapter
        merged.save_pretrained(tmp, safe_serialization=True)
    elif weights is not None:  # gathered from a sharded model
        model.save_pretrained(tmp, state_dict=weights, safe_serialization=True)
        # save_pretrained names the class it saw, FSDP's wrapper ("FSDPLlamaForCausalLM").
        model.config.architectures = [type(model).__name__.removeprefix("FSDP")]
        model.config.save_pretrained(tmp)
    else:
        model.save_pretrained(tmp, safe_serialization=True)


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename `tmp` to `target`; an existing `target` is moved aside first and removed after."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, old)
    os.rename(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(directory: str | Path, *, device: str = "cpu", dtype: str = "float32",
                    with_model: bool = True, **model_options: Any) -> tuple[Any, Any, TrainerState]:
    """(model, tokenizer, state) from a checkpoint written by `save_checkpoint`
    (model None when `with_model` is false; `model_options` go to `load_model`).

    A plain Hugging Face directory (no `trainer_state.pt`) loads too, with a fresh state.
    The model has the full (for LoRA runs: merged) weights; LoRA training resumes from the
    base model and `DIR / "adapter"` (`engine.training.load_policy`).
    """
    from engine.models import load_model, load_tokenizer

    path = Path(directory)
    model = load_model(path, dtype=dtype, device=device, **model_options) if with_model else None
    tokenizer = load_tokenizer(path)
    state = TrainerState()
    if (path / STATE_FILE).exists():
        raw = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
        state = TrainerState(step=raw["step"], optimizer=raw.get("optimizer"), scheduler=raw.get("scheduler"),
                             rng=raw.get("rng") or {}, data_state=raw.get("data_state"))
    if (path / CONFIG_FILE).exists():
        state.config = json.loads((path / CONFIG_FILE).read_text())
    return model, tokenizer, state
