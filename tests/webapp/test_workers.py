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


def test_a_worker_that_restarts_requeues_the_runs_it_lost_and_they_finish(personas, server_env, artifacts_dir):
    from tests import procs

    hostname = f"reaper-{os.getpid()}@{socket.gethostname()}"  # the name procs.start_worker gives
    run = Run.objects.create(project=personas.project, name="orphan", stage="pretrain", config={"steps": 3},
                             status="running", worker=hostname, celery_task_id="the-lost-task")
    worker = procs.start_worker(server_env, artifacts_dir / "logs", name="reaper")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            run.refresh_from_db()
            if run.status in ("succeeded", "failed"):
                break
            time.sleep(0.2)
        assert run.status == "succeeded", run.error
        assert run.requeues == 1 and run.celery_task_id != "the-lost-task"
    finally:
        worker.stop()
