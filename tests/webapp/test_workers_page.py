"""The workers page from the heartbeats in Redis: queues, what each runs, GPU memory or "no GPU"."""

from __future__ import annotations

import json
import time

import pytest
import redis
from django.conf import settings
from django.urls import reverse

from webapp.runs.models import Run
from workers import heartbeat

pytestmark = pytest.mark.django_db


@pytest.fixture
def beats():
    """A CPU worker beating through the real heartbeat code, and a GPU worker's heartbeat
    as `heartbeat.gpu_report()` writes it from nvidia-smi (this machine has no GPU)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    heartbeat._beat(client, {"name": "cpu-1@host", "queues": ["cpu"], "concurrency": 2})
    gpu = {"name": "gpu-1@host", "queues": ["gpu"], "concurrency": 1, "cpus": 16, "seen_at": time.time(),
           "gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_used_mb": 1024, "memory_total_mb": 81559}]}
    client.set(heartbeat.KEY_PREFIX + gpu["name"], json.dumps(gpu), ex=heartbeat.TTL_S)
    yield
    client.delete(heartbeat.KEY_PREFIX + "cpu-1@host", heartbeat.KEY_PREFIX + "gpu-1@host")


def test_it_shows_queues_runs_and_gpu_memory(client, personas, beats):
    Run.objects.create(project=personas.project, name="busy grpo", stage="grpo", status="running", worker="gpu-1@host")
    Run.objects.create(project=personas.other_project, name="their run", stage="grpo", status="running",
                       worker="cpu-1@host")
    client.force_login(personas.teammate)
    body = client.get(reverse("worker-list")).content.decode()
    assert "gpu-1@host" in body and "cpu-1@host" in body
    assert "GPU 0 NVIDIA H100 80GB HBM3: 1024 / 81559 MB used" in body and "no GPU" in body
    assert "busy grpo" in body
    assert "their run" not in body and "a run in another project" in body


def test_a_run_whose_worker_went_silent_shows_when_it_will_be_requeued(client, personas):
    from datetime import timedelta

    from django.utils import timezone

    lease = settings.PONDER_LEASE_SECONDS
    Run.objects.create(project=personas.project, name="orphaned grpo", stage="grpo", status="running",
                       worker="gone@host", heartbeat_at=timezone.now() - timedelta(seconds=lease * 0.75))
    Run.objects.create(project=personas.project, name="healthy grpo", stage="grpo", status="running",
                       worker="alive@host", heartbeat_at=timezone.now())
    Run.objects.create(project=personas.other_project, name="their orphan", stage="grpo", status="running",
                       worker="gone@host", heartbeat_at=timezone.now() - timedelta(seconds=lease * 2))
    client.force_login(personas.teammate)
    body = client.get(reverse("worker-list")).content.decode()
    lost = body.split('id="lost-runs"')[1]
    assert "orphaned grpo" in lost and "gone@host" in lost and "when its lease lapses" in lost
    assert "healthy grpo" not in lost and "their orphan" not in lost  # only what the viewer may see
