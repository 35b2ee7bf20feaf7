"""Thin views: the trace explorer, one prompt across training, review queues, labelling."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from webapp import tables
from webapp.projects.models import Role
from webapp.projects.selectors import AuthedRequest, role_in
from webapp.review import exports, gates, pages, selectors, services
from webapp.review.filters import ExplorerFilter, FilterError, parse_filter
from webapp.runs.models import Rollout, Run
from webapp.runs.selectors import CursorError, run_for


def _int(value: Any, default: int | None = None) -> int | None:
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        raise Http404("Not a number.") from None


def _errors(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {m}" for field, msgs in exc.message_dict.items() for m in msgs)
    return "; ".join(exc.messages)


# ---- explorer -----------------------------------------------------------------------------


@require_GET
def explore_run(request: HttpRequest, run_id: int) -> HttpResponse:
    return _explore(request, [run_for(request.user, run_id)])


@require_GET
def explore_runs(request: HttpRequest) -> HttpResponse:
    return _explore(request, selectors.explorer_runs(request.user, request.GET.get("runs", "")))


def _explore(request: HttpRequest, runs: list[Run]) -> HttpResponse:
    ctx = pages.explorer_context(request.user, runs, request.GET)
    return render(request, "review/explorer.html", ctx, status=400 if ctx["error"] else 200)


@require_GET
def explore_count(request: HttpRequest) -> JsonResponse:
    """How many rollouts the explorer's filter matches on `?runs=` (asked for after the page
    loads, so a slow count never holds the page up)."""
    runs = selectors.explorer_runs(request.user, request.GET.get("runs", ""))
    try:
        flt = parse_filter(request.GET)
    except FilterError as e:
        return JsonResponse({"error": str(e)}, status=400)
    count = selectors.matching_count(runs, flt)
    return JsonResponse({"count": count, "cap": selectors.COUNT_CAP})


@require_GET
def explore_download(request: HttpRequest, run_id: int, fmt: str) -> HttpResponse | StreamingHttpResponse:
    """The explorer's filter on one run, every matching rollout: `rollouts.csv` / `.parquet`."""
    import pyarrow as pa

    run = run_for(request.user, run_id)
    if fmt not in tables.FORMATS:
        raise Http404("rollouts.csv or rollouts.parquet")
    try:
        flt = parse_filter(request.GET)
    except FilterError as e:
        return HttpResponse(str(e), status=400, content_type="text/plain")
    columns, rows, types = exports.rollout_table([run], flt)
    return tables.download(fmt, f"run-{run.pk}-rollouts", columns, rows,
                           {c: getattr(pa, t)() for c, t in types.items()})


@require_GET
def rollout_tokens(request: HttpRequest, run_id: int, rollout_id: int) -> HttpResponse:
    """One sample token by token, shaded by how likely the sampler found each token."""
    run = run_for(request.user, run_id)
    rollout = Rollout.objects.filter(run=run, pk=rollout_id).first()
    if rollout is None:
        raise Http404("No such rollout in this run.")
    return render(request, "review/tokens.html", {"run": run, "rollout": rollout,
                                                  "view": selectors.token_view(rollout)})


@require_GET
def prompt_history(request: HttpRequest, run_id: int, prompt_hash: int) -> HttpResponse:
    run = run_for(request.user, run_id)
    try:
        rows, nxt = selectors.prompt_samples(run, prompt_hash, cursor=request.GET.get("cursor") or None)
    except CursorError as e:
        return HttpResponse(str(e), status=400, content_type="text/plain")
    if not rows and not request.GET.get("cursor"):
        raise Http404("This run never sampled that prompt.")
    return render(request, "review/prompt.html", {
        "run": run, "prompt_hash": prompt_hash, "rows": rows, "next_cursor": nxt, "first": rows[0] if rows else None,
        "steps": selectors.prompt_steps(run, prompt_hash)})


# ---- queues -------------------------------------------------------------------------------


@require_GET
def queue_list(request: AuthedRequest) -> HttpResponse:
    queues = selectors.queues_with_progress(request.user)
    return render(request, "review/queue_list.html", {"queues": queues})


@require_POST
def queue_new(request: AuthedRequest) -> HttpResponse:
    post = request.POST
    return _from_explorer(request, lambda runs, flt: services.queue_create(
        user=request.user, runs=runs, flt=flt, name=post.get("name", ""), tags=post.get("tags", "").split(","),
        assignees=post.getlist("assignees"), limit=_int(post.get("limit"), 200) or 0,
        instructions=post.get("instructions", ""), distinct=post.get("distinct") == "on"),
        lambda queue: redirect("review-queue", queue_id=queue.pk), denied_is_403=True)


def _from_explorer(request: AuthedRequest, make: Callable[[list[Run], ExplorerFilter], Any],
                   done: Callable[[Any], HttpResponse], denied_is_403: bool = False) -> HttpResponse:
    """What the explorer's side forms share: the runs and filter they were posted with, and
    back to the explorer with the rule's sentence when `make` refuses (a permission refusal
    too, unless `denied_is_403`)."""
    runs = selectors.explorer_runs(request.user, request.POST.get("runs", ""))
    back = _explorer_url(runs, request.POST.get("filter", ""))
    try:
        made = make(runs, parse_filter(QueryDict(request.POST.get("filter", ""))))
    except PermissionDenied as e:
        if denied_is_403:
            raise
        messages.error(request, str(e))
        return redirect(back)
    except FilterError as e:
        messages.error(request, str(e))
        return redirect(back)
    except ValidationError as e:
        messages.error(request, _errors(e))
        return redirect(back)
    return done(made)


def _explorer_url(runs: list[Run], filter_query: str) -> str:
    base = f"/runs/{runs[0].pk}/explore/" if len(runs) == 1 else f"/explore/?runs={','.join(str(r.pk) for r in runs)}"
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}{filter_query}" if filter_query else base


@require_GET
def queue_detail(request: HttpRequest, queue_id: int) -> HttpResponse:
    queue = selectors.queue_for(request.user, queue_id)
    items, nxt = selectors.queue_items_page(queue, after=_int(request.GET.get("after"), 0) or 0)
    judged, mean = selectors.queue_agreement(queue)
    assignees, role = list(queue.assignees.all()), role_in(request.user, queue.project_id)
    return render(request, "review/queue_detail.html", {
        "queue": queue, "items": items, "next_after": nxt, "judged": judged, "agreement": mean,
        "annotators": selectors.queue_annotators(queue), "assignees": assignees,
        "can_label": selectors.may_label(role, any(a.pk == request.user.pk for a in assignees)),
        "can_write": role == Role.OWNER, "majorities": selectors.queue_majorities(queue),
        "labellers": pages.labellers(queue.project_id) if role == Role.OWNER else []})


@require_POST
def queue_assignees(request: AuthedRequest, queue_id: int) -> HttpResponse:
    queue = selectors.queue_for(request.user, queue_id)
    try:
        services.queue_assignees_set(user=request.user, queue=queue, assignees=request.POST.getlist("assignees"))
    except ValidationError as e:
        messages.error(request, _errors(e))
    else:
        messages.success(request, "Assignees saved.")
    return redirect("review-queue", queue_id=queue.pk)


@require_GET
def queue_label(request: AuthedRequest, queue_id: int) -> HttpResponse:
    queue = selectors.queue_for(request.user, queue_id)
    return render(request, "review/label.html", pages.label_page_context(request.user, queue, _int(request.GET.get("i"))))


@require_GET
def queue_item_json(request: HttpRequest, queue_id: int, position: int) -> JsonResponse:
    queue = selectors.queue_for(request.user, queue_id)
    item = selectors.queue_item(queue, position)
    return JsonResponse(selectors.queue_item_json(queue, item, request.user))


@require_POST
def queue_item_label(request: AuthedRequest, queue_id: int, position: int) -> JsonResponse:
    """JSON in: {verdict, tags, rewritten, note}; out: the saved label and the progress."""
    queue = selectors.queue_for(request.user, queue_id)
    item = selectors.queue_item(queue, position)
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        return JsonResponse({"detail": "body: must be a JSON object {verdict, tags, rewritten, note}"}, status=400)
    try:
        services.label_save(user=request.user, queue=queue, item=item, verdict=body.get("verdict"),
                            tags=body.get("tags", []), rewritten=body.get("rewritten", ""), note=body.get("note", ""))
    except PermissionDenied as e:
        return JsonResponse({"detail": str(e)}, status=403)
    except ValidationError as e:
        return JsonResponse({"detail": _errors(e)}, status=400)
    gates.gate_progress(queue)  # a pipeline's review gate counts its accepted items
    payload = selectors.queue_item_json(queue, item, request.user)
    return JsonResponse({**payload, "mine": selectors.labelled_by(queue, request.user)})


@require_POST
def gate_release(request: AuthedRequest, run_id: int) -> HttpResponse:
    """An owner opens a pipeline's review gate with the items accepted so far."""
    gate = run_for(request.user, run_id)
    try:
        gates.gate_release(user=request.user, gate=gate)
    except ValidationError as e:
        messages.error(request, "; ".join(m for ms in e.message_dict.values() for m in ms))
    return redirect("pipeline-detail", pipeline_id=gate.pipeline_id) if gate.pipeline_id else redirect(
        "run-detail", run_id=gate.pk)


# ---- datasets from traces -----------------------------------------------------------------


@require_POST
def queue_dataset(request: AuthedRequest, queue_id: int) -> HttpResponse:
    queue = selectors.queue_for(request.user, queue_id)
    try:
        dataset = services.dataset_from_queue(user=request.user, queue=queue, name=request.POST.get("name", ""),
                                              layout=request.POST.get("layout", "prompt_completion"))
    except PermissionDenied as e:
        messages.error(request, str(e))
        return redirect("review-queue", queue_id=queue.pk)
    except ValidationError as e:
        messages.error(request, _errors(e))
        return redirect("review-queue", queue_id=queue.pk)
    return redirect("dataset-detail", dataset_id=dataset.pk)


@require_POST
def filter_preference(request: AuthedRequest) -> HttpResponse:
    """Preference pairs (best and worst of each GRPO group) from the explorer's filter."""
    post = request.POST
    return _from_explorer(request, lambda runs, flt: services.preference_from_groups(
        user=request.user, runs=runs, flt=flt, name=post.get("name", ""), limit=_int(post.get("limit"), 1000) or 0,
        min_margin=_float(post.get("min_margin"))), _dataset_page)


@require_POST
def filter_dataset(request: AuthedRequest) -> HttpResponse:
    post = request.POST
    return _from_explorer(request, lambda runs, flt: services.dataset_from_filter(
        user=request.user, runs=runs, flt=flt, name=post.get("name", ""),
        layout=post.get("layout", "prompt_completion"), limit=_int(post.get("limit"), 1000) or 0), _dataset_page)


def _dataset_page(dataset: Any) -> HttpResponse:
    return redirect("dataset-detail", dataset_id=dataset.pk)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
