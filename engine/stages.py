"""Every stage of the R1 recipe, in one table.

    spec = stages.get("grpo")
    config = spec.config.from_dict({"model": "starter", "task": "arithmetic"})
    result = spec.run(config, sink, resume_from=None)

The command line (`python -m engine <stage>`), the web app's launch form and run
validation, the worker that runs a stage, the torchrun/accelerate launcher and the queue
routing all read this table, so adding a stage is one entry here plus its module (with a
config dataclass and a `run_<stage>(config, sink, resume_from=None)` function).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.config import GRPOConfig, SFTConfig, StageConfigMixin
from engine.distill import DistillConfig, run_distill
from engine.evaluate import EvalConfig, run_eval
from engine.grpo import run_grpo
from engine.pretrain import PretrainConfig, run_pretrain
from engine.rejection import RejectionConfig, run_rejection
from engine.sft import run_sft

QUEUE_KINDS = ("gpu", "cpu")  # worker queues by what they need; the web app maps kinds to queue names
RESUME_KINDS = ("checkpoint", "results")


@dataclass(frozen=True)
class StageSpec:
    """What Ponder knows about a stage."""

    name: str
    label: str  # for people: the launch form, the runs list
    config: type[StageConfigMixin]  # a config dataclass with from_dict / to_dict / help
    run: Callable[..., Any]  # (config, sink, resume_from=None) -> a StageResult
    parallel: bool = False  # runs data-parallel under torchrun / accelerate launch
    queue: str = "gpu"  # the kind of worker queue it needs (QUEUE_KINDS)
    aliases: tuple[str, ...] = ()  # other names the command line accepts
    # How an interrupted run continues: from its last "checkpoint", or from the "results" it
    # wrote so far in its output folder (sampling stages: `resume_from` is that folder).
    resumes_from: str = "checkpoint"

    def __post_init__(self) -> None:
        if self.queue not in QUEUE_KINDS:
            raise ValueError(f"stage {self.name}: queue must be one of {', '.join(QUEUE_KINDS)}, got {self.queue!r}.")
        if self.resumes_from not in RESUME_KINDS:
            raise ValueError(f"stage {self.name}: resumes_from must be one of {', '.join(RESUME_KINDS)}, "
                             f"got {self.resumes_from!r}.")


STAGES: dict[str, StageSpec] = {spec.name: spec for spec in (
    StageSpec("grpo", "GRPO / R1-Zero", GRPOConfig, run_grpo, parallel=True),
    StageSpec("sft", "SFT", SFTConfig, run_sft, parallel=True),
    StageSpec("rejection", "Rejection sampling", RejectionConfig, run_rejection, resumes_from="results"),
    StageSpec("distill", "Distillation", DistillConfig, run_distill, parallel=True),
    StageSpec("eval", "Evaluation", EvalConfig, run_eval, resumes_from="results"),
    StageSpec("pretrain", "Pretrain (starter base model)", PretrainConfig, run_pretrain, aliases=("starter",)),
)}


def names() -> list[str]:
    """The stage names, in the table's order."""
    return list(STAGES)


def canonical(name: str) -> str:
    """The stage's own name for `name` or one of its aliases; KeyError otherwise."""
    if name in STAGES:
        return name
    for spec in STAGES.values():
        if name in spec.aliases:
            return spec.name
    raise KeyError(f"No stage {name!r}: the stages are {', '.join(STAGES)}.")


def get(name: str) -> StageSpec:
    """The stage called `name` (or an alias of it); KeyError naming the stages otherwise."""
    return STAGES[canonical(name)]


def all_names() -> list[str]:
    """Stage names and their aliases: what the command line accepts."""
    return [n for spec in STAGES.values() for n in (spec.name, *spec.aliases)]


def register(spec: StageSpec) -> None:
    """Add a stage (a plug-in, a test's toy stage); a name already taken is refused."""
    if spec.name in all_names() or any(a in all_names() for a in spec.aliases):
        raise ValueError(f"A stage called {spec.name!r} (or one of its aliases) exists already.")
    STAGES[spec.name] = spec


def unregister(name: str) -> None:
    """Remove a stage added with `register`."""
    STAGES.pop(name, None)
