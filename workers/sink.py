"""The engine's Sink, implemented on PostgreSQL and Channels (the worker side).

Rollouts and metric points are buffered and written in batches (COPY / one upsert);
each batch is announced to the run's websocket group after it commits. Token streams
are ephemeral: coalesced to a few frames a second and never stored.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from django.db import InterfaceError, OperationalError, connection, transaction

from engine.events import CheckpointRecord, ForwardingSink, RolloutRecord, Sink
from webapp import broadcast
from webapp.compare.models import ComparisonEntry
from webapp.compare.services import comparison_samples_store
from webapp.ingest import store
from webapp.runs import services
from webapp.runs.models import Run

log = logging.getLogger(__name__)
DB_GONE = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)
FLUSH_ROLLOUTS = 512
FLUSH_SECONDS = 1.0
TOKEN_FRAME_SECONDS = 0.1
STOP_POLL_SECONDS = 1.0


@dataclass
class _Stream:
    step: int
    prompt: str
    pending: str = ""
    sent_prompt: bool = False


@dataclass
class DbSink:
    """With `task_id`, every write happens only while that task holds the run's lease
    (the run row locked for the write): a task that lost the run raises LeaseLost instead
    of writing. `lease` (a workers.leases.LeaseKeeper) makes `should_stop` true once the
    background renewal finds the run gone, `hand_back` once the worker got SIGTERM."""

    run: Run
    log_path: Path | None = None
    task_id: str | None = None
    lease: Any = None
    hand_back: Any = None  # a workers.leases.HandBack: SIGTERM stops the stage too
    _rollouts: list[store.RolloutIn] = field(default_factory=list)
    _metrics: list[tuple[int, str, float]] = field(default_factory=list)
    _streams: dict[str, _Stream] = field(default_factory=dict)
    _last_flush: float = field(default_factory=time.monotonic)
    _last_tokens: float = 0.0
    _last_stop_poll: float = 0.0
    _stop: bool = False
    _checkpoint_id: int | None = None

    # -- data ---------------------------------------------------------------------
    def metrics(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self._metrics.append((step, name, float(value)))
        self._maybe_flush()

    def rollouts(self, records: list[RolloutRecord]) -> None:
        self._rollouts.extend(_rollout_in(r, self._checkpoint_id) for r in records)
        self._maybe_flush()

    def checkpoint(self, record: CheckpointRecord) -> None:
        self.flush()

        def write() -> Any:
            with self._holding():
                return services.checkpoint_record(run=self.run, step=record.step, path=record.path,
                                                  summary=record.summary)

        self._checkpoint_id = with_db_retry(write).pk

    # -- live only --------------------------------------------------------------------
    def tokens(self, stream_id: str, text: str, *, step: int, prompt: str, done: bool = False) -> None:
        stream = self._streams.setdefault(stream_id, _Stream(step=step, prompt=prompt))
        stream.pending += text
        now = time.monotonic()
        if done or now - self._last_tokens >= TOKEN_FRAME_SECONDS:
            self._send_tokens(final=done and stream_id)
            self._last_tokens = now

    def _send_tokens(self, final: str | bool = False) -> None:
        deltas = []
        for sid, stream in self._streams.items():
            if not stream.pending and sid != final:
                continue
            delta = {"stream": sid, "step": stream.step, "text": stream.pending, "done": sid == final}
            if not stream.sent_prompt:
                delta["prompt"] = stream.prompt
                stream.sent_prompt = True
            deltas.append(delta)
            stream.pending = ""
        if final:
            self._streams.pop(str(final), None)
        if deltas:
            broadcast.send_now(self.run.pk, {"type": "tokens", "deltas": deltas})

    def progress(self, step: int, total: int, *, eta_s: float | None = None) -> None:
        self.flush()
        self._stop = with_db_retry(lambda: services.run_progress(
            run_id=self.run.pk, step=step, total=total, eta_s=eta_s, task_id=self.task_id)) or self._stop
        self._last_stop_poll = time.monotonic()

    def log(self, line: str) -> None:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(line.rstrip("\n") + "\n")
        broadcast.send_now(self.run.pk, {"type": "log", "line": line[:2000]})

    def should_stop(self) -> bool:
        if (self.lease is not None and self.lease.lost) or (self.hand_back is not None and self.hand_back.requested):
            return True
        now = time.monotonic()
        if not self._stop and now - self._last_stop_poll >= STOP_POLL_SECONDS:
            self._stop = with_db_retry(Run.objects.filter(pk=self.run.pk, stop_requested=True).exists)
            self._last_stop_poll = now
        return self._stop

    # -- batching -----------------------------------------------------------------------
    def _maybe_flush(self) -> None:
        if len(self._rollouts) >= FLUSH_ROLLOUTS or time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self._rollouts or self._metrics:
            with_db_retry(self._write)
            self._rollouts, self._metrics = [], []  # only once they are stored
        self._last_flush = time.monotonic()

    def _write(self) -> None:
        with self._holding():
            for i in range(0, len(self._rollouts), 5000):
                store.rollouts_store(run=self.run, rollouts=self._rollouts[i:i + 5000])
            if self._metrics:
                store.metrics_store(run=self.run, points=self._metrics)

    @contextlib.contextmanager
    def _holding(self) -> Iterator[None]:
        """One transaction for a write, with the run row locked while this task holds it, so
        a reaper cannot requeue the run half-way through the write."""
        with transaction.atomic():
            if self.task_id is not None and not Run.objects.select_for_update().filter(
                    services.held(run_id=self.run.pk, task_id=self.task_id)).exists():
                raise services.LeaseLost(f"run {self.run.pk} is no longer held by task {self.task_id}")
            yield

    def close(self) -> None:
        self.flush()
        self._send_tokens()


DB_RETRY_SECONDS = 120  # how long a write waits for PostgreSQL to come back before the run fails
T = TypeVar("T")


def with_db_retry(write: Callable[[], T]) -> T:
    """`write()`, tried again on a fresh connection while PostgreSQL is unreachable (a
    restart, a killed connection), for up to DB_RETRY_SECONDS: the stage waits instead of
    failing, and nothing it reported is lost."""
    deadline = time.monotonic() + DB_RETRY_SECONDS
    for attempt in itertools.count():
        try:
            return write()
        except DB_GONE as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("database unavailable (%s); retrying", str(exc).strip()[:200])
            connection.close()
            time.sleep(min(0.5 * 2**attempt, 5.0))
    raise AssertionError("unreachable")


def _clean_text(text: str) -> str:
    return text.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold NUL; model output may


def _rollout_in(r: RolloutRecord, checkpoint_id: int | None) -> store.RolloutIn:
    rewards = {k: (float(v) if math.isfinite(v) else 0.0) for k, v in r.rewards.items()}
    return store.RolloutIn(
        step=r.step, prompt=_clean_text(r.prompt), completion=_clean_text(r.completion), rewards=rewards,
        sample_index=r.sample_index, reference=_clean_text(r.reference), metadata=r.metadata,
        reward=r.reward if math.isfinite(r.reward) else 0.0, reasoning=_clean_text(r.reasoning),
        final_answer=_clean_text(r.answer), token_count=r.token_count, finish_reason=r.finish_reason,
        checkpoint_id=checkpoint_id,
    )


class ComparisonColumnSink(ForwardingSink):
    """The sink of an eval run that samples one checkpoint of a comparison: everything
    goes to the run's own DbSink, and its samples are stored as the comparison's too."""

    def __init__(self, inner: DbSink) -> None:
        super().__init__(inner)
        self.run = inner.run

    def rollouts(self, records: list[RolloutRecord]) -> None:
        self.inner.rollouts(records)
        comparison_samples_store(run=self.run, records=records)


def stage_sink(sink: DbSink) -> Sink:
    """The sink a run's stage reports to: its DbSink, wrapped for a comparison's column."""
    return ComparisonColumnSink(sink) if ComparisonEntry.objects.filter(run=sink.run).exists() else sink
