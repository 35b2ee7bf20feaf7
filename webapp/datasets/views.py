from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from webapp.datasets import selectors, services, uploads
from webapp.datasets.files import FORMATS
from webapp.datasets.forms import ColumnsForm, ImportForm
from webapp.datasets.models import Dataset, DatasetExport
from webapp.projects.selectors import AuthedRequest

CONTENT_TYPES = {"jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet",
                 "datasets": "application/zip"}


def dataset_list(request: HttpRequest) -> HttpResponse:
    datasets = selectors.datasets_for(request.user).select_related("project").order_by("-created_at")[:500]
    return render(request, "datasets/list.html", {"datasets": datasets})


def dataset_detail(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = selectors.dataset_for(request.user, dataset_id)
    try:
        after = int(request.GET.get("after", -1))
    except ValueError:
        raise Http404("after: a row index") from None
    rows, nxt = selectors.dataset_rows(dataset, after=after)
    stage = "sft" if dataset.kind == Dataset.Kind.SFT else "grpo"
    return render(request, "datasets/detail.html", {
        "dataset": dataset, "rows": rows, "next_after": nxt, "versions": selectors.dataset_versions(dataset),
        "ready": dataset.status == Dataset.Status.READY, "importing": selectors.is_importing(dataset),
        "formats": FORMATS, "launch_url": f"{reverse('run-new')}?stage={stage}&cfg_dataset=dataset:{dataset.pk}"})


def dataset_import(request: AuthedRequest) -> HttpResponse:
    """The upload is saved and checked here; a worker parses it (the dataset page shows how far)."""
    projects = selectors.owned_projects(request.user)
    refused = uploads.refusal(request) if request.method == "POST" else None
    form = ImportForm(request.POST or None, request.FILES or None, projects=projects, refused=refused)
    if request.method == "POST" and form.is_valid():
        project, name, columns = (form.projects[form.cleaned_data["project"]], form.cleaned_data["name"],
                                  form.cleaned_data.get("columns") or None)
        try:
            if form.cleaned_data.get("hub"):
                dataset = services.dataset_hub_start(project=project, user=request.user, name=name,
                                                     ref=form.cleaned_data["hub"], columns=columns)
            else:
                dataset = services.dataset_upload_start(project=project, user=request.user, name=name,
                                                        upload=form.cleaned_data["file"], columns=columns)
            if dataset.status == Dataset.Status.MAPPING:
                return redirect("dataset-columns", dataset_id=dataset.pk)
            return redirect("dataset-detail", dataset_id=dataset.pk)
        except ValidationError as e:
            for field, msgs in e.message_dict.items():
                for m in msgs:
                    form.add_error(field if field in form.fields else None, m)
        except PermissionDenied as e:
            form.add_error(None, str(e))
    status = 400 if request.method == "POST" else 200
    return render(request, "datasets/import.html", {"form": form, "projects": projects,
                                                    "max_upload_mb": settings.PONDER_MAX_UPLOAD_MB}, status=status)


def dataset_columns(request: AuthedRequest, dataset_id: int) -> HttpResponse:
    """An upload in a layout Ponder does not recognise: its first rows, and which column is what."""
    dataset = selectors.dataset_for(request.user, dataset_id)
    if dataset.status != Dataset.Status.MAPPING:
        return redirect("dataset-detail", dataset_id=dataset.pk)
    names, rows = selectors.upload_preview(dataset)
    form = ColumnsForm(request.POST or None, names=names)
    if request.method == "POST" and form.is_valid():
        try:
            services.dataset_columns_set(dataset=dataset, user=request.user, columns=form.mapping())
            return redirect("dataset-detail", dataset_id=dataset.pk)
        except ValidationError as e:
            for msgs in e.message_dict.values():
                for m in msgs:
                    form.add_error(None, m)
        except PermissionDenied as e:
            form.add_error(None, str(e))
    status = 400 if request.method == "POST" else 200
    return render(request, "datasets/columns.html", {"dataset": dataset, "form": form, "names": names,
                                                     "rows": [[r.get(n, "") for n in names] for r in rows]},
                  status=status)


@require_GET
def dataset_download(request: AuthedRequest, dataset_id: int, fmt: str) -> HttpResponse | FileResponse:
    """The file, written now when small; a large one is exported by a worker first."""
    dataset = selectors.dataset_for(request.user, dataset_id)
    if fmt not in FORMATS:
        raise Http404(f"format: one of {', '.join(FORMATS)}")
    if dataset.status != Dataset.Status.READY:
        raise Http404("dataset: not imported (yet); its page says why")
    path = services.download_ready(dataset, fmt)
    if path is None and dataset.row_count > settings.PONDER_EXPORT_SYNC_MAX_ROWS:
        job = services.export_start(dataset=dataset, fmt=fmt, user=request.user)
        return redirect("dataset-export", dataset_id=dataset.pk, export_id=job.pk)
    path = path or services.dataset_download_path(dataset, fmt)
    return _file(path, services.download_name(dataset, fmt), fmt, inline=fmt == "jsonl" and "view" in request.GET)


def _file(path: Path, name: str, fmt: str, *, inline: bool) -> FileResponse:
    # Viewed in the browser, model text is plain text: never sniffed, never run.
    content_type = "text/plain; charset=utf-8" if inline else CONTENT_TYPES[fmt]
    response = FileResponse(open(path, "rb"), as_attachment=not inline, filename=name,  # noqa: SIM115
                            content_type=content_type)
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_GET
def dataset_export(request: HttpRequest, dataset_id: int, export_id: int) -> HttpResponse:
    dataset = selectors.dataset_for(request.user, dataset_id)
    job = selectors.export_for(dataset, export_id)
    return render(request, "datasets/export.html", {"dataset": dataset, "job": job,
                                                    "percent": round(job.progress * 100)})


@require_GET
def dataset_export_json(request: HttpRequest, dataset_id: int, export_id: int) -> JsonResponse:
    dataset = selectors.dataset_for(request.user, dataset_id)
    job = selectors.export_for(dataset, export_id)
    done = job.status == DatasetExport.Status.DONE
    return JsonResponse({"id": job.pk, "status": job.status, "progress": job.progress, "error": job.error,
                         "download": reverse("dataset-download", args=[dataset.pk, job.fmt]) if done else None})


@require_GET
def dataset_status_json(request: HttpRequest, dataset_id: int) -> JsonResponse:
    """How an import stands, for pages and scripts that poll."""
    dataset = selectors.dataset_for(request.user, dataset_id)
    return JsonResponse({"id": dataset.pk, "status": dataset.status, "rows_read": dataset.rows_read,
                         "row_count": dataset.row_count, "error": dataset.error})
