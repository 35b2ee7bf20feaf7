"""The workers page: workers alive in Redis (the heartbeat `workers/heartbeat.py` writes
under `KEY_PREFIX`, expiring after `TTL_S`) and the runs they hold."""

from __future__ import annotations

import json
from typing import Any

import redis
from django.conf import settings

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
