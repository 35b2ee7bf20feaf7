"""Weighted verifiable rewards for a stage: named rewards plus the task's own grader.

    scorer = RewardScorer({"format": 0.5, "task": 1.0}, engine.tasks.get("arithmetic"))
    total, components = scorer.score(completion, example)

`task` is the task's grader (`Task.reward`); a name among `custom` functions is that
function; every other name goes through `engine.rewards.resolve` (registered names
and dotted paths). A reward that raises scores 0.0 for that completion and
is reported once through `log`, so one bad grader cannot kill a long run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

RewardFn = Callable[[str, dict[str, Any]], float]
TASK_REWARD = "task"


class RewardScorer:
    """Scores completions with a weighted sum of named rewards."""

    def __init__(self, weights: dict[str, float], task: Any = None, log: Callable[[str], None] = print,
                 custom: dict[str, RewardFn] | None = None) -> None:
        self.weights = dict(weights)
        self.task = task
        self.log = log
        self.custom = dict(custom or {})  # caller-supplied graders, found before the registry
        self.functions = {name: self._resolve(name) for name in self.weights}
        self._reported: set[str] = set()
        self._extra: dict[str, RewardFn] = {}  # graders used only for `correct`
        self._errors: dict[str, str] = {}  # a batch grader's last error
        self.last_errors: list[dict[str, str]] = []  # per pair of the last score_many: graders with no score

    def _resolve(self, name: str) -> RewardFn:
        if name in self.custom:
            return self.custom[name]
        if name == TASK_REWARD:
            if self.task is None:
                raise ValueError("The `task` reward needs a built-in task: with a dataset, name a reward such as math.")
            return self.task.reward
        from engine import rewards

        try:
            return rewards.resolve(name)  # a registered name or a dotted path
        except KeyError as exc:
            known = ", ".join([TASK_REWARD, *rewards.names()])
            raise ValueError(f"Unknown reward {name!r}: known rewards are {known}, or a dotted path "
                             "such as 'my_pkg.rewards:brevity'.") from exc

    def score(self, completion: str, example: dict[str, Any]) -> tuple[float, dict[str, float]]:
        """(weighted total, {name: unweighted value}) for one completion."""
        components = {name: self._call(name, fn, completion, example) for name, fn in self.functions.items()}
        total = sum(self.weights[name] * value for name, value in components.items())
        return float(total), components

    def score_many(self, pairs: list[tuple[str, dict[str, Any]]]) -> list[tuple[float, dict[str, float]]]:
        """`score` for each (completion, example), in order, on a few threads: graders that
        run code in the sandbox (or helper processes) then overlap. A grader with a `batch`
        method (a custom reward in the sandbox) scores all pairs in one call."""
        batched = {name: self._call_batch(name, fn, pairs) for name, fn in self.functions.items()
                   if hasattr(fn, "batch") and len(pairs) > 1}
        rest = {name: fn for name, fn in self.functions.items() if name not in batched}

        def one(index: int) -> tuple[float, dict[str, float]]:
            completion, example = pairs[index]
            components = {name: self._call(name, fn, completion, example) for name, fn in rest.items()}
            components.update({name: values[index] for name, values in batched.items()})
            # A NaN is a grader that could not decide (a judge with no verdict): no score, an error.
            components = {name: components[name] for name in self.functions if not math.isnan(components[name])}
            return float(sum(self.weights[n] * v for n, v in components.items())), components

        if len(pairs) <= 1 or not rest:
            scored = [one(i) for i in range(len(pairs))]
        else:
            with ThreadPoolExecutor(max_workers=min(len(pairs), _concurrency())) as pool:
                scored = list(pool.map(one, range(len(pairs))))
        self.last_errors = [{n: self._errors.get(n, "no score") for n in self.functions if n not in comps}
                            for _, comps in scored]
        return scored

    def notes(self, n: int) -> list[dict[str, Any]]:
        """For each of the last `score_many`'s `n` samples, what to keep in its metadata: the
        graders that gave no score and why (`reward_errors`), what a generative judge wrote."""
        errors = self.last_errors if len(self.last_errors) == n else [{}] * n
        judge: Any = self.custom.get("judge")
        texts = judge.last_texts if judge is not None and len(judge.last_texts) == n else [None] * n
        return [{**({"reward_errors": e} if e else {}), **({"judge": t} if t is not None else {})}
                for e, t in zip(errors, texts, strict=True)]

    def _call_batch(self, name: str, fn: Any, pairs: list[tuple[str, dict[str, Any]]]) -> list[float]:
        try:
            results = fn.batch([c for c, _ in pairs], [ex for _, ex in pairs])
        except Exception as exc:  # the whole batch failed (syntax, timeout): each scores 0
            self._report(name, exc)
            return [0.0] * len(pairs)
        for _, error in results:
            if error:
                self._report(name, error)
                break
        self._errors[name] = next((str(e) for _, e in results if e), "")
        return [value for value, _ in results]

    def _report(self, name: str, error: Any) -> None:
        if name not in self._reported:
            self._reported.add(name)
            text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
            self.log(f"reward {name!r} failed ({text}); scoring 0.0")

    def _call(self, name: str, fn: RewardFn, completion: str, example: dict[str, Any]) -> float:
        try:
            return float(fn(completion, example))
        except Exception as exc:  # a grader bug must not end the run; it scores 0
            self._report(name, exc)
            return 0.0

    def correct(self, completion: str, example: dict[str, Any], components: dict[str, float],
                accuracy_reward: str) -> bool:
        """Whether the completion solves the example: `accuracy_reward` scored 1.0 (reused
        from `components` when it is one, so sandboxed code does not run twice)."""
        if accuracy_reward in components:
            return components[accuracy_reward] >= 1.0
        if accuracy_reward in self.functions:  # its grader gave no score for this one: not counted correct
            return False
        if accuracy_reward == TASK_REWARD and self.task is not None:
            return bool(self.task.evaluate(completion, example))
        if accuracy_reward not in self._extra:
            self._extra[accuracy_reward] = self._resolve(accuracy_reward)
        fn = self._extra[accuracy_reward]
        return self._call(accuracy_reward, fn, completion, example) >= 1.0


def sandboxed_rewards(files: dict[str, str]) -> dict[str, RewardFn]:
    """The custom rewards of a stage config (name → source file), each run in the sandbox."""
    from engine.rewards.sandboxed import SandboxedReward

    return {name: SandboxedReward.from_file(path) for name, path in files.items()}


def _concurrency() -> int:
    """Threads for scoring: the sandbox's setting (PONDER_SANDBOX_CONCURRENCY), else the CPU count."""
    try:
        from engine.sandbox import load_settings

        return max(1, load_settings().concurrency)
    except Exception:  # scoring must work even where the sandbox cannot be configured
        return os.cpu_count() or 1
