"""The review gate's people side (`webapp/runs/gates.py` has the stage): its queue, its
progress as people label, and its closing into the dataset the next stage trains on."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from webapp.projects.models import Membership, Role
from webapp.projects.selectors import AuthUser, can_write
from webapp.review import selectors
from webapp.review.filters import ExplorerFilter
from webapp.review.models import DEFAULT_TAGS, QueueItem, ReviewQueue
from webapp.review.services import accepted_rows, dataset_from_queue
from webapp.runs import services as runs
from webapp.runs.gates import SOURCE_KEY, ReviewGateConfig
from webapp.runs.models import Run, Status
from webapp.runs.stages import REVIEW


def gate_open(*, run_id: int) -> str:
    """Make the gate's queue from the stage before (once: a redelivered task finds it made).
    A stage with no sample to review fails the gate with the reason."""
    gate = Run.objects.select_related("project").filter(pk=run_id, stage=REVIEW, status=Status.RUNNING).first()
    if gate is None:
        return "not running"
    if ReviewQueue.objects.filter(gate_run=gate).exists():
        return "open"
    config = ReviewGateConfig.from_dict(gate.config)
    source = Run.objects.get(pk=gate.config[SOURCE_KEY])
    accuracy = str(source.config.get("accuracy_reward") or "task")
    flt = ExplorerFilter(correct="yes" if config.correct_only else "", correct_by=accuracy, sort="newest")
    ids = selectors.filtered_rollout_ids([source], flt, limit=config.limit, distinct=config.distinct)
    if not ids:
        runs.run_finish(run_id=gate.pk, status=Status.FAILED,
                        error=f"stage {source.name!r} (#{source.pk}) left no "
                              f"{'correct ' if config.correct_only else ''}sample to review")
        return "failed"
    people = [m.user for m in Membership.objects.filter(project=gate.project, role__in=[Role.OWNER, Role.ANNOTATOR])
              .select_related("user")]
    with transaction.atomic():
        queue = ReviewQueue.objects.create(
            project=gate.project, name=gate.name, instructions=config.instructions, tags=list(DEFAULT_TAGS),
            filter={**flt.to_params(), "runs": [source.pk]}, item_count=len(ids), created_by=gate.launched_by,
            gate_run=gate)
        queue.runs.set([source])
        queue.assignees.set(people)
        QueueItem.objects.bulk_create([QueueItem(queue=queue, position=i, rollout_id=rid)
                                       for i, rid in enumerate(ids, start=1)], batch_size=2000)
        Run.objects.filter(pk=gate.pk).update(current_step=0, total_steps=config.accept)
        transaction.on_commit(lambda: runs.announce_status(gate.pk))
    return "open"


def gate_progress(queue: ReviewQueue) -> None:
    """After a label: the gate counts its accepted items, and closes at `accept`."""
    if queue.gate_run_id is None:
        return
    gate = Run.objects.filter(pk=queue.gate_run_id, status=Status.RUNNING).first()
    if gate is None:
        return
    accepted = len(accepted_rows(queue))
    Run.objects.filter(pk=gate.pk).update(current_step=accepted)
    runs.announce_status(gate.pk)
    if accepted >= ReviewGateConfig.from_dict(gate.config).accept:
        _close(gate, queue, accepted)


def gate_release(*, user: AuthUser, gate: Run) -> None:
    """An owner opens the gate before `accept` is reached, with the items accepted so far."""
    if not can_write(user, gate.project_id):
        raise PermissionDenied("only project owners release a review gate")
    queue = ReviewQueue.objects.filter(gate_run=gate).first()
    if gate.status != Status.RUNNING or queue is None:
        raise ValidationError({"gate": "this review gate is not waiting for review"})
    accepted = len(accepted_rows(queue))
    if not accepted:
        raise ValidationError({"gate": "nothing is accepted yet: the next stage would train on no data"})
    _close(gate, queue, accepted, released_by=user.get_username())


def _close(gate: Run, queue: ReviewQueue, accepted: int, released_by: str = "") -> None:
    """The accepted items (rewrites preferred) become the gate's dataset; the gate succeeds,
    and the next stage starts on that dataset."""
    with transaction.atomic():
        if not Run.objects.select_for_update().filter(pk=gate.pk, status=Status.RUNNING).exists():
            return  # closed already (two labels at once)
        owner = gate.launched_by
        dataset = dataset_from_queue(user=owner, queue=queue, name=f"{gate.name} (accepted)") if owner else None
        if dataset is None:
            raise PermissionDenied("the gate's launcher is gone: an owner must relaunch the pipeline")
        Run.objects.filter(pk=gate.pk).update(output_dataset=dataset, current_step=accepted)
        runs.run_finish(run_id=gate.pk, status=Status.SUCCEEDED,
                        summary={"accepted": accepted, "items": queue.item_count,
                                 **({"released_by": released_by} if released_by else {})})
