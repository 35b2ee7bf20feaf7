"""The pool of uids that privileged sandboxes drop to: one per concurrent sandbox, so
that RLIMIT_NPROC (counted per uid) keeps a fork bomb from starving its neighbours."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator


class UidPools:
    """Hands each concurrent privileged sandbox its own uid from a configured range."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy: set[int] = set()

    @contextlib.contextmanager
    def slot(self, first: int, count: int) -> Iterator[int]:
        uid = self.acquire(first, count)
        try:
            yield uid
        finally:
            self.release(uid)

    def acquire(self, first: int, count: int) -> int:
        # Start at a per-process offset: several worker processes then rarely share a uid.
        offset = os.getpid() % count
        order = [first + (offset + i) % count for i in range(count)]
        with self._cond:
            while True:
                for uid in order:
                    if uid not in self._busy:
                        self._busy.add(uid)
                        return uid
                self._cond.wait()

    def release(self, uid: int) -> None:
        with self._cond:
            self._busy.discard(uid)
            self._cond.notify()


UID_POOLS = UidPools()
