"""Reward functions written by users (Python source), run only inside the code sandbox.

A custom reward is source defining ``reward(completion: str, example: dict) -> float``.
It never runs in the worker's interpreter: `SandboxedReward.batch` starts one sandbox for
a whole batch (a GRPO step's completions), feeds it the pairs as JSON on stdin and reads
one number per pair back, so a step pays one sandbox start, not one per completion.

    fn = SandboxedReward.from_file("var/runs/7/rewards/brevity-v2.py")
    fn.batch(["<think>..</think> 4", "5"], [{"answer": "4"}, {"answer": "4"}])
    # [(0.8, ''), (0.0, "ValueError: ...")]

A stage config's `custom_rewards` ({name: source file}) makes such functions available
under their names (`engine.scoring.sandboxed_rewards`); the web app writes the files, a
project's saved versions, into the run's folder.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENTRY = "reward"

# Runs after the user's source, in the sandbox: one line of JSON out, behind a marker the
# user's own prints cannot know in advance.
_DRIVER = '''
import json as _json, sys as _sys, math as _math
def _ponder_main(_marker):
    _pairs = _json.loads(_sys.stdin.read())
    _out = []
    for _completion, _example in _pairs:
        try:
            _v = float(reward(_completion, _example))
            _out.append([_v, ""] if _math.isfinite(_v) else [0.0, "ValueError: reward returned " + repr(_v)])
        except Exception as _exc:
            _out.append([0.0, (type(_exc).__name__ + ": " + str(_exc))[:300]])
    _sys.stdout.write("\\n" + _marker + _json.dumps(_out) + "\\n")
_ponder_main(MARKER)
'''


class CustomRewardError(ValueError):
    """The source cannot be a reward (syntax, no `reward` function, the sandbox failed)."""


@dataclass(frozen=True)
class SandboxedReward:
    """A user's reward function; `timeout_s` and `memory_mb` bound one whole batch."""

    source: str
    name: str = "custom"
    timeout_s: float = 30.0
    memory_mb: int = 1024

    @classmethod
    def from_file(cls, path: str | Path) -> SandboxedReward:
        path = Path(path)
        return cls(source=path.read_text(encoding="utf-8"), name=path.stem)

    def __call__(self, completion: str, example: dict[str, Any]) -> float:
        value, error = self.batch([completion], [example])[0]
        if error:
            raise CustomRewardError(error)
        return value

    def batch(self, completions: Sequence[str], examples: Sequence[dict[str, Any]]) -> list[tuple[float, str]]:
        """(value, error) per completion, in order, from one sandbox run; a pair whose call
        raised scores 0.0 with the error. The whole batch fails (CustomRewardError) when the
        source itself does (syntax, timeout, memory, no output)."""
        from engine.sandbox import run_python

        marker = f"@@ponder-reward-{secrets.token_hex(8)}@@"
        pairs = json.dumps([[c, _plain(ex)] for c, ex in zip(completions, examples, strict=True)])
        result = run_python(self.source + "\n" + _DRIVER.replace("MARKER", repr(marker)), stdin=pairs,
                            timeout_s=self.timeout_s, memory_mb=self.memory_mb)
        line = next((ln for ln in reversed(result.stdout.splitlines()) if ln.startswith(marker)), None)
        if line is None:
            detail = (result.detail or result.stderr.strip().splitlines()[-1:] or [result.status])
            raise CustomRewardError(f"reward {self.name!r} gave no scores ({result.status}: "
                                    f"{detail if isinstance(detail, str) else detail[0]})"[:1000])
        values = json.loads(line[len(marker):])
        if len(values) != len(completions):
            raise CustomRewardError(f"reward {self.name!r} gave {len(values)} scores for {len(completions)} completions")
        return [(float(v) if math.isfinite(float(v)) else 0.0, str(e)) for v, e in values]


def check_source(source: str) -> None:
    """Refuse source that cannot define a reward, with the line (compiled, never run, here)."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise CustomRewardError(f"line {exc.lineno}: {exc.msg}") from None
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    if ENTRY not in defined:
        raise CustomRewardError("the source must define a function `reward(completion, example)` at top level")


def _plain(example: dict[str, Any]) -> dict[str, Any]:
    """The example as JSON can carry it (what the sandbox receives)."""
    return json.loads(json.dumps(example, default=str))
