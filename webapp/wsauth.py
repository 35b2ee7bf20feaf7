"""Websocket authentication: the browser's session cookie, or a bearer token for scripts."""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async

from webapp.accounts.services import user_for_token


class BearerTokenMiddleware:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        headers = dict(scope.get("headers", []))
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.lower().startswith("bearer "):
            user = await database_sync_to_async(user_for_token)(auth[7:].strip())
            if user is not None:
                scope = {**scope, "user": user}
        return await self.inner(scope, receive, send)


def SessionOrTokenAuthMiddleware(inner: Any) -> Any:  # noqa: N802 (reads like the Channels stacks)
    return AuthMiddlewareStack(BearerTokenMiddleware(inner))
