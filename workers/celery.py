"""The Celery app. Queues: `gpu` for training and generation stages, `cpu` for light work."""

import os

from celery import Celery
from celery.signals import worker_ready
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("ponder")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("cpu"), Queue("gpu"))
app.conf.imports = ("workers.tasks", "workers.control")


@worker_ready.connect
def _orphans_become_resumable(sender=None, **kwargs) -> None:
    """Runs this worker held when it died are marked failed, so a person can resume them."""
    from webapp.runs.services import runs_orphaned_fail

    runs_orphaned_fail(worker=sender.hostname if sender else "")
