"""The seccomp filter bubblewrap loads into every sandbox (``bwrap --seccomp FD``).

Built with libseccomp (through ``pyseccomp``) for the host's own architecture; a system
call of another ABI (i386 or x32 on an x86-64 host) kills the process. Everything is
allowed except what a graded program has no business doing, which fails with ``EPERM``:

- new namespaces: ``unshare`` and ``clone`` with any ``CLONE_NEW*`` flag, ``setns``;
  ``clone3`` passes its flags in memory a filter cannot read, so it fails with ``ENOSYS``
  and glibc falls back to ``clone``;
- mounts: ``mount``, ``umount2``, ``pivot_root``, the new mount API (``fsopen`` ...);
- reaching other processes or the kernel: ``ptrace``, ``process_vm_readv/writev``,
  ``bpf``, ``perf_event_open``, ``userfaultfd``, ``keyctl``, ``add_key``,
  ``request_key``, ``kexec_load``, ``init_module``, ``open_by_handle_at``, ``io_uring_*``.

>>> program = filter_program()
>>> program is None or len(program) % 8 == 0  # classic BPF: 8 bytes an instruction
True
"""

from __future__ import annotations

import errno
import logging
import tempfile
from functools import lru_cache

log = logging.getLogger(__name__)

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080  # unshare only: in clone() the low byte is the exit signal
NAMESPACE_FLAGS = (CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
                   CLONE_NEWPID, CLONE_NEWNET)

DENIED = (
    "setns", "mount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount", "fspick",
    "move_mount", "open_tree", "mount_setattr", "bpf", "keyctl", "add_key", "request_key",
    "ptrace", "process_vm_readv", "process_vm_writev", "userfaultfd", "perf_event_open",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "open_by_handle_at", "name_to_handle_at", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "lookup_dcookie", "quotactl", "acct", "swapon", "swapoff",
)


class SeccompUnavailable(RuntimeError):
    """libseccomp (or its Python binding) is missing here."""


@lru_cache(maxsize=1)
def filter_program() -> bytes | None:
    """The compiled classic-BPF program, or None (logged once) where libseccomp is
    missing."""
    try:
        return build()
    except SeccompUnavailable as exc:
        log.warning("sandbox without a seccomp filter: %s", exc)
        return None


def build_error() -> str:
    """Why `build` fails here ("" when it does not)."""
    try:
        build()
    except SeccompUnavailable as exc:
        return str(exc)
    return ""


def build() -> bytes:
    """Compiles the filter; raises `SeccompUnavailable` without libseccomp."""
    try:
        import pyseccomp as sc
    except (ImportError, OSError) as exc:  # OSError: libseccomp.so.2 not found
        raise SeccompUnavailable(f"{exc} (pip install pyseccomp; apt-get install libseccomp2)") from None
    deny = sc.ERRNO(errno.EPERM)
    f = sc.SyscallFilter(sc.ALLOW)
    f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    for name in DENIED:
        _rule(f, deny, name)
    _rule(f, sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in NAMESPACE_FLAGS + (CLONE_NEWTIME,):
        _rule(f, deny, "unshare", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    for flag in NAMESPACE_FLAGS:
        _rule(f, deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    with tempfile.TemporaryFile() as out:
        f.export_bpf(out)
        out.seek(0)
        return out.read()


def _rule(f: object, action: int, name: str, *args: object) -> None:
    try:
        f.add_rule(action, name, *args)  # type: ignore[attr-defined]
    except (OSError, ValueError, RuntimeError) as exc:  # a call this kernel/libseccomp lacks
        log.debug("seccomp: no rule for %s (%s)", name, exc)
