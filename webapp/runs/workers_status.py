"""What the connected Celery workers are doing, asked over the broker."""

from __future__ import annotations

from typing import Any

from workers.celery import app


def workers_overview(timeout: float = 2.0) -> list[dict[str, Any]]:
    inspect = app.control.inspect(timeout=timeout)
    queues = inspect.active_queues() or {}
    active = inspect.active() or {}
    stats = inspect.stats() or {}
    devices: dict[str, Any] = {}
    for reply in app.control.broadcast("ponder_devices", reply=True, timeout=timeout) or []:
        devices.update(reply)
    names = sorted(set(queues) | set(active) | set(stats))
    return [
        {
            "name": name,
            "queues": sorted(q["name"] for q in queues.get(name, [])),
            "active": [_task(t) for t in active.get(name, [])],
            "concurrency": stats.get(name, {}).get("pool", {}).get("max-concurrency"),
            "devices": devices.get(name, {}),
        }
        for name in names
    ]


def _task(task: dict[str, Any]) -> dict[str, Any]:
    args = task.get("args") or []
    return {"id": task.get("id"), "name": task.get("name"), "run_id": args[0] if args else None}
