"""The bridge between runs in the database and engine stages.

Each engine stage owns a config dataclass that validates itself; the web app never
keeps a second copy of those rules, it asks the dataclass.
"""

from __future__ import annotations

import importlib
from typing import Any

from django.core.exceptions import ValidationError

# stage -> "module:ConfigClass" in the engine. Stages absent here take any JSON object.
CONFIG_CLASSES: dict[str, str] = {
    "grpo": "engine.config:GRPOConfig",
    "sft": "engine.config:SFTConfig",
    "rejection": "engine.rejection:RejectionConfig",
    "distill": "engine.distill:DistillConfig",
    "eval": "engine.evaluate:EvalConfig",
    "pretrain": "engine.__main__:StarterConfig",
}


def config_class(stage: str) -> type | None:
    target = CONFIG_CLASSES.get(stage)
    if target is None:
        return None
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    return getattr(module, attr, None)


def validate_config(stage: str, config: dict[str, Any]) -> Any:
    """Build the engine's config for `stage` from JSON, or raise ValidationError naming the rule."""
    cls = config_class(stage)
    if cls is None:
        return None
    try:
        return cls.from_dict(config) if hasattr(cls, "from_dict") else cls(**config)
    except (TypeError, ValueError) as exc:
        raise ValidationError({"config": str(exc)}) from None
