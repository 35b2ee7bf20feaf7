"""Each worker announces itself in Redis every few seconds (name, queues, devices), so the
workers page needs no broadcast round trip and shows only workers that are alive."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from typing import Any

import redis

from webapp.runs.workers_status import KEY_PREFIX, TTL_S

INTERVAL_S = 5.0


def gpu_report() -> list[dict[str, Any]]:
    """GPU memory from nvidia-smi, where there is one (no torch import in the main process)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name,memory.used,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        index, name, used, total = (part.strip() for part in line.split(","))
        gpus.append({"index": int(index), "name": name, "memory_used_mb": int(used), "memory_total_mb": int(total)})
    return gpus


def _beat(client: redis.Redis, info: dict[str, Any]) -> None:
    payload = {**info, "cpus": os.cpu_count() or 0, "gpus": gpu_report(), "seen_at": time.time()}
    client.set(KEY_PREFIX + info["name"], json.dumps(payload), ex=TTL_S)


def start(redis_url: str, info: dict[str, Any]) -> threading.Thread:
    client = redis.Redis.from_url(redis_url)

    def loop() -> None:
        while True:
            # If Redis is down the broker is too, and the worker says so itself.
            with contextlib.suppress(redis.RedisError):
                _beat(client, info)
            time.sleep(INTERVAL_S)

    thread = threading.Thread(target=loop, name="ponder-heartbeat", daemon=True)
    thread.start()
    return thread
