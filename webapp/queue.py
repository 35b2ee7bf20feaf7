"""Work for the workers, sent by task name.

The web app never imports `workers/`: it names a task (`ponder.run_stage`, ...) and the
kind of queue it needs (`gpu`, `cpu`; `settings.PONDER_QUEUES` maps kinds to the queue
names workers consume), and Celery carries it there. Call it from
`transaction.on_commit`, so a worker never looks for a row that is not there yet.
"""

from __future__ import annotations

import functools
from typing import Any

from celery import Celery
from django.conf import settings

RUN_STAGE = "ponder.run_stage"  # args: [run_id]
DATASET_EXPORT = "ponder.dataset_export"  # args: [export_id]
DATASET_IMPORT = "ponder.dataset_import"  # args: [dataset_id]
PIPELINE_COMPARE = "ponder.pipeline_compare"  # args: [pipeline_id]: every stage's checkpoint compared
REVIEW_GATE_OPEN = "ponder.review_gate_open"  # args: [run_id]: the gate's queue is made from the stage before


@functools.cache
def _producer() -> Celery:
    """A Celery client with the project's broker settings (it only sends)."""
    app = Celery("ponder-web")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    return app


def send(task: str, *, args: list[Any], queue_kind: str, task_id: str | None = None) -> None:
    """Queue `task(*args)` on the queue of kind `queue_kind`, under `task_id` when given
    (a run's claim checks it)."""
    queue = settings.PONDER_QUEUES.get(queue_kind)
    if queue is None:
        raise ValueError(f"queue kind must be one of {', '.join(settings.PONDER_QUEUES)}, got {queue_kind!r}")
    _producer().send_task(task, args=args, task_id=task_id, queue=queue)
