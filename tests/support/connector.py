"""A Bot Framework connector on loopback, speaking the REST shape the bot's replies use.

It records every activity the bot sends (with the address it was posted to and the request's
Authorization header), can refuse to open a 1:1 chat with chosen users, the way Teams does when
the app is not installed for them, and can answer the next posts with chosen failures
(`faults`: a status and headers, e.g. 429 with `Retry-After`), the way a throttling or failing
connector does.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Sent:
    method: str
    conversation_id: str
    activity: dict[str, Any]
    # The activity id in the URL (`.../activities/{id}`: a reply to it), "" when none.
    reply_to_id: str = ""
    authorization: str = ""

    @property
    def text(self) -> str:
        return str(self.activity.get("text") or "")

    @property
    def card(self) -> dict[str, Any] | None:
        for attachment in self.activity.get("attachments") or []:
            if attachment.get("contentType") == "application/vnd.microsoft.card.adaptive":
                return attachment["content"]
        return None


@dataclass
class ConnectorServer:
    sent: list[Sent] = field(default_factory=list)
    created_conversations: list[dict[str, Any]] = field(default_factory=list)
    uninstalled_users: set[str] = field(default_factory=set)
    # Answers for the next activity posts, in order, instead of accepting them.
    faults: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    # Every POST that reached it (activities and conversations), failed ones included.
    attempts: int = 0
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _server: TestServer | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def service_url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("/"))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v3/conversations", self._create_conversation)
        app.router.add_post("/v3/conversations/{conversation}/activities", self._send)
        app.router.add_post("/v3/conversations/{conversation}/activities/{activity}", self._send)
        app.router.add_put("/v3/conversations/{conversation}/activities/{activity}", self._update)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()

    async def wait_for(self, predicate: Callable[[Sent], bool], *, within_s: float = 10.0) -> Sent:
        """The first activity sent so far or later that satisfies `predicate`."""

        async def wait() -> Sent:
            while True:
                for item in self.sent:
                    if predicate(item):
                        return item
                self._arrived.clear()
                await self._arrived.wait()

        return await asyncio.wait_for(wait(), within_s)

    def in_conversation(self, conversation_id: str) -> list[Sent]:
        return [item for item in self.sent if item.conversation_id == conversation_id]

    def clear(self) -> None:
        self.sent.clear()
        self.created_conversations.clear()

    async def _send(self, request: web.Request) -> web.Response:
        activity = await request.json()
        self.attempts += 1
        if self.faults:
            status, headers = self.faults.pop(0)
            return web.json_response({"error": {"code": "Fault"}}, status=status, headers=headers)
        self.sent.append(
            Sent(
                "POST",
                request.match_info["conversation"],
                activity,
                request.match_info.get("activity", ""),
                request.headers.get("Authorization", ""),
            )
        )
        self._arrived.set()
        return web.json_response({"id": f"activity-{next(self._ids)}"})

    async def _update(self, request: web.Request) -> web.Response:
        activity = await request.json()
        self.sent.append(Sent("PUT", request.match_info["conversation"], activity))
        return web.json_response({"id": request.match_info["activity"]})

    async def _create_conversation(self, request: web.Request) -> web.Response:
        parameters = await request.json()
        self.attempts += 1
        member_ids = [member.get("id") for member in parameters.get("members") or []]
        if any(member in self.uninstalled_users for member in member_ids):
            return web.json_response(
                {
                    "error": {
                        "code": "Forbidden",
                        "message": "The bot is not installed for the user",
                    }
                },
                status=403,
            )
        self.created_conversations.append(parameters)
        return web.json_response(
            {"id": f"a:private-{member_ids[0]}", "activityId": f"activity-{next(self._ids)}"}
        )
