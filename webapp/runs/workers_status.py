"""The workers page: workers alive in Redis (their heartbeat) and the runs they hold."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from webapp.runs.models import Run, Status
from workers import heartbeat


def workers_overview() -> list[dict[str, Any]]:
    workers = heartbeat.alive(settings.REDIS_URL)
    running = Run.objects.filter(status=Status.RUNNING, worker__in=[w["name"] for w in workers])
    held: dict[str, list[dict[str, Any]]] = {}
    for run_id, worker, name in running.values_list("pk", "worker", "name"):
        held.setdefault(worker, []).append({"run_id": run_id, "name": name})
    for worker in workers:
        worker["active"] = held.get(worker["name"], [])
    return workers
