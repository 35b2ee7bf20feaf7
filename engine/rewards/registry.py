"""Reward functions by name: `register`, `names`, `get`, and `resolve` for dotted paths.

A reward is a plain function `(completion: str, example: dict) -> float`.

>>> from engine.rewards import get, names
>>> "format" in names()
True
>>> get("format")("<think>2 + 2 = 4</think> 4", {})
1.0
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any

RewardFn = Callable[[str, dict[str, Any]], float]

_REGISTRY: dict[str, RewardFn] = {}


class UnknownRewardError(KeyError, ValueError):
    """No reward by that name. A KeyError for lookups, a ValueError for config checks."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


def register(name: str) -> Callable[[RewardFn], RewardFn]:
    """Decorator registering a reward under `name` (names are unique): put
    ``@register("brevity")`` above a ``(completion, example) -> float`` function."""

    def decorator(fn: RewardFn) -> RewardFn:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"A reward named {name!r} is already registered.")
        _REGISTRY[name] = fn
        return fn

    return decorator


def names() -> list[str]:
    """The registered reward names (built-ins and `ponder.rewards` plugins), sorted."""
    _load_plugins()
    return sorted(_REGISTRY)


PLUGIN_GROUP = "ponder.rewards"
_plugins_loaded = False


def _load_plugins() -> None:
    """Rewards an operator installed as packages: each entry point of the `ponder.rewards`
    group (``brevity = "my_pkg.rewards:brevity"`` under ``[project.entry-points."ponder.rewards"]``)
    registers under its name. A plugin that fails to import is reported, not fatal."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for entry in entry_points(group=PLUGIN_GROUP):
        try:
            fn = entry.load()
        except Exception as exc:  # one broken plugin must not hide the others
            warnings.warn(f"reward plugin {entry.name!r} ({entry.value}) failed to load: {exc}", stacklevel=2)
            continue
        if entry.name not in _REGISTRY and callable(fn):
            _REGISTRY[entry.name] = fn


def get(name: str) -> RewardFn:
    """The reward registered as `name`; `UnknownRewardError` lists the valid names."""
    _load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownRewardError(
            f"Unknown reward {name!r}: registered rewards are {', '.join(names())}; "
            "a custom reward is named by its dotted path, e.g. 'my_pkg.rewards:brevity'."
        ) from None


def resolve(name_or_path: str) -> RewardFn:
    """A registered name, or a dotted path to any importable callable:
    ``pkg.mod:func`` or ``pkg.mod.func`` (attributes may nest after the colon).

    >>> resolve("math") is get("math")
    True
    >>> resolve("engine.rewards.formats:format_think") is get("format")
    True
    """
    _load_plugins()
    if name_or_path in _REGISTRY:
        return _REGISTRY[name_or_path]
    if ":" not in name_or_path and "." not in name_or_path:
        return get(name_or_path)  # raises with the list of names
    fn = _import_attr(name_or_path)
    if not callable(fn):
        raise UnknownRewardError(f"{name_or_path!r} is not callable.")
    return fn


def _import_attr(path: str) -> Any:
    module_name, _, attr_path = path.partition(":") if ":" in path else path.rpartition(".")
    if not module_name or not attr_path:
        raise UnknownRewardError(f"{path!r} is not a reward name nor a 'module:function' path.")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownRewardError(f"Cannot import {module_name!r} for reward {path!r}: {exc}") from exc
    for attr in attr_path.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise UnknownRewardError(f"{module_name!r} has no attribute {attr_path!r}.") from None
    return obj
