"""What a run's config may name when it comes from the browser or the API.

- a model (`model`, `teacher`, `student`, `judge.model`): `starter`, `starter-moe`, `checkpoint:<id>` of a
  project the caller owns whose files Ponder wrote (under its run's folder) or an allowed
  folder holds, a Hugging Face name matching `PONDER_ALLOWED_MODELS` (glob patterns), or a
  folder inside `PONDER_MODEL_DIRS`;
- a dataset (`dataset`, `eval_dataset`, `mix_dataset`): `dataset:<id>` of a project the caller owns, or a
  file or folder inside `PONDER_MODEL_DIRS`;
- `@previous` in either, for a pipeline's later stages (what the stage before produced);
- rewards (`rewards`, `accuracy_reward`): registered names (`engine.rewards`, plugins
  included), `task`, the task's own grader, or `custom:<name>[@<version>]`, a reward saved in
  the run's project (run in the sandbox; pinned to its version when the run is created);
  never a dotted path to Python code nor a file (`custom_rewards`);
- where files go (`output_dir`, `data_dir`): nothing; every run writes into its own folder;
- resource knobs: at most the operator's maxima (`settings.PONDER_LIMITS`).
The same rules apply inside distillation's nested `sft` and `rejection` settings. The engine's
command line is the operator's own tool and keeps taking plain paths.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from engine import rewards as engine_rewards
from webapp.datasets.models import Dataset
from webapp.projects.models import Membership, Role
from webapp.projects.selectors import AuthUser
from webapp.rewards import selectors as reward_selectors
from webapp.rewards.models import CustomReward
from webapp.runs.models import Checkpoint

MODEL_FIELDS = ("model", "teacher", "student")  # as engine.pretrain.MODEL_FIELDS
DATASET_FIELDS = ("dataset", "eval_dataset", "mix_dataset")
PLACE_FIELDS = ("output_dir", "data_dir")  # settings that choose where files are written
CUSTOM_FILES = "custom_rewards"  # engine setting: reward source files, filled in by the server
NESTED_FIELDS = ("sft", "rejection")  # distillation's settings of its two phases
JUDGE = "judge"  # a generative judge's settings: its `model` is checked as a model
CHECKPOINT_REF = "checkpoint:"
DATASET_REF = "dataset:"
PREVIOUS = "@previous"
TASK_REWARD = "task"


@dataclass
class References:
    """The stored objects a config names (the first model checkpoint, the first dataset)."""

    base_checkpoint: Checkpoint | None = None
    input_dataset: Dataset | None = None
    custom_rewards: dict[str, CustomReward] = dataclasses.field(default_factory=dict)  # as named -> the version


def references_check(user: AuthUser, config: dict[str, Any], *, in_pipeline: bool = False,
                     project_id: int | None = None) -> References:
    """Check every value of `config` that names a model, a dataset, a reward, a place or a
    resource; ValidationError({field: rule}) for the first one that breaks a rule. Custom
    rewards are those of `project_id`, the run's project."""
    refs = References()
    for field, key, value in _items(config):
        if key in MODEL_FIELDS:
            checkpoint = _model(user, field, value, in_pipeline)
            refs.base_checkpoint = refs.base_checkpoint or checkpoint
        elif key in DATASET_FIELDS:
            dataset = _dataset(user, field, value, in_pipeline)
            refs.input_dataset = refs.input_dataset or dataset
        elif key in PLACE_FIELDS and value not in (None, ""):
            raise ValidationError({field: "a run writes only into its own folder: leave this setting out"})
        elif key == CUSTOM_FILES and value not in (None, {}):
            raise ValidationError({field: "name a project's saved rewards in rewards (custom:<name>@<version>) "
                                          "instead of files"})
        elif key == "rewards" and isinstance(value, dict):
            for name in value:
                _reward_name(f"{field}.{name}", name, project_id, refs)
        elif key == "accuracy_reward":
            _reward_name(field, value, project_id, refs)
        elif key in settings.PONDER_LIMITS:
            _limit(field, key, value)
    return refs


def _items(config: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str, Any]]:
    """(field path, key, value) of the config and of its nested phase settings."""
    for key, value in config.items():
        if key in NESTED_FIELDS and isinstance(value, dict):
            yield from _items(value, f"{prefix}{key}.")
        elif key == JUDGE and isinstance(value, dict) and value:
            yield f"{prefix}judge.model", "model", value.get("model")  # the judging model: a model like any
        else:
            yield f"{prefix}{key}", key, value


def _owned_projects(user: AuthUser) -> Any:
    return Membership.objects.filter(user=user, role=Role.OWNER).values("project_id")


def model_reference(user: AuthUser, field: str, value: Any) -> Checkpoint | None:
    """The checkpoint `value` names, None for another model the caller may use;
    ValidationError({field: rule}) for one they may not."""
    return _model(user, field, value, in_pipeline=False)


def _model(user: AuthUser, field: str, value: Any, in_pipeline: bool) -> Checkpoint | None:
    if value in ("", None) and field.endswith("teacher"):
        return None  # the stage's own rule names what is missing
    if not isinstance(value, str):
        raise ValidationError({field: "must be a model name: starter, checkpoint:<id> or an allowed model"})
    from engine.starter import STARTER_NAMES  # here, not at import: it loads torch

    if value in STARTER_NAMES or (value == PREVIOUS and in_pipeline) or _allowed_name(value):
        return None
    if value.startswith(CHECKPOINT_REF):
        checkpoint = _owned(Checkpoint.objects.filter(run__project__in=_owned_projects(user)), value, field,
                            "checkpoint")
        if not _written_by_ponder(checkpoint):
            raise ValidationError({field: f"checkpoint {checkpoint.pk} was logged from elsewhere ({checkpoint.path}): "
                                          "Ponder trains only from checkpoints in its own run folders or in "
                                          "PONDER_MODEL_DIRS"})
        return checkpoint
    if _in_allowed_folder(value):
        return None
    raise ValidationError({field: f"{value!r} is not a model you may use: name starter, starter-moe, "
                                  "checkpoint:<id>, a model the operator allowed (PONDER_ALLOWED_MODELS) or a "
                                  "folder inside PONDER_MODEL_DIRS"})


def _dataset(user: AuthUser, field: str, value: Any, in_pipeline: bool) -> Dataset | None:
    if value in (None, "") or (value == PREVIOUS and in_pipeline):
        return None
    if isinstance(value, str) and value.startswith(DATASET_REF):
        dataset = _owned(Dataset.objects.filter(project__in=_owned_projects(user)), value, field, "dataset")
        if dataset.status != Dataset.Status.READY:
            raise ValidationError({field: f"dataset {dataset.pk} is {dataset.status}: a run can use it once "
                                          "its import is ready"})
        return dataset
    if isinstance(value, str) and _in_allowed_folder(value):
        return None
    raise ValidationError({field: f"{value!r} is not a dataset you may use: name dataset:<id> of your "
                                  "project or a file inside PONDER_MODEL_DIRS"})


def ref_id(ref: str) -> int | None:
    """The id in `checkpoint:<id>` / `dataset:<id>`; None when it is not a number."""
    try:
        return int(ref.split(":", 1)[1])
    except ValueError:
        return None


def _owned(qs: Any, ref: str, field: str, kind: str) -> Any:
    pk = ref_id(ref)
    obj = qs.filter(pk=pk).first() if pk is not None else None
    if obj is None:
        raise ValidationError({field: f"{ref!r} is not a {kind} you can see in a project you own"})
    return obj


def _allowed_name(value: str) -> bool:
    """A Hugging Face model name the operator allowed (a glob such as `Qwen/*`)."""
    return not value.startswith(("/", ".")) and ".." not in Path(value).parts and any(
        fnmatch.fnmatchcase(value, pattern) for pattern in settings.PONDER_ALLOWED_MODELS)


def _inside(path: str | Path, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


def _in_allowed_folder(value: str) -> bool:
    return Path(value).is_absolute() and any(_inside(value, Path(d)) for d in settings.PONDER_MODEL_DIRS)


def _written_by_ponder(checkpoint: Checkpoint) -> bool:
    """Under its own run's folder, Ponder's starter models, or an allowed folder."""
    data = Path(settings.PONDER_DATA_DIR)
    return (_inside(checkpoint.path, data / "runs" / str(checkpoint.run_id)) or _inside(checkpoint.path, data / "models")
            or _in_allowed_folder(checkpoint.path))


def _reward_name(field: str, value: Any, project_id: int | None, refs: References) -> None:
    if reward_selectors.is_ref(value):
        reward = reward_selectors.reward_by_ref(project_id, value) if project_id is not None else None
        if reward is None:
            saved = [r.ref for r in reward_selectors.latest_versions(project_id)] if project_id is not None else []
            raise ValidationError({field: f"{value!r} is not a reward saved in this project"
                                          + (f": saved are {', '.join(saved)}" if saved else "")})
        refs.custom_rewards[value] = reward
        return
    known = engine_rewards.names()
    if value != TASK_REWARD and value != JUDGE and value not in known:  # the engine: judge needs judge settings
        raise ValidationError({field: f"{value!r} is not a registered reward: use task, one of {', '.join(known)}, "
                                      "or a project's saved reward (custom:<name>)"})


def pin_custom_rewards(config: dict[str, Any], refs: References) -> dict[str, Any]:
    """The config with each custom reward named by its exact version (`custom:brevity` becomes
    `custom:brevity@3`), so a run keeps scoring with the code it started with."""
    exact = {named: reward.ref for named, reward in refs.custom_rewards.items()}
    if not exact:
        return config
    pinned = dict(config)
    if isinstance(pinned.get("rewards"), dict):
        pinned["rewards"] = {exact.get(k, k): v for k, v in pinned["rewards"].items()}
    if pinned.get("accuracy_reward") in exact:
        pinned["accuracy_reward"] = exact[pinned["accuracy_reward"]]
    for key in NESTED_FIELDS:
        if isinstance(pinned.get(key), dict):
            pinned[key] = pin_custom_rewards(pinned[key], refs)
    return pinned


def _limit(field: str, key: str, value: Any) -> None:
    top = settings.PONDER_LIMITS[key]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > top:
        raise ValidationError({field: f"must be at most {top} on this server (PONDER_LIMITS)"})
