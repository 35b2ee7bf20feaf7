"""Code rewards: run the completion's last Python block against ``example["tests"]``.

The ladder (``code``): 0.0 no fenced code block; 0.1 a block in another language
(tagged e.g. ``cpp``, or untagged with tell-tale syntax such as ``#include`` or braces,
and not valid Python); 0.25 Python that does not compile or does not pass; 1.0 Python
that runs to the end of ``example["tests"]`` (assert statements, one string or a list).
A missing ``tests`` key means "runs without an exception".

Which block: the last one tagged ``python``/``py``, else the last untagged one, else the
last block of any language. Code runs in `engine.sandbox.run_python` with
``example["timeout_s"]`` (default 5) and ``example["memory_mb"]`` (default 512), each at
most the operator's maximum (``PONDER_SANDBOX_MAX_TIMEOUT_S``, 30, and
``PONDER_SANDBOX_MAX_MEMORY_MB``, 2048: a larger value is clamped with a warning); where no
sandbox can run, the reward raises `SandboxUnavailable` (recorded as an error by
`engine.rewards.score`), it never runs code unsandboxed.

>>> code_reward("```python\\ndef add(a, b):\\n    return a + b\\n```", {"tests": "assert add(1, 2) == 3"})
1.0
>>> code_reward("```cpp\\nint add(int a, int b) { return a + b; }\\n```", {"tests": "assert add(1, 2) == 3"})
0.1
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from typing import Any

from engine.rewards.registry import register
from engine.sandbox import RunResult, clamp_limits, run_python

NO_CODE, OTHER_LANGUAGE, FAILS, PASSES = 0.0, 0.1, 0.25, 1.0
MAX_CODE_CHARS = 1_000_000  # bigger blocks are not run: they score as failing Python
PYTHON_TAGS = {"python", "py", "python3", "py3"}
_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)```", re.DOTALL)
# Lines that Python never starts with but C-family, JS, Rust, Go, shell code often do.
_FOREIGN = re.compile(
    r"^\s*(#include\b|#!|using\s+namespace\b|public\s+(static\s+)?\w+|int\s+main\s*\(|"
    r"(const|let|var)\s+\w+\s*=|function\s+\w+\s*\(|fn\s+\w+\s*\(|func\s+\w+\s*\(|package\s+\w+|"
    r"console\.log|System\.out|std::|printf\s*\(|echo\s|\}\s*$|.*;\s*$)",
    re.MULTILINE,
)


def code_reward(completion: str, example: dict[str, Any]) -> float:
    """The ladder above: 0.0, 0.1, 0.25 or 1.0.

    >>> code_reward("no code here", {"tests": "assert True"})
    0.0
    >>> code_reward("```python\\ndef add(a, b):\\n    return a - b\\n```", {"tests": "assert add(1, 2) == 3"})
    0.25
    """
    block = last_code_block(completion)
    if block is None:
        return NO_CODE
    tag, source = block
    if not _compiles(source):
        foreign = (tag and tag.lower() not in PYTHON_TAGS) or bool(_FOREIGN.search(source[:20_000]))
        return OTHER_LANGUAGE if foreign else FAILS
    if len(source) > MAX_CODE_CHARS:
        return FAILS
    return PASSES if _run(source, example).passed else FAILS


NOISE_FLOOR_S = 0.02


def code_speed_reward(completion: str, example: dict[str, Any]) -> float:
    """0.0 unless the code passes; then ``min(1, t_ref / t)`` where the times are the
    in-sandbox execution times of this code and of ``example["reference_solution"]``
    on the same tests (floored at 20 ms: below that, scheduling noise on a busy machine
    decides the ratio, not the program).

    >>> ex = {"tests": "assert f() == 1", "reference_solution": "def f():\\n    return 1"}
    >>> code_speed_reward("```python\\ndef f():\\n    return 1\\n```", ex)
    1.0
    """
    reference = example.get("reference_solution")
    if not reference:
        raise KeyError("code_speed needs example['reference_solution'] (Python source)")
    block = last_code_block(completion)
    if block is None or not _compiles(block[1]) or len(block[1]) > MAX_CODE_CHARS:
        return 0.0
    result = _run(block[1], example)
    if not result.passed:
        return 0.0
    ref_s = _reference_exec_s(reference, _tests(example), *_limits(example))
    own_s = result.exec_s if result.exec_s is not None else result.duration_s
    return min(1.0, max(ref_s, NOISE_FLOOR_S) / max(own_s, NOISE_FLOOR_S))


def last_code_block(completion: str) -> tuple[str, str] | None:
    """(language tag, source) of the block the ladder grades, or None.

    >>> last_code_block("```js\\nx\\n```\\n```\\nprint(1)\\n```")
    ('', 'print(1)\\n')
    """
    blocks = _FENCE.findall(completion)
    if not blocks:
        return None
    for wanted in (lambda t: t.lower() in PYTHON_TAGS, lambda t: t == ""):
        chosen = [b for b in blocks if wanted(b[0])]
        if chosen:
            return chosen[-1]
    return blocks[-1]


def _compiles(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _tests(example: dict[str, Any]) -> str | None:
    tests = example.get("tests")
    if tests is None or isinstance(tests, str):
        return tests
    return "\n".join(str(t) for t in tests)


def _limits(example: dict[str, Any]) -> tuple[float, int]:
    # A dataset's own limits, at most the operator's maxima (clamped with a warning).
    return clamp_limits(float(example.get("timeout_s", 5.0)), int(example.get("memory_mb", 512)))


def _run(source: str, example: dict[str, Any]) -> RunResult:
    timeout_s, memory_mb = _limits(example)
    return run_python(source, tests=_tests(example), timeout_s=timeout_s, memory_mb=memory_mb)


@lru_cache(maxsize=4096)
def _reference_exec_s(reference: str, tests: str | None, timeout_s: float, memory_mb: int) -> float:
    result = run_python(reference, tests=tests, timeout_s=timeout_s, memory_mb=memory_mb)
    if not result.passed:
        raise ValueError(f"the reference solution does not pass its tests ({result.status}: {result.detail})")
    return result.exec_s if result.exec_s is not None else result.duration_s


register("code")(code_reward)
register("code_speed")(code_speed_reward)
