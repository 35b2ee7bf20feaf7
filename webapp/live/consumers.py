"""The live feed of one run: rollouts, metric points, token streams, progress and status."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http import Http404

from webapp.broadcast import group_name, watchers_key
from webapp.runs.selectors import run_for, run_status


def _watchers() -> aioredis.Redis:
    # One client per event loop: daphne runs one loop, tests may run several.
    loop = asyncio.get_running_loop()
    client = _CLIENTS.get(loop)
    if client is None:
        client = _CLIENTS[loop] = aioredis.Redis.from_url(settings.REDIS_URL)
    return client


_CLIENTS: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}


class RunConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        self.run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
        if user is None or not user.is_authenticated or not await self._may_see(user):
            await self.close(code=4403)  # refused before the handshake completes: HTTP 403
            return
        self.group = group_name(self.run_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await _watchers().sadd(watchers_key(self.run_id), self.channel_name)
        await self.accept()
        # The status as of now, read after joining the group: a change between the page's
        # render and this subscription (a run cancelled in that second) is not lost.
        status = await database_sync_to_async(run_status)(self.run_id)
        if status:
            await self.send(text_data=json.dumps({"type": "status", **status}))

    @database_sync_to_async
    def _may_see(self, user: Any) -> bool:
        try:
            run_for(user, self.run_id)
        except Http404:
            return False
        return True

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await _watchers().srem(watchers_key(self.run_id), self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        pass  # the feed is one-way; pausing happens in the browser

    async def run_event(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])
