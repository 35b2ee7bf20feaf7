"""The workers page: workers alive in Redis (their heartbeat) and the runs they hold."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from webapp.runs.models import Run, Status
from workers import heartbeat


def workers_overview() -> list[dict[str, Any]]:
    workers = heartbeat.alive(settings.REDIS_URL)
    running = Run.objects.filter(status=Status.RUNNING, worker__in=[w["name"] for w in workers])
    held: dict[str, list[int]] = {}
    for run_id, worker in running.values_list("pk", "worker"):
        held.setdefault(worker, []).append(run_id)
    for worker in workers:
        worker["active"] = [{"run_id": run_id} for run_id in held.get(worker["name"], [])]
    return workers
