"""Run untrusted Python (model completions) in a fresh bubblewrap sandbox per call.

>>> r = run_python("def add(a, b):\\n    return a + b", tests="assert add(2, 3) == 5")
>>> r.status, r.passed
('passed', True)

Statuses: ``passed`` (code and every test ran to the end), ``failed`` (an
``AssertionError``), ``error`` (any other exception, a non-zero exit, ``os._exit``, a
signal), ``syntax`` (code or tests do not compile), ``timeout`` (wall clock or CPU limit),
``memory`` (``MemoryError`` under the address-space limit, or the sandbox's cgroup
memory limit).

Grading (`engine._sandbox_runner`): the code runs in one process, the tests and the
verdict in another that the code cannot reach (forked before the code or the payload
is seen; non-dumpable; it alone holds the status fd and the nonce). The tests see the
code's top-level names as proxies: a call crosses a pipe and only plain data comes back
(anything else is a proxy that cannot be compared or tested for truth), so replacing
builtins, exiting early, forging the status line or returning always-equal objects never
passes (`tests/engine/test_sandbox_tampering.py`).

Isolation (one ``bwrap`` per call): new pid, net, ipc, uts and mount namespaces; the
filesystem is a tmpfs holding only read-only binds of ``/usr/lib*`` and of the base
interpreter (its prefix, e.g. ``~/.pyenv/versions/3.11.7``, or the binary alone under
``/usr``; never the project, the venv, ``/etc`` or the rest of ``/root``), a fresh
``/proc`` and ``/dev``, and size-capped writable ``/tmp`` and ``/dev/shm``; no
capabilities, ``PR_SET_NO_NEW_PRIVS``, ``--die-with-parent`` and a pid namespace so no
process outlives the call; a seccomp filter (`engine.seccomp`: no new namespaces, mounts,
ptrace, bpf, keyrings...; ``PONDER_SANDBOX_SECCOMP``); rlimits on CPU, address space,
file size, open files and processes per process, and a cgroup per call for the totals
(`engine._sandbox_cgroup`: memory, pids, CPU; ``PONDER_SANDBOX_CGROUP``) where the host
has one. A call's ``timeout_s`` / ``memory_mb`` are capped at ``PONDER_SANDBOX_MAX_TIMEOUT_S``
(30) / ``PONDER_SANDBOX_MAX_MEMORY_MB`` (2048), with a warning (`clamp_limits`).

As root, bwrap runs without a user namespace and the runner drops to a dedicated uid
taken from a pool (``PONDER_SANDBOX_UID``, default 61000, ``PONDER_SANDBOX_UID_COUNT``
of them, default 64): RLIMIT_NPROC is ignored for uid 0, and one uid per concurrent
sandbox keeps a fork bomb from starving its neighbours. As another user, bwrap makes a
user namespace and maps that user to uid 65534 inside, where RLIMIT_NPROC counts per
namespace.

Where bwrap cannot run, calls raise `SandboxUnavailable`; nothing runs unsandboxed unless
the operator sets ``PONDER_SANDBOX=unsafe-rlimits-only`` (or passes
``isolation="unsafe-rlimits-only"``): rlimits and a private working directory only.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import math
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Literal

from engine import _sandbox_cgroup as _cgroup
from engine import seccomp
from engine._sandbox_uids import UID_POOLS

Status = Literal["passed", "failed", "error", "syntax", "timeout", "memory"]
STATUSES: tuple[Status, ...] = ("passed", "failed", "error", "syntax", "timeout", "memory")
BWRAP = "bwrap"
log = logging.getLogger(__name__)
UNSAFE = "unsafe-rlimits-only"

# The runner's source: the wire format, then the harness and candidate (both stdlib only).
_RUNNER_SOURCE = "\n".join((Path(__file__).parent / name).read_text() for name in ("_sandbox_wire.py", "_sandbox_runner.py"))
# What -c runs when the host could compile the runner: load the code object from a fd.
_BOOT = "import marshal,sys;f=open(int(sys.argv.pop(1)),'rb');c=marshal.load(f);f.close();del f;exec(c)"


class SandboxUnavailable(RuntimeError):
    """bubblewrap cannot run here and no weaker isolation was explicitly allowed."""


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def _env_choice(name: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name, "").strip() or choices[0]
    if raw not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


@dataclass(frozen=True)
class Settings:
    """Operator knobs, read from the environment by `load_settings`."""

    isolation: str = BWRAP  # PONDER_SANDBOX: "bwrap" or "unsafe-rlimits-only"
    bwrap: str = "bwrap"  # PONDER_SANDBOX_BWRAP: the bubblewrap executable
    python: str = ""  # PONDER_SANDBOX_PYTHON: interpreter run inside (default: ours, resolved)
    uid: int = 61000  # PONDER_SANDBOX_UID: first uid of the pool used when we are root
    uid_count: int = 64  # PONDER_SANDBOX_UID_COUNT: size of that pool
    concurrency: int = 0  # PONDER_SANDBOX_CONCURRENCY: run_many default (0: CPU count)
    output_cap: int = 64 << 10  # PONDER_SANDBOX_OUTPUT_CAP: bytes kept per stream
    max_output: int = 256 << 20  # PONDER_SANDBOX_MAX_OUTPUT: bytes drained before a kill
    tmpfs_mb: int = 64  # PONDER_SANDBOX_TMPFS_MB: size of the private /tmp
    fsize_mb: int = 64  # PONDER_SANDBOX_FSIZE_MB: largest file the code may write
    nproc: int = 64  # PONDER_SANDBOX_NPROC: processes + threads per sandbox uid
    nofile: int = 256  # PONDER_SANDBOX_NOFILE: open files
    seccomp: str = "auto"  # PONDER_SANDBOX_SECCOMP: "auto" (where libseccomp is), "required", "off"
    max_timeout_s: float = 30.0  # PONDER_SANDBOX_MAX_TIMEOUT_S: the most any call may ask for
    max_memory_mb: int = 2048  # PONDER_SANDBOX_MAX_MEMORY_MB: likewise for memory
    cgroup: str = "auto"  # PONDER_SANDBOX_CGROUP: "auto", "off", or a delegated cgroup v2 parent
    cpus: float = 1.0  # PONDER_SANDBOX_CPUS: CPU time per sandbox (cgroup cpu.max), in CPUs


def load_settings(isolation: str | None = None) -> Settings:
    """Reads `Settings` from the environment; `isolation` overrides PONDER_SANDBOX."""
    mode = isolation or os.environ.get("PONDER_SANDBOX", "").strip() or BWRAP
    if mode not in (BWRAP, UNSAFE):
        raise ValueError(f"PONDER_SANDBOX must be {BWRAP!r} or {UNSAFE!r}, got {mode!r}")
    default = Settings()
    return Settings(
        isolation=mode,
        bwrap=os.environ.get("PONDER_SANDBOX_BWRAP", default.bwrap),
        python=os.environ.get("PONDER_SANDBOX_PYTHON") or _default_python(),
        uid=_env_int("PONDER_SANDBOX_UID", default.uid),
        uid_count=max(1, _env_int("PONDER_SANDBOX_UID_COUNT", default.uid_count)),
        concurrency=_env_int("PONDER_SANDBOX_CONCURRENCY", 0) or os.cpu_count() or 1,
        output_cap=_env_int("PONDER_SANDBOX_OUTPUT_CAP", default.output_cap),
        max_output=_env_int("PONDER_SANDBOX_MAX_OUTPUT", default.max_output),
        tmpfs_mb=_env_int("PONDER_SANDBOX_TMPFS_MB", default.tmpfs_mb),
        fsize_mb=_env_int("PONDER_SANDBOX_FSIZE_MB", default.fsize_mb),
        nproc=_env_int("PONDER_SANDBOX_NPROC", default.nproc),
        nofile=_env_int("PONDER_SANDBOX_NOFILE", default.nofile),
        seccomp=_env_choice("PONDER_SANDBOX_SECCOMP", ("auto", "required", "off")),
        max_timeout_s=_env_float("PONDER_SANDBOX_MAX_TIMEOUT_S", default.max_timeout_s),
        max_memory_mb=_env_int("PONDER_SANDBOX_MAX_MEMORY_MB", default.max_memory_mb),
        cgroup=os.environ.get("PONDER_SANDBOX_CGROUP", "").strip() or default.cgroup,
        cpus=_env_float("PONDER_SANDBOX_CPUS", default.cpus),
    )


def clamp_limits(timeout_s: float, memory_mb: int, settings: Settings | None = None) -> tuple[float, int]:
    """`timeout_s` and `memory_mb` capped at the operator's maxima
    (``PONDER_SANDBOX_MAX_TIMEOUT_S``, default 30; ``PONDER_SANDBOX_MAX_MEMORY_MB``, default
    2048), with a warning when a value was over; non-positive values raise ValueError.

    >>> clamp_limits(600, 512, Settings())
    (30.0, 512)
    """
    if not timeout_s > 0 or not memory_mb > 0:  # `not >`: NaN too
        raise ValueError(f"timeout_s and memory_mb must be positive, got {timeout_s!r} and {memory_mb!r}")
    settings = settings or load_settings(None)
    if timeout_s > settings.max_timeout_s:
        _warn_clamped("timeout_s", timeout_s, "PONDER_SANDBOX_MAX_TIMEOUT_S", settings.max_timeout_s)
    if memory_mb > settings.max_memory_mb:
        _warn_clamped("memory_mb", memory_mb, "PONDER_SANDBOX_MAX_MEMORY_MB", settings.max_memory_mb)
    return float(min(timeout_s, settings.max_timeout_s)), int(min(memory_mb, settings.max_memory_mb))


@lru_cache(maxsize=256)  # once per value and process: a dataset's every row must not log
def _warn_clamped(name: str, value: float, setting: str, cap: float) -> None:
    log.warning("sandbox %s=%g is over %s: clamped to %g", name, value, setting, cap)


@lru_cache(maxsize=1)
def _default_python() -> str:
    """The base interpreter behind our (venv) python, symlinks resolved: the sandbox
    binds its prefix only, never the venv."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(base)


@dataclass(frozen=True)
class RunResult:
    """What one sandboxed execution did. `stdout`/`stderr` keep at most the first
    `PONDER_SANDBOX_OUTPUT_CAP` bytes (default 64 KiB) each; `truncated` says so."""

    status: Status
    stdout: str
    stderr: str
    duration_s: float
    detail: str = ""
    exit_code: int | None = None
    truncated: bool = False
    exec_s: float | None = None  # time inside the sandbox running code + tests, when known

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class Job:
    """One `run_python` call for `run_many`."""

    code: str
    tests: str | None = None
    timeout_s: float = 5.0
    memory_mb: int = 512
    stdin: str | None = None


@dataclass
class _Output:
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    total: int = 0
    timed_out: bool = False
    overflow: bool = False


def run_python(
    code: str,
    *,
    tests: str | None = None,
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    stdin: str | None = None,
    isolation: str | None = None,
) -> RunResult:
    """Runs `code`, then `tests` (Python source with asserts) against the names it defines.

    The tests run in a separate interpreter where each top-level name of the code is a
    proxy (plain data is copied): ``add(2, 3)`` in the tests calls the code's ``add``
    and gets back plain data only; names of builtins are never taken from the code.
    Without tests `code` runs as ``__main__`` (a program; ``sys.exit(0)`` passes); with
    tests it runs as module ``solution``, so its ``if __name__ == "__main__":`` block is
    skipped, and any ``SystemExit`` is an error (the tests did not all run).
    `stdin`: text the code reads from ``sys.stdin`` (default: empty).
    `timeout_s`, `memory_mb`: capped at the operator's maxima (`clamp_limits`).
    `isolation`: ``"bwrap"`` or ``"unsafe-rlimits-only"``; None reads ``PONDER_SANDBOX``
    (default ``"bwrap"``). Raises `SandboxUnavailable` when bwrap cannot run.
    """
    settings = load_settings(isolation)
    timeout_s, memory_mb = clamp_limits(timeout_s, memory_mb, settings)
    start = time.monotonic()
    call = _Call(code, tests, stdin, timeout_s, memory_mb, uid=None, workdir=None)
    if settings.isolation == UNSAFE:
        with tempfile.TemporaryDirectory(prefix="ponder-sbx-") as workdir:
            call = replace(call, workdir=workdir)
            return _execute([], call, settings, start)
    privileged = _probe(settings)
    argv = _bwrap_argv(settings, privileged)
    if not privileged:  # uid 65534 inside a user namespace, where NPROC counts per namespace
        return _execute(argv, call, settings, start)
    with UID_POOLS.slot(settings.uid, settings.uid_count) as uid:
        return _execute(argv, replace(call, uid=uid), settings, start)


def run_many(jobs: Iterable[Job], concurrency: int | None = None) -> list[RunResult]:
    """Runs jobs on a thread pool of sandboxes (default `PONDER_SANDBOX_CONCURRENCY`,
    else the CPU count); results come back in the order of `jobs`."""
    jobs = list(jobs)
    workers = concurrency or load_settings(None).concurrency
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        return list(pool.map(_run_job, jobs))


def check_available(isolation: str | None = None) -> str:
    """Returns the isolation that calls will get, or raises `SandboxUnavailable`."""
    settings = load_settings(isolation)
    if settings.isolation == UNSAFE:
        return UNSAFE
    _probe(settings)
    return BWRAP


def _run_job(job: Job) -> RunResult:
    return run_python(
        job.code, tests=job.tests, timeout_s=job.timeout_s, memory_mb=job.memory_mb, stdin=job.stdin
    )


def _python_argv(python: str, code_fd: int | None) -> list[str]:
    # -I: ignore PYTHON* env and user site; -S: skip site (saves ~50 ms per call);
    # -B: the prefix is read-only anyway; -X utf8: predictable text I/O.
    argv = [python, "-I", "-S", "-B", "-X", "utf8", "-c"]
    return argv + ([_BOOT, str(code_fd)] if code_fd is not None else [_RUNNER_SOURCE])


@lru_cache(maxsize=4)
def _compiled_runner(python: str) -> bytes | None:
    """The runner compiled once by the interpreter that runs it (a marshalled code
    object): spares every call compiling ~700 lines (~4 ms). None: compile per call."""
    script = "import marshal,sys;sys.stdout.buffer.write(marshal.dumps(compile(sys.stdin.read(),'<sandbox runner>','exec')))"
    try:
        done = subprocess.run(
            [python, "-I", "-S", "-c", script], input=_RUNNER_SOURCE.encode(), capture_output=True,
            timeout=60, check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("the sandbox runner is compiled per call: %s", exc)
        return None
    return done.stdout


# --- bubblewrap command line ----------------------------------------------------------


@lru_cache(maxsize=8)
def _probe(settings: Settings) -> bool:
    """True: root without a user namespace; False: a user namespace. Raises
    `SandboxUnavailable` when neither starts (no bwrap, no namespaces). Cached."""
    if shutil.which(settings.bwrap) is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed; install it (apt-get install bubblewrap) "
            f"or set PONDER_SANDBOX={UNSAFE} to accept weaker isolation"
        )
    errors = []
    for privileged in [True, False] if os.geteuid() == 0 else [False]:
        # The real runner end to end: bwrap starts, and the dropped uid can read Python.
        argv = _bwrap_argv(settings, privileged)
        call = _Call("pass", "assert True", None, 60.0, 512, settings.uid if privileged else None, None)
        result = _execute(argv, call, settings, time.monotonic())
        if result.passed:
            return privileged
        errors.append(f"{result.status}: {(result.stderr or result.detail).strip()[-500:]}")
    raise SandboxUnavailable(
        f"bubblewrap cannot start a sandbox here ({'; '.join(errors)}); "
        f"set PONDER_SANDBOX={UNSAFE} to accept weaker isolation"
    )


def _bwrap_argv(settings: Settings, privileged: bool) -> list[str]:
    argv = [settings.bwrap, "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    if privileged:
        # No user namespace: the runner needs CAP_SETUID/SETGID once, to drop to the
        # pool uid; NO_NEW_PRIVS (set by bwrap) keeps setuid binaries inert.
        argv += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]
        argv += ["--unshare-cgroup-try", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534", "--disable-userns"]
    argv += _filesystem_args(settings.python, settings.tmpfs_mb)
    argv += ["--clearenv", "--setenv", "HOME", "/tmp", "--setenv", "LANG", "C.UTF-8"]
    argv += ["--setenv", "PATH", "/usr/bin:/bin", "--hostname", "sandbox"]
    return argv


def _filesystem_args(python: str, tmpfs_mb: int) -> list[str]:
    args: list[str] = []
    made: set[str] = set()
    for lib in ("/usr/lib", "/usr/lib64", "/usr/lib32"):
        if os.path.isdir(lib):
            args += _parent_dirs(lib, made) + ["--ro-bind", lib, lib]
    for lib in ("/lib", "/lib64", "/lib32"):
        if os.path.islink(lib):
            args += ["--symlink", os.readlink(lib), lib]
        elif os.path.isdir(lib):
            args += ["--ro-bind", lib, lib]
    for path in _interpreter_paths(python):
        args += _parent_dirs(path, made) + ["--ro-bind", path, path]
    args += ["--proc", "/proc", "--dev", "/dev"]
    # A writable /dev/shm: multiprocessing's locks and queues are POSIX semaphores there.
    args += ["--perms", "1777", "--size", str(tmpfs_mb << 20), "--tmpfs", "/dev/shm"]
    args += ["--perms", "1777", "--size", str(tmpfs_mb << 20), "--tmpfs", "/tmp", "--chdir", "/tmp"]
    return args


def _parent_dirs(path: str, made: set[str]) -> list[str]:
    """World-searchable parents for a mount point: left to itself bwrap creates them 0700
    (as root), which would lock the dropped uid out of /usr/lib or a prefix under /root."""
    args = []
    for parent in reversed(Path(path).parents[:-1]):
        if str(parent) not in made:
            made.add(str(parent))
            args += ["--perms", "0755", "--dir", str(parent)]
    return args


def _interpreter_paths(python: str) -> list[str]:
    """What to bind for `python` (resolved): its prefix (``prefix/bin/python``), which
    holds the stdlib; for a system interpreter under /usr, the binary alone, as the
    stdlib is in the /usr/lib bind already."""
    prefix = str(Path(python).parent.parent)
    return [python] if prefix == "/usr" else [prefix]


# --- one execution --------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    code: str
    tests: str | None
    stdin: str | None
    timeout_s: float
    memory_mb: int
    uid: int | None  # uid the runner drops to (None: stay as started)
    workdir: str | None  # cwd of the unsandboxed mode


def _execute(bwrap: list[str], call: _Call, settings: Settings, start: float) -> RunResult:
    """Runs the runner under `bwrap` (the bubblewrap argv; empty: unsandboxed), in a
    cgroup of its own where the host has them."""
    found = _cgroup.backend(settings.cgroup) if bwrap else None
    limits = _cgroup.Limits((call.memory_mb + settings.tmpfs_mb) << 20, settings.nproc, settings.cpus)
    with _cgroup.sandbox_cgroup(found, limits) as group:
        result = _spawn(bwrap, call, settings, start, group)
        if group is not None and not result.passed and group.oom_killed():
            result = replace(result, status="memory", detail="over the sandbox's memory limit (cgroup)")
    return result


def _spawn(
    bwrap: list[str], call: _Call, settings: Settings, start: float, group: _cgroup.Cgroup | None
) -> RunResult:
    nonce = secrets.token_hex(16)
    status_r, status_w = os.pipe()
    fds = [status_w]
    program = _seccomp(settings) if bwrap else None
    if program is not None:
        fds.append(_memfd(program, "ponder-sandbox-seccomp"))
        bwrap = bwrap + ["--seccomp", str(fds[-1])]
    compiled = _compiled_runner(settings.python)
    if compiled is not None:
        fds.append(_memfd(compiled, "ponder-sandbox-runner"))
    join = group.fds if group is not None else []  # the runner joins these cgroups first
    argv = bwrap + _python_argv(settings.python, fds[-1] if compiled is not None else None)
    argv += [",".join(map(str, join))] if join else []
    payload = {
        "code": call.code,
        "tests": call.tests,
        "stdin": call.stdin,
        "limits": _limits(call.timeout_s, call.memory_mb, settings),
        "uid": call.uid,
        "gid": call.uid,
        "status_fd": status_w,
        "nonce": nonce,
    }
    stdin = _memfd(marshal.dumps(payload), "ponder-sandbox-payload")
    try:
        proc = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=fds + join,
            cwd=call.workdir,
            env=_unsafe_env(call.workdir) if call.workdir else None,
            start_new_session=True,  # one process group to kill on timeout
        )
    finally:
        os.close(stdin)
        for fd in fds:
            os.close(fd)
        if group is not None:
            group.close_fds()
    try:
        out = _collect(proc, start + call.timeout_s, settings)
        marker = _read_marker(status_r, nonce)
    finally:
        _kill(proc)
        os.close(status_r)
    return _result(out, marker, proc.returncode, call.timeout_s, settings, start)


def _seccomp(settings: Settings) -> bytes | None:
    if settings.seccomp == "off":
        return None
    program = seccomp.filter_program()
    if program is None and settings.seccomp == "required":
        raise SandboxUnavailable(f"PONDER_SANDBOX_SECCOMP=required but no filter could be built: {seccomp.build_error()}")
    return program


def _limits(timeout_s: float, memory_mb: int, settings: Settings) -> dict[str, list[int]]:
    # CPU soft limit a second past the wall clock: a busy single thread meets the wall
    # clock first (a clean "timeout"); SIGXCPU catches multi-threaded burners.
    cpu = math.ceil(timeout_s) + 1
    return {
        "cpu": [cpu, cpu + 1],
        "as": [memory_mb << 20] * 2,
        "fsize": [settings.fsize_mb << 20] * 2,
        "nofile": [settings.nofile] * 2,
        "nproc": [settings.nproc] * 2,
        "core": [0, 0],
    }


def _memfd(data: bytes, name: str) -> int:
    """A rewound in-memory file: the payload size is not bounded by pipe buffers or argv."""
    fd = os.memfd_create(name)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _unsafe_env(workdir: str) -> dict[str, str]:
    return {"HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"}


def _collect(proc: subprocess.Popen, deadline: float, settings: Settings) -> _Output:
    """Reads stdout/stderr until EOF, keeping `output_cap` bytes of each and draining the
    rest; stops at the deadline, when output passes `max_output`, or shortly after the
    process exited (a leftover child holding the pipes must not hold us)."""
    out = _Output()
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    sel.register(proc.stdout, selectors.EVENT_READ, out.stdout)
    sel.register(proc.stderr, selectors.EVENT_READ, out.stderr)
    with sel:
        while sel.get_map():
            if proc.poll() is not None:
                deadline = min(deadline, time.monotonic() + 0.2)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for key, _ in sel.select(min(remaining, 0.5)):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                out.total += len(chunk)
                buf: bytearray = key.data
                buf += chunk[: max(0, settings.output_cap - len(buf))]
            if out.total > settings.max_output:
                out.overflow = True
                return out
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        out.timed_out = True
    return out


def _read_marker(fd: int, nonce: str) -> dict | None:
    """The runner's ``nonce TAB status TAB exec_s TAB detail`` line, if it wrote one."""
    os.set_blocking(fd, False)
    try:
        data = os.read(fd, 1 << 16)
    except BlockingIOError:
        return None
    fields = data.decode(errors="replace").split("\n", 1)[0].split("\t", 3)
    if len(fields) != 4 or fields[0] != nonce or fields[1] not in STATUSES:
        return None
    try:
        exec_s: float | None = float(fields[2])
    except ValueError:
        exec_s = None
    if exec_s is not None and not 0 <= exec_s < 1e9:
        exec_s = None  # -1: the code never started (a syntax error)
    return {"status": fields[1], "exec_s": exec_s, "detail": fields[3]}


def _kill(proc: subprocess.Popen) -> None:
    """Kills the whole process group (bwrap's pid namespace dies with it) and reaps."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _result(
    out: _Output,
    marker: dict | None,
    returncode: int,
    timeout_s: float,
    settings: Settings,
    start: float,
) -> RunResult:
    status, detail = _classify(out, marker, returncode, timeout_s, settings)
    truncated = out.total > len(out.stdout) + len(out.stderr)
    return RunResult(
        status=status,
        stdout=out.stdout.decode(errors="replace"),
        stderr=out.stderr.decode(errors="replace"),
        duration_s=time.monotonic() - start,
        detail=detail,
        exit_code=returncode,
        truncated=truncated,
        exec_s=marker["exec_s"] if marker else None,
    )


def _classify(
    out: _Output, marker: dict | None, returncode: int, timeout_s: float, settings: Settings
) -> tuple[Status, str]:
    if marker is not None:  # the runner got to the end (maybe as the clock ran out)
        return marker["status"], marker["detail"]
    if out.timed_out:
        return "timeout", f"wall-clock limit of {timeout_s:g} s"
    if out.overflow:
        return "error", f"output over {settings.max_output} bytes"
    sig = _signal_of(returncode)
    if sig == signal.SIGXCPU:
        return "timeout", "CPU time limit"
    if sig:
        return "error", f"killed by signal {sig}"
    if returncode:
        return "error", f"exit code {returncode}"
    return "error", "exited before the code and tests finished"


def _signal_of(returncode: int) -> int:
    """bwrap reports a child killed by signal N as exit code 128 + N; Popen as -N."""
    if returncode < 0:
        return -returncode
    return returncode - 128 if 128 < returncode < 128 + 65 else 0
