"""Thin views: start a comparison, read it side by side, judge it blind, see the ratings."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.compare import selectors, services
from webapp.compare.forms import ComparisonForm
from webapp.compare.models import Comparison
from webapp.datasets.models import Dataset
from webapp.projects.selectors import AuthedRequest, can_label, can_write, project_for, projects_for


def _int(value: Any, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        raise Http404("Not a number.") from None


@require_GET
def compare_list(request: HttpRequest) -> HttpResponse:
    return render(request, "compare/list.html", {
        "comparisons": selectors.comparison_list(request.user),
        "projects": list(projects_for(request.user).order_by("name"))})


@require_http_methods(["GET", "POST"])
def compare_new(request: AuthedRequest) -> HttpResponse:
    """GET `?checkpoints=<id>&checkpoints=<id>` preselects checkpoints (the checkpoint page links here)."""
    checkpoints = selectors.checkpoint_choices(request.user)
    datasets = list(Dataset.objects.filter(project__in={c.run.project_id for c in checkpoints},
                                           kind=Dataset.Kind.PROMPTS, status=Dataset.Status.READY)
                    .order_by("name", "-version")[:200])
    if request.method == "GET":
        initial = {"checkpoints": [_int(i, 0) for i in request.GET.getlist("checkpoints")]}
        form = ComparisonForm(initial=initial, checkpoints=checkpoints, datasets=datasets)
        return render(request, "compare/new.html", {"form": form, "checkpoints": checkpoints})
    form = ComparisonForm(request.POST, checkpoints=checkpoints, datasets=datasets)
    if form.is_valid():
        try:
            comparison = services.comparison_create(user=request.user, checkpoint_ids=form.cleaned_data["checkpoints"],
                                                    spec=form.spec(), name=form.cleaned_data["name"])
            return redirect("compare-detail", comparison_id=comparison.pk)
        except PermissionDenied as e:
            form.add_error(None, str(e))
        except ValidationError as e:
            for field, errors in e.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
    return render(request, "compare/new.html", {"form": form, "checkpoints": checkpoints}, status=400)


@require_GET
def compare_detail(request: HttpRequest, comparison_id: int) -> HttpResponse:
    comparison = selectors.comparison_for(request.user, comparison_id)
    cols = selectors.columns(comparison)
    results = selectors.prompt_results(comparison)
    shown = request.GET.get("shown", "all")
    if shown not in selectors.SHOWN:
        shown = "all"
    sample = min(max(_int(request.GET.get("sample"), 0), 0), comparison.k - 1)
    mine = selectors.my_judgments(comparison, request.user)
    blind = selectors.judging_blind(results, len(cols), mine)
    rows, pages = ([], 1) if blind else selectors.prompt_page(
        comparison, cols, results, shown=shown, page=max(_int(request.GET.get("page"), 1), 1), sample=sample)
    return render(request, "compare/detail.html", {
        "comparison": comparison, "columns": cols, "figures": selectors.figures(comparison, cols, results),
        "rows": rows, "pages": pages, "page": _int(request.GET.get("page"), 1), "shown": shown, "sample": sample,
        "samples": range(comparison.k), "pair_rates": selectors.pair_rates(comparison, cols),
        "ratings": selectors.comparison_ratings(comparison), "can_write": can_write(request.user, comparison.project_id),
        "can_label": can_label(request.user, comparison.project_id), "mine": mine, "blind": blind,
        "bias": selectors.position_bias(comparison), "flips": selectors.flips(cols, results)})


@require_GET
def compare_status(request: HttpRequest, comparison_id: int) -> JsonResponse:
    c = selectors.comparison_for(request.user, comparison_id)
    job = selectors.with_jobs([c])[0].job  # type: ignore[attr-defined]  # set by with_jobs
    return JsonResponse({"status": job.status, "done": job.done, "total": job.total, "finished": job.is_finished,
                         "error": job.error.strip().splitlines()[-1] if job.error.strip() else ""})


@require_POST
def compare_cancel(request: AuthedRequest, comparison_id: int) -> HttpResponse:
    comparison = selectors.comparison_for(request.user, comparison_id)
    try:
        services.comparison_cancel(user=request.user, comparison=comparison)
    except PermissionDenied as e:
        messages.error(request, str(e))
    return redirect("compare-detail", comparison_id=comparison.pk)


@require_GET
def compare_judge(request: AuthedRequest, comparison_id: int) -> HttpResponse:
    comparison = selectors.comparison_for(request.user, comparison_id)
    pair = services.next_pair(user=request.user, comparison=comparison)
    return render(request, "compare/judge.html", {
        "comparison": comparison, "pair": selectors.pair_json(pair) if pair else None,
        "can_label": can_label(request.user, comparison.project_id),
        "mine": selectors.my_judgments(comparison, request.user)})


@require_GET
def compare_pair(request: AuthedRequest, comparison_id: int) -> JsonResponse:
    """The next blind pair, other than the one in `?skip=<token>` (the one on screen)."""
    comparison = selectors.comparison_for(request.user, comparison_id)
    pair = services.next_pair(user=request.user, comparison=comparison, skip=request.GET.get("skip", ""))
    return JsonResponse(selectors.pair_json(pair) if pair else {"done": True})


@require_POST
def compare_verdict(request: AuthedRequest, comparison_id: int) -> JsonResponse:
    """JSON in: {token, winner: left|right|tie}; out: which checkpoint was on which side."""
    comparison = selectors.comparison_for(request.user, comparison_id)
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        return JsonResponse({"detail": "body: must be a JSON object {token, winner}"}, status=400)
    try:
        judgment = services.judgment_record(user=request.user, comparison=comparison,
                                            token=str(body.get("token", "")), winner=body.get("winner"))
    except PermissionDenied as e:
        return JsonResponse({"detail": str(e)}, status=403)
    except ValidationError as e:
        return JsonResponse({"detail": "; ".join(f"{f}: {m}" for f, ms in e.message_dict.items() for m in ms)},
                            status=400)
    return JsonResponse({"winner": judgment.winner, "left": _label(judgment.left_checkpoint),
                         "right": _label(judgment.right_checkpoint),
                         "mine": selectors.my_judgments(comparison, request.user)})


def _label(checkpoint: Any) -> str:
    return f"{checkpoint.run.name} @ step {checkpoint.step}"


@require_GET
def compare_ratings(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for(request.user, slug)
    return render(request, "compare/ratings.html", {
        "project": project, "ratings": selectors.project_ratings(project),
        "comparisons": selectors.with_jobs(list(Comparison.objects.filter(project=project)[:50]))})


@require_POST
def compare_preference(request: AuthedRequest, comparison_id: int) -> HttpResponse:
    """A preference dataset (chosen / rejected) from the comparison's blind verdicts."""
    comparison = selectors.comparison_for(request.user, comparison_id)
    try:
        dataset = services.preference_from_judgments(user=request.user, comparison=comparison,
                                                     name=request.POST.get("name", "") or f"{comparison.name}-preference")
    except ValidationError as e:
        messages.error(request, "; ".join(m for ms in e.message_dict.values() for m in ms))
        return redirect("compare-detail", comparison_id=comparison.pk)
    return redirect("dataset-detail", dataset_id=dataset.pk)


@require_GET
def compare_figures(request: HttpRequest, comparison_id: int) -> HttpResponse:
    """The per-checkpoint table alone, for pages that show a comparison inside them (a
    pipeline's end-to-end comparison)."""
    comparison = selectors.with_jobs([selectors.comparison_for(request.user, comparison_id)])[0]
    cols = selectors.columns(comparison)
    return render(request, "compare/figures_fragment.html", {
        "comparison": comparison, "figures": selectors.figures(comparison, cols, selectors.prompt_results(comparison))})
