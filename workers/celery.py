"""The Celery app. Queues by kind (`settings.PONDER_QUEUES`): `gpu` for training and
generation stages, `cpu` for light work. A worker consumes the queues given with `-Q`."""

import os

from celery import Celery
from celery.signals import worker_ready
from django.conf import settings
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("ponder")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = tuple(Queue(name, Exchange(name), routing_key=name) for name in set(settings.PONDER_QUEUES.values()))
app.conf.imports = ("workers.tasks",)


@worker_ready.connect
def _on_ready(sender=None, **kwargs) -> None:
    from django.utils import timezone

    from webapp.runs.leases import runs_requeue_held_by
    from workers import heartbeat, leases

    name = sender.hostname
    # Runs this worker held when it died are requeued now; others' lapsed leases by the reaper.
    runs_requeue_held_by(worker=name, started_at=timezone.now())
    leases.start_reaper()
    queues = sorted(q.name for q in sender.task_consumer.queues) if sender.task_consumer else []
    heartbeat.start(settings.REDIS_URL, {"name": name, "queues": queues, "concurrency": sender.pool.limit,
                                         "pid": os.getpid()})
