"""A generative judge: a model prompted to grade a completion's answer against the reference,
for data whose answers rules cannot check (R1 used DeepSeek-V3 as such a judge).

    judge = Judge.load({"model": "Qwen/Qwen2.5-1.5B-Instruct"})
    judge.batch(completions, examples)    # [(1.0, None), (0.0, None), (nan, "no verdict in 'hmm'")]

Its settings are checked with the stage's config (`engine.config.check_judge`). Greedy, one
short answer per completion; the verdict is the first of correct / incorrect
(yes / no, right / wrong) in what the judge wrote. An answer with none is an error, not a
score: its value is NaN, which the scorer leaves out of the total and records as the
sample's reward error (`engine.scoring`). What the judge wrote is kept (`last_texts`) for
the samples' metadata.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from engine.text import user_text

TEMPLATE = ("You are grading a student's answer.\nQuestion:\n{question}\n\nReference answer: {reference}\n"
            "Student's final answer: {answer}\n\nIs the student's answer correct? Reply with one word: "
            "correct or incorrect.\nVerdict:")
_VERDICT = re.compile(r"\b(correct|incorrect|yes|no|right|wrong)\b", re.IGNORECASE)
_YES = {"correct", "yes", "right"}
_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)


def parse_verdict(text: str) -> float | None:
    """1.0 / 0.0 for the judge's first verdict word, None when it gave none."""
    found = _VERDICT.search(text)
    if found is None:
        return None
    return 1.0 if found.group(1).lower() in _YES else 0.0


@dataclass
class Judge:
    generator: Any
    template: str = TEMPLATE
    max_new_tokens: int = 16
    last_texts: list[str] = field(default_factory=list)  # what the judge wrote, for the last call's samples

    @classmethod
    def load(cls, settings: dict[str, Any], device: str = "cpu", dtype: str = "float32") -> Judge:
        from engine.backends import make_generator
        from engine.models import load_model, load_tokenizer

        model = load_model(settings["model"], device=device, dtype=dtype)
        return cls(make_generator("torch", model, load_tokenizer(settings["model"])),
                   str(settings.get("template", TEMPLATE)), int(settings.get("max_new_tokens", 16)))

    def batch(self, completions: list[str], examples: list[dict[str, Any]]) -> list[tuple[float, str | None]]:
        from engine.generation import SamplingParams

        prompts = [self.template.format(question=user_text(ex.get("prompt")), reference=ex.get("answer", ""),
                                        answer=_answer(c)) for c, ex in zip(completions, examples, strict=True)]
        samples = self.generator.generate(prompts, 1, SamplingParams(temperature=0.0, max_new_tokens=self.max_new_tokens))
        self.last_texts = [s.text for s in samples]
        out: list[tuple[float, str | None]] = []
        for text in self.last_texts:
            verdict = parse_verdict(text)
            out.append((verdict, None) if verdict is not None else
                       (math.nan, f"the judge gave no verdict: {text.strip()[:80]!r}"))
        return out

    def __call__(self, completion: str, example: dict[str, Any]) -> float:
        [(value, _)] = self.batch([completion], [example])
        return value


def _answer(completion: str) -> str:
    """The completion's final answer (in <answer> tags), else its last 500 characters."""
    found = _ANSWER.search(completion)
    return found.group(1).strip() if found else completion.strip()[-500:]
