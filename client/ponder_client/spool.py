"""The local spool: what was logged, on disk, until the server has it.

One directory per run holds append-only JSONL segments (`seg-00000001.jsonl`, ...) and
`acked`, the position (segment, byte offset) up to which the server has accepted
everything. The caller's thread appends whole lines with one `write` (they survive a
crash of the process at once, being in the kernel); the sender `fsync`s them before it
sends them, so nothing is acknowledged that is not durable. A new process never appends
to an old segment (its last line may be torn); it starts a new one, and the sender
replays the old ones from `acked` first. The server's idempotency makes replays safe.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from ponder_client.errors import PonderError, SpoolLockedError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one process per run is then up to the caller
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("ponder_client")

SEGMENT_BYTES = 64 * 1024 * 1024
READ_BYTES = 4 * 1024 * 1024


class Position(NamedTuple):
    """A place in the spool: a segment number and a byte offset in it (ordered as a tuple)."""

    segment: int
    offset: int


class Record(NamedTuple):
    """One spool line (without its newline), the position just after it, and whether an
    earlier process wrote it."""

    raw: bytes
    end: Position
    replayed: bool


def segment_path(directory: Path, number: int) -> Path:
    return directory / f"seg-{number:08d}.jsonl"


def segment_numbers(directory: Path) -> list[int]:
    numbers = []
    for path in directory.glob("seg-*.jsonl"):
        with contextlib.suppress(ValueError):
            numbers.append(int(path.stem[4:]))
    return sorted(numbers)


def read_acked(directory: Path) -> Position:
    try:
        segment, offset = (directory / "acked").read_text().split()
        return Position(int(segment), int(offset))
    except (OSError, ValueError):
        return Position(0, 0)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Spool:
    """The writing side (any thread) and the bookkeeping of what was acknowledged."""

    def __init__(self, directory: str | Path, *, segment_bytes: int = SEGMENT_BYTES, fsync_every_append: bool = False):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock(self.directory)
        self._segment_bytes = segment_bytes
        self._fsync_every_append = fsync_every_append
        self._cond = threading.Condition()
        self.acked = read_acked(self.directory)
        self.first_live_segment = max([*segment_numbers(self.directory), self.acked.segment]) + 1
        self._segment = self.first_live_segment
        self._fd = self._open_segment(self._segment)
        self._offset = 0
        self._synced = 0
        self._closed = False

    def _open_segment(self, number: int) -> int:
        return os.open(segment_path(self.directory, number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def append(self, data: bytes) -> None:
        """Append whole lines (the caller's thread; one write, no fsync unless asked)."""
        with self._cond:
            if self._closed:
                raise PonderError("this run's client is closed; nothing more can be logged")
            _write_all(self._fd, data)
            self._offset += len(data)
            if self._fsync_every_append:
                os.fsync(self._fd)
                self._synced = self._offset
            if self._offset >= self._segment_bytes:
                self._rotate()
            self._cond.notify_all()

    def _rotate(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)
        self._segment += 1
        self._fd = self._open_segment(self._segment)
        self._offset = self._synced = 0

    def written(self) -> Position:
        with self._cond:
            return Position(self._segment, self._offset)

    def wait_for_data(self, after: Position, timeout_s: float) -> None:
        """Block until something was written after `after`, `wake()` or the timeout."""
        with self._cond:
            self._cond.wait_for(lambda: Position(self._segment, self._offset) > after or self._closed, timeout_s)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def sync(self, upto: Position) -> None:
        """Make everything up to `upto` durable (old segments were synced when rotated)."""
        with self._cond:
            if upto.segment != self._segment or upto.offset <= self._synced or self._closed:
                return
            fd, target = os.dup(self._fd), self._offset
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        with self._cond:
            if upto.segment == self._segment:
                self._synced = max(self._synced, target)

    def ack(self, position: Position) -> None:
        """The server has everything up to `position`: record it, drop finished segments."""
        tmp = self.directory / "acked.tmp"
        tmp.write_text(f"{position.segment} {position.offset}\n")
        os.replace(tmp, self.directory / "acked")
        for number in segment_numbers(self.directory):
            if number < position.segment:
                segment_path(self.directory, number).unlink(missing_ok=True)
        with self._cond:
            self.acked = position
            self._cond.notify_all()

    def wait_acked(self, target: Position, deadline: float | None) -> bool:
        """Block until the server has everything up to `target` or the deadline passes."""
        with self._cond:
            while self.acked < target:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(0.2 if left is None else min(left, 0.2))
            return True

    def pending(self) -> dict[str, int]:
        """Records on disk that the server has not acknowledged, by kind (r, m, c, f)."""
        counts: dict[str, int] = {}
        for record in iter_records(self.directory, self.acked):
            kind = record.raw[6:7].decode("ascii", "replace")
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    def close(self) -> None:
        """Stop writing: sync and close the segment, release the directory."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            os.fsync(self._fd)
            os.close(self._fd)
            self._cond.notify_all()
        _unlock(self._lock_fd)

    def remove_if_drained(self) -> bool:
        """After close(): delete the spool when nothing is pending (a `rejected.jsonl` stays)."""
        if self.pending():
            return False
        for path in self.directory.glob("seg-*.jsonl"):
            path.unlink(missing_ok=True)
        for name in ("acked", "lock", "meta.json"):
            (self.directory / name).unlink(missing_ok=True)
        if not (self.directory / "rejected.jsonl").exists():
            shutil.rmtree(self.directory, ignore_errors=True)
        return True

    def reject(self, raw_lines: list[bytes], detail: str) -> None:
        """Keep records the server refused, with its reason, in `rejected.jsonl`."""
        error = json.dumps(detail).encode()
        with open(self.directory / "rejected.jsonl", "ab") as out:
            for raw in raw_lines:
                out.write(b'{"error":' + error + b',"record":' + raw + b"}\n")


def iter_records(directory: Path, start: Position, limit: Position | None = None) -> Iterator[Record]:
    """Complete lines after `start` (up to `limit` in its segment; a torn last line of an
    older segment is skipped), for counting and tests. The sender uses `SpoolReader`."""
    reader = SpoolReader(directory, start, live_segment=limit.segment if limit else 1 << 62)
    while True:
        batch = reader.read(limit or Position(1 << 62, 0))
        if not batch:
            return
        yield from batch


class SpoolReader:
    """Reads complete lines from a position on: older segments to their end, the live
    segment up to what the writer has published (a line is never read half-written)."""

    def __init__(self, directory: Path, start: Position, *, live_segment: int):
        self.directory = directory
        self.position = start
        self.live_segment = live_segment

    def read(self, written: Position, max_bytes: int = READ_BYTES) -> list[Record]:
        """The next complete lines (at least one when there are any), about `max_bytes` of them."""
        while True:
            pos = self.position
            path = segment_path(self.directory, pos.segment)
            end = written.offset if pos.segment == written.segment else _size(path)
            if pos.offset < end:
                records = self._lines(path, pos, end, max_bytes)
                if records:
                    return records
                if pos.segment == written.segment:
                    return []
                log.warning("ponder: skipping a torn last line in %s (a crash while writing)", path)
            elif pos.segment >= written.segment:
                return []
            following = [n for n in segment_numbers(self.directory) if n > pos.segment]
            next_segment = following[0] if following else written.segment
            if next_segment <= pos.segment:
                return []
            self.position = Position(next_segment, 0)

    def _lines(self, path: Path, pos: Position, end: int, max_bytes: int) -> list[Record]:
        with open(path, "rb") as f:
            f.seek(pos.offset)
            data = f.read(min(end - pos.offset, max_bytes))
            while b"\n" not in data and pos.offset + len(data) < end:  # one line longer than max_bytes
                data += f.read(min(end - pos.offset - len(data), max_bytes))
        stop = data.rfind(b"\n")
        if stop < 0:
            return []
        replayed = pos.segment < self.live_segment
        records, start = [], 0
        for raw in data[:stop].split(b"\n"):
            start += len(raw) + 1
            records.append(Record(raw, Position(pos.segment, pos.offset + start), replayed))
        self.position = Position(pos.segment, pos.offset + stop + 1)
        return records


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _lock(directory: Path) -> int | None:
    """An advisory lock on the directory; the kernel releases it when the process dies."""
    fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    if fcntl is None:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise SpoolLockedError(f"the spool {directory} is in use by another live process logging to this run") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing releases the flock
