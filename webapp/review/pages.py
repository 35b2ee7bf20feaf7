"""What the explorer and queue pages need, gathered in a fixed number of queries."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.http import QueryDict

from webapp.projects.models import Membership, Role
from webapp.projects.selectors import AuthUser, User, role_in
from webapp.review import selectors
from webapp.review.filters import BEHAVIOURS, LABELS, SORTS, ExplorerFilter, FilterError, parse_filter
from webapp.review.models import DEFAULT_TAGS, ReviewQueue
from webapp.runs.models import Run
from webapp.runs.selectors import CursorError


def _roles(user: User, runs: list[Run]) -> dict[str, bool]:
    projects = {r.project_id for r in runs}
    role = role_in(user, runs[0].project_id) if len(projects) == 1 else None
    return {"can_label": role in (Role.OWNER, Role.ANNOTATOR), "can_write": role == Role.OWNER}


def labellers(project_id: int) -> list[str]:
    return list(Membership.objects.filter(project_id=project_id, role__in=[Role.OWNER, Role.ANNOTATOR])
                .order_by("user__username").values_list("user__username", flat=True))


def _component_rows(names: list[str], flt: ExplorerFilter) -> list[dict[str, Any]]:
    shown = list(dict.fromkeys([*names, *(c.name for c in flt.components)]))
    return [{"name": n, "low": getattr(flt.component(n), "low", None), "high": getattr(flt.component(n), "high", None)}
            for n in shown]


def explorer_context(user: User, runs: list[Run], params: QueryDict) -> dict[str, Any]:
    """The explorer's page: the filter form, one page of rollouts, the queue/dataset forms."""
    error, page, flt = "", None, ExplorerFilter()
    try:
        flt = parse_filter(params)
        page = selectors.explorer_page(runs, flt, cursor=params.get("cursor") or None)
    except (FilterError, CursorError) as e:
        error = str(e)
    names = selectors.reward_names([r.pk for r in runs])
    roles = _roles(user, runs)
    query = urlencode({**({"runs": params["runs"]} if "runs" in params else {}), **flt.to_params()})
    return {
        "runs": runs, "run": runs[0] if len(runs) == 1 else None, "multi": len(runs) > 1, "flt": flt, "page": page, "error": error,
        "reward_names": names, "components": _component_rows(names, flt), "sorts": SORTS, "labels": LABELS,
        "query": query, "filter_query": urlencode(flt.to_params()), "run_ids": ",".join(str(r.pk) for r in runs),
        "correct_by": flt.correct_by or _accuracy_reward(runs, names),
        "members": labellers(runs[0].project_id) if roles["can_label"] else [],
        "default_tags": ", ".join(DEFAULT_TAGS), "behaviours": _behaviours(runs), **roles,
    }


def _behaviours(runs: list[Run]) -> list[str]:
    """The built-in behaviours, then the runs' own detectors (their `detectors` setting)."""
    own = [name for r in runs for name in (r.config.get("detectors") or {}) if isinstance(name, str)]
    return [*BEHAVIOURS, *dict.fromkeys(n for n in own if n not in BEHAVIOURS)]


def _accuracy_reward(runs: list[Run], names: list[str]) -> str:
    """The reward that says "correct" by default: the run's own `accuracy_reward` (`task` when
    unset, as the stages' configs default), not the first name in the alphabet (`format`)."""
    wanted = [str(r.config.get("accuracy_reward") or "task") for r in runs] + ["task", "math", "code"]
    return next((name for name in wanted if name in names), names[0] if names else "")


def label_page_context(user: AuthUser, queue: ReviewQueue, position: int | None) -> dict[str, Any]:
    role = role_in(user, queue.project_id)
    assigned = queue.assignees.filter(pk=user.pk).exists()
    position = position or selectors.first_open_position(queue, user)
    item = selectors.queue_item(queue, position)
    return {
        "queue": queue, "item": selectors.queue_item_json(queue, item, user),
        "can_label": role == Role.OWNER or (role == Role.ANNOTATOR and assigned),
        "mine": selectors.labelled_by(queue, user), "tag_keys": list(enumerate(queue.tags, start=1)),
    }
