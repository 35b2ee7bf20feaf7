"""Reads for the trace explorer, the prompt-across-training page and review queues.

Pages are keyset-paginated on an index-backed sort key (never OFFSET), so page 1,000 of a
run with millions of rollouts costs what page 1 costs. Several runs are read as a UNION ALL
of per-run index walks, each stopped at `limit + 1` rows, merged by the outer ORDER BY.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from django.db import OperationalError, connection, transaction
from django.db.models import Avg, BooleanField, Count, Exists, Max, OuterRef, QuerySet, Subquery
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.http import Http404
from django.urls import reverse

from webapp.projects.models import Membership, Role
from webapp.projects.selectors import AuthUser, User, projects_for
from webapp.review.filters import ExplorerFilter, FilterError, apply_filter
from webapp.review.models import Label, QueueItem, ReviewQueue
from webapp.runs.models import Rollout, Run
from webapp.runs.selectors import CursorError, encode_cursor, runs_for

PAGE_SIZE = 50
# A rare search term scans the whole run (no text index: see benchmarks/bench_explorer.py).
SEARCH_TIMEOUT_MS = 5000
MAX_RUNS = 8
GROUP_SORTS = ("newest", "oldest")
# sort -> (key columns, descending). Group sorts also break ties on run_id (several runs).
ORDERS: dict[str, tuple[tuple[str, ...], bool]] = {
    "newest": (("step", "prompt_hash", "sample_index", "run_id"), True),
    "oldest": (("step", "prompt_hash", "sample_index", "run_id"), False),
    "best": (("reward", "id"), True),
    "worst": (("reward", "id"), False),
    "longest": (("token_count", "id"), True),
}


# ---- cursors ------------------------------------------------------------------------------


def decode_key(cursor: str, arity: int) -> list[int | float]:
    """A cursor's sort-key values (ints and floats: rewards are floats)."""
    try:
        values = json.loads(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        values = None
    ok = isinstance(values, list) and len(values) == arity and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if not ok:
        raise CursorError("cursor: not a cursor this page issued (follow the Next link unchanged)")
    return values


def _after(qs: QuerySet[Rollout], run_id: int, sort: str, key: list[int | float]) -> QuerySet[Rollout]:
    """Rows of one run strictly after `key` in the sort order (a row comparison on the index)."""
    columns, desc = ORDERS[sort]
    strict = True
    if columns[-1] == "run_id":
        columns, *key, last_run = columns[:-1], *key
        # Within one run, run_id is constant: ties on the other columns count as "after"
        # only for runs that sort after the cursor's run.
        strict = run_id >= last_run if desc else run_id <= last_run
    op = ("<" if desc else ">") + ("" if strict else "=")
    cols = ", ".join(f'"runs_rollout"."{c}"' for c in columns)
    marks = ", ".join(["%s"] * len(columns))
    return qs.filter(RawSQL(f"({cols}) {op} ({marks})", tuple(key), output_field=BooleanField()))


def _ordering(sort: str) -> list[str]:
    columns, desc = ORDERS[sort]
    return [f"-{c}" if desc else c for c in columns]


def _cursor_of(row: Rollout, sort: str) -> str:
    return encode_cursor([getattr(row, c) for c in ORDERS[sort][0]])


# ---- the explorer -------------------------------------------------------------------------


@dataclass
class Group:
    """Consecutive rows of one GRPO group (same run, step and prompt) on a page."""

    rows: list[Rollout]

    @property
    def first(self) -> Rollout:
        return self.rows[0]


@dataclass
class ExplorerPage:
    rows: list[Rollout]
    groups: list[Group]
    next_cursor: str | None
    grouped: bool
    reward_names: list[str] = field(default_factory=list)


def explorer_runs(user: User, raw_ids: str) -> list[Run]:
    """The runs named in `?runs=1,2`, each visible to `user`; 404 if any is not."""
    try:
        ids = sorted({int(part) for part in raw_ids.split(",") if part.strip()})
    except ValueError:
        raise Http404("runs: a comma-separated list of run ids") from None
    if not ids or len(ids) > MAX_RUNS:
        raise Http404(f"runs: between 1 and {MAX_RUNS} run ids")
    runs = list(runs_for(user).select_related("project").filter(pk__in=ids).order_by("pk"))
    if len(runs) != len(ids):
        raise Http404("No such run.")
    return runs


def _page_query(run_ids: list[int], flt: ExplorerFilter, key: list[int | float] | None, limit: int) -> Any:
    order = _ordering(flt.sort)
    parts = []
    for run_id in run_ids:
        qs = apply_filter(Rollout.objects.filter(run_id=run_id), flt).defer("completion")
        if key is not None:
            qs = _after(qs, run_id, flt.sort, key)
        parts.append(qs.order_by(*order)[: limit + 1])
    if len(parts) == 1:
        return parts[0]
    return parts[0].union(*parts[1:], all=True).order_by(*order)[: limit + 1]


def explorer_page(runs: list[Run], flt: ExplorerFilter, *, cursor: str | None = None,
                  limit: int = PAGE_SIZE) -> ExplorerPage:
    """One page of the runs' rollouts matching `flt`, with advantages and label summaries."""
    key = decode_key(cursor, len(ORDERS[flt.sort][0])) if cursor else None
    rows = _fetch(_page_query([r.pk for r in runs], flt, key, limit), searching=bool(flt.q))
    more = len(rows) > limit
    rows = rows[:limit]
    annotate_rows(rows)
    grouped = flt.sort in GROUP_SORTS
    return ExplorerPage(rows=rows, groups=_groups(rows, grouped), grouped=grouped,
                        next_cursor=_cursor_of(rows[-1], flt.sort) if more else None)


COUNT_CAP = 10_000
COUNT_TIMEOUT_MS = 2_000


def matching_count(runs: list[Run], flt: ExplorerFilter) -> int | None:
    """How many rollouts of `runs` match `flt`, counted up to COUNT_CAP + 1 (more reads as
    "over 10,000"); None when counting would take over COUNT_TIMEOUT_MS."""
    qs = apply_filter(Rollout.objects.filter(run_id__in=[r.pk for r in runs]), flt)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = %s", [COUNT_TIMEOUT_MS])
            return qs[: COUNT_CAP + 1].count()
    except OperationalError as e:
        if getattr(e.__cause__, "sqlstate", None) != "57014":  # query_canceled
            raise
        return None


def _fetch(qs: Any, *, searching: bool) -> list[Rollout]:
    """The page's rows; a text search that would scan too long is stopped with a sentence."""
    if not searching:
        return list(qs)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = %s", [SEARCH_TIMEOUT_MS])
            return list(qs)
    except OperationalError as e:
        if getattr(e.__cause__, "sqlstate", None) != "57014":  # query_canceled
            raise
        raise FilterError(f"q: the search ran over {SEARCH_TIMEOUT_MS // 1000} s without filling a page; "
                          "narrow it with a step range or another filter") from None


def filtered_rollout_ids(runs: list[Run], flt: ExplorerFilter, *, limit: int, distinct: bool = False) -> list[int]:
    """Ids of up to `limit` matching rollouts in the filter's order (pages of 1,000). With
    `distinct`, a completion repeated for the same prompt (a GRPO group sampling one text
    eight times) is taken once, at its first place."""
    ids: list[int] = []
    seen: set[tuple[int, bytes]] = set()
    cursor = None
    while len(ids) < limit:
        key = decode_key(cursor, len(ORDERS[flt.sort][0])) if cursor else None
        size = 1000 if distinct else min(1000, limit - len(ids))
        rows = list(_page_query([r.pk for r in runs], flt, key, size))
        page = _first_of_each_text(rows[:size], seen) if distinct else rows[:size]
        ids.extend(r.pk for r in page[: limit - len(ids)])
        if len(rows) <= size:
            break
        cursor = _cursor_of(rows[size - 1], flt.sort)
    return ids


def _first_of_each_text(rows: list[Rollout], seen: set[tuple[int, bytes]]) -> list[Rollout]:
    texts = dict(Rollout.objects.filter(pk__in=[r.pk for r in rows]).values_list("pk", "completion"))
    out = []
    for row in rows:
        key = (row.prompt_hash, hashlib.blake2b(texts[row.pk].encode("utf-8", "surrogatepass"), digest_size=16).digest())
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def _groups(rows: list[Rollout], grouped: bool) -> list[Group]:
    if not grouped:
        return [Group([r]) for r in rows]
    groups: list[Group] = []
    for row in rows:
        if groups and (groups[-1].first.step, groups[-1].first.prompt_hash) == (row.step, row.prompt_hash):
            groups[-1].rows.append(row)
        else:
            groups.append(Group([row]))
    for g in groups:
        g.rows.sort(key=lambda r: (r.run_id, r.sample_index))
    return groups


def reward_names(run_ids: list[int], sample: int = 200) -> list[str]:
    """Reward component names seen in each run's newest `sample` rollouts (one query)."""
    if not run_ids:
        return []
    sql = """
        SELECT DISTINCT k FROM unnest(%s::bigint[]) AS r(id),
        LATERAL (SELECT rewards FROM runs_rollout WHERE run_id = r.id ORDER BY step DESC, id DESC LIMIT %s) x,
        LATERAL jsonb_object_keys(CASE WHEN jsonb_typeof(x.rewards) = 'object' THEN x.rewards ELSE '{}' END) k
        ORDER BY k
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [run_ids, sample])
        return [k for (k,) in cursor.fetchall()]


# ---- advantages and labels ----------------------------------------------------------------


def group_advantage(reward: float, rewards: list[float]) -> float:
    """GRPO's advantage: (r - group mean) / (Bessel std + 1e-4), 0 for a group of one."""
    if len(rewards) < 2:
        return 0.0
    return (reward - statistics.fmean(rewards)) / (statistics.stdev(rewards) + 1e-4)


def agreement(verdicts: Iterable[str]) -> float | None:
    """Share of annotators agreeing with the majority verdict (skips left out); None under two."""
    votes = [v for v in verdicts if v != "skip"]
    if len(votes) < 2:
        return None
    return max(Counter(votes).values()) / len(votes)


@dataclass
class LabelSummary:
    labels: list[dict[str, Any]] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(lab["verdict"] for lab in self.labels))

    @property
    def agreement(self) -> float | None:
        return agreement(lab["verdict"] for lab in self.labels)

    @property
    def rewritten(self) -> int:
        """How many annotators rewrote the completion (the queue table marks the item)."""
        return sum(bool(lab["rewritten"]) for lab in self.labels)

    @property
    def tags(self) -> list[str]:
        return sorted({t for lab in self.labels for t in lab["tags"]})

    def majority(self) -> str | None:
        votes = Counter(lab["verdict"] for lab in self.labels if lab["verdict"] != "skip").most_common(2)
        if not votes or (len(votes) == 2 and votes[0][1] == votes[1][1]):
            return None  # no votes, or a tie
        return votes[0][0]


def label_summaries(rollout_ids: list[int]) -> dict[int, LabelSummary]:
    out: dict[int, LabelSummary] = defaultdict(LabelSummary)
    labels = (Label.objects.filter(rollout_id__in=rollout_ids).order_by("rollout_id", "user__username")
              .values("rollout_id", "verdict", "tags", "rewritten", "note", "updated_at", "user__username"))
    for lab in labels:
        out[lab["rollout_id"]].labels.append(cast("dict[str, Any]", lab))  # a values() row is a plain dict
    return out


_GROUP_REWARDS = """
SELECT r.run_id, r.step, r.prompt_hash, r.reward FROM runs_rollout r
JOIN unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS k(run_id, step, prompt_hash)
  ON r.run_id = k.run_id AND r.step = k.step AND r.prompt_hash = k.prompt_hash
"""


def _group_rewards(rows: list[Rollout]) -> dict[tuple[int, int, int], list[float]]:
    """Every reward of each row's GRPO group (same run, step, prompt), in one index-backed join."""
    keys = sorted({(r.run_id, r.step, r.prompt_hash) for r in rows})
    out: dict[tuple[int, int, int], list[float]] = defaultdict(list)
    if not keys:
        return out
    with connection.cursor() as cursor:
        cursor.execute(_GROUP_REWARDS, [list(column) for column in zip(*keys, strict=True)])
        for run_id, step, h, reward in cursor.fetchall():
            out[(run_id, step, h)].append(reward)
    return out


def annotate_rows(rows: list[Rollout]) -> None:
    """Set `advantage`, `group_size`, `group_mean` and `label_summary` on each row (two queries)."""
    groups = _group_rewards(rows)
    summaries = label_summaries([r.pk for r in rows])
    for r in rows:
        rewards = groups.get((r.run_id, r.step, r.prompt_hash)) or [r.reward]
        # Attributes set on the instances for the pages (mypy knows only the model's fields):
        r.advantage = group_advantage(r.reward, rewards)  # type: ignore[attr-defined]
        r.group_size = len(rewards)  # type: ignore[attr-defined]
        r.group_mean = statistics.fmean(rewards)  # type: ignore[attr-defined]
        r.label_summary = summaries.get(r.pk) or LabelSummary()  # type: ignore[attr-defined]
        r.reward_list = (  # type: ignore[attr-defined]
            sorted((r.rewards or {}).items()) if isinstance(r.rewards, dict) else [])
        r.metadata_json = (  # type: ignore[attr-defined]
            json.dumps(r.metadata, indent=1, ensure_ascii=False, sort_keys=True) if r.metadata else "")


# ---- one prompt across training -----------------------------------------------------------


def prompt_steps(run: Run, prompt_hash: int, limit: int = 1000) -> list[Mapping[str, Any]]:
    """Per step: samples, mean and best reward, mean tokens of one prompt (first `limit` steps)."""
    return list(Rollout.objects.filter(run=run, prompt_hash=prompt_hash).values("step")
                .annotate(n=Count("id"), mean_reward=Avg("reward"), best=Max("reward"), mean_tokens=Avg("token_count"))
                .order_by("step")[:limit])


def prompt_samples(run: Run, prompt_hash: int, *, cursor: str | None,
                   limit: int = PAGE_SIZE) -> tuple[list[Rollout], str | None]:
    """That prompt's samples, oldest step first, keyset on (step, sample_index)."""
    qs = Rollout.objects.filter(run=run, prompt_hash=prompt_hash).defer("completion")
    if cursor:
        step, index = decode_key(cursor, 2)
        qs = qs.filter(RawSQL('("runs_rollout"."step", "runs_rollout"."sample_index") > (%s, %s)', (step, index),
                              output_field=BooleanField()))
    rows = list(qs.order_by("step", "sample_index")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    annotate_rows(rows)
    return rows, (encode_cursor([rows[-1].step, rows[-1].sample_index]) if more else None)


# ---- review queues ------------------------------------------------------------------------


def queues_for(user: User) -> QuerySet[ReviewQueue]:
    return ReviewQueue.objects.filter(project__in=projects_for(user))


def queue_for(user: User, queue_id: int) -> ReviewQueue:
    queue = queues_for(user).select_related("project").filter(pk=queue_id).first()
    if queue is None:
        raise Http404("No such queue.")
    return queue


def queue_item(queue: ReviewQueue, position: int) -> QueueItem:
    item = QueueItem.objects.select_related("rollout").filter(queue=queue, position=position).first()
    if item is None:
        raise Http404(f"This queue has no item {position}.")
    return item


def first_open_position(queue: ReviewQueue, user: AuthUser) -> int:
    """The first item `user` has not labelled yet, else 1."""
    mine = Label.objects.filter(user_id=user.pk, rollout_id=OuterRef("rollout_id"))
    position = queue.items.filter(~Exists(mine)).order_by("position").values_list("position", flat=True).first()
    return position or 1


def labelled_by(queue: ReviewQueue, user: AuthUser) -> int:
    return Label.objects.filter(user_id=user.pk, rollout__queue_items__queue=queue).count()


def queue_items_page(queue: ReviewQueue, *, after: int = 0, limit: int = 100) -> tuple[list[QueueItem], int | None]:
    """Items after position `after`, each with its rollout and `label_summary`."""
    items = list(queue.items.select_related("rollout").defer("rollout__completion")
                 .filter(position__gt=after).order_by("position")[: limit + 1])
    more = len(items) > limit
    items = items[:limit]
    summaries = label_summaries([i.rollout_id for i in items])
    for item in items:  # label_summary is set on the instance for the page
        item.label_summary = summaries.get(item.rollout_id) or LabelSummary()  # type: ignore[attr-defined]
    return items, (items[-1].position if more else None)


_AGREEMENT_SQL = """
SELECT count(*), avg(top::float8 / total) FROM (
    SELECT rollout_id, max(c) AS top, sum(c) AS total FROM (
        SELECT l.rollout_id, l.verdict, count(*) AS c
        FROM review_label l JOIN review_queueitem qi ON qi.rollout_id = l.rollout_id
        WHERE qi.queue_id = %s AND l.verdict <> 'skip'
        GROUP BY l.rollout_id, l.verdict
    ) per_verdict GROUP BY rollout_id HAVING sum(c) >= 2
) per_item
"""


def queue_agreement(queue: ReviewQueue) -> tuple[int, float | None]:
    """(items with two or more verdicts, mean share agreeing with each item's majority)."""
    with connection.cursor() as cursor:
        cursor.execute(_AGREEMENT_SQL, [queue.pk])
        items, mean = cursor.fetchone()
    return items, mean


def queue_annotators(queue: ReviewQueue) -> list[dict[str, Any]]:
    """Per annotator: labels given in this queue, by verdict."""
    rows = (Label.objects.filter(rollout__queue_items__queue=queue).values("user__username", "verdict")
            .annotate(n=Count("id")).order_by("user__username", "verdict"))
    people: dict[str, dict[str, Any]] = {}
    for row in rows:
        person = people.setdefault(row["user__username"], {"username": row["user__username"], "total": 0})
        person[row["verdict"]] = row["n"]
        person["total"] += row["n"]
    return list(people.values())


def rollout_json(r: Rollout) -> dict[str, Any]:
    return {
        "id": r.pk, "run_id": r.run_id, "step": r.step, "sample_index": r.sample_index,
        "prompt_hash": str(r.prompt_hash), "prompt": r.prompt, "completion": r.completion,
        "reasoning": r.reasoning, "answer": r.final_answer, "reference": r.reference, "reward": r.reward,
        "rewards": r.rewards, "token_count": r.token_count, "finish_reason": r.finish_reason,
        "metadata": r.metadata,
    }


def label_json(label: dict[str, Any] | None) -> dict[str, Any] | None:
    if label is None:
        return None
    return {"user": label["user__username"], "verdict": label["verdict"], "tags": list(label["tags"]),
            "rewritten": label["rewritten"], "note": label["note"]}


def queue_item_json(queue: ReviewQueue, item: QueueItem, user: User) -> dict[str, Any]:
    """What the labelling page shows for one item: the rollout, my label, the others'."""
    rollout = item.rollout
    annotate_rows([rollout])
    summary: LabelSummary = rollout.label_summary  # type: ignore[attr-defined]  # set by annotate_rows
    name = user.get_username()
    mine = next((lab for lab in summary.labels if lab["user__username"] == name), None)
    return {
        "queue": queue.pk, "position": item.position, "total": queue.item_count,
        "rollout": {**rollout_json(rollout),  # advantage and group_size: set by annotate_rows
                    "advantage": rollout.advantage,  # type: ignore[attr-defined]
                    "group_size": rollout.group_size},  # type: ignore[attr-defined]
        "label": label_json(mine),
        "others": [label_json(lab) for lab in summary.labels if lab is not mine],
        "agreement": summary.agreement,
        "history_url": reverse("prompt-history", args=[rollout.run_id, rollout.prompt_hash]),
    }


def queue_majorities(queue: ReviewQueue) -> dict[str, int]:
    """How many items each majority verdict won (`tie`, `unlabelled` for the rest)."""
    ids = list(queue.items.values_list("rollout_id", flat=True))
    summaries = label_summaries(ids)
    out: Counter[str] = Counter()
    for rid in ids:
        summary = summaries.get(rid)
        if summary is None or not summary.labels:
            out["unlabelled"] += 1
        else:
            out[summary.majority() or ("skip" if all(lab["verdict"] == "skip" for lab in summary.labels) else "tie")] += 1
    return dict(out)


def queues_with_progress(user: AuthUser, limit: int = 200) -> list[ReviewQueue]:
    """The caller's visible queues with `labelled` (items with any label) and `assigned`."""
    labelled = (QueueItem.objects.filter(queue=OuterRef("pk"))
                .filter(Exists(Label.objects.filter(rollout_id=OuterRef("rollout_id"))))
                .values("queue").annotate(c=Count("*")).values("c"))
    assigned = ReviewQueue.assignees.through.objects.filter(reviewqueue_id=OuterRef("pk"), user_id=user.pk)
    my_role = Membership.objects.filter(project_id=OuterRef("project_id"), user_id=user.pk).values("role")[:1]
    queues = list(queues_for(user).select_related("project")
                  .annotate(labelled=Coalesce(Subquery(labelled), 0), assigned=Exists(assigned),
                            my_role=Subquery(my_role))
                  .order_by("-created_at", "-id")[:limit])
    for q in queues:  # the list offers "Label" only where labelling will be accepted
        q.can_label = may_label(q.my_role, q.assigned)  # type: ignore[attr-defined]
    return cast("list[ReviewQueue]", queues)  # annotated rows are still queues


def may_label(role: str | None, assigned: bool) -> bool:
    """The one rule for labelling a queue: owners always; annotators when assigned to it."""
    return role == Role.OWNER or (role == Role.ANNOTATOR and assigned)


# ---- one rollout token by token -----------------------------------------------------------


@dataclass
class TokenCell:
    text: str
    logprob: float
    prob: float
    shade: float  # 0 (sure) to 1 (unsure): 1 - p, as the heatmap's colour strength


@dataclass
class TokenView:
    cells: list[TokenCell]
    mean_logprob: float
    unsure: list[TokenCell]  # the least likely tokens, lowest first


def token_view(rollout: Rollout, lowest: int = 8) -> TokenView | None:
    """The rollout's tokens with the sampler's log-probs (stored for `token_details` samples
    a step), or None when none were stored."""
    import math

    view = rollout.metadata.get("token_view") if isinstance(rollout.metadata, dict) else None
    if not isinstance(view, dict):
        return None
    pieces, logprobs = view.get("pieces") or [], view.get("logprobs") or []
    cells = [TokenCell(text=str(t), logprob=float(lp), prob=math.exp(float(lp)), shade=round(1 - math.exp(float(lp)), 2))
             for t, lp in zip(pieces, logprobs, strict=False)]
    if not cells:
        return None
    return TokenView(cells=cells, mean_logprob=sum(c.logprob for c in cells) / len(cells),
                     unsure=sorted(cells, key=lambda c: c.logprob)[:lowest])
