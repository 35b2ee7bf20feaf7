"""Math-Verify in long-lived helper processes, so a hung comparison can be killed.

Why a process: Math-Verify's timeouts use `signal.alarm`, which works only in a main
thread (Celery threads and test threads are not), and cannot interrupt a single long C
call. Each helper runs Math-Verify in its own main thread with its signal timeouts, and
the host kills the helper outright when it overruns `hard_timeout_s`.

The child side (``python -P this_file``) reads one JSON request per line on stdin,
``{"gold": str, "pred": str, "timeout": int}``, and answers ``{"ok": bool}`` or
``{"error": str}`` on its original stdout; anything else it prints goes to stderr.
"""

from __future__ import annotations

import json
import os
import queue
import select
import subprocess
import sys
import threading
from functools import lru_cache
from typing import Any, TextIO


class MathTimeout(TimeoutError):
    """A Math-Verify helper did not answer in time and was killed."""


class HelperCrashed(RuntimeError):
    """A Math-Verify helper died while answering (it is replaced on the next call)."""


# --- child side -----------------------------------------------------------------------


@lru_cache(maxsize=1024)
def _parse_gold(gold: str, timeout: int) -> list:
    from math_verify import parse

    # A bare reference ("[1,2)", "2\\sqrt{3}", "50\\%") parses reliably only as LaTeX in a box.
    delimited = any(mark in gold for mark in ("$", "\\(", "\\[", "\\boxed"))
    parsed = parse(gold if delimited else f"\\boxed{{{gold}}}", parsing_timeout=timeout)
    return parsed or parse(gold, parsing_timeout=timeout)


def _verify(gold: str, pred: str, timeout: int) -> bool:
    from math_verify import parse, verify

    gold_parsed = _parse_gold(gold, timeout)
    pred_parsed = parse(pred, parsing_timeout=timeout)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))


def _serve(requests: TextIO, replies: TextIO) -> None:
    replies.write('{"ready": true}\n')
    replies.flush()
    for line in requests:
        try:
            req = json.loads(line)
            reply: dict[str, Any] = {"ok": _verify(req["gold"], req["pred"], int(req["timeout"]))}
        except Exception as exc:  # garbage must answer, not kill the helper
            reply = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def _child_main() -> None:
    import logging
    import resource

    # Sympy can be talked into building astronomically large numbers: fail fast instead.
    limit = int(os.environ.get("PONDER_MATH_MEMORY_MB", "2048")) << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the protocol
    logging.disable(logging.WARNING)  # math-verify logs every timeout and parse failure
    import math_verify  # noqa: F401  (import before "ready": the host's clock starts then)

    _serve(sys.stdin, replies)


# --- host side ------------------------------------------------------------------------


class _Helper:
    """One helper process; not thread-safe (the pool hands it to one caller at a time)."""

    def __init__(self, start_timeout_s: float = 120.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-P", __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        try:
            self._read(start_timeout_s)  # {"ready": true} once Math-Verify is imported
        except BaseException as exc:
            self.close()
            raise RuntimeError(
                f"cannot start a Math-Verify helper ({exc}); is math-verify installed?"
            ) from exc

    def ask(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read(timeout_s)

    def _read(self, timeout_s: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if not ready:
            raise MathTimeout(f"Math-Verify gave no answer within {timeout_s:g} s")
        line = self.proc.stdout.readline()
        if not line:
            raise HelperCrashed("the Math-Verify helper process exited")
        return json.loads(line)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


class HelperPool:
    """Up to `size` helpers shared by all threads; a helper that overruns is killed and
    replaced lazily by the next call."""

    def __init__(self, size: int) -> None:
        self._idle: queue.LifoQueue[_Helper] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._all: list[_Helper] = []
        self._lock = threading.Lock()

    def verify(self, gold: str, pred: str, timeout_s: int, hard_timeout_s: float) -> bool:
        """Whether `pred` equals `gold` (both raw text for Math-Verify's `parse`).
        False when Math-Verify failed on the input. Raises `MathTimeout` when the helper
        overran and `HelperCrashed` when it died (both killed and replaced)."""
        with self._slots:
            helper = self._take()
            try:
                reply = helper.ask({"gold": gold, "pred": pred, "timeout": timeout_s}, hard_timeout_s)
            except BaseException:
                self._discard(helper)
                raise
            self._idle.put(helper)
        return bool(reply.get("ok", False))  # {"error": ...}: Math-Verify choked on garbage

    def close(self) -> None:
        with self._lock:
            helpers, self._all = self._all, []
        for helper in helpers:
            helper.close()

    def _take(self) -> _Helper:
        while True:
            try:
                helper = self._idle.get_nowait()
            except queue.Empty:
                helper = _Helper()
                with self._lock:
                    self._all.append(helper)
                return helper
            if helper.alive():
                return helper
            self._discard(helper)

    def _discard(self, helper: _Helper) -> None:
        helper.close()
        with self._lock:
            if helper in self._all:
                self._all.remove(helper)


if __name__ == "__main__":
    _child_main()
