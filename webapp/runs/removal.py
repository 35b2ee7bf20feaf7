"""Archiving a run (off the runs list, kept) and deleting it with everything that goes with it.

Deleting takes the run's rollouts (and the labels and queue items on them), its metric
points, its checkpoints and its folder on disk. Runs started from its checkpoints stay (they
lose the link). It is refused while the run is active, while it is a stage of a pipeline,
and while one of its checkpoints is in a comparison: those would break, so they go first,
or the run is archived instead.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field

from django.apps import apps
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from webapp.projects.selectors import AuthUser, can_write
from webapp.runs.configs import run_dir
from webapp.runs.models import Checkpoint, MetricPoint, Rollout, Run, Status

ACTIVE = (Status.QUEUED, Status.RUNNING)


def run_archive(*, run: Run, user: AuthUser, archived: bool = True) -> Run:
    """Archive (or bring back) a run: archived runs leave the runs list, and keep everything."""
    if not can_write(user, run.project_id):
        raise PermissionDenied("only project owners may archive runs")
    run.archived_at = timezone.now() if archived else None
    Run.objects.filter(pk=run.pk).update(archived_at=run.archived_at)
    return run


@dataclass
class DeletionPlan:
    """What deleting a run takes with it, and what stops it."""

    rollouts: int
    labels: int
    queue_items: int
    metric_points: int
    checkpoints: int
    disk_bytes: int
    derived_runs: list[Run]
    blockers: list[str] = field(default_factory=list)


def run_deletion_plan(run: Run) -> DeletionPlan:
    # Labels and queue items hang off rollouts (the review app's reverse relations).
    rollouts = Rollout.objects.filter(run=run)
    plan = DeletionPlan(
        rollouts=rollouts.count(), labels=rollouts.aggregate(n=Count("labels"))["n"],
        queue_items=rollouts.aggregate(n=Count("queue_items"))["n"],
        metric_points=MetricPoint.objects.filter(run=run).count(),
        checkpoints=Checkpoint.objects.filter(run=run).count(),
        disk_bytes=_folder_bytes(run), derived_runs=list(Run.objects.filter(base_checkpoint__run=run).order_by("pk")))
    if run.status in ACTIVE:
        plan.blockers.append(f"it is {run.status}: cancel it first")
    if run.pipeline_id is not None:
        plan.blockers.append(f"it is stage {run.pipeline_index + 1 if run.pipeline_index is not None else '?'} of "
                             f"pipeline #{run.pipeline_id}: archive it instead")
    # The comparison app sits above this one (it imports runs), so its model is looked up by name.
    entries = apps.get_model("compare", "ComparisonEntry").objects.filter(Q(checkpoint__run=run) | Q(run=run))
    compared = sorted(set(entries.values_list("comparison_id", flat=True)))
    if compared:
        plan.blockers.append("it or its checkpoints are part of comparison " + ", ".join(f"#{c}" for c in compared)
                             + ": delete those first, or archive the run")
    return plan


def run_delete(*, run: Run, user: AuthUser, confirm: str) -> None:
    """Delete `run` and what goes with it (`run_deletion_plan`) once `confirm` is its name;
    ValidationError naming the rule otherwise, with nothing deleted. Its folder goes after
    the rows are gone for good (the commit)."""
    if not can_write(user, run.project_id):
        raise PermissionDenied("only project owners may delete runs")
    if confirm.strip() != run.name:
        raise ValidationError({"confirm": f"type the run's name, {run.name!r}, to delete it"})
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)  # no worker claims it meanwhile
        blockers = run_deletion_plan(locked).blockers
        if blockers:
            raise ValidationError({"run": "cannot be deleted: " + "; ".join(blockers)})
        folder = run_dir(locked)  # before the delete, which clears the primary key
        MetricPoint.objects.filter(run=locked).delete()  # one statement: no constraint, no dependents
        locked.delete()
        transaction.on_commit(lambda: shutil.rmtree(folder, ignore_errors=True))


def _folder_bytes(run: Run) -> int:
    folder = run_dir(run)
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
