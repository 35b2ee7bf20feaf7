"""Events to browsers: sent to a run's Channels group only after the data commits.

Frames are serialised to JSON once here, so each consumer only forwards text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

# Keeps each channel-layer message small; a 5,000-row call becomes several frames.
ROLLOUTS_PER_FRAME = 250
# Completions longer than this are cut in the live stream (the API has the full text).
STREAM_TEXT_LIMIT = 20_000


def group_name(run_id: int) -> str:
    return f"run.{run_id}"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def send_now(run_id: int, frame: dict[str, Any]) -> None:
    """Publish immediately (for ephemeral events such as token streams)."""
    layer = get_channel_layer()
    if layer is None:
        return
    text = json.dumps(frame, ensure_ascii=False, default=str)
    async_to_sync(layer.group_send)(group_name(run_id), {"type": "run.event", "text": text})


def send_on_commit(run_id: int, frames: Iterable[dict[str, Any]]) -> None:
    """Publish after the current transaction commits (now, outside a transaction)."""
    frames = list(frames)
    if frames:
        transaction.on_commit(lambda: [send_now(run_id, f) for f in frames])


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
