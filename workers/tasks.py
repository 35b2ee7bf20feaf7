"""Celery tasks: thin. Each takes an id and calls what the worker does with it. Their
names are the ones the web app sends (`webapp.queue`)."""

from __future__ import annotations

from celery import shared_task

from webapp import queue


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, name=queue.RUN_STAGE)
def run_stage(self, run_id: int) -> str:
    from workers.execution import execute_run  # torch and the engine load with the first run

    return execute_run(run_id=run_id, task_id=self.request.id, worker=self.request.hostname or "")


@shared_task(bind=True, acks_late=True, name=queue.DATASET_EXPORT)
def dataset_export(self, export_id: int) -> str:
    from workers.exports import execute_export

    return execute_export(export_id=export_id)


@shared_task(bind=True, acks_late=True, name=queue.DATASET_IMPORT)
def dataset_import(self, dataset_id: int) -> str:
    from workers.exports import execute_import

    return execute_import(dataset_id=dataset_id)


@shared_task(bind=True, acks_late=True, name=queue.REVIEW_GATE_OPEN)
def review_gate_open(self, run_id: int) -> str:
    from webapp.review.gates import gate_open  # idempotent: a redelivered task finds the queue made

    return gate_open(run_id=run_id)


@shared_task(bind=True, acks_late=True, name=queue.PIPELINE_COMPARE)
def pipeline_compare(self, pipeline_id: int) -> str:
    from webapp.compare.services import pipeline_comparison  # once per pipeline: a redelivery finds it made

    comparison = pipeline_comparison(pipeline_id=pipeline_id)
    return f"comparison {comparison.pk}" if comparison else "nothing to compare"


@shared_task(name="ponder.ping")
def ping() -> str:
    return "pong"
