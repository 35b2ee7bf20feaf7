"""A real Celery worker process: tasks queued by views run there, and it shows on /workers/."""

import os
import socket
import time

import pytest
from django.urls import reverse

from webapp.runs.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_workers_page_lists_the_connected_worker(client, personas, celery_worker):
    client.force_login(personas.teammate)
    body = client.get(reverse("worker-list")).content.decode()
    assert "worker-" in body and "gpu" in body and "cpu" in body and "CPUs" in body


def test_a_worker_that_restarts_marks_its_lost_runs_resumable(personas, server_env, artifacts_dir):
    from tests import procs

    hostname = f"reaper-{os.getpid()}@{socket.gethostname()}"  # the name procs.start_worker gives
    run = Run.objects.create(project=personas.project, name="orphan", stage="grpo", status="running", worker=hostname)
    worker = procs.start_worker(server_env, artifacts_dir / "logs", name="reaper")
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            run.refresh_from_db()
            if run.status == "failed":
                break
            time.sleep(0.2)
        assert run.status == "failed" and "Resume continues from the last checkpoint" in run.error
    finally:
        worker.stop()
