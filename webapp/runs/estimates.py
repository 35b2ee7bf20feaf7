"""The launch form's estimate: memory and time of the run as set, and the defaults scaled
to its model (`engine.estimate`), for the model the caller may use."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import QueryDict

from webapp.projects.selectors import AuthUser
from webapp.runs import references, stages
from webapp.runs.forms import LaunchForm

MODEL_FIELD = {"grpo": "model", "sft": "model", "eval": "model", "rejection": "model", "distill": "student"}


def launch_estimate(user: AuthUser, params: QueryDict) -> dict[str, Any]:
    """{"lines": [...], "defaults": {field: {"value", "why"}}} for the launch form's current
    values, or {"error": sentence} naming what stops an estimate; with "problem": the engine's
    rule the settings break as they stand ({"field", "message"}), or None."""
    stage = params.get("stage") or ""
    spec = stages.spec(stage)
    if spec is None or stage not in MODEL_FIELD:
        return {"error": f"no estimate for the {stage or '?'} stage"}
    form = LaunchForm(params, config_cls=spec.config)
    form.is_valid()  # a half-filled form still estimates: the fields that are valid count
    return {**_estimate(user, stage, form, params), "problem": _engine_rule(stage, form)}


def _estimate(user: AuthUser, stage: str, form: LaunchForm, params: QueryDict) -> dict[str, Any]:
    from engine import estimate as engine_estimate

    # Fields sent blank are None (as a launch reads them); fields not sent take the defaults.
    stage_defaults = engine_estimate.stage_defaults(stage)
    config = {**stage_defaults,
              **{k[4:]: v for k, v in form.cleaned_data.items() if k.startswith("cfg_") and _sent(k, params)}}
    field = MODEL_FIELD[stage]
    try:
        where = _model_path(user, field, config.get(field) or "starter")
    except ValidationError as exc:
        return {"error": "; ".join(f"{k}: {m}" for k, ms in exc.message_dict.items() for m in ms)}
    if where is None:
        return {"error": "the starter is built on its first run; an estimate follows once it is"}
    try:
        shape = engine_estimate.model_shape(where)
    except (OSError, ValueError, KeyError) as exc:
        return {"error": f"{field}: its config is not on this machine ({type(exc).__name__}), so no estimate"}
    speed = engine_estimate.rates(str(config.get("device") or "cpu"), str(config.get("dtype") or "float32"))
    try:
        result = engine_estimate.estimate(stage, config, shape, speed)
    except (TypeError, ValueError) as exc:  # a setting of the wrong kind: the launch names it
        return {"error": f"no estimate for these settings ({exc})"}
    defaults = engine_estimate.suggested_defaults(stage, config, shape)
    return {"lines": result.lines(), "total_memory": result.total_memory,
            "defaults": {k: {"value": v, "why": why, "stage_default": stage_defaults.get(k)}
                         for k, (v, why) in defaults.items()}}


def _engine_rule(stage: str, form: LaunchForm) -> dict[str, str] | None:
    """The engine's sentence for the settings as they stand, and the field it starts with (the
    launch would refuse them with it), or None when they pass."""
    from webapp.runs.configs import validate_config

    try:
        validate_config(stage, form.config())
    except ValidationError as exc:
        message = "; ".join(m for ms in exc.message_dict.values() for m in ms)
        return {"field": form.field_of(message) or "", "message": message}
    return None


def _sent(name: str, params: QueryDict) -> bool:
    """Whether the form sent the field (a field of several inputs sends `<name>_0`, ...)."""
    return name in params or f"{name}_1" in params


def _model_path(user: AuthUser, field: str, value: Any) -> str | None:
    """A folder or cached Hub name for `value`, checked as a launch checks it (None: the
    starter, not built yet)."""
    from engine.starter import STARTER_NAMES, built_starter

    if value in STARTER_NAMES:
        path = built_starter(value, settings.PONDER_DATA_DIR)
        return None if path is None else str(path)
    checkpoint = references.model_reference(user, field, value)
    return checkpoint.path if checkpoint is not None else str(value)
