"""Every procedural dataset of reasoning-gym as a built-in task: `reasoning_gym:<name>`.

    task = engine.tasks.get("reasoning_gym:basic_arithmetic", min_terms=2, max_terms=3)
    train = task.examples("train", 500)
    task.reward("<think>..</think> <answer>-4</answer>", train[0])   # its own score_answer

reasoning-gym (a maintained library of ~100 verifiable reasoning tasks) generates problems
offline from a seed and scores answers with each dataset's own `score_answer`, so rewards,
evaluation and filtering agree with the library's. The options are the dataset's config
fields. Train and test come from different seeds, and a test question never appears in train.
"""

from __future__ import annotations

import random
from typing import Any

from engine.tasks.base import Example, Task, extract_answer

PREFIX = "reasoning_gym:"
_SEEDS = {"train": 1, "test": 2}


def gym_names() -> list[str]:
    """`reasoning_gym:<name>` for every dataset reasoning-gym has (none when not installed)."""
    try:
        from reasoning_gym.factory import DATASETS
    except ImportError:
        return []
    return [PREFIX + name for name in sorted(DATASETS)]


class ReasoningGymTask(Task):
    default_sizes = {"train": 2000, "test": 200}

    def __init__(self, dataset: str, **options: Any) -> None:
        try:
            from reasoning_gym.factory import DATASETS
        except ImportError:
            raise KeyError("reasoning_gym tasks need the reasoning-gym package (pip install reasoning-gym)") from None
        if dataset not in DATASETS:
            raise KeyError(f"reasoning-gym has no dataset {dataset!r}; it has {', '.join(sorted(DATASETS))}.")
        self.dataset, self.options = dataset, dict(options)
        self.name = PREFIX + dataset
        self._entries: dict[str, dict[str, Any]] = {}  # example id -> the library's entry, for scoring
        self._scorer: Any = None  # a dataset of these options: its score_answer grades
        self._make(1, _SEEDS["test"])  # bad options fail here, naming them

    def seed_key(self) -> str:
        return repr(sorted(self.options.items()))

    def examples(self, split: str, n: int | None = None) -> list[Example]:
        if split not in _SEEDS:
            raise ValueError(f"split must be one of {', '.join(_SEEDS)}, not {split!r}.")
        n = self.default_sizes[split] if n is None else n
        held_out = set() if split == "test" else {e["question"] for e in self._make(
            self.default_sizes["test"], _SEEDS["test"])}
        out: list[Example] = []
        for entry in self._make(n + len(held_out), _SEEDS[split]):
            if len(out) >= n:
                break
            if entry["question"] in held_out:
                continue
            example_id = f"{self.name}-{split}-{len(out)}"
            self._entries[example_id] = entry
            out.append({"id": example_id, "prompt": entry["question"], "answer": str(entry["answer"]),
                        "task": self.name, "tests": None, "language": "en"})
        return out

    def _make(self, size: int, seed: int) -> list[dict[str, Any]]:
        import reasoning_gym

        try:
            dataset = reasoning_gym.create_dataset(self.dataset, size=max(1, size), seed=seed, **self.options)
        except (TypeError, ValueError, AssertionError) as exc:
            raise ValueError(f"task_options for {self.name}: {exc}") from None
        self._scorer = self._scorer or dataset
        return [dataset[i] for i in range(size)]

    def _draw(self, rng: random.Random) -> tuple[str, Example]:  # examples() is overridden
        raise NotImplementedError

    def reward(self, completion: str, example: Example) -> float:
        """The library's own score of the completion's final answer, in [0, 1]."""
        entry = self._entries.get(str(example.get("id")))
        if entry is None:
            raise KeyError(f"{example.get('id')!r} is not an example this task made")
        answer = extract_answer(completion)
        if answer is None:
            return 0.0
        return float(self._scorer.score_answer(answer=answer, entry=entry))

    def evaluate(self, completion: str, example: Example) -> bool:
        return self.reward(completion, example) >= 1.0
