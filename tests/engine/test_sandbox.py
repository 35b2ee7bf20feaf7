"""engine.sandbox.run_python: statuses, isolation, and hostile programs contained.

Every hostile program must return within its timeout + 1 s, leave the host unchanged,
and leave the sandbox working for the next call.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import sandbox, seccomp
from engine.sandbox import Job, RunResult, SandboxUnavailable, run_many, run_python
from tests.engine.sandbox_marks import needs_bwrap

ROOT = Path(__file__).resolve().parents[2]




def run_timed(code: str, timeout_s: float = 1.0, **kwargs) -> RunResult:
    start = time.monotonic()
    result = run_python(code, timeout_s=timeout_s, **kwargs)
    elapsed = time.monotonic() - start
    assert elapsed < timeout_s + 1.0, f"took {elapsed:.2f} s for a {timeout_s} s timeout"
    return result


def assert_next_call_works() -> None:
    result = run_python("print(6 * 7)", tests="assert 6 * 7 == 42")
    assert (result.status, result.stdout) == ("passed", "42\n")


# ------------------------------------------------------------------ statuses


STATUS_CASES = [
    ("def add(a, b):\n    return a + b", "assert add(2, 3) == 5", "passed"),
    ("x = 1", None, "passed"),
    ("def add(a, b):\n    return a - b", "assert add(2, 3) == 5", "failed"),
    ("assert 1 == 2, 'no'", None, "failed"),
    ("def f(:\n    pass", "assert True", "syntax"),
    ("x = 1", "assert x ==", "syntax"),  # tests that do not compile
    ("x = '\\0'", None, "passed"),  # an escaped null byte is fine
    ("print('a'\0)", None, "syntax"),  # null byte in the source
    ("1 / 0", None, "error"),
    ("def f():\n    return 1", "assert g() == 1", "error"),  # NameError in the tests
    ("import sys\nsys.exit(0)", "assert True", "error"),  # the tests never ran
    ("def f():\n    raise SystemExit(0)", "f()\nassert False", "error"),  # no early way out
    ("import sys\nsys.exit(0)", None, "passed"),  # a program that ends with success
    ("exit()", None, "passed"),
    ("exit(3)", None, "error"),
    ("import os\nos._exit(0)", "assert True", "error"),
    ("raise KeyboardInterrupt", None, "error"),
    ("def f():\n    return f()\nf()", None, "error"),  # RecursionError
    ("x = bytearray(10**10)", None, "memory"),  # fails at once: no race with the clock
    ("while True:\n    pass", None, "timeout"),
    ("import time\ntime.sleep(30)", None, "timeout"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)", None, "error"),
    ("import os\nos.abort()", None, "error"),
    ("s = input()", None, "error"),  # stdin is empty: EOFError
    ("def f():\n    return 1\nif __name__ == '__main__':\n    input()", "assert f() == 1", "passed"),
    ("import os\nos.fork()", "assert True", "passed"),  # only the runner itself reports
    ("import os\nif os.fork() == 0:\n    assert False", "assert True", "passed"),
]


@needs_bwrap
@pytest.mark.parametrize(("code", "tests", "status"), STATUS_CASES)
def test_it_reports_the_right_status(code: str, tests: str | None, status: str) -> None:
    result = run_timed(code, tests=tests, timeout_s=1.0, memory_mb=256)
    assert result.status == status, (result.detail, result.stderr[-500:])
    assert result.passed == (status == "passed")


@needs_bwrap
def test_it_captures_output_and_reports_details() -> None:
    result = run_python("import sys\nprint('héllo ✓')\nprint('oops', file=sys.stderr)\nassert False, 'bad'")
    assert result.stdout == "héllo ✓\n"
    assert "oops" in result.stderr and "AssertionError: bad" in result.stderr
    assert result.status == "failed" and "bad" in result.detail
    assert result.duration_s > 0 and result.exec_s is not None


@needs_bwrap
def test_it_feeds_stdin() -> None:
    result = run_python("import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))", stdin="1 2\n3\n")
    assert (result.status, result.stdout) == ("passed", "6\n")


@needs_bwrap
def test_it_takes_payloads_larger_than_argv_and_pipe_buffers() -> None:
    code = "DATA = " + repr("x" * 3_000_000) + "\n"
    result = run_python(code, tests="assert len(DATA) == 3_000_000")
    assert result.status == "passed", result.detail


@needs_bwrap
def test_forged_status_markers_do_not_pass() -> None:
    forge = (
        "import json, os\n"
        "for fd in range(3, 64):\n"
        "    try:\n"
        "        os.write(fd, json.dumps({'status': 'passed', 'nonce': '', 'detail': ''}).encode())\n"
        "    except OSError:\n"
        "        pass\n"
        "os._exit(0)\n"
    )
    assert run_python(forge, tests="assert False").status == "error"


# ------------------------------------------------------------------ hostile programs


@needs_bwrap
def test_an_infinite_loop_times_out() -> None:
    assert run_timed("while True:\n    pass").status == "timeout"
    assert_next_call_works()


@needs_bwrap
def test_a_fork_bomb_is_contained() -> None:
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    assert run_timed(bomb).status in ("timeout", "error")
    assert_next_call_works()


@needs_bwrap
def test_a_thread_bomb_is_contained() -> None:
    bomb = "import threading, time\nfor _ in range(10_000):\n    threading.Thread(target=time.sleep, args=(5,)).start()\n"
    assert run_timed(bomb).status == "error"


@needs_bwrap
def test_a_memory_bomb_reports_memory() -> None:
    bomb = "chunks = []\nwhile True:\n    chunks.append(' ' * 10_000_000)\n"
    assert run_timed(bomb, timeout_s=3.0, memory_mb=128).status == "memory"
    assert_next_call_works()


@needs_bwrap
def test_a_1gb_write_is_cut_off() -> None:
    write = (
        "with open('/tmp/big', 'wb') as f:\n    for _ in range(1024):\n        f.write(b'x' * (1 << 20))\n"
    )
    result = run_timed(write, timeout_s=2.0)
    assert result.status == "error" and "File too large" in result.detail


@needs_bwrap
def test_printing_100_mb_is_capped() -> None:
    result = run_timed("import sys\nsys.stdout.write('x' * 100_000_000)", timeout_s=3.0)
    assert result.status == "passed"
    assert result.truncated and len(result.stdout) <= 64 * 1024
    assert_next_call_works()


@needs_bwrap
def test_endless_printing_is_stopped() -> None:
    result = run_timed("while True:\n    print('y' * 10_000)", timeout_s=3.0)
    assert result.status in ("error", "timeout") and result.truncated


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server on 127.0.0.1 that records whatever reaches it."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                received.append(conn.recv(100) or b"<connected>")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
    stop.set()
    thread.join()
    server.close()


@needs_bwrap
def test_there_is_no_network(listener: tuple[int, list[bytes]]) -> None:
    port, received = listener
    code = (
        f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=0.5)\ns.sendall(b'leak')"
    )
    result = run_timed(code)
    assert result.status == "error"
    time.sleep(0.3)
    assert received == []


@needs_bwrap
@pytest.mark.parametrize(
    "path",
    [
        str(ROOT / "pyproject.toml"),
        str(ROOT / "engine" / "__init__.py"),
        "/etc/shadow",
        "/etc/passwd",
        "/root/.bashrc",
        "/proc/1/environ",
    ],
)
def test_host_files_are_invisible(path: str) -> None:
    result = run_timed(f"print(open({path!r}).read())")
    assert result.status == "error" and result.stdout == ""


@needs_bwrap
def test_a_host_secret_cannot_be_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cr3t")
    result = run_timed(f"print(open({str(secret)!r}).read())")
    assert "s3cr3t" not in result.stdout and result.status == "error"


@needs_bwrap
def test_writes_never_reach_the_host(tmp_path: Path) -> None:
    before = sorted(p.name for p in tmp_path.iterdir())
    code = (
        "import os\n"
        f"target = {str(tmp_path)!r}\n"
        "os.makedirs(target, exist_ok=True)\n"  # succeeds, inside the private /tmp
        "open(os.path.join(target, 'pwned'), 'w').write('x')\n"
        "for p in ('/pwned', '/usr/lib/pwned', '/dev/pwned'):\n"
        "    try:\n"
        "        open(p, 'w').write('x')\n"
        "    except OSError:\n"
        "        pass\n"
    )
    run_timed(code)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not Path("/pwned").exists() and not Path("/usr/lib/pwned").exists()


@needs_bwrap
def test_killing_the_parent_fails() -> None:
    result = run_timed("import os\nos.kill(os.getppid(), 9)\nos.kill(1, 9)")
    assert result.status == "error"
    assert_next_call_works()


@needs_bwrap
def test_setuid_root_fails() -> None:
    result = run_timed("import os\nos.setuid(0)")
    assert result.status == "error" and "PermissionError" in result.detail


@needs_bwrap
def test_it_runs_unprivileged_without_capabilities() -> None:
    code = "import os\nstatus = open('/proc/self/status').read()\nprint(os.getuid(), 'CapEff:\\t0000000000000000' in status)"
    result = run_timed(code)
    uid, no_caps = result.stdout.split()
    assert uid != "0" and no_caps == "True"


def _processes_with(token: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if token.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@needs_bwrap
def test_a_daemon_does_not_outlive_the_call(tmp_path: Path) -> None:
    token = uuid.uuid4().hex
    late = tmp_path / "late.txt"
    script = f"import time; time.sleep(1.5); open({str(late)!r}, 'w').write('x')  # {token}"
    daemon = (
        "import os, sys\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execv(sys.executable, [sys.executable, '-c', {script!r}])\n"
        "    os._exit(0)\n"
        "import time\n"
        "time.sleep(0.2)\n"
    )
    result = run_timed(daemon)
    assert result.status == "passed", result.detail
    time.sleep(0.2)
    assert _processes_with(token) == []
    time.sleep(1.5)
    assert not late.exists()


# ------------------------------------------------------------------ pool and modes


@needs_bwrap
def test_run_many_keeps_order_and_runs_in_parallel() -> None:
    jobs = [Job(f"import time\ntime.sleep(0.3)\nx = {i}", tests=f"assert x == {i}") for i in range(8)]
    jobs.append(Job("assert False"))
    start = time.monotonic()
    results = run_many(jobs, concurrency=8)
    assert [r.status for r in results] == ["passed"] * 8 + ["failed"]
    assert time.monotonic() - start < 8 * 0.3  # not serial


@needs_bwrap
def test_a_fork_bomb_does_not_starve_its_neighbours() -> None:
    bomb = Job(
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        timeout_s=2.0,
    )
    threads = "import threading\nts = [threading.Thread(target=lambda: None) for _ in range(20)]\n"
    threads += "[t.start() for t in ts]\n[t.join() for t in ts]\n"
    results = run_many([bomb] + [Job("import time\ntime.sleep(0.5)\n" + threads)] * 3, concurrency=4)
    assert [r.status for r in results[1:]] == ["passed"] * 3


def test_it_refuses_to_run_without_bubblewrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PONDER_SANDBOX_BWRAP", "/nonexistent/bwrap")
    monkeypatch.delenv("PONDER_SANDBOX", raising=False)
    with pytest.raises(SandboxUnavailable, match="PONDER_SANDBOX=unsafe-rlimits-only"):
        run_python("print(1)")


def test_the_unsafe_mode_must_be_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PONDER_SANDBOX_BWRAP", "/nonexistent/bwrap")
    monkeypatch.setenv("PONDER_SANDBOX", "unsafe-rlimits-only")
    assert sandbox.check_available() == "unsafe-rlimits-only"
    assert run_python("print(1)", tests="assert 1").status == "passed"
    assert run_timed("while True:\n    pass").status == "timeout"
    assert run_timed("x = bytearray(10**10)").status == "memory"


def test_it_rejects_unknown_modes_and_bad_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PONDER_SANDBOX", "none")
    with pytest.raises(ValueError, match="PONDER_SANDBOX must be"):
        run_python("print(1)")
    with pytest.raises(ValueError, match="positive"):
        run_python("print(1)", timeout_s=0, isolation="bwrap")


def test_the_sandbox_never_binds_the_project_or_the_venv() -> None:
    settings = sandbox.load_settings("bwrap")
    argv = sandbox._bwrap_argv(settings, privileged=os.geteuid() == 0)
    bound = [argv[i + 2] for i, arg in enumerate(argv) if arg in ("--bind", "--ro-bind")]
    assert "--bind" not in argv and "--unshare-net" in argv or "--unshare-all" in argv
    for path in bound:
        assert not str(ROOT).startswith(path) and not path.startswith(str(ROOT)), path
        assert path not in ("/", "/etc", "/root", "/home", "/work")


# ------------------------------------------------------------------ seccomp

# x86-64 and aarch64 numbers of the calls ctypes has no wrapper for.
SYSCALLS = {"x86_64": {"clone": 56, "clone3": 435, "bpf": 321, "keyctl": 250},
            "aarch64": {"clone": 220, "clone3": 435, "bpf": 280, "keyctl": 219}}
LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
needs_seccomp = pytest.mark.skipif(
    seccomp.filter_program() is None or os.uname().machine not in SYSCALLS,
    reason="no seccomp filter here (pip install pyseccomp; apt-get install libseccomp2), or an unknown arch",
)


def _nr(name: str) -> int:
    return SYSCALLS[os.uname().machine][name]


SECCOMP_CASES = [
    ("unshare(CLONE_NEWUSER)", "r = libc.unshare(0x10000000)", 1),
    ("unshare(CLONE_NEWNET)", "r = libc.unshare(0x40000000)", 1),
    ("unshare(CLONE_NEWNS)", "r = libc.unshare(0x00020000)", 1),
    ("clone(CLONE_NEWUSER)", "r = libc.syscall({clone}, 0x10000000 | 17, 0, 0, 0, 0)\nif r == 0:\n    os._exit(0)", 1),
    ("clone(CLONE_NEWPID)", "r = libc.syscall({clone}, 0x20000000 | 17, 0, 0, 0, 0)\nif r == 0:\n    os._exit(0)", 1),
    ("clone3", "r = libc.syscall({clone3}, 0, 0)", 38),  # ENOSYS: glibc falls back to clone
    ("mount", "r = libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)", 1),
    ("umount2", "r = libc.umount2(b'/tmp', 2)", 1),
    ("ptrace(PTRACE_TRACEME)", "r = libc.ptrace(0, 0, 0, 0)", 1),
    ("bpf", "r = libc.syscall({bpf}, 0, 0, 0)", 1),
    ("keyctl", "r = libc.syscall({keyctl}, 0, 0, 0)", 1),
]


@needs_bwrap
@needs_seccomp
@pytest.mark.parametrize(("name", "call", "want_errno"), SECCOMP_CASES, ids=[c[0] for c in SECCOMP_CASES])
def test_seccomp_denies(name: str, call: str, want_errno: int) -> None:
    code = LIBC + call.format(clone=_nr("clone"), clone3=_nr("clone3"), bpf=_nr("bpf"), keyctl=_nr("keyctl"))
    result = run_timed(code + "\nprint(r, ctypes.get_errno())")
    assert (result.status, result.stdout.split()) == ("passed", ["-1", str(want_errno)]), result.stderr


@needs_bwrap
@needs_seccomp
def test_seccomp_leaves_normal_python_working() -> None:
    code = (
        "import multiprocessing as mp, subprocess, sys, threading\n"
        "t = threading.Thread(target=lambda: None)\nt.start()\nt.join()\n"
        "out = subprocess.run([sys.executable, '-c', 'print(6 * 7)'], capture_output=True, text=True).stdout\n"
        "with mp.get_context('fork').Pool(2) as pool:\n    squares = pool.map(abs, [-1, -2])\n"
        "print(out.strip(), squares, libc.unshare(0x400))\n"  # CLONE_FILES: no namespace, allowed
    )
    result = run_timed(LIBC + code, timeout_s=5.0)
    assert (result.status, result.stdout) == ("passed", "42 [1, 2] 0\n"), result.stderr


def test_seccomp_can_be_required_or_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PONDER_SANDBOX_SECCOMP", "maybe")
    with pytest.raises(ValueError, match="PONDER_SANDBOX_SECCOMP must be one of"):
        sandbox.load_settings("bwrap")
    monkeypatch.setenv("PONDER_SANDBOX_SECCOMP", "off")
    assert sandbox._seccomp(sandbox.load_settings("bwrap")) is None
    monkeypatch.setenv("PONDER_SANDBOX_SECCOMP", "required")
    monkeypatch.setattr(seccomp, "filter_program", lambda: None)
    monkeypatch.setattr(seccomp, "build_error", lambda: "no libseccomp")
    with pytest.raises(SandboxUnavailable, match="no libseccomp"):
        sandbox._seccomp(sandbox.load_settings("bwrap"))


# ------------------------------------------------------------------ operator maxima


def test_limits_over_the_operator_maxima_are_clamped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from engine.rewards.code_reward import _limits

    monkeypatch.setenv("PONDER_SANDBOX_MAX_TIMEOUT_S", "2.5")
    monkeypatch.setenv("PONDER_SANDBOX_MAX_MEMORY_MB", "300")
    with caplog.at_level("WARNING", logger="engine.sandbox"):
        assert _limits({"timeout_s": 3600, "memory_mb": 1 << 20}) == (2.5, 300)
    assert "clamped to 2.5" in caplog.text and "clamped to 300" in caplog.text
    assert _limits({}) == (2.5, 300)  # the defaults (5 s, 512 MB) are over these maxima too
    caplog.clear()
    assert _limits({"timeout_s": 1, "memory_mb": 64}) == (1.0, 64) and caplog.text == ""
    with pytest.raises(ValueError, match="positive"):
        _limits({"timeout_s": -1})
    monkeypatch.setenv("PONDER_SANDBOX_MAX_TIMEOUT_S", "soon")
    with pytest.raises(ValueError, match="PONDER_SANDBOX_MAX_TIMEOUT_S must be a number"):
        _limits({})


@needs_bwrap
def test_a_dataset_cannot_buy_more_time_or_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import rewards

    monkeypatch.setenv("PONDER_SANDBOX_MAX_TIMEOUT_S", "1")
    monkeypatch.setenv("PONDER_SANDBOX_MAX_MEMORY_MB", "200")
    code = rewards.get("code")
    start = time.monotonic()
    slow = "```python\nimport time\ntime.sleep(3)\n```"
    assert code(slow, {"timeout_s": 600}) == 0.25 and time.monotonic() - start < 2.5
    big = "```python\nx = bytearray(400 << 20)\n```"
    assert code(big, {"memory_mb": 4096}) == 0.25
    assert run_python("x = bytearray(400 << 20)", memory_mb=4096).status == "memory"


# ------------------------------------------------------------------ cgroups

FORK_AND_ALLOCATE = """
import os, time
kids = []
for _ in range(8):
    pid = os.fork()
    if pid == 0:
        try:
            block = bytearray(200 << 20)
            for i in range(0, len(block), 4096):
                block[i] = 1  # touch every page: resident, not just reserved
            time.sleep(1)
        finally:
            os._exit(0)
    kids.append(pid)
codes = [os.waitpid(pid, 0)[1] for pid in kids]
assert codes == [0] * 8, codes
"""
needs_cgroups = pytest.mark.skipif(
    sandbox._cgroup.backend("auto") is None,
    reason="no writable cgroup v2 (memory, pids) or v1 (memory, pids) hierarchy here: rlimits only",
)


@needs_bwrap
@needs_cgroups
def test_a_fork_and_allocate_program_stays_under_the_sandbox_total() -> None:
    # 8 x 200 MB, each process under its 512 MB rlimit, 1.6 GB in all: the cgroup says no.
    result = run_timed(FORK_AND_ALLOCATE, timeout_s=10.0, memory_mb=512)
    assert result.status == "memory", (result.detail, result.stderr[-300:])
    assert_next_call_works()
    assert _leftover_cgroups() == []


@needs_bwrap
@needs_cgroups
def test_without_cgroups_the_same_program_gets_its_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PONDER_SANDBOX_CGROUP", "off")  # the control: rlimits alone allow it
    result = run_timed(FORK_AND_ALLOCATE, timeout_s=10.0, memory_mb=512)
    assert result.status == "passed", (result.detail, result.stderr[-300:])


@needs_bwrap
@needs_cgroups
def test_each_sandbox_runs_in_its_own_cgroup() -> None:
    result = run_timed("print(open('/proc/self/cgroup').read())")
    assert "sbx-" in result.stdout, result.stdout


def _leftover_cgroups() -> list[str]:
    found = sandbox._cgroup.backend("auto")
    assert found is not None
    prefix = f"sbx-{os.getpid()}-"
    return [p.name for parent in found.parents.values() for p in parent.iterdir() if p.name.startswith(prefix)]
