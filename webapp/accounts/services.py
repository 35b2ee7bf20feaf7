from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.utils import timezone

from webapp.accounts.models import ApiToken

if TYPE_CHECKING:
    from webapp.projects.selectors import AuthUser

TOKEN_PREFIX = "pdr_"


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_token_create(*, user: AuthUser, name: str = "") -> str:
    """Create a token and return it in clear; only its digest is kept."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, name=name, prefix=raw[:12], digest=_digest(raw))
    return raw


def user_for_token(raw: str) -> AuthUser | None:
    token = ApiToken.objects.select_related("user").filter(digest=_digest(raw)).first()
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    # Touch at most once a minute: ingestion calls arrive many times a second.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


def demo_user_ensure(*, username: str = "demo", password: str | None = None) -> tuple[AuthUser, str]:
    """Create or reset the demo user; returns (user, password)."""
    User = get_user_model()
    password = password or secrets.token_urlsafe(9)
    user, _ = User.objects.get_or_create(username=username)
    user.set_password(password)
    user.save()
    return user, password
