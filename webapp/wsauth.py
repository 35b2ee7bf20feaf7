"""Websocket authentication: the browser's session cookie, or a bearer token for scripts.

Cookie-authenticated sockets must come from one of our own pages (the Origin check stops
cross-site websocket hijacking); a bearer token cannot be sent by another site's page,
so token-authenticated scripts need no Origin header.
"""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import AllowedHostsOriginValidator

from webapp.accounts.services import user_for_token


def _bearer(scope: dict[str, Any]) -> str | None:
    auth = dict(scope.get("headers", [])).get(b"authorization", b"").decode("latin-1")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


class BearerTokenMiddleware:
    """Authenticates a bearer token first, so the Origin check below knows whether one did."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        token = _bearer(scope)
        user = await database_sync_to_async(user_for_token)(token) if token else None
        return await self.inner({**scope, "bearer_user": user}, receive, send)


class OriginUnlessBearer:
    """Apply the Origin check to every socket that did not authenticate with a bearer token
    (a token sent but not valid counts as none)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.checked = AllowedHostsOriginValidator(inner)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        app = self.inner if scope.get("bearer_user") is not None else self.checked
        return await app(scope, receive, send)


class BearerUserFirst:
    """The token's user, when there is one, over the session cookie's."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope.get("bearer_user") is not None:
            scope = {**scope, "user": scope["bearer_user"]}
        return await self.inner(scope, receive, send)


def websocket_stack(inner: Any) -> Any:
    return BearerTokenMiddleware(OriginUnlessBearer(AuthMiddlewareStack(BearerUserFirst(inner))))
