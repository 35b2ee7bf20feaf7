import json

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_POST

from webapp.projects.selectors import AuthedRequest, can_write, projects_for
from webapp.runs import annotations, estimates, launch, pipelines, removal, selectors, services, stages
from webapp.runs.checkpoints import checkpoint_model
from webapp.runs.models import Pipeline, PipelineTemplate, Status
from webapp.runs.workers_status import lost_runs, workers_overview

# (sort key, header) of the runs list's sortable columns, in table order.
RUN_COLUMNS = [("name", "Name"), ("stage", "Stage"), ("status", "Status"), ("steps", "Step"),
               ("reward", "Final reward"), ("created", "Created")]


def run_list(request: HttpRequest) -> HttpResponse:
    flt, errors = selectors.parse_run_list(request.GET)
    runs, has_next = selectors.runs_list(request.user, flt)
    sparks = selectors.reward_sparklines([r.pk for r in runs])
    return render(request, "runs/list.html", {
        "runs": [(run, sparks.get(run.pk)) for run in runs], "has_next": has_next, "flt": flt, "errors": errors,
        "projects": projects_for(request.user).order_by("name"), "launchers": selectors.run_launchers(request.user),
        "stages": stages.choices(), "statuses": Status.choices, "columns": RUN_COLUMNS,
    })



def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    """`?diff=<run id>` puts another run's settings beside this one's."""
    run = selectors.run_lineage(request.user, run_id)
    other_id = request.GET.get("diff", "")
    other = selectors.runs_for(request.user).filter(pk=int(other_id)).first() if other_id.isdigit() else None
    return render(request, "runs/detail.html", {
        "run": run, "checkpoints": run.checkpoints.order_by("step"), "can_write": can_write(request.user, run.project_id),
        "config_rows": annotations.config_rows(run, other), "other": other,
        "notes_html": annotations.notes_html(run.notes) if run.notes else "",
    })


@require_POST
def run_annotate(request: AuthedRequest, run_id: int) -> HttpResponse:
    run = selectors.run_for(request.user, run_id)
    starred = {"1": True, "0": False}.get(request.POST.get("starred", ""))
    try:
        annotations.run_annotate(run=run, user=request.user, notes=request.POST.get("notes"),
                                 tags=request.POST.get("tags"), starred=starred)
    except ValidationError as exc:
        messages.error(request, "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()))
    return redirect("run-detail", run_id=run.pk)


def checkpoint_detail(request: HttpRequest, checkpoint_id: int) -> HttpResponse:
    checkpoint = selectors.checkpoint_for(request.user, checkpoint_id)
    run = checkpoint.run
    return render(request, "runs/checkpoint.html", {
        "checkpoint": checkpoint, "run": run, "model": checkpoint_model(checkpoint),
        "derived": selectors.checkpoint_derived_runs(request.user, checkpoint),
        "continue_stage": run.stage if stages.spec(run.stage) and run.stage != "eval" else launch.DEFAULT_STAGE,
        "compare_url": _url_or_none("compare-new"),
    })


def _url_or_none(name: str) -> str | None:
    """The comparison app may not be installed in every build; its link shows when it is."""
    try:
        return reverse(name)
    except NoReverseMatch:
        return None


def run_config_yaml(request: HttpRequest, run_id: int) -> HttpResponse:
    """The run's settings as YAML, for `python -m engine <stage> --config` or the launch form."""
    run = selectors.run_for(request.user, run_id)
    response = HttpResponse(launch.config_yaml(run), content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-{run.stage}.yaml"'
    return response


@require_POST
def run_archive(request: AuthedRequest, run_id: int) -> HttpResponse:
    run = selectors.run_for(request.user, run_id)
    removal.run_archive(run=run, user=request.user, archived=request.POST.get("archived") != "0")
    return redirect("run-detail", run_id=run.pk)


def run_delete(request: AuthedRequest, run_id: int) -> HttpResponse:
    """What deleting the run takes with it, and the confirmed delete."""
    run = selectors.run_for(request.user, run_id)
    if not can_write(request.user, run.project_id):
        raise PermissionDenied("only project owners may delete runs")
    error, status = "", 200
    if request.method == "POST":
        try:
            removal.run_delete(run=run, user=request.user, confirm=request.POST.get("confirm", ""))
            messages.success(request, f"Run {run.name!r} (#{run_id}) and everything that went with it are deleted.")
            return redirect("run-list")
        except ValidationError as exc:
            error, status = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()), 400
    return render(request, "runs/delete.html", {"run": run, "plan": removal.run_deletion_plan(run), "error": error},
                  status=status)


@require_POST
def run_cancel(request: AuthedRequest, run_id: int) -> HttpResponse:
    run = selectors.run_for(request.user, run_id)
    services.run_cancel(run=run, user=request.user)
    return redirect("run-detail", run_id=run.pk)


@require_POST
def run_resume(request: AuthedRequest, run_id: int) -> HttpResponse:
    run = selectors.run_for(request.user, run_id)
    try:
        services.run_resume(run=run, user=request.user)
    except ValidationError as exc:
        messages.error(request, "; ".join(exc.messages))
    return redirect("run-detail", run_id=run.pk)


def run_new(request: AuthedRequest) -> HttpResponse:
    """The launch form for one stage; `?clone=<run>`, `?preset=<slug>`, `?checkpoint=<id>`
    and a posted settings file (`config_file`) prefill it."""
    ctx = launch.launch_context(request.user, request.GET)
    upload = request.FILES.get("config_file") if request.method == "POST" else None
    if upload is not None:
        try:
            loaded = launch.config_from_file(upload, ctx["stage"])
        except ValidationError as exc:
            ctx["load_error"] = "; ".join(m for ms in exc.message_dict.values() for m in ms)
            return render(request, "runs/new.html", ctx, status=400)
        ctx = {**launch.launch_context(request.user, request.GET, loaded=loaded), "loaded_from": upload.name}
        return render(request, "runs/new.html", ctx)
    if request.method == "POST":
        ctx = launch.launch_context(request.user, request.POST)
        form = ctx["form"]
        run = launch.launch_from_form(request.user, form, ctx)
        if run is not None:
            return redirect("run-detail", run_id=run.pk)
    return render(request, "runs/new.html", ctx)


@require_GET
def run_estimate(request: AuthedRequest) -> JsonResponse:
    """The launch form's memory and time estimate and model-scaled defaults, as JSON."""
    return JsonResponse(estimates.launch_estimate(request.user, request.GET))


def worker_list(request: HttpRequest) -> HttpResponse:
    workers = workers_overview()
    visible = set(selectors.runs_for(request.user).filter(status="running").values_list("pk", flat=True))
    for worker in workers:  # a worker's run is named only to those who may see it
        for task in worker["active"]:
            task["visible"] = task["run_id"] in visible
    return render(request, "runs/workers.html", {"workers": workers, "lost": lost_runs(selectors.runs_for(request.user))})


def pipeline_new(request: AuthedRequest) -> HttpResponse:
    """The pipeline editor: stages as JSON, started from a preset or a saved template, checked
    by the engine's rules, launched or saved as the project's template."""
    projects = launch.owned_projects(request.user)
    templates = list(PipelineTemplate.objects.filter(project__in=projects).select_related("project").order_by("name"))
    name, stages_text = pipelines.editor_start(request.GET.get("from", "preset:r1"), templates)
    error, status = "", 200
    if request.method == "POST":
        if "stages" in request.POST:
            name, stages_text = request.POST.get("name", ""), request.POST["stages"]
        elif request.POST.get("preset") in pipelines.PRESETS:  # a preset as it stands, unedited
            name, stages_text = pipelines.editor_start(f"preset:{request.POST['preset']}", templates)
        project = next((p for p in projects if p.slug == request.POST.get("project")), None)
        try:
            if project is None:
                raise ValidationError({"project": "choose a project you own"})
            stages = pipelines.parse_stages(stages_text)
            if request.POST.get("action") == "save":
                template = pipelines.template_save(project=project, user=request.user, name=name, stages=stages)
                messages.success(request, f"Saved template {template.name!r} in {project.name}.")
                return redirect(f"{reverse('pipeline-new')}?from=template:{template.pk}")
            pipeline = pipelines.pipeline_create(project=project, user=request.user, name=name.strip() or "pipeline",
                                                 stages=stages)
            return redirect("pipeline-detail", pipeline_id=pipeline.pk)
        except ValidationError as exc:
            error, status = "; ".join(m for ms in exc.message_dict.values() for m in ms), 400
    return render(request, "runs/pipeline_new.html", {
        "projects": projects, "presets": pipelines.PRESETS, "templates": templates, "name": name,
        "stages_text": stages_text, "error": error, "chosen": request.POST.get("project", "")}, status=status)


def pipeline_list(request: HttpRequest) -> HttpResponse:
    rows = pipelines.pipelines_for(projects_for(request.user))
    return render(request, "runs/pipeline_list.html", {"rows": rows})


def pipeline_status(request: HttpRequest, pipeline_id: int) -> JsonResponse:
    """The stages' status for the pipeline page to refresh itself."""
    pipeline = get_object_or_404(Pipeline, pk=pipeline_id, project__in=projects_for(request.user))
    runs = pipelines.pipeline_runs(pipeline)
    return JsonResponse({"state": pipelines.pipeline_state(runs), "stages": [pipelines.stage_row(r) for r in runs]})


def pipeline_detail(request: HttpRequest, pipeline_id: int) -> HttpResponse:
    pipeline = get_object_or_404(Pipeline, pk=pipeline_id, project__in=projects_for(request.user))
    runs = pipelines.pipeline_runs(pipeline)
    resumable = pipelines.resumable_stage(runs)
    typed = request.POST.get("config") if request.method == "POST" else None  # kept when refused
    return render(request, "runs/pipeline_detail.html", {
        "pipeline": pipeline, "stages": [(run, pipelines.stage_row(run)) for run in runs],
        "state": pipelines.pipeline_state(runs), "resumable": resumable,
        "can_write": can_write(request.user, pipeline.project_id),
        "config_text": typed if typed is not None else json.dumps(resumable.config if resumable else {}, indent=2),
    })


@require_POST
def pipeline_resume(request: AuthedRequest, pipeline_id: int) -> HttpResponse:
    """Resume the pipeline from its failed, cancelled or blocked stage, with the settings
    typed into the page (a JSON object) instead of the old ones."""
    pipeline = get_object_or_404(Pipeline, pk=pipeline_id, project__in=projects_for(request.user))
    run = get_object_or_404(pipeline.runs, pk=request.POST.get("run") or 0)
    try:
        config = pipelines.parse_config(request.POST.get("config", ""))
        services.run_resume(run=run, user=request.user, config=config)
    except ValidationError as exc:
        messages.error(request, "; ".join(f"{k}: {', '.join(v)}" for k, v in exc.message_dict.items())
                       if hasattr(exc, "error_dict") else "; ".join(exc.messages))
        return pipeline_detail(request, pipeline_id)
    messages.success(request, f"Resumed from stage {(run.pipeline_index or 0) + 1}.")
    return redirect("pipeline-detail", pipeline_id=pipeline.pk)


@require_POST
def pipeline_abandon(request: AuthedRequest, pipeline_id: int) -> HttpResponse:
    pipeline = get_object_or_404(Pipeline, pk=pipeline_id, project__in=projects_for(request.user))
    pipelines.pipeline_abandon(pipeline=pipeline, user=request.user)
    messages.success(request, "Pipeline abandoned; what its stages produced is kept.")
    return redirect("pipeline-detail", pipeline_id=pipeline.pk)
