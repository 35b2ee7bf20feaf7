"""A run's config, from what a person typed to what the engine runs, in one place.

- When a run is created (`config_check`), the stage's config dataclass validates the JSON
  (its sentence is the error) and every reference is checked against what the caller may
  see: `checkpoint:<id>` in model / teacher / student, `dataset:<id>` in dataset /
  eval_dataset. The run keeps its config as typed (references, and a pipeline's
  `@previous`, included), so a clone is checked again for whoever clones it.
- When a worker runs it (`engine_config`), the references become paths and `output_dir`
  the run's own folder, and the dataclass is built once more from the stored JSON.
The web app never keeps a second copy of a stage's rules: it asks the dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import ValidationError

from webapp.datasets.models import Dataset
from webapp.datasets.services import dataset_export_path
from webapp.projects.selectors import AuthUser, projects_for
from webapp.runs import stages
from webapp.runs.models import Checkpoint, Run

CHECKPOINT_FIELDS = ("model", "teacher", "student")  # fields naming a model (engine.pretrain.MODEL_FIELDS)
DATASET_FIELDS = ("dataset", "eval_dataset")
CHECKPOINT_REF = "checkpoint:"
DATASET_REF = "dataset:"
PREVIOUS = "@previous"  # a pipeline stage's input: what the stage before it produced


@dataclass
class References:
    """The stored objects a config names (the first model checkpoint, the dataset)."""

    base_checkpoint: Checkpoint | None = None
    input_dataset: Dataset | None = None


def validate_config(stage: str, config: dict[str, Any]) -> Any:
    """The engine's config for `stage` built from JSON (None for `external`, which takes
    any object), or ValidationError({"config": the rule's sentence})."""
    spec = stages.spec(stage)
    if spec is None:
        return None
    try:
        return spec.config.from_dict(config)
    except (TypeError, ValueError) as exc:
        raise ValidationError({"config": str(exc)}) from None


def config_check(user: AuthUser, stage: str, config: dict[str, Any]) -> References:
    """Check a new run's config and the objects it names; ValidationError names the field."""
    refs = _references(user, config)
    validate_config(stage, config)
    return refs


def _references(user: AuthUser, config: dict[str, Any]) -> References:
    refs = References()
    visible = projects_for(user)
    for key in CHECKPOINT_FIELDS:
        if _is_ref(config.get(key), CHECKPOINT_REF):
            checkpoint = _visible(Checkpoint.objects.filter(run__project__in=visible), config[key], key, "checkpoint")
            refs.base_checkpoint = refs.base_checkpoint or checkpoint
    for key in DATASET_FIELDS:
        if _is_ref(config.get(key), DATASET_REF):
            dataset = _visible(Dataset.objects.filter(project__in=visible), config[key], key, "dataset")
            refs.input_dataset = refs.input_dataset or dataset
    return refs


def _is_ref(value: Any, prefix: str) -> bool:
    return isinstance(value, str) and value.startswith(prefix)


def _ref_id(ref: str) -> int | None:
    try:
        return int(ref.split(":", 1)[1])
    except ValueError:
        return None


def _visible(qs: Any, ref: str, field: str, kind: str) -> Any:
    pk = _ref_id(ref)
    obj = qs.filter(pk=pk).first() if pk is not None else None
    if obj is None:
        raise ValidationError({field: f"{ref!r} is not a {kind} you can see"})
    return obj


def run_dir(run: Run) -> Path:
    """The run's own folder: checkpoints, results, its log."""
    return Path(settings.PONDER_DATA_DIR) / "runs" / str(run.pk)


def engine_config(run: Run) -> Any:
    """The engine config a worker runs `run` with: references resolved to paths (checked
    when the run was created), output_dir the run's folder."""
    data = dict(run.config)
    # The references were checked when the run was created, so _ref_id() gives an int here.
    for key in CHECKPOINT_FIELDS:
        if _is_ref(data.get(key), CHECKPOINT_REF):
            data[key] = Checkpoint.objects.get(pk=cast(int, _ref_id(data[key]))).path
    for key in DATASET_FIELDS:
        if _is_ref(data.get(key), DATASET_REF):
            # Every engine loader reads the dataset exported as JSONL.
            dataset = Dataset.objects.get(pk=cast(int, _ref_id(data[key])), project=run.project_id)
            data[key] = str(dataset_export_path(dataset, "jsonl"))
    config = validate_config(run.stage, data)
    if "output_dir" in {f.name for f in fields(config)}:
        config = replace(config, output_dir=str(run_dir(run)))
    return config
