from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone

from webapp.accounts.models import ApiToken

if TYPE_CHECKING:
    from webapp.projects.selectors import AuthUser


def api_tokens_for(user: AuthUser) -> QuerySet[ApiToken]:
    """The user's own tokens, newest first. Nobody sees another user's tokens."""
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-pk")


def api_token_for(user: AuthUser, token_id: int) -> ApiToken:
    """One of the user's own tokens; 404 for anyone else's, so they learn nothing."""
    token = api_tokens_for(user).filter(pk=token_id).first()
    if token is None:
        raise Http404("No such token.")
    return token


def usable_tokens(now: datetime | None = None) -> QuerySet[ApiToken]:
    """Tokens that may be used now: not revoked, not expired, their user active."""
    now = now or timezone.now()
    return ApiToken.objects.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now),
                                   revoked_at__isnull=True, user__is_active=True)


def api_token_usable(token_id: int) -> bool:
    return usable_tokens().filter(pk=token_id).exists()
