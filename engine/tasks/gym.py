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
import re
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
        # example id -> (difficulty level or None, the library's entry), for scoring
        self._entries: dict[str, tuple[int | None, dict[str, Any]]] = {}
        self._scorers: dict[int | None, Any] = {}  # a dataset of each level's options: its score_answer grades
        self._make(1, _SEEDS["test"], None)  # bad options fail here, naming them

    def seed_key(self) -> str:
        return repr(sorted(self.options.items()))

    def levels(self) -> int:
        """How many difficulty levels the dataset's reasoning-gym curriculum has (0: none)."""
        from reasoning_gym.factory import has_curriculum

        if not has_curriculum(self.dataset):
            return 0
        return max(len(a.levels) for a in self._curriculum(0).attributes.values())

    def level_options(self, level: int) -> dict[str, Any]:
        """The options at curriculum `level` (0 the easiest): the curriculum's attribute
        fields at that level over the task's own options."""
        config = self._curriculum(level).generate_configuration({})
        fields = {name for a in self._curriculum(0).attributes.values()
                  for name in (getattr(a, "lower_field_name", None), getattr(a, "upper_field_name", None),
                               getattr(a, "field_name", None)) if name}
        return {**self.options, **{k: v for k, v in vars(config).items() if k in fields}}

    def _curriculum(self, level: int) -> Any:
        from reasoning_gym.factory import create_curriculum

        curriculum = create_curriculum(self.dataset)
        for _ in range(level):
            if not curriculum.increment_global_level():
                break  # the hardest level: every attribute at its last
        return curriculum

    def examples(self, split: str, n: int | None = None, level: int | None = None) -> list[Example]:
        """`n` examples of `split` with the task's options, or at curriculum `level`;
        train never holds a question of the (task's own) test split."""
        if split not in _SEEDS:
            raise ValueError(f"split must be one of {', '.join(_SEEDS)}, not {split!r}.")
        n = self.default_sizes[split] if n is None else n
        held_out = set() if split == "test" else {e["question"] for e in self._make(
            self.default_sizes["test"], _SEEDS["test"], None)}
        out: list[Example] = []
        for entry in self._make(n + len(held_out), _SEEDS[split], level):
            if len(out) >= n:
                break
            if entry["question"] in held_out:
                continue
            example_id = f"{self.name}-{split}-{'' if level is None else f'L{level}-'}{len(out)}"
            self._entries[example_id] = (level, entry)
            out.append({"id": example_id, "prompt": entry["question"], "answer": str(entry["answer"]),
                        "task": self.name, "tests": None, "language": "en"})
        return out

    def _make(self, size: int, seed: int, level: int | None) -> list[dict[str, Any]]:
        import reasoning_gym

        options = self.options if level is None else self.level_options(level)
        try:
            dataset = reasoning_gym.create_dataset(self.dataset, size=max(1, size), seed=seed, **options)
        except (TypeError, ValueError, AssertionError) as exc:
            raise ValueError(f"task_options for {self.name}: {exc}") from None
        self._scorers.setdefault(level, dataset)
        return [dataset[i] for i in range(size)]

    def _draw(self, rng: random.Random) -> tuple[str, Example]:  # examples() is overridden
        raise NotImplementedError

    def reward(self, completion: str, example: Example) -> float:
        """The library's own score of the completion's final answer, in [0, 1]."""
        level, entry = self._entry(str(example.get("id")))
        answer = extract_answer(completion)
        if answer is None:
            return 0.0
        return float(self._scorers[level].score_answer(answer=answer, entry=entry))

    def _entry(self, example_id: str) -> tuple[int | None, dict[str, Any]]:
        """The library's entry behind an example id, regenerated (examples are deterministic)
        when another instance of this task made it."""
        if example_id not in self._entries:
            match = re.fullmatch(re.escape(self.name) + r"-(train|test)-(?:L(\d+)-)?(\d+)", example_id)
            if match is None:
                raise KeyError(f"{example_id!r} is not an example of {self.name}")
            split, level, index = match.group(1), match.group(2), int(match.group(3))
            self.examples(split, index + 1, None if level is None else int(level))
        return self._entries[example_id]

    def evaluate(self, completion: str, example: Example) -> bool:
        return self.reward(completion, example) >= 1.0
