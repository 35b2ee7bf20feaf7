from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from webapp.projects.selectors import project_for, projects_for, role_in


def project_list(request: HttpRequest) -> HttpResponse:
    projects = projects_for(request.user).annotate(run_count=Count("runs", distinct=True)).order_by("name")
    return render(request, "projects/list.html", {"projects": projects})


def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for(request.user, slug)
    runs = project.runs.order_by("-created_at")[:200]
    members = project.memberships.select_related("user").order_by("user__username")
    return render(request, "projects/detail.html", {
        "project": project, "runs": runs, "members": members, "role": role_in(request.user, project.pk),
    })
