"""Events to browsers: sent to a run's Channels group only after the data commits.

Frames are serialised to JSON once here, so each consumer only forwards text. Consumers
add their channel to a Redis set (`watchers`), so a run nobody watches costs no frames at all:
ingestion at thousands of rollouts a second skips the serialising entirely.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import math
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import redis
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)
# Keeps each channel-layer message small; a 5,000-row call becomes several frames.
ROLLOUTS_PER_FRAME = 250
# Completions longer than this are cut in the live stream (the API has the full text).
STREAM_TEXT_LIMIT = 20_000
Frames = Iterable[dict[str, Any]] | Callable[[], Iterable[dict[str, Any]]]
# Frame batches waiting for the channel layer before new ones are dropped.
MAX_PENDING_SENDS = 1000


def group_name(run_id: int) -> str:
    return f"run.{run_id}"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def watchers_key(run_id: int) -> str:
    return f"{settings.CHANNEL_LAYERS['default']['CONFIG'].get('prefix', 'ponder')}:watchers:{run_id}"


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def watched(run_id: int) -> bool:
    """True when at least one websocket is (or may be) subscribed to the run."""
    try:
        return _redis().scard(watchers_key(run_id)) > 0  # a set of channel names: never negative
    except redis.RedisError:
        return True  # unsure: send, the channel layer will say what is wrong


def _text(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


async def _send_all(run_id: int, frames: list[dict[str, Any]]) -> None:
    layer = get_channel_layer()
    for frame in frames:
        await layer.group_send(group_name(run_id), {"type": "run.event", "text": _text(frame)})


class _Sender:
    """One thread per process that owns an event loop and sends frames in the order they
    were handed over. A training step handing frames over does not wait for Redis, and
    the channel layer's connections live as long as the loop instead of one per call
    (`async_to_sync` from a plain thread starts a fresh loop, so a fresh connection, each
    time: that was most of what watching a run cost the trainer)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue[tuple[int, Frames]] = asyncio.Queue()
        self.pending = 0
        self.dropped = 0
        self.idle = threading.Condition()
        threading.Thread(target=self.loop.run_until_complete, args=(self._consume(),),
                         name="ponder-broadcast", daemon=True).start()

    async def _consume(self) -> None:
        while True:
            run_id, frames = await self.queue.get()
            try:
                # Asking who watches and building the frames happen here, off the caller's thread.
                if get_channel_layer() is not None and watched(run_id):
                    built = list(frames() if callable(frames) else frames)
                    if built:
                        await _send_all(run_id, built)
            except Exception as exc:  # noqa: BLE001 - a live view never takes the sender down
                # Frames are a live view of data already stored: when Redis is away they are
                # dropped (the pages read the database), never the data.
                log.warning("run %s: live frame(s) dropped: %s", run_id, exc)
            finally:
                with self.idle:
                    self.pending -= 1
                    self.idle.notify_all()

    def put(self, run_id: int, frames: Frames) -> None:
        with self.idle:
            if self.pending >= MAX_PENDING_SENDS:  # Redis is slow or away: drop, do not queue for ever
                self.dropped += 1
                if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                    log.warning("%d live frame batch(es) dropped: the channel layer is not keeping up", self.dropped)
                return
            self.pending += 1
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (run_id, frames))

    def flush(self, timeout: float) -> bool:
        with self.idle:
            return self.idle.wait_for(lambda: self.pending == 0, timeout)


_sender_lock = threading.Lock()
_the_sender: _Sender | None = None


def _sender() -> _Sender:
    """This process's sender (a forked child, such as a Celery pool process, starts its own)."""
    global _the_sender
    with _sender_lock:
        if _the_sender is None or _the_sender.pid != os.getpid():
            _the_sender = _Sender()
        return _the_sender


def flush(timeout: float = 5.0) -> bool:
    """Wait until every frame handed over has been sent (or dropped); False on timeout."""
    sender = _the_sender
    return True if sender is None or sender.pid != os.getpid() else sender.flush(timeout)


atexit.register(flush, 2.0)  # a CLI run's last frames still reach the page


def _deliver(run_id: int, frames: Frames) -> None:
    _sender().put(run_id, frames)


def send_now(run_id: int, *frames: dict[str, Any]) -> None:
    """Publish immediately (ephemeral events: token streams, progress)."""
    if frames:
        _deliver(run_id, list(frames))


def send_on_commit(run_id: int, frames: Frames) -> None:
    """Publish after the current transaction commits (now, outside a transaction).

    `frames` may be a callable, so that nothing is built when nobody watches; it is called
    on the sender's thread, so it must only read what it closes over (no queries)."""
    transaction.on_commit(lambda: _deliver(run_id, frames))


def rollout_frames(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Batched `rollouts` frames (CONTRACTS: websocket) from stored rollout dicts."""
    items = [_stream_view(r) for r in rows]
    if len(items) == 1:
        return [{"type": "rollout", "rollout": items[0]}]
    return [
        {"type": "rollouts", "rollouts": items[i:i + ROLLOUTS_PER_FRAME]}
        for i in range(0, len(items), ROLLOUTS_PER_FRAME)
    ]


def _stream_view(row: dict[str, Any]) -> dict[str, Any]:
    view = dict(row)
    for key in ("completion", "reasoning", "answer", "prompt"):
        text = view.get(key)
        if isinstance(text, str) and len(text) > STREAM_TEXT_LIMIT:
            view[key] = text[:STREAM_TEXT_LIMIT]
            view["truncated"] = True
    view["rewards"] = {k: _clean(v) for k, v in view.get("rewards", {}).items()}
    return view


def metric_frames(points: list[dict[str, Any]], chunk: int = 5000) -> list[dict[str, Any]]:
    clean = [{"step": p["step"], "name": p["name"], "value": _clean(p["value"])} for p in points]
    return [{"type": "metrics", "points": clean[i:i + chunk]} for i in range(0, len(clean), chunk)]
