from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from webapp.accounts.models import ApiToken, Scope
from webapp.accounts.selectors import usable_tokens
from webapp.projects.models import Invitation, Membership, Role

if TYPE_CHECKING:
    from webapp.projects.selectors import AuthUser

TOKEN_PREFIX = "pdr_"
MAX_EXPIRY_DAYS = 365
TOUCH_EVERY_S = 60  # last_used_at is written at most this often: ingestion calls come many times a second


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_token_create(
    *, user: AuthUser, name: str = "", scope: str = Scope.FULL, expires_in_days: int | None = None,
) -> str:
    """Create a token and return it in clear, the one time it is ever seen; only its digest
    is kept. Without `expires_in_days` it never expires."""
    if scope not in Scope.values:
        raise ValidationError({"scope": f"must be one of {', '.join(Scope.values)}"})
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
        raise ValidationError({"expires_in_days": f"must be between 1 and {MAX_EXPIRY_DAYS} (or none: never)"})
    expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days is not None else None
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, name=name.strip(), prefix=raw[:12], digest=_digest(raw), scope=scope,
                            expires_at=expires_at)
    return raw


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke a token; every later request with it is refused (lookups are never cached).
    Revoking twice keeps the first time."""
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db(fields=["revoked_at"])
    return token


def token_for(raw: str) -> ApiToken | None:
    """The token with this clear text, with its user, if it may be used now: not revoked,
    not expired, its user active. Asked on every request, so a revocation counts at once."""
    now = timezone.now()
    token = usable_tokens(now).select_related("user").filter(digest=_digest(raw)).first()
    if token is None:
        return None
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > TOUCH_EVERY_S:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def user_for_token(raw: str) -> AuthUser | None:
    token = token_for(raw)
    return token.user if token is not None else None


def demo_user_ensure(*, username: str = "demo", password: str | None = None) -> tuple[AuthUser, str]:
    """Create or reset the demo user; returns (user, password)."""
    User = get_user_model()
    password = password or secrets.token_urlsafe(9)
    user, _ = User.objects.get_or_create(username=username)
    user.set_password(password)
    user.save()
    return user, password


def invitation_for(token: str) -> Invitation | None:
    """The pending, unexpired invitation a link's token opens, or None."""
    from webapp.projects.services import token_hash

    return (Invitation.objects.select_related("project").filter(
        token_hash=token_hash(token), accepted_at=None, expires_at__gt=timezone.now()).first())


def invitation_accept(*, token: str, user: AuthUser | None = None, username: str = "", password: str = "") -> Membership:
    """Join the invitation's project with its role: as the signed-in `user`, or as a new
    account (`username`, `password`, the invited e-mail). The link works once.
    ValidationError names the field and the rule; nothing is made then."""
    from django.contrib.auth.password_validation import validate_password

    from webapp.projects.services import member_add

    with transaction.atomic():
        invitation = invitation_for(token)
        if invitation is None:
            raise ValidationError({"token": "this invitation link has been used, withdrawn or has expired: ask for a new one"})
        invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if invitation.accepted_at is not None:
            raise ValidationError({"token": "this invitation link has been used"})
        if user is None:
            user = _new_account(username, password, invitation.email, validate_password)
        membership = member_add(project=invitation.project, user=user,
                                role=_higher(invitation.role, _role_of(user, invitation.project_id)))
        Invitation.objects.filter(pk=invitation.pk).update(accepted_by=user, accepted_at=timezone.now())
    return membership


def _new_account(username: str, password: str, email: str, validate_password: Any) -> AuthUser:
    username = username.strip()
    users = get_user_model()
    if not username or len(username) > 150 or not all(c.isalnum() or c in "@.+-_" for c in username):
        raise ValidationError({"username": "letters, digits and @.+-_ only, 1 to 150 characters"})
    if users.objects.filter(username=username).exists():
        raise ValidationError({"username": f"{username!r} is taken: choose another"})
    candidate = users(username=username, email=email)
    try:
        validate_password(password, candidate)
    except ValidationError as e:
        raise ValidationError({"password": e.messages}) from None
    return users.objects.create_user(username=username, email=email, password=password)


def _role_of(user: AuthUser, project_id: int) -> str | None:
    return Membership.objects.filter(user=user, project_id=project_id).values_list("role", flat=True).first()


def _higher(invited: str, current: str | None) -> str:
    """An invitation never lowers a role someone has already."""
    order: list[str] = [Role.VIEWER, Role.ANNOTATOR, Role.OWNER]
    return invited if current is None or order.index(invited) >= order.index(current) else current
