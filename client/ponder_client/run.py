"""`Run`: log rollouts, metrics and checkpoints of a run trained elsewhere into Ponder.

Logging calls check their arguments and append them to the run's spool on the caller's
thread (tens of microseconds); a background thread sends them (see `sender`).
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ponder_client import records
from ponder_client.errors import PonderError, PonderValidationError
from ponder_client.http import Backoff, Transport
from ponder_client.sender import Sender
from ponder_client.spool import Spool

log = logging.getLogger("ponder_client")


@dataclass(frozen=True)
class ClientOptions:
    """How the client talks to the server and keeps the spool."""

    timeout_s: float = 60.0  # one HTTP request
    backoff_base_s: float = 0.5  # first retry after 0.25-0.5 s, then doubling ...
    backoff_cap_s: float = 30.0  # ... up to this
    connect_deadline_s: float = 120.0  # create()/attach() give up after this long without the server
    linger_s: float = 0.05  # the sender waits this long after new data so a burst goes in one request
    validate: bool = True  # check rollouts against the server's rules on the caller's thread
    raise_errors: bool = True  # a refusal seen in the background raises at the next logging call
    fsync_every_call: bool = False  # fsync on the caller's thread too (durable against power loss; ~ms per call)
    exit_timeout_s: float = 30.0  # at interpreter exit, how long to keep sending what is unsent
    segment_bytes: int = 64 * 1024 * 1024


@dataclass
class FinishReport:
    """What `finish()` (or `close()`) did: sent, retried, refused, and left in the spool."""

    run_id: int
    status: str | None
    rollouts_sent: int = 0
    rollouts_created: int = 0
    metric_points_sent: int = 0
    checkpoints_sent: int = 0
    requests: int = 0
    retries: int = 0
    rejected: int = 0
    replayed: int = 0
    metrics_dropped: int = 0
    spooled: int = 0
    spool_dir: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when everything logged reached the server and none was refused."""
        return self.spooled == 0 and self.rejected == 0 and not self.errors

    def __str__(self) -> str:
        text = (f"ponder: run {self.run_id} {self.status or 'closed'}: {self.rollouts_sent} rollouts sent "
                f"({self.rollouts_created} new), {self.metric_points_sent} metric points, "
                f"{self.checkpoints_sent} checkpoints; {self.requests} requests, {self.retries} retries, "
                f"{self.replayed} replayed, {self.rejected} rejected, {self.spooled} still spooled")
        if self.spooled:
            text += f" in {self.spool_dir} (sent when the run is attached again, or by `python -m ponder_client replay`)"
        if self.errors:
            text += "; errors: " + " | ".join(self.errors[:5])
        return text


def _setting(value: str | None, env: str, what: str) -> str:
    value = value or os.environ.get(env, "")
    if not value:
        raise PonderError(f"no {what}: pass it or set {env}")
    return value


def default_spool_root() -> Path:
    """$PONDER_SPOOL_DIR, else $XDG_CACHE_HOME/ponder/spool, else ~/.cache/ponder/spool."""
    if os.environ.get("PONDER_SPOOL_DIR"):
        return Path(os.environ["PONDER_SPOOL_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "ponder" / "spool"


def server_key(base_url: str) -> str:
    """A folder name per server, so run 7 of one server never mixes with run 7 of another."""
    parts = urlsplit(base_url)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{parts.hostname}_{parts.port or ''}{parts.path}").strip("_")


def run_spool_dir(base_url: str, run_id: int, spool_dir: str | Path | None) -> Path:
    return Path(spool_dir or default_spool_root()) / server_key(base_url) / str(run_id)


class Run:
    """A Ponder run of stage `external`. Make one with `Run.create` or `Run.attach`."""

    def __init__(self, data: Mapping[str, Any], transport: Transport, spool_dir: Path, options: ClientOptions):
        self.id: int = int(data["id"])
        self.data = dict(data)
        self.options = options
        self._transport = transport
        self._spool = Spool(spool_dir, segment_bytes=options.segment_bytes,
                            fsync_every_append=options.fsync_every_call)
        self._sender = Sender(self.id, self._spool, transport, linger_s=options.linger_s)
        self._sender.start()
        self._errors_raised = 0
        self._metrics_dropped = 0
        self._report: FinishReport | None = None
        atexit.register(self._at_exit)

    # -- making one ---------------------------------------------------------------------------

    @classmethod
    def create(cls, name: str, *, project: str | None = None, config: Mapping[str, Any] | None = None,
               base_url: str | None = None, token: str | None = None, spool_dir: str | Path | None = None,
               options: ClientOptions | None = None) -> Run:
        """Create a run of stage `external` (PONDER_URL / PONDER_TOKEN by default)."""
        options = options or ClientOptions()
        transport = _transport(base_url, token, options)
        body: dict[str, Any] = {"name": name, "stage": "external", "config": dict(config or {})}
        if project is not None:
            body["project"] = project
        try:
            content = records.encode(body)
        except (TypeError, ValueError) as exc:
            raise PonderValidationError(f"config: must be JSON without NaN or infinity ({exc})") from None
        data = _call(transport, "POST", "/api/v1/runs", content, options)
        return cls(data, transport, run_spool_dir(transport.base_url, int(data["id"]), spool_dir), options)

    @classmethod
    def attach(cls, run_id: int, *, base_url: str | None = None, token: str | None = None,
               spool_dir: str | Path | None = None, options: ClientOptions | None = None) -> Run:
        """Continue logging into an existing run; what an earlier process left unsent is replayed first."""
        options = options or ClientOptions()
        transport = _transport(base_url, token, options)
        data = _call(transport, "GET", f"/api/v1/runs/{int(run_id)}", None, options)
        return cls(data, transport, run_spool_dir(transport.base_url, int(run_id), spool_dir), options)

    @property
    def url(self) -> str:
        """The run's page in the browser."""
        return self._transport.base_url + str(self.data.get("url", f"/runs/{self.id}/"))

    @property
    def spool_dir(self) -> Path:
        return self._spool.directory

    # -- logging (the caller's thread) --------------------------------------------------------

    def log_rollouts(self, rollouts: Sequence[Mapping[str, Any]]) -> None:
        """Log completions: each `{step, prompt, completion, rewards, sample_index?, answer?, metadata?}`.

        Raises `PonderValidationError` (naming `rollouts[i].field`) before spooling anything."""
        self._raise_background_error()
        if self.options.validate:
            lines = records.rollout_lines(rollouts)
        else:
            lines = [records.line(records.ROLLOUT, r) for r in rollouts]
        if lines:
            self._spool.append(b"".join(lines))

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Log scalars at a step; NaN and infinite values are dropped (and counted)."""
        self._raise_background_error()
        points, dropped = records.metric_points(step, metrics)
        if dropped:
            if not self._metrics_dropped:
                log.warning("ponder: dropping non-finite metric values (%s at step %s)", ", ".join(dropped), step)
            self._metrics_dropped += len(dropped)
        if points:
            self._spool.append(records.line(records.METRICS, points))

    def log_checkpoint(self, step: int, path: str, summary: Mapping[str, Any] | None = None) -> None:
        """Record a checkpoint the trainer saved (its path as the trainer sees it)."""
        self._raise_background_error()
        self._spool.append(records.line(records.CHECKPOINT, records.checkpoint_payload(step, path, summary)))

    def _raise_background_error(self) -> None:
        errors = self._sender.stats.errors
        if self.options.raise_errors and len(errors) > self._errors_raised:
            self._errors_raised = len(errors)
            raise errors[-1]

    # -- ending -------------------------------------------------------------------------------

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until the server has everything logged so far; False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        return self._spool.wait_acked(self._spool.written(), deadline)

    def finish(self, status: str = "succeeded", summary: Mapping[str, Any] | None = None,
               timeout_s: float | None = 600.0) -> FinishReport:
        """Send everything, mark the run `status` (succeeded, failed, cancelled) and report.

        After `timeout_s` without the server, what is unsent stays spooled (the report says
        where) and goes out when the run is attached again."""
        if self._report is not None:
            return self._report
        payload = {"status": status, "summary": dict(summary or {})}
        self._spool.append(records.line(records.FINISH, payload))
        return self._end(status, timeout_s)

    def close(self, timeout_s: float | None = 60.0) -> FinishReport:
        """Send what is logged and stop, leaving the run's status as it is."""
        if self._report is not None:
            return self._report
        return self._end(None, timeout_s)

    def _end(self, status: str | None, timeout_s: float | None, *, quiet: bool = False) -> FinishReport:
        self.flush(timeout_s)
        self._sender.stop()
        self._sender.join(timeout=5.0)
        self._spool.close()
        self._report = self._make_report(status)
        atexit.unregister(self._at_exit)
        self._transport.close()
        if not self._report.spooled:
            self._spool.remove_if_drained()
        if not (quiet and self._report.ok):
            (log.info if self._report.ok else log.warning)("%s", self._report)
        return self._report

    def _make_report(self, status: str | None) -> FinishReport:
        stats = self._sender.stats
        errors = [str(e) for e in stats.errors]
        if self._sender.crashed is not None:
            errors.append(f"sender stopped: {self._sender.crashed!r}")
        return FinishReport(
            run_id=self.id, status=status, rollouts_sent=stats.rollouts_sent, rollouts_created=stats.rollouts_created,
            metric_points_sent=stats.metric_points_sent, checkpoints_sent=stats.checkpoints_sent,
            requests=stats.requests, retries=self._transport.retries, rejected=stats.rejected,
            replayed=stats.replayed, metrics_dropped=self._metrics_dropped,
            spooled=sum(self._spool.pending().values()), spool_dir=str(self._spool.directory), errors=errors,
        )

    def _at_exit(self) -> None:
        if self._report is None:
            self._end(None, self.options.exit_timeout_s, quiet=True)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.finish("failed" if exc_type is not None else "succeeded",
                    {"error": repr(exc)[:2000]} if exc is not None else None)

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.data.get('name', '')!r}>"


def _transport(base_url: str | None, token: str | None, options: ClientOptions) -> Transport:
    return Transport(_setting(base_url, "PONDER_URL", "server URL"), _setting(token, "PONDER_TOKEN", "API token"),
                     timeout_s=options.timeout_s, backoff=Backoff(options.backoff_base_s, options.backoff_cap_s))


def _call(transport: Transport, method: str, path: str, content: bytes | None, options: ClientOptions) -> Any:
    try:
        return transport.request(method, path, content=content,
                                 deadline=time.monotonic() + options.connect_deadline_s)
    except PonderError:
        transport.close()
        raise
