from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.utils.text import slugify

from webapp.projects.models import Membership, Project, Role

if TYPE_CHECKING:
    from webapp.projects.selectors import AuthUser


def project_create(*, name: str, owner: AuthUser, slug: str | None = None) -> Project:
    with transaction.atomic():
        project = Project.objects.create(name=name, slug=slug or _free_slug(name))
        Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    return project


def member_add(*, project: Project, user: AuthUser, role: str) -> Membership:
    if role not in Role.values:
        raise ValueError(f"role must be one of {', '.join(Role.values)}, not {role!r}")
    membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    return membership


def personal_project(*, user: AuthUser) -> Project:
    """The caller's default project, created on first use (CONTRACTS: POST /runs without project)."""
    existing = Project.objects.filter(personal_for=user).first()
    if existing:
        return existing
    try:
        with transaction.atomic():
            project = Project.objects.create(
                name=f"{user.get_username()}'s project", slug=_free_slug(user.get_username()), personal_for=user
            )
            Membership.objects.create(project=project, user=user, role=Role.OWNER)
            return project
    except IntegrityError:  # a concurrent request created it first
        return Project.objects.get(personal_for=user)


def _free_slug(name: str) -> str:
    base = slugify(name)[:56] or "project"
    slug, n = base, 1
    while Project.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug
