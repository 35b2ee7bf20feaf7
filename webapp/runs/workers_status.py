"""The workers page: workers alive in Redis (the heartbeat `workers/heartbeat.py` writes
under `KEY_PREFIX`, expiring after `TTL_S`) and the runs they hold."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import redis
from django.conf import settings
from django.utils import timezone

from webapp.runs.models import Run, Status

KEY_PREFIX = "ponder:worker:"
TTL_S = 20  # a worker that stops beating disappears from the page after this


def alive(redis_url: str) -> list[dict[str, Any]]:
    """Every worker's last heartbeat, by name."""
    client = redis.Redis.from_url(redis_url)
    keys = sorted(client.scan_iter(match=KEY_PREFIX + "*", count=500))
    values = client.mget(keys) if keys else []
    return [json.loads(v) for v in values if v]


def workers_overview() -> list[dict[str, Any]]:
    workers = alive(settings.REDIS_URL)
    running = Run.objects.filter(status=Status.RUNNING, worker__in=[w["name"] for w in workers])
    held: dict[str, list[dict[str, Any]]] = {}
    for run_id, worker_name, name in running.values_list("pk", "worker", "name"):
        held.setdefault(worker_name, []).append({"run_id": run_id, "name": name})
    for worker in workers:
        worker["active"] = held.get(worker["name"], [])
    return workers


def lost_runs(visible: Any) -> list[dict[str, Any]]:
    """Running runs among `visible` whose worker is silent (no lease renewal for a quarter of
    a lease or more): how long, and when the reaper will requeue them."""
    now = timezone.now()
    lease = settings.PONDER_LEASE_SECONDS
    silent = visible.filter(status=Status.RUNNING, heartbeat_at__lt=now - timedelta(seconds=lease / 2))
    out = []
    for run_id, name, worker_name, beat in silent.exclude(stage="external").values_list(
            "pk", "name", "worker", "heartbeat_at").order_by("heartbeat_at")[:100]:
        gone = (now - beat).total_seconds()
        out.append({"run_id": run_id, "name": name, "worker": worker_name, "silent_s": int(gone),
                    "requeue_in_s": max(0, int(lease - gone))})
    return out
