"""Charts: one run's curves and several runs overlaid, downsampled in SQL."""

from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render

from webapp import tables
from webapp.charts import selectors as charts
from webapp.runs.selectors import run_for


def run_metrics(request: HttpRequest, run_id: int) -> JsonResponse:
    run = run_for(request.user, run_id)
    return JsonResponse({"series": charts.run_curves(run)})


def run_metrics_download(request: HttpRequest, run_id: int, fmt: str) -> StreamingHttpResponse:
    """Every metric of the run, a row per step: `metrics.csv` or `metrics.parquet`."""
    import pyarrow as pa

    run = run_for(request.user, run_id)
    if fmt not in tables.FORMATS:
        raise Http404("metrics.csv or metrics.parquet")
    columns, rows = charts.metric_table(run)
    types = {c: pa.float64() for c in columns} | {"step": pa.int64()}
    return tables.download(fmt, f"run-{run.pk}-metrics", columns, rows, types)


def run_overlay(request: HttpRequest) -> HttpResponse:
    """Several runs' curves on shared charts; the page fetches `run_overlay_data`."""
    try:
        query = charts.parse_query(request.GET)
    except ValidationError as exc:
        return render(request, "runs/overlay.html", {"errors": _messages(exc), "runs": []}, status=400)
    runs = charts.visible_runs(request.user, query.run_ids)
    return render(request, "runs/overlay.html", {"runs": runs, "query": query, "errors": []})


def run_overlay_data(request: HttpRequest) -> JsonResponse:
    try:
        query = charts.parse_query(request.GET)
    except ValidationError as exc:
        return JsonResponse({"errors": _messages(exc)}, status=400)
    return JsonResponse(charts.overlay_data(charts.visible_runs(request.user, query.run_ids), query))


def _messages(exc: ValidationError) -> list[str]:
    return [f"{field}: {message}" for field, messages in exc.message_dict.items() for message in messages]


