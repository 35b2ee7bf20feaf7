"""Arithmetic word problems with integer answers (GSM8K in miniature).

    "Mia has 3 apples. Then Mia buys 5 more apples. Then Mia sells 2 of them.
     How many apples does Mia have now?"
    answer "6"; reasoning "Mia has 3 apples. So 3 + 5 = 8. So 8 - 2 = 6."

Difficulty sets how many numbers a problem has and how large they are; level 2 (three
numbers up to 9, adding and subtracting) is the default R1-Zero demo task: one step is
easy to do in the head, two steps are easy only when written down.

Why the wording is so regular: every sentence after the first has the same number of
tokens as the reasoning line that uses it ("Then Mia buys 5 more apples." and
"So 3 + 5 = 8." are 7 tokens each for the starter's tokenizer), so each number sits at
one fixed distance from where the reasoning needs it. Copying from a fixed distance is
what a ~1M-parameter model learns within minutes; finding a number by the words around
it (an induction head) it does not learn in a CPU-sized pretraining budget.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from engine.tasks.base import Example, Task, extract_answer, last_integer

NAMES = ("Tom", "Ann", "Sam", "Mia", "Ben", "Lily", "Max", "Zoe", "Leo", "Eva")
OBJECTS = ("apples", "books", "coins", "cards", "pens", "eggs", "stamps", "marbles")
GAIN = ("buys", "finds", "gets", "wins")  # "Then Mia buys 5 more apples."
LOSS = ("sells", "loses", "uses", "drops")  # "Then Mia sells 2 of them."


@dataclass(frozen=True)
class Difficulty:
    """How hard problems are: `min_terms`..`max_terms` numbers, each 1..`max_value`."""

    min_terms: int
    max_terms: int
    max_value: int

    def __post_init__(self) -> None:
        if not 2 <= self.min_terms <= self.max_terms <= 6:
            raise ValueError("Arithmetic problems need 2 <= min_terms <= max_terms <= 6 numbers.")
        if not 2 <= self.max_value <= 999:
            raise ValueError("Arithmetic max_value must be between 2 and 999.")


LEVELS = {
    1: Difficulty(2, 2, 9),
    2: Difficulty(3, 3, 9),
    3: Difficulty(3, 4, 20),
    4: Difficulty(4, 5, 99),
}


def clause(name: str, obj: str, op: str, n: int, rng: random.Random) -> str:
    """One sentence of a problem: "Then Mia buys 5 more apples." or "Then Mia sells 2 of them." """
    if op == "+":
        return f"Then {name} {rng.choice(GAIN)} {n} more {obj}."
    return f"Then {name} {rng.choice(LOSS)} {n} of them."


class ArithmeticTask(Task):
    """Add-and-subtract word problems; the answer is the final count (never negative)."""

    name = "arithmetic"

    def __init__(self, difficulty: int | Difficulty = 2) -> None:
        if isinstance(difficulty, int):
            if difficulty not in LEVELS:
                raise ValueError(f"Arithmetic difficulty must be one of {sorted(LEVELS)}, not {difficulty}.")
            difficulty = LEVELS[difficulty]
        self.difficulty = difficulty

    def seed_key(self) -> str:
        d = self.difficulty
        return f"{d.min_terms}-{d.max_terms}-{d.max_value}"

    def levels(self) -> int:
        """Curriculum levels (GRPO's `curriculum`): level k is difficulty k + 1, 2 numbers up to 5."""
        return len(LEVELS)

    def level_options(self, level: int) -> dict[str, int]:
        return {"difficulty": min(level, len(LEVELS) - 1) + 1}

    def examples(self, split: str, n: int | None = None, level: int | None = None) -> list[Example]:
        """`Task.examples`, or at curriculum `level` (its difficulty) when given."""
        if level is None:
            return super().examples(split, n)
        examples = ArithmeticTask(**self.level_options(level)).examples(split, n)
        for ex in examples:
            ex["id"] = f"{self.name}-L{level}-{ex['id'].rsplit('-', 1)[-1]}"
        return examples

    def _draw(self, rng: random.Random) -> tuple[str, Example]:
        d = self.difficulty
        start = rng.randint(1, d.max_value)
        steps: list[tuple[str, int]] = []
        total = start
        for _ in range(rng.randint(d.min_terms, d.max_terms) - 1):
            # Subtract only what is there: counts of things never go negative.
            if total > 1 and rng.random() < 0.5:
                n = rng.randint(1, min(total, d.max_value))
                steps.append(("-", n))
                total -= n
            else:
                n = rng.randint(1, d.max_value)
                steps.append(("+", n))
                total += n
        name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
        clauses = [clause(name, obj, op, n, rng) for op, n in steps]
        prompt = f"{name} has {start} {obj}. {' '.join(clauses)} How many {obj} does {name} have now?"
        key = str(start) + "".join(f"{op}{n}" for op, n in steps)
        example: Example = {"prompt": prompt, "answer": str(total), "start": start, "steps": [list(s) for s in steps],
                            "name": name, "object": obj, "clauses": clauses}
        return key, example

    def evaluate(self, completion: str, example: Example) -> bool:
        got = last_integer(extract_answer(completion))
        return got is not None and str(got) == str(example["answer"]).strip()

    @staticmethod
    def reasoning(example: Example, error_rate: float = 0.0, rng: random.Random | None = None) -> tuple[str, int]:
        """Step-by-step working and the value it ends on:
        "Mia has 3 apples. So 3 + 5 = 8. So 8 - 2 = 6."

        With `error_rate > 0` each sum is off by 1-3 with that probability and later
        steps carry the mistake, as a sloppy student's would.
        """
        rng = rng or random.Random(0)
        total = int(example["start"])
        parts = [f"{example['name']} has {total} {example['object']}."]
        for op, n in example["steps"]:
            value = total + n if op == "+" else total - n
            if error_rate and rng.random() < error_rate:
                value = max(0, value + rng.choice((-3, -2, -1, 1, 2, 3)))
            parts.append(f"So {total} {op} {n} = {value}.")
            total = value
        return " ".join(parts), total

    @staticmethod
    def sums(example: Example) -> str:
        """Just the sums of the working: "3 + 5 = 8. 8 - 2 = 6." """
        total, parts = int(example["start"]), []
        for op, n in example["steps"]:
            value = total + n if op == "+" else total - n
            parts.append(f"{total} {op} {n} = {value}.")
            total = value
        return " ".join(parts)

    def solution(self, example: Example, rng: random.Random | None = None) -> str:
        work, value = self.reasoning(example)
        return f"<think> {work} </think> <answer> {value} </answer>"
