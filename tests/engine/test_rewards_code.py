"""The `code` and `code_speed` rewards: the ladder, block choice, hostile code scored
without harm, and batches through the sandbox pool."""

from __future__ import annotations

import time

import pytest

from engine import rewards
from engine.rewards.code_reward import last_code_block
from engine.sandbox import SandboxUnavailable, check_available

try:
    check_available("bwrap")
    HAVE_BWRAP = True
except SandboxUnavailable:
    HAVE_BWRAP = False
pytestmark = pytest.mark.skipif(
    not HAVE_BWRAP, reason="bubblewrap cannot run here (apt-get install bubblewrap)"
)

code = rewards.get("code")
ADD = {"tests": "assert add(2, 3) == 5\nassert add(-1, 1) == 0", "timeout_s": 2.0}


def block(source: str, tag: str = "python") -> str:
    return f"<think>write add</think>\n```{tag}\n{source}\n```"


LADDER = [
    ("no code, just words", 0.0),
    ("", 0.0),
    ("```python\nunclosed fence", 0.0),
    (block("def add(a, b):\n    return a + b"), 1.0),
    (block("def add(a, b):\n    return a + b", tag="py"), 1.0),
    (block("def add(a, b):\n    return a + b", tag=""), 1.0),  # untagged Python
    (block("add = lambda a, b: a + b", tag="Python3"), 1.0),
    (block("def add(a, b):\n    return a - b"), 0.25),  # fails its tests
    (block("def add(a, b):\n    return a +"), 0.25),  # Python that does not compile
    (block("def add(a, b):\n    raise ValueError"), 0.25),
    (block("def plus(a, b):\n    return a + b"), 0.25),  # wrong name: NameError in the tests
    (block("int add(int a, int b) { return a + b; }", tag="cpp"), 0.1),
    (block("function add(a, b) { return a + b; }", tag=""), 0.1),  # untagged JavaScript
    (block("#include <stdio.h>\nint main() { return 0; }", tag=""), 0.1),
    (block("fn add(a: i32, b: i32) -> i32 { a + b }", tag="rust"), 0.1),
    (block("echo hello", tag="bash"), 0.1),
    # two blocks: the last Python one is graded, not the later shell one
    (block("def add(a, b):\n    return a + b") + "\nRun it with:\n```bash\npython add.py\n```", 1.0),
    (block("def add(a, b):\n    return 0") + "\n" + block("def add(a, b):\n    return a + b"), 1.0),
    (block("def add(a, b):\n    return a + b") + "\n" + block("def add(a, b):\n    return 0"), 0.25),
]


@pytest.mark.parametrize(("completion", "want"), LADDER)
def test_the_ladder(completion: str, want: float) -> None:
    assert code(completion, ADD) == want


HOSTILE = [
    "while True:\n    pass",
    "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
    "x = []\nwhile True:\n    x.append(' ' * 10**7)",
    "import sys\nsys.stdout.write('x' * 100_000_000)",
    "print(open('/etc/shadow').read())",
    "import os\nos.kill(os.getppid(), 9)",
    "import os\nos.setuid(0)",
    "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)",
    "import os\nos._exit(0)",
    "import sys\nsys.exit(0)",
]


@pytest.mark.parametrize("source", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_code_never_earns_the_pass(source: str) -> None:
    start = time.monotonic()
    assert code(block(source), {**ADD, "timeout_s": 1.0, "memory_mb": 256}) == 0.25
    assert time.monotonic() - start < 2.0


def test_tests_may_be_a_list() -> None:
    example = {"tests": ["assert add(1, 1) == 2", "assert add(0, 0) == 0"]}
    assert code(block("def add(a, b):\n    return a + b"), example) == 1.0


def test_without_tests_running_cleanly_passes() -> None:
    assert code(block("x = 1"), {}) == 1.0
    assert code(block("1 / 0"), {}) == 0.25


def test_last_code_block_prefers_python() -> None:
    assert last_code_block("```python\na\n```\n```js\nb\n```") == ("python", "a\n")
    assert last_code_block("```js\nb\n```") == ("js", "b\n")
    assert last_code_block("nothing") is None


def test_code_speed_prefers_faster_correct_programs() -> None:
    example = {
        "tests": "assert total(200_000) == sum(range(200_000))",
        "reference_solution": "def total(n):\n    return sum(range(n))",
    }
    slow = "def total(n):\n    s = 0\n    for _ in range(30):\n        s = 0\n        for i in range(n):\n            s += i\n    return s"
    speed = rewards.get("code_speed")
    assert speed(block("def total(n):\n    return n * (n - 1) // 2"), example) == 1.0
    assert 0.0 < speed(block(slow), example) < 0.5
    assert speed(block("def total(n):\n    return 0"), example) == 0.0
    assert speed("no code", example) == 0.0
    with pytest.raises(KeyError, match="reference_solution"):
        speed(block("x = 1"), {"tests": "assert True"})


def test_score_batch_runs_code_in_parallel() -> None:
    sleepy = block("import time\ntime.sleep(0.5)\ndef add(a, b):\n    return a + b")
    completions = [sleepy] * 8 + [block("def add(a, b):\n    return 0"), "no code"]
    start = time.monotonic()
    results = rewards.score_batch(completions, ADD, {"code": 1.0, "format": 0.1}, concurrency=8)
    elapsed = time.monotonic() - start
    assert [r.components["code"] for r in results] == [1.0] * 8 + [0.25, 0.0]
    assert all(r.components["format"] == 1.0 for r in results[:9]) and not results[0].errors
    assert elapsed < 8 * 0.5  # 8 half-second programs did not run one after another


def test_without_a_sandbox_the_reward_raises_and_score_records_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PONDER_SANDBOX_BWRAP", "/nonexistent/bwrap")
    monkeypatch.delenv("PONDER_SANDBOX", raising=False)
    with pytest.raises(SandboxUnavailable):
        code(block("def add(a, b):\n    return a + b"), ADD)
    result = rewards.score(block("def add(a, b):\n    return a + b"), ADD, {"code": 1.0})
    assert result.total == 0.0 and "SandboxUnavailable" in result.errors["code"]
