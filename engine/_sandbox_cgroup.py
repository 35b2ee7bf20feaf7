"""Per-sandbox cgroups: one total for memory, processes and CPU across everything a
sandboxed program forks (rlimits are per process).

Each call gets a child cgroup ``sbx-<pid>-<n>`` of a Ponder parent, ``ponder`` under the
cgroup this worker already is in (so the worker's own limits still hold around it):
cgroup v2 where its ``memory`` and ``pids`` controllers can be enabled there, else the
v1 ``memory``, ``pids`` (and ``cpu``) hierarchies. The host opens each ``cgroup.procs``
and hands the fds to the runner, which writes ``0`` (itself) into them before it forks
anything, then closes them. After the call every process left is killed and the cgroup
removed. Where neither version is writable, calls keep their rlimits only, and that is
logged once.

Limits: ``memory.max`` = ``memory_mb`` + the private /tmp (its pages count too), no swap;
``pids.max`` = ``PONDER_SANDBOX_NPROC``; ``cpu.max`` = ``PONDER_SANDBOX_CPUS`` CPUs.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

log = logging.getLogger("engine.sandbox")
ROOT = Path("/sys/fs/cgroup")
_counter = itertools.count()


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    pids: int
    cpus: float


@dataclass(frozen=True)
class Backend:
    """Where per-sandbox cgroups go: v2 (one parent) or v1 (a parent per controller)."""

    version: int
    parents: dict[str, Path]  # controller ("unified" for v2) -> the Ponder parent


class Cgroup:
    """One sandbox's cgroup(s): `fds` for the runner to join, `oom_killed()` after."""

    def __init__(self, backend: Backend, dirs: dict[str, Path]) -> None:
        self.backend, self.dirs = backend, dirs
        self.fds = [os.open(d / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC) for d in dirs.values()]

    def oom_killed(self) -> bool:
        key = "unified" if self.backend.version == 2 else "memory"
        name = "memory.events" if self.backend.version == 2 else "memory.oom_control"
        with contextlib.suppress(OSError, ValueError):
            for line in (self.dirs[key] / name).read_text().splitlines():
                field, _, value = line.partition(" ")
                if field == "oom_kill" and int(value) > 0:
                    return True
        return False

    def close_fds(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []

    def remove(self) -> None:
        self.close_fds()
        for path in self.dirs.values():
            _kill_and_remove(path)


@lru_cache(maxsize=4)
def backend(setting: str = "auto") -> Backend | None:
    """The cgroup layout usable here (None: rlimits only, logged once). `setting` is
    PONDER_SANDBOX_CGROUP: ``auto``, ``off`` or the path of a delegated v2 parent."""
    if setting == "off":
        return None
    try:
        found = _v2(Path(setting)) if setting != "auto" else (_auto_v2() or _v1())
    except OSError as exc:
        found, why = None, str(exc)
    else:
        why = "no writable cgroup v2 (memory, pids) or v1 (memory, pids) hierarchy"
    if found is None:
        log.warning("sandbox without per-sandbox cgroups (%s): rlimits only", why)
    return found


@contextlib.contextmanager
def sandbox_cgroup(found: Backend | None, limits: Limits) -> Iterator[Cgroup | None]:
    """A fresh cgroup with `limits` for one call (None without a backend), removed after."""
    if found is None:
        yield None
        return
    name = f"sbx-{os.getpid()}-{next(_counter)}"
    dirs: dict[str, Path] = {}
    group = None
    try:
        for controller, parent in found.parents.items():
            dirs[controller] = parent / name
            dirs[controller].mkdir()
            _write_limits(found.version, controller, dirs[controller], limits)
        group = Cgroup(found, dirs)
        yield group
    finally:
        if group is not None:
            group.remove()
        else:
            for path in dirs.values():
                _kill_and_remove(path)


def _write_limits(version: int, controller: str, path: Path, limits: Limits) -> None:
    period = 100_000
    quota = str(max(1000, int(limits.cpus * period)))
    if version == 2:
        files = {"memory.max": str(limits.memory_bytes), "memory.swap.max": "0",
                 "pids.max": str(limits.pids), "cpu.max": f"{quota} {period}"}
    else:
        files = {
            "memory": {"memory.limit_in_bytes": str(limits.memory_bytes),
                       "memory.memsw.limit_in_bytes": str(limits.memory_bytes)},
            "pids": {"pids.max": str(limits.pids)},
            "cpu": {"cpu.cfs_period_us": str(period), "cpu.cfs_quota_us": quota},
        }[controller]
    for name, value in files.items():
        target = path / name
        if target.exists():  # memory.swap.max / memsw exist only with swap accounting
            target.write_text(value)


def _kill_and_remove(path: Path) -> None:
    for _ in range(100):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:  # EBUSY: processes still in it
            if (path / "cgroup.kill").exists():
                with contextlib.suppress(OSError):
                    (path / "cgroup.kill").write_text("1")
            else:
                with contextlib.suppress(OSError, ValueError):
                    for pid in (path / "cgroup.procs").read_text().split():
                        os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.01)
    log.warning("could not remove the sandbox cgroup %s", path)


def _own_paths() -> dict[str, str]:
    """controller -> this process's cgroup path ("" for v2)."""
    paths = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _auto_v2() -> Backend | None:
    own = _own_paths().get("")
    for mount in (ROOT, ROOT / "unified"):
        if own is not None and (mount / "cgroup.controllers").exists():
            found = _v2(mount / own.lstrip("/") / "ponder")
            if found:
                return found
    return None


def _v2(parent: Path) -> Backend | None:
    try:
        parent.mkdir(exist_ok=True)
        available = (parent / "cgroup.controllers").read_text().split()
        if not {"memory", "pids"} <= set(available):
            above = parent.parent / "cgroup.subtree_control"
            above.write_text(" ".join(f"+{c}" for c in ("memory", "pids", "cpu") if c in _read_words(parent.parent / "cgroup.controllers")))
            available = (parent / "cgroup.controllers").read_text().split()
        if not {"memory", "pids"} <= set(available):
            return None
        (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in ("memory", "pids", "cpu") if c in available))
    except OSError as exc:
        log.debug("cgroup v2 at %s is not usable: %s", parent, exc)
        return None
    return _tested(Backend(2, {"unified": parent}))


def _v1() -> Backend | None:
    own = _own_paths()
    mounts: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ")
        if len(fields) == 2 and fields[1].startswith("cgroup "):
            options = fields[1].split()[-1].split(",")
            for controller in ("memory", "pids", "cpu"):
                if controller in options and controller in own:
                    mounts[controller] = Path(fields[0].split()[4]) / own[controller].lstrip("/") / "ponder"
    if not {"memory", "pids"} <= set(mounts):
        return None
    try:
        for parent in mounts.values():
            parent.mkdir(exist_ok=True)
    except OSError as exc:
        log.debug("cgroup v1 is not usable: %s", exc)
        return None
    return _tested(Backend(1, mounts))


def _tested(found: Backend) -> Backend | None:
    """`found` if a cgroup can be made, limited, joined (by a short-lived child) and removed."""
    _remove_stale(found)
    try:
        with sandbox_cgroup(found, Limits(64 << 20, 8, 1.0)) as group:
            assert group is not None
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    for fd in group.fds:
                        os.write(fd, b"0")
                    code = 0
                finally:
                    os._exit(code)
            if os.waitpid(pid, 0)[1] != 0:
                raise OSError("a process could not join the cgroup")
    except OSError as exc:
        log.debug("cgroup v%d is not usable: %s", found.version, exc)
        return None
    return found


def _remove_stale(found: Backend) -> None:
    """Removes the cgroups of worker processes that died mid-call (``sbx-<pid>-<n>``)."""
    for parent in found.parents.values():
        for path in parent.glob("sbx-*-*"):
            pid = path.name.split("-")[1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                _kill_and_remove(path)


def _read_words(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []
