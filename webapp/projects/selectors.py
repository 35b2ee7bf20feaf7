"""Who may see and do what: every page, API call and websocket asks here."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.models import User as AuthUser  # settings.AUTH_USER_MODEL is Django's own
from django.db.models import QuerySet
from django.http import Http404, HttpRequest

from webapp.projects.models import Membership, Project, Role

User = AuthUser | AnonymousUser  # whoever asks: signed in or not


class AuthedRequest(HttpRequest):
    """For type checkers only: a request that got past LoginRequiredMiddleware (or the API's
    auth), so its `user` is signed in."""

    user: AuthUser

# What each action needs. Reading is open to every member; changing data is not.
WRITE_ROLES = frozenset({Role.OWNER})
LABEL_ROLES = frozenset({Role.OWNER, Role.ANNOTATOR})


def projects_for(user: User) -> QuerySet[Project]:
    if not user.is_authenticated:
        return Project.objects.none()
    return Project.objects.filter(memberships__user=user)


def role_in(user: User, project_id: int) -> str | None:
    if not user.is_authenticated:
        return None
    return (
        Membership.objects.filter(user=user, project_id=project_id).values_list("role", flat=True).first()
    )


def project_for(user: User, slug: str) -> Project:
    """The project, if `user` is a member; otherwise 404 (outsiders learn nothing)."""
    project = projects_for(user).filter(slug=slug).first()
    if project is None:
        raise Http404("No such project.")
    return project


def can_write(user: User, project_id: int) -> bool:
    return role_in(user, project_id) in WRITE_ROLES


def can_label(user: User, project_id: int) -> bool:
    return role_in(user, project_id) in LABEL_ROLES


def is_owner(user: User, project_id: int) -> bool:
    return role_in(user, project_id) == Role.OWNER


def members_of(project: Project) -> QuerySet[Membership]:
    return project.memberships.select_related("user").order_by("user__username")


def membership_in(project: Project, membership_id: int) -> Membership:
    """A membership of `project` (the caller's access to the project is checked already)."""
    membership = members_of(project).filter(pk=membership_id).first()
    if membership is None:
        raise Http404("No such member.")
    return membership
