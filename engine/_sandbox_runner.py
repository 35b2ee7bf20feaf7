"""The trusted runner that `engine.sandbox` starts inside the sandbox (stdlib only).

It is passed to the interpreter with ``-c`` and never imported by the host. Two processes:

- the **harness** (the process bwrap started) holds the status fd and the nonce, compiles
  and runs the tests, and alone decides the verdict;
- the **candidate** is forked from it first thing, before the payload is even read, so
  no secret was ever in its memory; it closes every fd but stdout, stderr and its two
  pipes to the harness, runs the code, and then serves calls from the harness.

The tests never share an interpreter with the code: every name the code defines is a
`_Remote` proxy in the tests' namespace (plain data is copied instead), and a call
crosses the pipes. Only plain data travels (None, bool, int, float, complex, str, bytes
and list, tuple, set, frozenset, dict of those, exact types only); anything else the code
returns comes back as another proxy, which the tests may call, iterate or index but not
compare, hash or test for truth (that raises ``TypeError``): an object whose ``__eq__``
always says yes never meets an ``assert``. The harness decodes the candidate's bytes with
its own small parser (never ``marshal`` or ``pickle``), makes itself non-dumpable (so
``/proc/<harness>/{fd,mem}`` and ``ptrace`` are closed to the candidate), ignores the
signals it can, and truncates the payload file once read. A candidate that exits, dies
or raises ``SystemExit`` while the tests need it makes the run an ``error``, sticky
even if the tests catch the exception.

Protocol with the host: the host prepends `engine._sandbox_wire` (the message format) and
runs the result (compiled once, then loaded from a fd); ``sys.argv[1]``, when given, lists
``cgroup.procs`` fds that the runner joins and closes before it forks; stdin carries one
`marshal`-ed dict (``code``, ``tests``, ``stdin``, ``limits``, ``uid``, ``gid``,
``status_fd``, ``nonce``); the harness writes one line ``nonce TAB status TAB exec_s TAB
detail`` to ``status_fd`` and leaves with ``os._exit``. No line means the harness died
early: the host decides.

Only cheap modules are imported up front (``_signal`` rather than ``signal``, which
pulls in ``enum``); ``ctypes`` (for prctl) and traceback load only when needed.
"""

import builtins
import marshal
import os
import resource
import sys
import time

if "_dumps" not in globals():  # read by a linter; in the sandbox, _sandbox_wire.py comes first
    from engine._sandbox_wire import _dumps, _loads, _ProtocolError, _recv, _send, _Unplain

_LIMITS = {
    "cpu": resource.RLIMIT_CPU,
    "as": resource.RLIMIT_AS,
    "fsize": resource.RLIMIT_FSIZE,
    "nofile": resource.RLIMIT_NOFILE,
    "nproc": resource.RLIMIT_NPROC,
    "core": resource.RLIMIT_CORE,
}
_PRISTINE = dict(vars(builtins))  # the harness's builtins before anything ran
_sources: dict[str, str] = {}  # filename -> source, for tracebacks
_own_pid = 0  # forks of the candidate must neither answer nor report


class _CandidateGone(BaseException):
    """The candidate exited or broke the protocol; not an `Exception`, so tests that
    catch ``Exception`` do not swallow it (and the verdict is an error regardless)."""


class _Quitter:
    """`exit()` / `quit()` as `site` would define them (we run with -S for speed)."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"Use {self.name}() to exit"

    def __call__(self, code=None):
        raise SystemExit(code)


# --- shared set-up ---------------------------------------------------------------------


def _apply_limits(limits):
    for name, (soft, hard) in limits.items():
        resource.setrlimit(_LIMITS[name], (soft, hard))


def _drop_privileges(uid, gid):
    # Only as root: the host runs bwrap without a user namespace so that RLIMIT_NPROC
    # counts against a real unprivileged uid (it is ignored for uid 0). uid None: the
    # weaker unsandboxed mode, where a dropped uid could not read the interpreter.
    if uid is None or os.getuid() != 0:
        return False
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    return True


def _compile(source, filename):
    _sources[filename] = source
    return compile(source, filename, "exec", dont_inherit=True)


def _print_exception(exc, with_traceback=True):
    if os.getpid() != _own_pid:
        return
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


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105  (contextlib costs start-up time)
            stream.flush()
        except BaseException:  # a closed or replaced stream
            pass


def _classify(exc, program):
    """(status, detail) for an exception that ended the code or the tests."""
    if isinstance(exc, AssertionError):
        _print_exception(exc)
        return "failed", _describe(exc)
    if isinstance(exc, MemoryError):
        return "memory", "MemoryError"
    if isinstance(exc, SystemExit):
        # A script may end with sys.exit(0); with tests, exiting means they never all ran.
        if program and exc.code in (0, None):
            return "passed", ""
        return "error", f"SystemExit({exc.code!r}) before the end"
    _print_exception(exc)
    return "error", _describe(exc)


# --- the candidate process (runs the untrusted code) -------------------------------------


class _Handles:
    """Objects the harness holds a handle to, by number."""

    def __init__(self):
        self.objects, self.ids = [], {}

    def put(self, obj):
        key = id(obj)
        if key not in self.ids:
            self.ids[key] = len(self.objects)
            self.objects.append(obj)
        return self.ids[key]

    def get(self, number):
        return self.objects[number]


_OPS = {
    "call": lambda obj, args, kwargs: obj(*args, **kwargs),
    "getattr": getattr,
    "iter": iter,
    "next": next,
    "len": len,
    "getitem": lambda obj, key: obj[key],
}


def _candidate(rfd, wfd):
    """Never returns: runs the code sent by the harness, then answers its calls."""
    global _own_pid
    _own_pid = os.getpid()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # stdin was the payload file
    os.close(null)
    low, high = sorted((rfd, wfd))
    for start, stop in ((3, low), (low + 1, high), (high + 1, 1 << 20)):
        os.closerange(start, stop)  # the status fd among them: only the pipes stay
    init = _loads(_recv(rfd), None)
    _apply_limits(init["limits"])
    _drop_privileges(init["uid"], init["gid"])
    if init["stdin"] is not None:
        import io

        sys.stdin = io.TextIOWrapper(io.BytesIO(init["stdin"].encode()), encoding="utf-8")
    builtins.exit, builtins.quit = _Quitter("exit"), _Quitter("quit")
    handles = _Handles()
    # A real module, so that pickle (multiprocessing) finds the code's functions by name.
    module = type(sys)(init["name"])
    sys.modules[init["name"]] = module
    namespace = module.__dict__
    namespace["__builtins__"] = builtins
    status, detail = _run_code(init["code"], namespace, init["name"] == "__main__")
    exports = _exports(namespace, handles) if status == "passed" and init["name"] != "__main__" else {}
    _answer(wfd, ("ready", status, detail, exports), handles)
    _serve(rfd, wfd, handles)


def _run_code(code, namespace, program):
    try:
        compiled = _compile(code, "<solution>")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        # ValueError: null bytes in the source; RecursionError: nesting too deep.
        _print_exception(exc, with_traceback=False)
        return "syntax", _describe(exc)
    try:
        exec(compiled, namespace)
    except BaseException as exc:
        return _classify(exc, program)
    return "passed", ""


def _exports(namespace, handles):
    """What the tests see of the code's globals: small plain data as a copy, stdlib
    modules and functions by name (the harness imports its own), the rest as handles."""
    exports = {}
    for name, value in list(namespace.items()):
        if type(name) is not str or name.startswith("__") or name in _PRISTINE:
            continue
        try:
            if _small(value, [_COPY_LIMIT]):
                _dumps(value, None)
                exports[name] = ("v", value)
                continue
        except BaseException:
            pass
        exports[name] = ("h", handles.put(value))
        module = value.__name__ if type(value) is type(sys) else getattr(value, "__module__", None)
        qualname = "" if type(value) is type(sys) else getattr(value, "__qualname__", name)
        if type(module) is str and module.split(".")[0] in sys.stdlib_module_names:
            exports[name] = ("r", module, qualname if type(qualname) is str else name, exports[name][1])
    return exports


_COPY_LIMIT = 10_000  # items in a global copied to the tests; a bigger one stays a handle


def _small(value, budget):
    """Whether `value` holds at most `budget[0]` items (containers only are walked)."""
    budget[0] -= 1
    if budget[0] < 0:
        return False
    if type(value) in (list, tuple, set, frozenset):
        return all(_small(item, budget) for item in value)
    if type(value) is dict:
        return all(_small(k, budget) and _small(v, budget) for k, v in value.items())
    return True


def _answer(wfd, message, handles):
    if os.getpid() != _own_pid:
        os._exit(0)  # a fork of the candidate
    _flush()
    try:
        data = _dumps(message, handles.put)
    except BaseException as exc:
        data = _dumps(("raise", ["TypeError"], f"cannot send the result: {_describe(exc)}"), None)
    _send(wfd, data)


def _serve(rfd, wfd, handles):
    while True:
        body = _recv(rfd)
        if body is None:
            os._exit(0)
        op, number, args = _loads(body, handles.get)
        try:
            reply = ("ok", _OPS[op](handles.get(number), *args))
        except BaseException as exc:
            reply = _exception_reply(exc)
        _answer(wfd, reply, handles)


def _exception_reply(exc):
    if not isinstance(exc, Exception):  # SystemExit, KeyboardInterrupt, GeneratorExit
        return ("fatal", f"{_describe(exc)} in a call from the tests")
    names = [k.__name__ for k in type(exc).__mro__ if _PRISTINE.get(k.__name__) is k]
    try:
        message = str(exc)[:2000]
    except BaseException:
        message = ""
    return ("raise", names, message)


# --- the harness (runs the tests and decides) ----------------------------------------


class _Channel:
    """The harness's end of the pipes; every failure of the candidate is sticky."""

    def __init__(self, pid, rfd, wfd):
        self.pid, self.rfd, self.wfd = pid, rfd, wfd
        self.proxies = {}
        self.gone = None  # why the candidate can no longer answer
        self.signal = None  # what killed it, when known

    def proxy(self, number):
        if number not in self.proxies:
            self.proxies[number] = _Remote(self, number)
        return self.proxies[number]

    def receive(self):
        if self.gone is not None:
            raise _CandidateGone(self.gone)
        try:
            body = _recv(self.rfd)
            if body is None:
                raise _ProtocolError(self._death())
            return _loads(body, self.proxy)
        except (_ProtocolError, OSError) as exc:
            self.gone = str(exc)
            raise _CandidateGone(self.gone) from None

    def request(self, op, number, args):
        if self.gone is not None:
            raise _CandidateGone(self.gone)
        try:
            data = _dumps((op, number, args), _handle_of)
        except _Unplain as exc:
            raise TypeError(f"only plain data can be passed to the code under test ({exc})") from None
        try:
            _send(self.wfd, data)
        except OSError:
            self.gone = self._death()
            raise _CandidateGone(self.gone) from None
        reply = self.receive()
        kind = reply[0] if type(reply) is tuple and reply and type(reply[0]) is str else ""
        if kind == "ok" and len(reply) == 2:
            return reply[1]
        if kind == "raise" and len(reply) == 3:
            raise _rebuild(reply[1], reply[2])
        self.gone = str(reply[1]) if kind == "fatal" and len(reply) == 2 else "a malformed reply"
        raise _CandidateGone(self.gone)

    def _death(self):
        for _ in range(40):  # it closed the pipe: it is exiting, or hostile
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return "the code's process ended"
            if pid:
                break
            time.sleep(0.005)
        else:
            os.kill(self.pid, 9)
            return "the code's process closed its end of the pipe"
        if os.WIFSIGNALED(status):
            self.signal = os.WTERMSIG(status)
            return f"the code's process was killed by signal {self.signal}"
        return f"the code's process exited with code {os.WEXITSTATUS(status)} before the tests ended"


def _handle_of(value):
    if type(value) is _Remote:
        return object.__getattribute__(value, "_number")
    raise _Unplain(f"{type(value).__name__} is not plain data")


def _rebuild(names, message):
    """The harness's own builtin exception for one the code raised."""
    for name in names if type(names) is list else []:
        kind = _PRISTINE.get(name) if type(name) is str else None
        if type(kind) is type and issubclass(kind, Exception):
            try:
                return kind(message)
            except Exception:
                continue
    return Exception(message)


def _refuse(*_args, **_kwargs):
    raise TypeError("the code under test returned an object that is not plain data: it cannot be compared")


class _Remote:
    """Stands for an object in the candidate process: call it, read its attributes,
    iterate or index it; comparing, hashing or testing it for truth raises."""

    __slots__ = ("_channel", "_number")

    def __init__(self, channel, number):
        object.__setattr__(self, "_channel", channel)
        object.__setattr__(self, "_number", number)

    def _ask(self, op, *args):
        get = object.__getattribute__
        return get(self, "_channel").request(op, get(self, "_number"), args)

    def __call__(self, *args, **kwargs):
        return self._ask("call", args, kwargs)

    def __getattr__(self, name):
        return self._ask("getattr", name)

    def __iter__(self):
        return self._ask("iter")

    def __next__(self):
        return self._ask("next")

    def __len__(self):
        return self._ask("len")

    def __getitem__(self, key):
        return self._ask("getitem", key)

    def __repr__(self):
        return f"<object #{object.__getattribute__(self, '_number')} of the code under test>"

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __bool__ = __hash__ = __setattr__ = _refuse  # type: ignore


def _test_namespace(channel, exports):
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    for name, entry in exports.items() if type(exports) is dict else ():
        if type(name) is not str or name in _PRISTINE or type(entry) is not tuple or not entry:
            continue
        kind = entry[0] if type(entry[0]) is str else ""
        if kind == "v" and len(entry) == 2:
            namespace[name] = entry[1]
        elif kind in ("h", "r") and type(entry[-1]) is int and len(entry) == (2 if kind == "h" else 4):
            proxy = channel.proxy(entry[-1])
            namespace[name] = proxy if kind == "h" else _resolve(entry[1], entry[2], proxy)
    return namespace


def _resolve(module, qualname, fallback):
    """A stdlib module, class or function the code imported, as the harness's own."""
    import types

    kinds = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType)
    if type(module) is str and type(qualname) is str and module.split(".")[0] in sys.stdlib_module_names:
        try:
            obj = __import__(module, fromlist=["_"])
            for part in qualname.split(".") if qualname else ():
                obj = getattr(obj, part)
            if isinstance(obj, kinds):
                return obj
        except Exception:
            pass
    return fallback


def _report(fd, nonce, status, detail, started, candidate=0):
    exec_s = time.perf_counter() - started if started else -1.0
    if candidate:
        try:  # noqa: SIM105
            os.kill(candidate, 9)  # its output is flushed: every reply came after a flush
        except OSError:
            pass
    _flush()
    detail = " ".join(str(detail).split())
    try:
        os.write(fd, f"{nonce}\t{status}\t{exec_s!r}\t{detail}\n".encode(errors="replace"))
    finally:
        os._exit(0)  # skip atexit hooks and threads


def _harden(uid_changed):
    """No /proc/<pid>/{fd,mem,environ} or ptrace for the candidate (same uid); no
    signal it can send, but SIGKILL and SIGSTOP, ends the harness quietly."""
    import _signal

    if not uid_changed or _read("/proc/sys/fs/suid_dumpable") != "0":
        # A uid change already left us non-dumpable (suid_dumpable 0): spare ctypes.
        import ctypes

        if ctypes.CDLL(None).prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE, 0
            raise OSError("prctl(PR_SET_DUMPABLE, 0) failed")
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM",
                 "SIGPIPE", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGVTALRM", "SIGPROF", "SIGXFSZ"):
        _signal.signal(getattr(_signal, name), _signal.SIG_IGN)


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _harness(pid, rfd, wfd):
    payload = marshal.loads(sys.stdin.buffer.read())
    try:  # noqa: SIM105  (contextlib costs start-up time)
        os.ftruncate(0, 0)  # the nonce must not stay readable through /proc/1/fd/0
    except OSError:
        pass
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    fd, nonce = payload.pop("status_fd"), payload.pop("nonce")
    _apply_limits(payload["limits"])
    uid_changed = _drop_privileges(payload["uid"], payload["gid"])
    _harden(uid_changed)
    try:
        tests = None if payload["tests"] is None else _compile(payload["tests"], "<tests>")
    except (SyntaxError, ValueError, RecursionError) as exc:
        _print_exception(exc, with_traceback=False)
        _report(fd, nonce, "syntax", _describe(exc), 0.0, pid)
    channel = _Channel(pid, rfd, wfd)
    init = {key: payload[key] for key in ("code", "stdin", "limits", "uid", "gid")}
    init["name"] = "__main__" if tests is None else "solution"
    del payload
    started = time.perf_counter()
    status, detail = _grade(channel, init, tests)
    _report(fd, nonce, status, detail, started, pid)


def _grade(channel, init, tests):
    try:
        _send(channel.wfd, _dumps(init, None))
        ready = channel.receive()
    except (_CandidateGone, OSError) as exc:
        return _gone(channel, str(exc))
    if type(ready) is not tuple or len(ready) != 4 or not all(type(x) is str for x in ready[:3]):
        return "error", "a malformed reply from the code's process"
    if ready[0] != "ready" or ready[1] not in _STATUSES:
        return "error", "a malformed reply from the code's process"
    if tests is None or ready[1] != "passed":
        return ready[1], ready[2]
    namespace = _test_namespace(channel, ready[3])
    try:
        exec(tests, namespace)
    except _CandidateGone as exc:
        return _gone(channel, str(exc))
    except BaseException as exc:
        if channel.gone is None:
            return _classify(exc, False)
    if channel.gone is not None:  # the tests caught what the candidate's exit raised
        return _gone(channel, channel.gone)
    return "passed", ""


_STATUSES = ("passed", "failed", "error", "syntax", "timeout", "memory")


def _gone(channel, why):
    if channel.signal == 24:  # SIGXCPU
        return "timeout", "CPU time limit"
    return "error", why


def main():
    global _own_pid
    _own_pid = os.getpid()
    for fd in sys.argv.pop(1).split(",") if len(sys.argv) > 1 else ():
        os.write(int(fd), b"0")  # join the sandbox's cgroup(s) before anything forks
        os.close(int(fd))
    from_harness, to_candidate = os.pipe()
    from_candidate, to_harness = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(to_candidate)
        os.close(from_candidate)
        try:
            _candidate(from_harness, to_harness)
        finally:
            os._exit(0)
    os.close(from_harness)
    os.close(to_harness)
    _harness(pid, from_candidate, to_candidate)


main()
