"""Thin views: parse the form, call a service, show the result. Rules live in services.py."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from webapp.projects import services
from webapp.projects.forms import MemberAddForm, MemberRoleForm, ProjectEditForm, ProjectForm
from webapp.projects.models import Invitation, Project, Role
from webapp.projects.selectors import (
    AuthedRequest,
    is_owner,
    members_of,
    membership_in,
    project_for,
    projects_for,
    role_in,
)


def project_list(request: HttpRequest) -> HttpResponse:
    projects = projects_for(request.user).annotate(run_count=Count("runs", distinct=True)).order_by("name")
    return render(request, "projects/list.html", {"projects": projects})


def project_new(request: AuthedRequest) -> HttpResponse:
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = services.project_create(owner=request.user, **form.cleaned_data)
        except ValidationError as e:
            form.add_error(None, e)  # the error names its field: the form shows it there
        else:
            messages.success(request, f"Created {project.name}: you are its owner.")
            return redirect("project-detail", slug=project.slug)
    return render(request, "projects/new.html", {"form": form}, status=400 if form.errors else 200)


def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for(request.user, slug)
    runs = project.runs.order_by("-created_at")[:200]
    return render(request, "projects/detail.html", {
        "project": project, "runs": runs, "members": members_of(project), "role": role_in(request.user, project.pk),
    })


def project_edit(request: AuthedRequest, slug: str) -> HttpResponse:
    project = project_for(request.user, slug)
    if not is_owner(request.user, project.pk):  # the form too: members should not see a form they cannot send
        raise PermissionDenied("only owners edit the project")
    initial = {"name": project.name, "description": project.description}
    form = ProjectEditForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.project_update(user=request.user, project=project, **form.cleaned_data)
        except ValidationError as e:
            form.add_error(None, e)
        else:
            messages.success(request, "Saved.")
            return redirect("project-detail", slug=project.slug)
    return render(request, "projects/edit.html", {"project": project, "form": form},
                  status=400 if form.errors else 200)


def project_members(request: AuthedRequest, slug: str) -> HttpResponse:
    project = project_for(request.user, slug)
    return _members_page(request, project, MemberAddForm())


@require_POST
def member_add(request: AuthedRequest, slug: str) -> HttpResponse:
    project = project_for(request.user, slug)
    form = MemberAddForm(request.POST)
    if form.is_valid():
        try:
            added = services.member_or_invitation(
                actor=request.user, project=project, **form.cleaned_data,
                link=lambda token: request.build_absolute_uri(reverse("invitation-accept", args=[token])))
        except ValidationError as e:
            form.add_error(None, e)
        else:
            messages.success(request, f"Invited {added.email} as {added.role}: an e-mail with a link to join is on "
                             "its way." if isinstance(added, Invitation) else
                             f"Added {added.user.get_username()} as {added.role}.")
            return redirect("project-members", slug=project.slug)
    return _members_page(request, project, form, status=400)


@require_POST
def invitation_revoke(request: AuthedRequest, slug: str, invitation_id: int) -> HttpResponse:
    project = project_for(request.user, slug)
    invitation = get_object_or_404(Invitation, project=project, pk=invitation_id)
    services.invitation_revoke(actor=request.user, invitation=invitation)
    messages.success(request, f"The invitation to {invitation.email} is withdrawn: its link no longer works.")
    return redirect("project-members", slug=project.slug)


@require_POST
def member_role(request: AuthedRequest, slug: str, membership_id: int) -> HttpResponse:
    project = project_for(request.user, slug)
    membership = membership_in(project, membership_id)
    form = MemberRoleForm(request.POST)
    # An unknown role reaches the service, which refuses it naming the field.
    role = form.cleaned_data["role"] if form.is_valid() else request.POST.get("role", "")
    try:
        services.member_role_set(actor=request.user, membership=membership, role=role)
    except ValidationError as e:
        return _refused(request, project, e)
    messages.success(request, f"{membership.user.get_username()} is now {role}.")
    return redirect("project-members", slug=project.slug)


@require_POST
def member_remove(request: AuthedRequest, slug: str, membership_id: int) -> HttpResponse:
    project = project_for(request.user, slug)
    membership = membership_in(project, membership_id)
    try:
        services.member_remove(actor=request.user, membership=membership)
    except ValidationError as e:
        return _refused(request, project, e)
    messages.success(request, f"Removed {membership.user.get_username()} from {project.name}.")
    if membership.user_id == request.user.pk:  # they left: the members page would now be a 404
        return redirect("project-list")
    return redirect("project-members", slug=project.slug)


def _members_page(request: AuthedRequest, project: Project, form: MemberAddForm, status: int = 200) -> HttpResponse:
    role = role_in(request.user, project.pk)
    return render(request, "projects/members.html", {
        "project": project, "members": members_of(project), "role": role, "is_owner": role == Role.OWNER,
        "form": form, "roles": Role.choices,
        "invitations": project.invitations.filter(accepted_at=None).order_by("-created_at") if role == Role.OWNER else [],
    }, status=status)


def _refused(request: HttpRequest, project: Project, exc: ValidationError) -> HttpResponse:
    messages.error(request, "; ".join(f"{field}: {m}" for field, msgs in exc.message_dict.items() for m in msgs))
    return redirect("project-members", slug=project.slug)
