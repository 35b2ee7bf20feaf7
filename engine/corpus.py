"""The synthetic pretraining corpus of the starter model.

The starter must be a *base* model in R1's sense: it knows the surface of the tasks but
solves them poorly, and it sometimes reasons, so that R1-Zero RL has something to find.
So the corpus mixes, for the same kind of question under the R1-Zero template:

- reasoned answers: `<think> Mia has 3 apples. Mia buys 5 more, so 3 + 5 = 8. Mia gives
  away 2, so 8 - 2 = 6. </think> <answer> 6 </answer>`, each sum miscalculated now and
  then (a sloppy student), the answer following the work;
- lazy answers: a token thought (`<think> I think it is 7. </think>`) and a guess;
- direct answers: `<answer> 7 </answer>` with no reasoning, a guess that is right only
  sometimes (near the truth, a number from the question, or all numbers added).

A model of this corpus sampled at temperature 1 answers right only when it happens to
reason and reason without slips: low base accuracy that is much higher with reasoning,
and longer when it reasons. GRPO then raises accuracy by making the model start with
`<think>` and slip less, and response length rises with it, as in R1-Zero.

Practice dialogues without the R1-Zero header always reason: they teach the skill
without raising how often the model reasons under the template. Worksheets of correct
sums ("7 + 5 = 12.") teach the arithmetic itself; a little countdown and Python gives
the model those surfaces too.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from engine.tasks import get as get_task
from engine.tasks.arithmetic import ArithmeticTask
from engine.tasks.base import Example
from engine.tasks.templates import r1_zero_prompt

EOS = "<|endoftext|>"


@dataclass(frozen=True)
class CorpusConfig:
    """Mixture of the starter's pretraining corpus (shares of documents, per mode)."""

    reason_share: float = 0.2  # templated answers that reason step by step
    lazy_share: float = 0.1  # templated answers with a token thought and a guess
    step_error_rate: float = 0.12  # chance that a reasoning step is miscalculated
    guess_correct: float = 0.12  # chance that a guess is the right answer
    worksheet_share: float = 0.1  # documents of correct worked sums
    countdown_share: float = 0.05
    python_share: float = 0.03
    # "User: ...\nAssistant: <think> reasoning ..." without the R1-Zero header line: teaches
    # the skill of reasoning (copying the question's numbers, then summing) while under
    # the full template the model still reasons only `reason_share` of the time.
    practice_share: float = 0.4

    def __post_init__(self) -> None:
        if self.reason_share + self.lazy_share > 1:
            raise ValueError("reason_share + lazy_share must not exceed 1; the rest answer directly.")
        rest = self.worksheet_share + self.countdown_share + self.python_share + self.practice_share
        if rest >= 1:
            raise ValueError("Worksheet, countdown, python and practice shares must leave room for arithmetic documents.")


def guess(example: Example, rng: random.Random, config: CorpusConfig) -> int:
    """An answer without working: sometimes right, else a plausible mistake."""
    answer = int(example["answer"])
    if rng.random() < config.guess_correct:
        return answer
    numbers = [int(example["start"])] + [n for _, n in example["steps"]]
    kind = rng.random()
    if kind < 0.5:
        wrong = answer + rng.choice((-5, -4, -3, -2, -1, 1, 2, 3, 4, 5))
    elif kind < 0.8:
        wrong = rng.choice(numbers)
    else:
        wrong = sum(numbers)
    return max(0, wrong) if wrong != answer else answer + 1


def arithmetic_completion(example: Example, rng: random.Random, config: CorpusConfig) -> str:
    """What the Assistant writes after "Assistant:" in one templated document."""
    mode = rng.random()
    if mode < config.reason_share:
        work, value = ArithmeticTask.reasoning(example, config.step_error_rate, rng)
        return f" <think> {work} </think> <answer> {value} </answer>"
    g = guess(example, rng, config)
    if mode < config.reason_share + config.lazy_share:
        thought = rng.choice((f"I think it is {g}.", "Easy.", "Let me guess.", f"About {g}."))
        return f" <think> {thought} </think> <answer> {g} </answer>"
    return f" <answer> {g} </answer>"


def worksheet(rng: random.Random, examples: list[Example]) -> str:
    """Correct worked sums of a few problems, the arithmetic the reasoning needs."""
    return "\n".join(ArithmeticTask.sums(rng.choice(examples)) for _ in range(rng.randint(3, 6)))


def task_document(example: Example, completion: str) -> str:
    return r1_zero_prompt(example["prompt"]) + completion


def other_completion(task_name: str, example: Example, rng: random.Random, config: CorpusConfig) -> str:
    """Countdown or Python answers: the reference solution or a direct guess."""
    task = get_task(task_name)
    if rng.random() < config.reason_share + config.lazy_share:
        return " " + task.solution(example)
    if task_name == "countdown":
        numbers = list(example["numbers"])
        rng.shuffle(numbers)
        return " <answer> " + f" {rng.choice('+-*')} ".join(map(str, numbers)) + " </answer>"
    return " <answer>\n```python\n" + example["answer"] + "```\n</answer>"


def documents(n: int, seed: int = 0, config: CorpusConfig | None = None) -> Iterator[str]:
    """`n` corpus documents (without EOS), the same for the same seed and config.

    Drawn only from the tasks' *train* splits, so test problems stay unseen.
    """
    config = config or CorpusConfig()
    rng = random.Random(f"ponder-corpus/{seed}")
    arithmetic = ArithmeticTask().examples("train", 3000)
    countdown = get_task("countdown").examples("train", 1000)
    python = get_task("python").examples("train")
    edges = _cumulative(config)
    for _ in range(n):
        kind = _pick(rng.random(), edges)
        if kind == "worksheet":
            yield worksheet(rng, arithmetic)
        elif kind == "countdown":
            ex = rng.choice(countdown)
            yield task_document(ex, other_completion("countdown", ex, rng, config))
        elif kind == "python":
            ex = rng.choice(python)
            yield task_document(ex, other_completion("python", ex, rng, config))
        elif kind == "practice":
            ex = rng.choice(arithmetic)
            work, value = ArithmeticTask.reasoning(ex, config.step_error_rate / 2, rng)
            yield f"User: {ex['prompt']}\nAssistant: <think> {work} </think> <answer> {value} </answer>"
        else:
            ex = rng.choice(arithmetic)
            yield task_document(ex, arithmetic_completion(ex, rng, config))


def _cumulative(config: CorpusConfig) -> list[tuple[str, float]]:
    edges, total = [], 0.0
    for kind, share in (("worksheet", config.worksheet_share), ("countdown", config.countdown_share),
                        ("python", config.python_share), ("practice", config.practice_share)):
        total += share
        edges.append((kind, total))
    return edges


def _pick(u: float, edges: list[tuple[str, float]]) -> str:
    return next((kind for kind, edge in edges if u < edge), "arithmetic")
