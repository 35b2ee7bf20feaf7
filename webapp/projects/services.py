"""Writes for projects and their members. Each checks who asks, then changes data in one transaction."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email, validate_slug
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from webapp.projects.models import Invitation, Membership, Project, Role
from webapp.projects.selectors import can_write

if TYPE_CHECKING:
    from webapp.projects.selectors import AuthUser

NAME_MAX = 200
SLUG_MAX = 64
# Paths under /projects/ that a slug would shadow.
RESERVED_SLUGS = frozenset({"new"})


def project_create(*, name: str, owner: AuthUser, slug: str | None = None, description: str = "") -> Project:
    """A project with `owner` as its first owner; `slug` is derived from the name when empty."""
    name = _clean_name(name)
    slug = _clean_slug(slug) if slug else _free_slug(name)
    try:
        with transaction.atomic():
            project = Project.objects.create(name=name, slug=slug, description=description.strip())
            Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    except IntegrityError:  # a concurrent request took the slug between the check and the insert
        raise ValidationError({"slug": f"{slug!r} is taken: choose another"}) from None
    return project


def project_update(*, user: AuthUser, project: Project, name: str, description: str) -> Project:
    _check_owner(user, project)
    project.name, project.description = _clean_name(name), description.strip()
    project.save(update_fields=["name", "description"])
    return project


def member_add(*, project: Project, user: AuthUser, role: str) -> Membership:
    """Make `user` a member with `role` (or change their role). No permission check: callers have done it."""
    if role not in Role.values:
        raise ValueError(f"role must be one of {', '.join(Role.values)}, not {role!r}")
    membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    return membership


def member_invite(*, actor: AuthUser, project: Project, who: str, role: str) -> Membership:
    """An owner adds an existing user, named by username or e-mail, with `role`."""
    _check_owner(actor, project)
    _check_role(role)
    user = _find_user(who)
    if Membership.objects.filter(project=project, user=user).exists():
        raise ValidationError({"who": f"{user.get_username()} is already a member: change their role below"})
    return Membership.objects.create(project=project, user=user, role=role)


INVITATION_DAYS = 7


def invitation_send(*, actor: AuthUser, project: Project, email: str, role: str, link: Callable[[str], str]) -> Invitation:
    """Invite an e-mail address that has no account yet: a single-use link, valid
    INVITATION_DAYS days, is e-mailed (`link(token)` makes its absolute URL); only the token's
    hash is kept. A pending invitation to the same address is replaced."""
    _check_owner(actor, project)
    _check_role(role)
    email = email.strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError({"who": f"{email!r} is not an e-mail address"}) from None
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        Invitation.objects.filter(project=project, email=email, accepted_at=None).delete()
        invitation = Invitation.objects.create(
            project=project, email=email, role=role, token_hash=token_hash(token), invited_by=actor,
            expires_at=timezone.now() + timedelta(days=INVITATION_DAYS))
        transaction.on_commit(lambda: send_mail(
            f"You are invited to {project.name} on Ponder",
            f"{actor.get_username()} invites you to the project {project.name!r} on Ponder as {role}.\n\n"
            f"Open this link within {INVITATION_DAYS} days to choose a username and password and join:\n"
            f"{link(token)}\n\nIf you did not expect this, ignore it: nothing happens until the link is opened.",
            None, [email]))
    return invitation


def member_or_invitation(*, actor: AuthUser, project: Project, who: str, role: str,
                         link: Callable[[str], str]) -> Membership | Invitation:
    """Add the user `who` names; an e-mail address nobody here has gets an invitation."""
    who = who.strip()
    if "@" in who and not get_user_model().objects.filter(is_active=True, email__iexact=who).exists():
        return invitation_send(actor=actor, project=project, email=who, role=role, link=link)
    return member_invite(actor=actor, project=project, who=who, role=role)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_revoke(*, actor: AuthUser, invitation: Invitation) -> None:
    _check_owner(actor, invitation.project)
    Invitation.objects.filter(pk=invitation.pk, accepted_at=None).delete()


def member_role_set(*, actor: AuthUser, membership: Membership, role: str) -> Membership:
    _check_owner(actor, membership.project)
    _check_role(role)
    with transaction.atomic():
        locked = _lock_owners(membership)
        if locked.role == Role.OWNER and role != Role.OWNER:
            _check_not_last_owner(locked, "demoted")
        locked.role = role
        locked.save(update_fields=["role"])
    return locked


def member_remove(*, actor: AuthUser, membership: Membership) -> None:
    _check_owner(actor, membership.project)
    with transaction.atomic():
        locked = _lock_owners(membership)
        if locked.role == Role.OWNER:
            _check_not_last_owner(locked, "removed")
        locked.delete()


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


def _check_owner(user: AuthUser, project: Project) -> None:
    if not can_write(user, project.pk):
        raise PermissionDenied("only owners of the project manage it and its members")


def _check_role(role: str) -> None:
    if role not in Role.values:
        raise ValidationError({"role": f"must be one of {', '.join(Role.values)}, not {role!r}"})


def _lock_owners(membership: Membership) -> Membership:
    """Lock the project's owner rows and this one, so two owners demoting each other at once
    cannot leave the project with none."""
    rows = Membership.objects.select_for_update().filter(project_id=membership.project_id)
    list(rows.filter(role=Role.OWNER).order_by("pk"))
    return rows.get(pk=membership.pk)


def _check_not_last_owner(membership: Membership, what: str) -> None:
    others = Membership.objects.filter(project_id=membership.project_id, role=Role.OWNER).exclude(pk=membership.pk)
    if not others.exists():
        raise ValidationError({"role": f"the last owner cannot be {what}: make someone else an owner first"})


def _find_user(who: str) -> AuthUser:
    who = who.strip()
    if not who:
        raise ValidationError({"who": "give a username or an e-mail address"})
    users = get_user_model().objects.filter(is_active=True)
    found = users.filter(username=who).first()
    if found is None and "@" in who:
        by_mail = list(users.filter(email__iexact=who)[:2])
        if len(by_mail) > 1:
            raise ValidationError({"who": f"several users have the e-mail {who}: give a username"})
        found = by_mail[0] if by_mail else None
    if found is None:
        raise ValidationError({"who": f"no user {who!r}: they need an account first"})
    return found


def _clean_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        raise ValidationError({"name": f"a project needs a name of 1 to {NAME_MAX} characters"})
    return name


def _clean_slug(slug: str) -> str:
    slug = slug.strip()
    try:
        validate_slug(slug)
    except ValidationError:
        raise ValidationError({"slug": "use only letters, digits, hyphens and underscores"}) from None
    if len(slug) > SLUG_MAX or slug in RESERVED_SLUGS:
        raise ValidationError({"slug": f"at most {SLUG_MAX} characters, and not {', '.join(sorted(RESERVED_SLUGS))}"})
    if Project.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": f"{slug!r} is taken: choose another"})
    return slug


def _free_slug(name: str) -> str:
    base = slugify(name)[:56] or "project"
    if base in RESERVED_SLUGS:
        base = f"{base}-project"
    slug, n = base, 1
    while Project.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug
