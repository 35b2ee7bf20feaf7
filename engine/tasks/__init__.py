"""Built-in tasks: deterministic train/test splits and one grader per task.

    task = engine.tasks.get("arithmetic", difficulty=2)
    examples = task.examples("train", 64)
    task.reward(completion, examples[0])   # 1.0 or 0.0
"""

from __future__ import annotations

from typing import Any

from engine.tasks.arithmetic import ArithmeticTask
from engine.tasks.base import Example, Task, extract_answer
from engine.tasks.countdown import CountdownTask
from engine.tasks.python import PythonTask

TASKS: dict[str, type[Task]] = {
    "arithmetic": ArithmeticTask,
    "countdown": CountdownTask,
    "python": PythonTask,
}

__all__ = ["TASKS", "Example", "Task", "extract_answer", "get", "names"]


def names() -> list[str]:
    """Names of the built-in tasks."""
    return sorted(TASKS)


def get(name: str, **options: Any) -> Task:
    """The task called `name`, built with `options` (e.g. `difficulty=3`)."""
    if name not in TASKS:
        raise KeyError(f"Unknown task {name!r}; the built-in tasks are {', '.join(names())}.")
    return TASKS[name](**options)
