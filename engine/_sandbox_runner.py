"""The trusted runner that `engine.sandbox` starts inside the sandbox (stdlib only).

It is passed to the interpreter with ``-c`` and never imported by the host. Protocol:

- stdin carries one `marshal`-ed dict from the host: ``code``, ``tests``, ``stdin`` (text
  for the code's ``sys.stdin``, else empty), ``limits``
  (rlimit name -> (soft, hard)), ``uid``/``gid`` (dropped to when the runner starts as
  root), ``status_fd`` and ``nonce``;
- the runner sets the rlimits, drops privileges, compiles code and tests (``syntax`` on
  failure), executes both in one namespace, then writes one line
  ``nonce TAB status TAB exec_s TAB detail`` to ``status_fd`` and leaves with ``os._exit``.

No line means the process died early (signal, ``os._exit``, limits): the host decides.
The nonce stops code that merely writes to the status fd from forging a result; code
running in this very process could still find it by introspection, which is out of reach
of a model's accidental behaviour (see the module docstring of ``engine.sandbox``).

Only cheap modules are imported up front (json, traceback and contextlib would double
the start-up time); the traceback machinery loads only when there is one to print.
"""

import builtins
import marshal
import os
import resource
import sys
import time

_LIMITS = {
    "cpu": resource.RLIMIT_CPU,
    "as": resource.RLIMIT_AS,
    "fsize": resource.RLIMIT_FSIZE,
    "nofile": resource.RLIMIT_NOFILE,
    "nproc": resource.RLIMIT_NPROC,
    "core": resource.RLIMIT_CORE,
}
_sources: dict[str, str] = {}  # filename -> source, for tracebacks
_exec_started = 0.0  # perf_counter() when the code started, for exec_s
_runner_pid = 0  # forks of the runner that reach the end must not report


class _Quitter:
    """`exit()` / `quit()` as `site` would define them (we run with -S for speed)."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"Use {self.name}() to exit"

    def __call__(self, code=None):
        raise SystemExit(code)


def _apply_limits(limits):
    for name, (soft, hard) in limits.items():
        resource.setrlimit(_LIMITS[name], (soft, hard))


def _drop_privileges(uid, gid):
    # Only as root: the host runs bwrap without a user namespace so that RLIMIT_NPROC
    # counts against a real unprivileged uid (it is ignored for uid 0). uid None: the
    # weaker unsandboxed mode, where a dropped uid could not read the interpreter.
    if uid is None or os.getuid() != 0:
        return
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def _compile(source, filename):
    _sources[filename] = source
    return compile(source, filename, "exec", dont_inherit=True)


def _print_exception(exc, with_traceback=True):
    if os.getpid() != _runner_pid:
        return  # a fork of the runner: it will not report either, so spare the import
    try:
        import linecache
        import traceback

        for filename, source in _sources.items():  # lets tracebacks show the lines
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        # The first frame is the runner's own; a syntax error needs no frames at all.
        tb = exc.__traceback__.tb_next if with_traceback and exc.__traceback__ else None
        traceback.print_exception(type(exc), exc, tb, limit=20, file=sys.stderr)
    except BaseException:  # printing must never change the status
        pass


def _describe(exc):
    try:
        return f"{type(exc).__name__}: {exc}"[:500]
    except BaseException:  # a hostile __str__
        return type(exc).__name__


def _execute(code, tests, namespace):
    """Runs code then tests; returns (status, detail)."""
    global _exec_started
    _exec_started = time.perf_counter()
    try:
        exec(code, namespace)
        if tests is not None:
            exec(tests, namespace)
    except AssertionError as exc:
        _print_exception(exc)
        return "failed", _describe(exc)
    except MemoryError:
        return "memory", "MemoryError"
    except SystemExit as exc:
        # A script may end with sys.exit(0); with tests, exiting means they never all ran
        # (code could otherwise call exit(0) from a function the tests call).
        if tests is None and exc.code in (0, None):
            return "passed", ""
        return "error", f"SystemExit({exc.code!r}) before the end"
    except BaseException as exc:
        _print_exception(exc)
        return "error", _describe(exc)
    return "passed", ""


def _report(fd, nonce, status, detail):
    if os.getpid() != _runner_pid:
        os._exit(0)
    exec_s = time.perf_counter() - _exec_started if _exec_started else -1.0
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105  (contextlib costs start-up time)
            stream.flush()
        except BaseException:  # a closed or replaced stream
            pass
    detail = " ".join(str(detail).split())
    try:
        os.write(fd, f"{nonce}\t{status}\t{exec_s!r}\t{detail}\n".encode(errors="replace"))
    finally:
        os._exit(0)  # skip atexit hooks and non-daemon threads the code may have left


def main():
    global _runner_pid
    _runner_pid = os.getpid()
    payload = marshal.loads(sys.stdin.buffer.read())
    # The payload (tests included) must not stay readable by the code under test.
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    if payload["stdin"] is not None:
        import io

        sys.stdin = io.TextIOWrapper(io.BytesIO(payload["stdin"].encode()), encoding="utf-8")
    fd, nonce = payload.pop("status_fd"), payload.pop("nonce")
    _apply_limits(payload["limits"])
    _drop_privileges(payload["uid"], payload["gid"])
    builtins.exit, builtins.quit = _Quitter("exit"), _Quitter("quit")
    try:
        code = _compile(payload["code"], "<solution>")
        tests = None if payload["tests"] is None else _compile(payload["tests"], "<tests>")
    except (SyntaxError, ValueError, RecursionError) as exc:
        # ValueError: null bytes in the source; RecursionError: nesting too deep.
        _print_exception(exc, with_traceback=False)
        _report(fd, nonce, "syntax", _describe(exc))
    del payload
    # With tests the code is a module under test: its `if __name__ == "__main__":` demo
    # block must not run (it often reads stdin); without tests it is the program.
    namespace = {"__name__": "__main__" if tests is None else "solution", "__builtins__": builtins}
    status, detail = _execute(code, tests, namespace)
    _report(fd, nonce, status, detail)


main()
