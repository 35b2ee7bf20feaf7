"""Leases: a running run is held by the worker task that claimed it for as long as that
task renews its lease (`heartbeat_at`, every few seconds, `workers/leases.py`). A run whose
lease lapsed (`settings.PONDER_LEASE_SECONDS`) is requeued by whichever worker's reaper sees
it first, and resumes from its last checkpoint, whatever the lost worker was called.

Conditional UPDATEs decide every change: a run is requeued once however many reapers race,
under a new task id, so a holder that only stalled finds at its next renewal (or write) that
it lost the run and stops without writing, and a redelivered copy of the old task cannot
claim it either. A cancel asked of a run whose holder is gone ends it at once.
"""

from __future__ import annotations

import functools
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from webapp.runs import services, stages
from webapp.runs.models import Run, Status
from webapp.runs.services import held


def lease_length() -> timedelta:
    return timedelta(seconds=settings.PONDER_LEASE_SECONDS)


def lease_renew(*, run_id: int, task_id: str) -> bool:
    """Extend the lease; False when the task no longer holds the run (requeued, cancelled)."""
    return Run.objects.filter(held(run_id=run_id, task_id=task_id)).update(heartbeat_at=timezone.now()) == 1


def runs_requeue_lapsed(*, now: datetime | None = None) -> list[int]:
    """Requeue every running run whose lease lapsed; the ids this caller requeued."""
    now = now or timezone.now()
    lapsed = (Run.objects.filter(status=Status.RUNNING, heartbeat_at__lt=now - lease_length())
              .exclude(stage__in=stages.WEB_STAGES).values_list("pk", "celery_task_id", "worker", "heartbeat_at"))
    done = []
    for run_id, task_id, worker, beat in lapsed:
        gone = int((now - beat).total_seconds()) if beat else 0
        if _requeue(run_id, task_id, f"worker {worker or '?'} lost {gone} s ago"):
            done.append(run_id)
    return done


def external_runs_finish_idle(*, now: datetime | None = None) -> list[int]:
    """External runs that logged nothing for `PONDER_EXTERNAL_IDLE_SECONDS` are marked
    succeeded: their trainer is gone without calling `finish`."""
    now = now or timezone.now()
    idle = timedelta(seconds=settings.PONDER_EXTERNAL_IDLE_SECONDS)
    quiet = Q(heartbeat_at__lt=now - idle) | Q(heartbeat_at=None, started_at__lt=now - idle)
    done = []
    for run_id in Run.objects.filter(quiet, stage=stages.EXTERNAL, status=Status.RUNNING).values_list("pk", flat=True):
        with transaction.atomic():
            if Run.objects.filter(quiet, pk=run_id, status=Status.RUNNING).update(status=Status.SUCCEEDED,
                                                                                   finished_at=now):
                run = Run.objects.get(pk=run_id)
                services.run_log(run, f"nothing logged for {idle.total_seconds() / 60:.0f} min: marked finished")
                transaction.on_commit(functools.partial(services.announce_status, run_id))
                done.append(run_id)
    return done


def runs_requeue_held_by(*, worker: str, started_at: datetime) -> list[int]:
    """A worker that starts again holds nothing: its runs still marked running and not
    touched since it started (a redelivered task may already have taken one back) are
    requeued at once, without waiting for their leases to lapse."""
    if not worker:
        return []
    untouched = Q(heartbeat_at__lt=started_at) | Q(heartbeat_at__isnull=True)
    rows = Run.objects.filter(untouched, status=Status.RUNNING, worker=worker).values_list("pk", "celery_task_id")
    return [run_id for run_id, task_id in rows if _requeue(run_id, task_id, f"worker {worker} restarted")]


def run_hand_back(*, run_id: int, task_id: str, step: int) -> bool:
    """The holder is stopping (SIGTERM, Ctrl-C) and saved its work: the run goes back to the queue
    for the next worker (or ends, if someone asked to cancel it meanwhile)."""
    return _requeue(run_id, task_id, f"the worker is stopping (SIGTERM or Ctrl-C) after step {step}")


def _requeue(run_id: int, task_id: str, reason: str) -> bool:
    """running → queued under a new task id (or → cancelled when a stop was asked), if no one
    else changed the run first."""
    now = timezone.now()
    with transaction.atomic():
        mine = Run.objects.filter(held(run_id=run_id, task_id=task_id))
        cancelled = mine.filter(stop_requested=True).update(status=Status.CANCELLED, finished_at=now, worker="")
        requeued = 0 if cancelled else mine.update(status=Status.QUEUED, celery_task_id=str(uuid.uuid4()),
                                                   queued_at=now, worker="", requeues=F("requeues") + 1)
        if not (cancelled or requeued):
            return False
        run = Run.objects.get(pk=run_id)
        services.run_log(run, f"{reason}: " + ("cancelled, as asked" if cancelled
                                               else "requeued; it resumes from its last checkpoint"))
        if requeued:
            transaction.on_commit(lambda: services.enqueue(run))
        transaction.on_commit(lambda: services.announce_status(run_id))
    return True
