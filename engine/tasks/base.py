"""What every built-in task shares: the example shape, the split rule, answer extraction.

A task produces examples for a split and grades completions with one piece of code, so
RL rewards, evaluation and data filtering can never disagree (nanochat's `tasks/`).

An example is a plain dict:
    {"id": str, "prompt": str, "answer": str, "tests": str | None,
     "language": "en", "task": name, ...task-specific fields}
"""

from __future__ import annotations

import hashlib
import random
import re
from abc import ABC, abstractmethod
from typing import Any

Example = dict[str, Any]
SPLITS = ("train", "test")
TEST_SHARE_PERCENT = 10  # share of problem keys that belong to the test split

_ANSWER_RE = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)
_INT_RE = re.compile(r"-?\d[\d,]*")


def split_of(key: str) -> str:
    """The split a problem belongs to, decided by a stable hash of its canonical key.

    Hashing the *mathematical* key (not the wording) keeps a test problem's arithmetic
    out of the train split even when it is phrased differently.
    """
    digest = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16)
    return "test" if digest % 100 < TEST_SHARE_PERCENT else "train"


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` in `text`, braces balanced, or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 1, start + len("\\boxed{")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


def extract_answer(completion: str) -> str | None:
    """The final answer a completion gives, or None when it gives none.

    Order: the last `<answer>...</answer>` (an unclosed trailing `<answer>` counts, since
    a `</answer>` stop string is cut from the text), else the last `\\boxed{}`, else the
    line after the last `####` (GSM8K's layout), else the text after the last `</think>`.

    >>> extract_answer("<think>48 / 2 = 24</think> Natalia sold 72 clips.\\n#### 72")
    '72'
    """
    tagged = _ANSWER_RE.findall(completion)
    if tagged:
        return tagged[-1].strip()
    boxed = last_boxed(completion)
    if boxed is not None:
        return boxed.strip()
    if "####" in completion:
        hashed = completion.rsplit("####", 1)[1].strip().splitlines()
        if hashed and hashed[0].strip():
            return hashed[0].strip()
    if "</think>" in completion:
        rest = completion.rsplit("</think>", 1)[1].strip()
        return rest or None
    return None


def last_integer(text: str | None) -> int | None:
    """The last integer written in `text` ("1,234" reads as 1234), or None."""
    if not text:
        return None
    found = _INT_RE.findall(text)
    if not found:
        return None
    try:
        return int(found[-1].replace(",", ""))
    except ValueError:
        return None


class Task(ABC):
    """A source of examples with one grader; subclasses implement `_draw` and `evaluate`."""

    name: str = ""
    default_sizes = {"train": 2000, "test": 200}

    def examples(self, split: str, n: int | None = None) -> list[Example]:
        """`n` distinct examples of `split`, the same on every call and machine."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}.")
        n = self.default_sizes[split] if n is None else n
        rng = random.Random(f"ponder/{self.name}/{self.seed_key()}/{split}")
        out: list[Example] = []
        seen: set[str] = set()
        for _ in range(max(1000, n * 50)):  # bounded: small problem spaces run dry
            if len(out) >= n:
                break
            key, example = self._draw(rng)
            if split_of(key) != split or example["prompt"] in seen:
                continue
            seen.add(example["prompt"])
            example.update(id=f"{self.name}-{split}-{len(out)}", task=self.name)
            example.setdefault("tests", None)
            example.setdefault("language", "en")
            out.append(example)
        return out

    def seed_key(self) -> str:
        """Options that change the problem distribution; part of the RNG seed."""
        return ""

    @abstractmethod
    def _draw(self, rng: random.Random) -> tuple[str, Example]:
        """One random problem: its canonical key (for the split) and its example."""

    @abstractmethod
    def evaluate(self, completion: str, example: Example) -> bool:
        """Whether `completion` solves `example`."""

    def reward(self, completion: str, example: Example) -> float:
        """Accuracy reward in [0, 1]; by default 1.0 exactly when `evaluate` is True."""
        return float(self.evaluate(completion, example))

    def solution(self, example: Example, rng: random.Random | None = None) -> str:
        """A correct completion (reasoning + answer), used to build synthetic corpora."""
        return f"<think> </think> <answer> {example['answer']} </answer>"
