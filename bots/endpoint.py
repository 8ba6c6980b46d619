"""`POST /api/messages`: checks the HTTP input, then hands the activity to the adapter.

The SDK's own `CloudAdapter.process` answers a non-JSON body, a JSON array or a bad token with a
500; here malformed input gets 400/415 with a short message, a bad or missing token 401, and an
invoke is never answered with 501.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from botbuilder.core import TurnContext
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import Activity, ActivityTypes
from msrest.exceptions import DeserializationError
from msrest.serialization import Model

import messages
from bots.auth import SigningKeysUnavailable

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _missing_field(body: dict[str, Any]) -> str | None:
    """The first required field the activity lacks, named as in the JSON."""
    if not isinstance(body.get("type"), str) or not body["type"]:
        return "type"
    if not isinstance(body.get("serviceUrl"), str) or not body["serviceUrl"]:
        return "serviceUrl"
    if not isinstance(body.get("channelId"), str) or not body["channelId"]:
        return "channelId"
    conversation = body.get("conversation")
    if not isinstance(conversation, dict) or not isinstance(conversation.get("id"), str):
        return "conversation.id"
    sender = body.get("from")
    if sender is not None and not isinstance(sender, dict):
        return "valid from"
    return None


def messages_endpoint(
    adapter: CloudAdapter, logic: Callable[[TurnContext], Awaitable[None]]
) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        if request.content_type != "application/json":
            return _problem(415, messages.HTTP_NOT_JSON_MEDIA_TYPE)
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return _problem(400, messages.HTTP_INVALID_JSON)
        if not isinstance(body, dict):
            return _problem(400, messages.HTTP_NOT_AN_ACTIVITY)
        missing = _missing_field(body)
        if missing:
            return _problem(400, messages.HTTP_MISSING_FIELD.format(field=missing))
        try:
            activity = Activity().deserialize(body)
        except (DeserializationError, ValueError, TypeError, AttributeError):
            return _problem(400, messages.HTTP_NOT_AN_ACTIVITY)

        try:
            response = await adapter.process_activity(
                request.headers.get("Authorization", ""), activity, logic
            )
        except PermissionError as error:
            log.info(messages.LOG_REJECTED_TOKEN, error)
            return _problem(401, messages.HTTP_UNAUTHORIZED)
        except SigningKeysUnavailable:
            return _problem(503, messages.HTTP_AUTH_UNAVAILABLE)

        if response is None:
            return web.Response(status=200)
        status = response.status or 200
        if activity.type == ActivityTypes.invoke and status == 501:
            status = 200  # an unanswered invoke: Teams shows an error for 501
        payload = response.body
        if isinstance(payload, Model):
            payload = payload.serialize()
        if payload is None:
            return web.Response(status=status)
        return web.json_response(payload, status=status)

    return handle
