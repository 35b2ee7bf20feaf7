"""Built-in tasks: deterministic train/test splits and one grader per task.

    task = engine.tasks.get("arithmetic", difficulty=2)   # or "reasoning_gym:basic_arithmetic"
    examples = task.examples("train", 64)
    task.reward(completion, examples[0])   # 1.0 or 0.0
"""

from __future__ import annotations

from typing import Any

from engine.tasks.arithmetic import ArithmeticTask
from engine.tasks.base import Example, Task, extract_answer
from engine.tasks.countdown import CountdownTask
from engine.tasks.gym import PREFIX as GYM_PREFIX
from engine.tasks.gym import ReasoningGymTask, gym_names
from engine.tasks.humaneval import HumanEvalTask
from engine.tasks.python import PythonTask

TASKS: dict[str, type[Task]] = {
    "arithmetic": ArithmeticTask,
    "countdown": CountdownTask,
    "humaneval": HumanEvalTask,  # an evaluation set: test split only
    "python": PythonTask,
}

__all__ = ["TASKS", "Example", "Task", "extract_answer", "get", "names"]


def names() -> list[str]:
    """Names of the built-in tasks: Ponder's own, then `reasoning_gym:<name>` for each
    dataset of reasoning-gym."""
    return sorted(TASKS) + gym_names()


def get(name: str, **options: Any) -> Task:
    """The task called `name`, built with `options` (e.g. `difficulty=3`, or a reasoning-gym
    dataset's config fields)."""
    if name.startswith(GYM_PREFIX):
        return ReasoningGymTask(name[len(GYM_PREFIX):], **options)
    if name not in TASKS:
        raise KeyError(f"Unknown task {name!r}; the built-in tasks are {', '.join(sorted(TASKS))}, "
                       f"or {GYM_PREFIX}<name> for a reasoning-gym dataset.")
    return TASKS[name](**options)
