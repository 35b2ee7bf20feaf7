"""The background thread that moves spooled records to the server.

It reads the spool from the acknowledged position on, cuts it into windows (up to 5,000
rollouts, 100,000 metric points and a body-size cap; a `finish` record travels alone,
last), syncs the window to disk, sends it, and only then advances `acked`. Transient
failures are retried for as long as it takes; a refusal (4xx) sets the refused records
aside in `rejected.jsonl` and is kept for the caller to see.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ponder_client import records as rec
from ponder_client.errors import PonderAPIError
from ponder_client.http import Stopped, Transport
from ponder_client.spool import Position, Record, Spool, SpoolReader

log = logging.getLogger("ponder_client")

MAX_ROLLOUTS = 5000
MAX_POINTS = 100_000
MAX_BODY_BYTES = 32 * 1024 * 1024
_INDEX = re.compile(r"^(rollouts|points)\[(\d+)\]")


@dataclass
class Stats:
    """What the sender has done so far (read by the caller's thread for the report)."""

    rollouts_sent: int = 0
    rollouts_created: int = 0
    metric_points_sent: int = 0
    checkpoints_sent: int = 0
    requests: int = 0
    rejected: int = 0
    replayed: int = 0
    errors: list[PonderAPIError] = field(default_factory=list)


@dataclass
class Window:
    """Consecutive records sent together; `end` is acknowledged when all were sent."""

    records: list[Record]

    @property
    def end(self) -> Position:
        return self.records[-1].end

    def of_kind(self, kind: bytes) -> list[Record]:
        return [r for r in self.records if r.raw[6:7] == kind]


def _points_in(raw: bytes) -> int:
    return raw.count(b'{"step":')


class Sender(threading.Thread):
    """Sends the spool of one run; `stop` makes it give up at the next wait."""

    def __init__(self, run_id: int, spool: Spool, transport: Transport, *, linger_s: float = 0.05,
                 max_body_bytes: int = MAX_BODY_BYTES):
        super().__init__(name=f"ponder-sender-{run_id}", daemon=True)
        self.path = f"/api/v1/runs/{run_id}"
        self.spool = spool
        self.transport = transport
        self.linger_s = linger_s
        self.max_body_bytes = max_body_bytes
        self.stats = Stats()
        self.stop_event = threading.Event()
        self.crashed: BaseException | None = None
        self._reader = SpoolReader(spool.directory, spool.acked, live_segment=spool.first_live_segment)
        self._pending: deque[Record] = deque()

    def stop(self) -> None:
        self.stop_event.set()
        self.spool.wake()

    def run(self) -> None:
        try:
            self._loop()
        except Stopped:
            pass
        except BaseException as exc:  # keep it for the report: the data is still in the spool
            self.crashed = exc
            log.exception("ponder: the sender thread stopped; what is unsent stays in %s", self.spool.directory)

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            window = self._next_window()
            if window is None:
                self.spool.wait_for_data(self._reader.position, 0.5)
                if self.linger_s and not self.stop_event.is_set():
                    self.stop_event.wait(self.linger_s)  # let a burst gather into one request
                continue
            self.spool.sync(window.end)
            self._send(window)
            self.spool.ack(window.end)

    def _fill(self) -> None:
        if not self._pending:
            batch = self._reader.read(self.spool.written())
            self.stats.replayed += sum(r.replayed for r in batch)
            self._pending.extend(batch)

    def _next_window(self) -> Window | None:
        taken: list[Record] = []
        rollouts = points = size = 0
        while True:
            self._fill()
            if not self._pending:
                break
            record = self._pending[0]
            kind = record.raw[6:7]
            if kind == rec.FINISH:
                if not taken:
                    taken.append(self._pending.popleft())
                break
            if taken and (rollouts >= MAX_ROLLOUTS or size + len(record.raw) > self.max_body_bytes):
                break
            n_points = _points_in(record.raw) if kind == rec.METRICS else 0
            if taken and points + n_points > MAX_POINTS:
                break
            taken.append(self._pending.popleft())
            rollouts += kind == rec.ROLLOUT
            points += n_points
            size += len(record.raw)
        return Window(taken) if taken else None

    def _send(self, window: Window) -> None:
        self._send_rollouts(window.of_kind(rec.ROLLOUT))
        self._send_metrics(window.of_kind(rec.METRICS))
        for record in window.of_kind(rec.CHECKPOINT):
            if self._post("/checkpoints", rec.split_line(record.raw)[1], [record]) is not None:
                self.stats.checkpoints_sent += 1
        for record in window.of_kind(rec.FINISH):
            self._post("/finish", rec.split_line(record.raw)[1], [record])

    def _send_rollouts(self, records: list[Record]) -> None:
        while records:
            body = b'{"rollouts":[' + b",".join(rec.split_line(r.raw)[1] for r in records) + b"]}"
            result = self._post("/rollouts", body, records, retry_without="rollouts")
            if isinstance(result, list):  # the server named bad rollouts: send the others again
                records = result
                continue
            if result is not None:
                self.stats.rollouts_sent += len(records)
                self.stats.rollouts_created += int(result.get("created", 0))
            return

    def _send_metrics(self, records: list[Record]) -> None:
        if not records:
            return
        body = b'{"points":[' + b",".join(rec.split_line(r.raw)[1][1:-1] for r in records) + b"]}"
        if self._post("/metrics", body, records) is not None:
            self.stats.metric_points_sent += sum(_points_in(r.raw) for r in records)

    def _post(self, path: str, body: bytes, records: list[Record], retry_without: str = "") -> Any:
        """The response body; None when refused; for `retry_without`, the records left once
        those the server named were set aside."""
        self.stats.requests += 1
        try:
            return self.transport.request("POST", self.path + path, content=body, stop=self.stop_event) or {}
        except PonderAPIError as exc:
            named = _named_indices(exc, retry_without) if retry_without else set()
            if named and len(named) < len(records):
                self._reject([records[i] for i in sorted(named)], exc)
                return [r for i, r in enumerate(records) if i not in named]
            self._reject(records, exc)
            return None

    def _reject(self, records: list[Record], exc: PonderAPIError) -> None:
        self.stats.rejected += len(records)
        self.stats.errors.append(exc)
        self.spool.reject([r.raw for r in records], exc.detail)
        log.error("ponder: the server refused %d record(s) (set aside in %s): %s", len(records),
                  self.spool.directory / "rejected.jsonl", exc)


def _named_indices(exc: PonderAPIError, key: str) -> set[int]:
    """Indices of the `key` items a 422 names (`rollouts[3].step`); empty when it names none."""
    if exc.status != 422:
        return set()
    named = set()
    for error in exc.errors:
        match = _INDEX.match(str(error.get("field", "")) if isinstance(error, dict) else "")
        if match is None or match.group(1) != key:
            return set()  # something about the whole body: refuse it all
        named.add(int(match.group(2)))
    return named

