"""Websocket authentication: the browser's session cookie, or a bearer token for scripts.

Cookie-authenticated sockets must come from one of our own pages (the Origin check stops
cross-site websocket hijacking); a bearer token cannot be sent by another site's page,
so token-authenticated scripts need no Origin header.

A token is checked when the socket opens, and again every RECHECK_S seconds while it stays
open: a socket whose token was revoked or expired meanwhile is closed (code 4401).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import AllowedHostsOriginValidator

from webapp.accounts.selectors import api_token_usable
from webapp.accounts.services import token_for

log = logging.getLogger(__name__)

RECHECK_S = 5.0
REVOKED_CLOSE_CODE = 4401


def _bearer(scope: dict[str, Any]) -> str | None:
    auth = dict(scope.get("headers", [])).get(b"authorization", b"").decode("latin-1")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


class BearerTokenMiddleware:
    """Authenticates a bearer token first, so the Origin check below knows whether one did."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        raw = _bearer(scope)
        token = await database_sync_to_async(token_for)(raw) if raw else None
        if token is None:
            return await self.inner({**scope, "bearer_user": None}, receive, send)
        watch = TokenWatch(token.pk, send)
        task = asyncio.create_task(watch.run())
        try:
            return await self.inner({**scope, "bearer_user": token.user}, receive, watch.send)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class TokenWatch:
    """Closes a token-authenticated socket once its token is no longer usable; after that,
    what the app still sends is dropped."""

    def __init__(self, token_id: int, send: Any) -> None:
        self.token_id = token_id
        self._send = send
        self.closed = False

    async def send(self, message: dict[str, Any]) -> None:
        if not self.closed:
            await self._send(message)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(RECHECK_S)
            try:
                usable = await database_sync_to_async(api_token_usable)(self.token_id)
            except Exception:  # the database away for a moment: ask again next time
                log.warning("could not recheck API token %s of an open socket", self.token_id, exc_info=True)
                continue
            if not usable:
                self.closed = True
                await self._send({"type": "websocket.close", "code": REVOKED_CLOSE_CODE})
                return


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
