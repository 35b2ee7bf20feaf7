"""Celery tasks: thin. Each takes an id, loads nothing itself, and calls a service."""

from __future__ import annotations

from celery import shared_task


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, name="ponder.run_stage")
def run_stage(self, run_id: int) -> str:
    from webapp.runs.execution import execute_run

    return execute_run(run_id=run_id, task_id=self.request.id, worker=self.request.hostname or "")


@shared_task(bind=True, acks_late=True, name="ponder.dataset_export")
def dataset_export(self, export_id: int) -> str:
    from webapp.datasets.services import export_run

    return export_run(export_id=export_id)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, name="ponder.compare_checkpoints")
def compare_checkpoints(self, comparison_id: int) -> str:
    from webapp.compare.execution import execute_comparison

    return execute_comparison(comparison_id=comparison_id, task_id=self.request.id)


@shared_task(name="ponder.ping")
def ping() -> str:
    return "pong"
