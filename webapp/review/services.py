"""Writes for review: queues built from explorer filters, labels, datasets from traces."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from webapp.datasets.files import preference_prompt
from webapp.datasets.models import Dataset, Prompt
from webapp.datasets.services import dataset_create
from webapp.projects.models import Membership, Project, Role
from webapp.projects.selectors import AuthUser, can_label, role_in
from webapp.review import selectors
from webapp.review.filters import ExplorerFilter
from webapp.review.models import MAX_TAGS, Label, QueueItem, ReviewQueue, Verdict
from webapp.runs.models import Rollout, Run

MAX_QUEUE_ITEMS = 5000
MAX_DATASET_ROWS = 50_000
MAX_REWRITE = 200_000
MAX_NOTE = 10_000
LAYOUTS = ("prompt_completion", "messages")


def _one_project(runs: list[Run]) -> Project:
    projects = {r.project_id for r in runs}
    if len(projects) != 1:
        raise ValidationError({"runs": "the runs belong to several projects: build one per project"})
    return runs[0].project


def _clean_tags(tags: list[str]) -> list[str]:
    cleaned = list(dict.fromkeys(t.strip() for t in tags if t.strip()))
    if len(cleaned) > MAX_TAGS:
        raise ValidationError({"tags": f"at most {MAX_TAGS} tags (keys 1 to 9 toggle them)"})
    if any(len(t) > 64 for t in cleaned):
        raise ValidationError({"tags": "a tag has at most 64 characters"})
    return cleaned


def _members(project: Project, usernames: list[str]) -> list[Any]:
    wanted = {u.strip() for u in usernames if u.strip()}
    found = {m.user.get_username(): m.user for m in Membership.objects.filter(
        project=project, user__username__in=wanted, role__in=[Role.OWNER, Role.ANNOTATOR]).select_related("user")}
    missing = sorted(wanted - set(found))
    if missing:
        raise ValidationError({"assignees": f"not an owner or annotator of {project.name}: {', '.join(missing)}"})
    return list(found.values())


def queue_create(*, user: AuthUser, runs: list[Run], flt: ExplorerFilter, name: str, tags: list[str],
                 assignees: list[str], limit: int = 200, instructions: str = "", distinct: bool = False) -> ReviewQueue:
    """A queue of up to `limit` rollouts matching `flt`, in the filter's order (`distinct`:
    a completion repeated for the same prompt once)."""
    project = _one_project(runs)
    if not can_label(user, project.pk):
        raise PermissionDenied("only owners and annotators create review queues")
    name = name.strip()
    if not name or len(name) > 200:
        raise ValidationError({"name": "a queue needs a name of 1 to 200 characters"})
    if not 1 <= limit <= MAX_QUEUE_ITEMS:
        raise ValidationError({"limit": f"a queue holds 1 to {MAX_QUEUE_ITEMS} items"})
    tags, people = _clean_tags(tags), _members(project, assignees)
    ids = selectors.filtered_rollout_ids(runs, flt, limit=limit, distinct=distinct)
    if not ids:
        raise ValidationError({"filter": "no rollout matches this filter"})
    with transaction.atomic():
        queue = ReviewQueue.objects.create(project=project, name=name, instructions=instructions, tags=tags,
                                           filter={**flt.to_params(), "runs": [r.pk for r in runs]},
                                           item_count=len(ids), created_by=user)
        queue.runs.set(runs)
        queue.assignees.set(people)
        QueueItem.objects.bulk_create([QueueItem(queue=queue, position=i, rollout_id=rid)
                                       for i, rid in enumerate(ids, start=1)], batch_size=2000)
    return queue


def queue_assignees_set(*, user: AuthUser, queue: ReviewQueue, assignees: list[str]) -> ReviewQueue:
    """Owners choose which owners and annotators label the queue (say, a teammate added later)."""
    if role_in(user, queue.project_id) != Role.OWNER:
        raise PermissionDenied("only owners change who labels a queue")
    people = _members(queue.project, assignees)
    with transaction.atomic():
        queue.assignees.set(people)
    return queue


def _check_labeller(user: AuthUser, queue: ReviewQueue) -> None:
    role = role_in(user, queue.project_id)
    if role not in (Role.OWNER, Role.ANNOTATOR):
        raise PermissionDenied("only owners and annotators label")
    if not selectors.may_label(role, queue.assignees.filter(pk=user.pk).exists()):
        raise PermissionDenied("this queue is assigned to others: ask an owner to add you")


def _check_label(queue: ReviewQueue, verdict: Any, tags: Any, rewritten: Any, note: Any) -> None:
    if verdict not in Verdict.values:
        raise ValidationError({"verdict": f"must be one of {', '.join(Verdict.values)}"})
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValidationError({"tags": "must be a list of tag names"})
    unknown = [t for t in tags if t not in queue.tags]
    if unknown:
        raise ValidationError({"tags": f"not a tag of this queue: {', '.join(unknown)}"})
    for field, value, limit in (("rewritten", rewritten, MAX_REWRITE), ("note", note, MAX_NOTE)):
        if not isinstance(value, str) or len(value) > limit:
            raise ValidationError({field: f"must be text of at most {limit} characters"})


def label_save(*, user: AuthUser, queue: ReviewQueue, item: QueueItem, verdict: Any, tags: Any = (),
               rewritten: Any = "", note: Any = "") -> Label:
    """Create or replace `user`'s label of the item's rollout."""
    _check_labeller(user, queue)
    tags = list(tags) if isinstance(tags, list | tuple) else tags
    _check_label(queue, verdict, tags, rewritten, note)
    rewritten = rewritten.replace("\r\n", "\n").replace("\x00", "\ufffd")
    if rewritten.strip() == (item.rollout.completion or "").strip():
        rewritten = ""  # an unchanged rewrite is no rewrite
    with transaction.atomic():
        label, _ = Label.objects.update_or_create(
            rollout_id=item.rollout_id, user=user,
            defaults={"verdict": verdict, "tags": list(dict.fromkeys(tags)), "rewritten": rewritten,
                      "note": note.replace("\x00", "\ufffd")})
    return label


# ---- datasets from traces -----------------------------------------------------------------


def _sft_prompt(r: Rollout, completion: str, layout: str, rewritten: bool) -> Prompt:
    messages = None
    if layout == "messages":
        messages = [{"role": "user", "content": r.prompt}, {"role": "assistant", "content": completion}]
    return Prompt(text=r.prompt, messages=messages, completion=completion, answer=r.reference,
                  metadata={"layout": layout, "source": {"rollout": r.pk, "run": r.run_id, "step": r.step,
                                                         "rewritten": rewritten}})


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValidationError({"layout": f"must be one of {', '.join(LAYOUTS)}"})


def accepted_rows(queue: ReviewQueue) -> list[tuple[Rollout, str, bool]]:
    """(rollout, completion, rewritten?) for items whose majority verdict is accept; the
    newest rewrite by an accepting annotator replaces the completion."""
    ids = list(queue.items.order_by("position").values_list("rollout_id", flat=True))
    summaries = selectors.label_summaries(ids)
    keep = [i for i in ids if summaries.get(i) and summaries[i].majority() == Verdict.ACCEPT]
    rollouts = Rollout.objects.in_bulk(keep)
    out = []
    for rid in keep:
        rewrites = sorted((lab for lab in summaries[rid].labels if lab["verdict"] == "accept" and lab["rewritten"]),
                          key=lambda lab: lab["updated_at"])
        text = rewrites[-1]["rewritten"] if rewrites else rollouts[rid].completion
        out.append((rollouts[rid], text, bool(rewrites)))
    return out


def dataset_from_queue(*, user: AuthUser, queue: ReviewQueue, name: str,
                       layout: str = "prompt_completion") -> Dataset:
    """A new SFT dataset version from the queue's accepted items (rewrites preferred)."""
    _check_layout(layout)
    rows = accepted_rows(queue)
    prompts = [_sft_prompt(r, text, layout, rewritten) for r, text, rewritten in rows]
    source = {"type": "queue", "queue": queue.pk, "queue_name": queue.name, "layout": layout,
              "rewritten": sum(1 for *_, rw in rows if rw)}
    return dataset_create(project=queue.project, user=user, name=name, kind=Dataset.Kind.SFT, prompts=prompts,
                          source=source, description=f"Accepted items of review queue {queue.name!r}.")


def dataset_from_filter(*, user: AuthUser, runs: list[Run], flt: ExplorerFilter, name: str,
                        layout: str = "prompt_completion", limit: int = 1000) -> Dataset:
    """A new SFT dataset version from up to `limit` rollouts matching `flt`."""
    _check_layout(layout)
    project = _one_project(runs)
    if not 1 <= limit <= MAX_DATASET_ROWS:
        raise ValidationError({"limit": f"a dataset from a filter holds 1 to {MAX_DATASET_ROWS} rows"})
    ids = selectors.filtered_rollout_ids(runs, flt, limit=limit)
    rollouts = Rollout.objects.in_bulk(ids)
    prompts = [_sft_prompt(rollouts[i], rollouts[i].completion, layout, False) for i in ids]
    source = {"type": "filter", "runs": [r.pk for r in runs], "filter": flt.to_params(), "layout": layout}
    return dataset_create(project=project, user=user, name=name, kind=Dataset.Kind.SFT, prompts=prompts,
                          source=source, description="Rollouts matching an explorer filter.")


def preference_from_groups(*, user: AuthUser, runs: list[Run], flt: ExplorerFilter, name: str,
                           limit: int = 1000, min_margin: float = 0.0) -> Dataset:
    """A preference dataset from GRPO groups: for each prompt's samples at one step (those the
    filter matches), the best-rewarded as chosen and the worst as rejected, when their rewards
    differ by more than `min_margin`; up to `limit` pairs in the filter's order."""
    project = _one_project(runs)
    if not 1 <= limit <= MAX_DATASET_ROWS:
        raise ValidationError({"limit": f"a preference dataset holds 1 to {MAX_DATASET_ROWS} pairs"})
    if min_margin < 0:
        raise ValidationError({"min_margin": "must be >= 0"})
    ids = selectors.filtered_rollout_ids(runs, flt, limit=MAX_DATASET_ROWS)
    groups: dict[tuple[int, int, int], list[Rollout]] = {}
    for r in Rollout.objects.filter(pk__in=ids).only("run_id", "step", "prompt_hash", "prompt", "completion", "reward"):
        groups.setdefault((r.run_id, r.step, r.prompt_hash), []).append(r)
    order = {rid: i for i, rid in enumerate(ids)}
    prompts: list[Prompt] = []
    for key in sorted(groups, key=lambda k: min(order[r.pk] for r in groups[k])):
        best = max(groups[key], key=lambda r: (r.reward, -r.pk))
        worst = min(groups[key], key=lambda r: (r.reward, r.pk))
        if best.reward - worst.reward <= min_margin or len(prompts) >= limit:
            continue
        prompts.append(preference_prompt(len(prompts), best.prompt, best.completion, worst.completion, {"source": {
            "type": "group", "run": best.run_id, "step": best.step, "chosen": best.pk, "rejected": worst.pk,
            "margin": round(best.reward - worst.reward, 6)}}))
    if not prompts:
        raise ValidationError({"filter": "no GRPO group here has samples whose rewards differ by more than "
                                         f"{min_margin}: nothing to prefer"})
    source = {"type": "groups", "runs": [r.pk for r in runs], "filter": flt.to_params(), "min_margin": min_margin}
    return dataset_create(project=project, user=user, name=name, kind=Dataset.Kind.PREFERENCE, prompts=prompts,
                          source=source, description="Best and worst samples of each GRPO group (chosen / rejected).")
