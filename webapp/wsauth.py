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
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        token = _bearer(scope)
        if token:
            user = await database_sync_to_async(user_for_token)(token)
            if user is not None:
                scope = {**scope, "user": user}
        return await self.inner(scope, receive, send)


class OriginUnlessBearer:
    """Apply the Origin check to every socket that does not carry a bearer token."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.checked = AllowedHostsOriginValidator(inner)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        app = self.inner if _bearer(scope) else self.checked
        return await app(scope, receive, send)


def websocket_stack(inner: Any) -> Any:
    return OriginUnlessBearer(AuthMiddlewareStack(BearerTokenMiddleware(inner)))
