"""A run's config, from what a person typed to what the engine runs, in one place.

- When a run is created (`config_check`), the stage's config dataclass validates the JSON
  (its sentence is the error) and everything it names is checked against what the caller
  may use (`webapp.runs.references`: models, datasets, rewards, places, resource maxima).
  The run keeps its config as typed (references, and a pipeline's `@previous`, included),
  so a clone is checked again for whoever clones it.
- When a worker runs it (`engine_config`), the references become paths and `output_dir`
  the run's own folder, and the dataclass is built once more from the stored JSON.
The web app never keeps a second copy of a stage's rules: it asks the dataclass.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from webapp.datasets.models import Dataset
from webapp.datasets.services import dataset_export_path
from webapp.projects.selectors import AuthUser
from webapp.rewards.selectors import is_ref, reward_by_ref
from webapp.runs import stages
from webapp.runs.models import Checkpoint, Run
from webapp.runs.references import (
    CHECKPOINT_REF,
    CUSTOM_FILES,
    DATASET_FIELDS,
    DATASET_REF,
    JUDGE,
    MODEL_FIELDS,
    NESTED_FIELDS,
    References,
    references_check,
)


def validate_config(stage: str, config: dict[str, Any]) -> Any:
    """The engine's config for `stage` built from JSON (None for `external`, which takes
    any object), or ValidationError({"config": the rule's sentence})."""
    if stage == stages.REVIEW:
        from webapp.runs import gates

        return gates.validate(config)
    spec = stages.spec(stage)
    if spec is None:
        return None
    try:
        return spec.config.from_dict(config)
    except (TypeError, ValueError) as exc:
        raise ValidationError({"config": str(exc)}) from None


def config_check(user: AuthUser, stage: str, config: dict[str, Any], *, in_pipeline: bool = False,
                 project_id: int | None = None) -> References:
    """Check a new run's config and what it names (`webapp.runs.references`); ValidationError
    names the field. `external` runs log from elsewhere: their config is a record only."""
    if stage == stages.REVIEW:  # names nothing: its samples come from the stage before
        validate_config(stage, config)
        return References()
    if stages.spec(stage) is None:
        return References()
    refs = references_check(user, config, in_pipeline=in_pipeline, project_id=project_id)
    validate_config(stage, config)
    return refs


def run_dir(run: Run) -> Path:
    """The run's own folder: checkpoints, results, its log."""
    return Path(settings.PONDER_DATA_DIR) / "runs" / str(run.pk)


def engine_config(run: Run) -> Any:
    """The engine config a worker runs `run` with: references resolved to paths (checked
    when the run was created), output_dir the run's folder."""
    config = validate_config(run.stage, _resolved(dict(run.config), run))
    if "output_dir" in {f.name for f in fields(config)}:
        config = replace(config, output_dir=str(run_dir(run)))
    return config


def _resolved(data: dict[str, Any], run: Run) -> dict[str, Any]:
    """`checkpoint:<id>` and `dataset:<id>` replaced by the files they name, also in the
    nested phase settings (the ids were checked when the run was created); custom rewards
    written into the run's folder for the engine to run in the sandbox."""
    custom = _custom_reward_files(data, run)
    if custom:
        data[CUSTOM_FILES] = custom
    for key, value in list(data.items()):
        if key in MODEL_FIELDS and _is_ref(value, CHECKPOINT_REF):
            data[key] = Checkpoint.objects.get(pk=_checked_id(value)).path
        elif key in DATASET_FIELDS and _is_ref(value, DATASET_REF):
            # Every engine loader reads the dataset exported as JSONL.
            data[key] = str(dataset_export_path(Dataset.objects.get(pk=_checked_id(value)), "jsonl"))
        elif key in NESTED_FIELDS and isinstance(value, dict):
            data[key] = _resolved(dict(value), run)
        elif key == JUDGE and isinstance(value, dict) and _is_ref(value.get("model"), CHECKPOINT_REF):
            data[key] = {**value, "model": Checkpoint.objects.get(pk=_checked_id(value["model"])).path}
    return data


def _custom_reward_files(data: dict[str, Any], run: Run) -> dict[str, str]:
    """{ref: file} for the project's saved rewards this config names (pinned versions)."""
    rewards = data.get("rewards")
    named = [*(rewards if isinstance(rewards, dict) else {}), data.get("accuracy_reward")]
    files = {}
    for ref in named:
        reward = reward_by_ref(run.project_id, ref) if is_ref(ref) else None
        if reward is not None:
            path = run_dir(run) / "rewards" / f"{reward.name}-v{reward.version}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(reward.source, encoding="utf-8")
            files[ref] = str(path)
    return files


def _is_ref(value: Any, prefix: str) -> bool:
    return isinstance(value, str) and value.startswith(prefix)


def _checked_id(ref: str) -> int:
    return int(ref.split(":", 1)[1])  # a number: checked when the run was created
