"""`POST /api/messages`: checks the HTTP input, authenticates it, and hands it to the bot.

Malformed input gets 400/415 with a short message, a bad or missing token 401, an authentic
activity the bot will not act on 403, and an invoke is always answered (never with a 501).
The body is parsed once, into the few fields the bot reads (bots/activity.py).

Hostile bodies are stopped here, before anything else reads them: a body over
`MAX_BODY_BYTES` (413), JSON nested deeper than `MAX_NESTING` (400, whether or not it would
exhaust Python's recursion), ids and names that are not short strings, and the ids a reply is
addressed with (conversation, sender, recipient) that are not printable ASCII (400). Lone
surrogates (which UTF-8, BSON and URL quoting all refuse) become U+FFFD, as do NULs in keys
(BSON keys cannot hold them), and integers beyond 64 bits are read as JSON doubles, the way the
JavaScript that sends Teams activities reads them.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

import messages
from bots.activity import IncomingActivity
from bots.auth import ActivityRefused, ChannelAuthentication, SigningKeysUnavailable
from bots.bot import InvokeAnswer

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Teams activities are a few KB (a message's text is at most about 28 KB).
MAX_BODY_BYTES = 256 * 1024
# Teams activities nest about 8 levels; MongoDB refuses documents nested deeper than 100.
MAX_NESTING = 64
# Ids and names go into reply URLs and stored documents; Teams' are well under 200 characters.
MAX_ID_CHARS = 256
MAX_SERVICE_URL_CHARS = 512
_BSON_INT_MAX = 2**63 - 1

_SURROGATES = re.compile("[\ud800-\udfff]")
# What can put a surrogate or a NUL into parsed text: a JSON escape, a surrogate encoded in
# UTF-8 (lead byte 0xED; `json.loads` decodes bytes with surrogatepass), or a UTF-16/32 body
# (NUL bytes); and only 19 digits in a row can exceed 64 bits.
_LONG_DIGIT_RUN = re.compile(rb"[0-9]{19}")
_KEY_UNSAFE = re.compile("[\ud800-\udfff\x00]")

# Ids that become part of a reply's address: the connector sends the conversation id as an HTTP
# header (x-ms-conversation-id), and a 1:1 chat is opened with the sender's and the bot's ids.
# Only printable ASCII survives that; Teams' ids are always printable ASCII.
_HEADER_SAFE = re.compile("[!-~][ -~]*")
_ADDRESS_IDS = (("conversation", "id"), ("from", "id"), ("recipient", "id"))

# (path in the JSON body, its maximum length): ids and names that must be short strings.
_SHORT_STRINGS: tuple[tuple[tuple[str, ...], int], ...] = (
    (("id",), MAX_ID_CHARS),
    (("replyToId",), MAX_ID_CHARS),
    (("name",), MAX_ID_CHARS),
    (("locale",), MAX_ID_CHARS),
    (("channelId",), MAX_ID_CHARS),
    (("serviceUrl",), MAX_SERVICE_URL_CHARS),
    (("conversation", "id"), MAX_ID_CHARS),
    (("conversation", "tenantId"), MAX_ID_CHARS),
    (("conversation", "conversationType"), MAX_ID_CHARS),
    (("from", "id"), MAX_ID_CHARS),
    (("from", "aadObjectId"), MAX_ID_CHARS),
    (("from", "name"), MAX_ID_CHARS),
    (("recipient", "id"), MAX_ID_CHARS),
    (("recipient", "name"), MAX_ID_CHARS),
    (("channelData", "tenant", "id"), MAX_ID_CHARS),
)


def _problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class _BodyTooLarge(Exception):
    pass


async def _read_body(request: web.Request) -> bytes:
    """The request body, read up to `MAX_BODY_BYTES` (after any Content-Encoding is undone).

    Raises:
        _BodyTooLarge: the body (or its declared length) is larger.
    """
    declared = request.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        raise _BodyTooLarge
    body = bytearray()
    while True:
        chunk = await request.content.readany()
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _BodyTooLarge


def _int_as_double(value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")


def sanitize(body: Any) -> bool:
    """Make a parsed JSON body safe to store and send back, in place and without recursion.

    Lone surrogates become U+FFFD (NULs too, in keys), integers beyond 64 bits become doubles.

    Returns:
        False when it is nested deeper than `MAX_NESTING` (then it is left half cleaned).
    """
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        container, depth = stack.pop()
        if depth > MAX_NESTING:
            return False
        if isinstance(container, dict):
            for key in [key for key in container if _KEY_UNSAFE.search(key)]:
                container[_KEY_UNSAFE.sub("\ufffd", key)] = container.pop(key)
            items: Any = container.items()
        else:
            items = enumerate(container)
        for index, item in list(items):
            if isinstance(item, dict | list):
                stack.append((item, depth + 1))
            elif isinstance(item, str) and _SURROGATES.search(item):
                container[index] = _SURROGATES.sub("\ufffd", item)
            elif isinstance(item, int) and abs(item) > _BSON_INT_MAX:
                container[index] = _int_as_double(item)
    return True


def _may_need_sanitizing(raw: bytes) -> bool:
    """False when the raw body cannot hold what `sanitize` changes or refuses: no escape, no
    19 digits in a row, and fewer brackets than `MAX_NESTING` (most activities; the walk over
    every value is then skipped)."""
    brackets = raw.count(b"{") + raw.count(b"[")
    # Substring tests first: one regular expression over the body costs three times as much.
    return (
        brackets > MAX_NESTING
        or b"\\u" in raw
        or b"\xed" in raw
        or b"\x00" in raw
        or _LONG_DIGIT_RUN.search(raw) is not None
    )


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
    if not conversation["id"]:
        return "conversation.id"  # replies are posted to a URL made from it
    sender = body.get("from")
    if sender is not None and not isinstance(sender, dict):
        return "valid from"
    if not isinstance(sender, dict) or not isinstance(sender.get("id"), str) or not sender["id"]:
        return "from.id"  # every channel says who sent an activity; replies are addressed to it
    return None


def _at(body: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The value at `path` in the body, None when any step is missing or not an object."""
    value: Any = body
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _invalid_field(body: dict[str, Any]) -> str | None:
    """The first id or name that is present but not a short string, or address id that is not
    printable ASCII, named as in the JSON."""
    for path, limit in _SHORT_STRINGS:
        value = _at(body, path)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            return ".".join(path)
    for path in _ADDRESS_IDS:
        value = _at(body, path)
        if isinstance(value, str) and value and not _HEADER_SAFE.fullmatch(value):
            return ".".join(path)
    return None


def _entities_well_formed(entities: Any) -> bool:
    """Entities are absent, or a list of objects (a null among them is skipped)."""
    if entities is None:
        return True
    return isinstance(entities, list) and all(
        item is None or isinstance(item, dict) for item in entities
    )


def messages_endpoint(
    authentication: ChannelAuthentication,
    on_turn: Callable[[IncomingActivity], Awaitable[InvokeAnswer | None]],
) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        # The body is read (up to the limit) even when it will be refused, so that a body that
        # cannot be decoded is answered here rather than failing in aiohttp's drain.
        try:
            raw = await _read_body(request)
        except _BodyTooLarge:
            return _problem(413, messages.HTTP_BODY_TOO_LARGE.format(kb=MAX_BODY_BYTES // 1024))
        except web.RequestPayloadError:  # e.g. a Content-Encoding that does not decode
            # The rest cannot be read either: end the body here and close the connection after
            # the answer, or aiohttp would try to drain it and log the same error as unhandled.
            request.content.feed_eof()
            response = _problem(400, messages.HTTP_UNREADABLE_BODY)
            response.force_close()
            return response
        if request.content_type != "application/json":
            return _problem(415, messages.HTTP_NOT_JSON_MEDIA_TYPE)
        try:
            body = json.loads(raw)
        except RecursionError:
            return _problem(400, messages.HTTP_NESTED_TOO_DEEPLY.format(limit=MAX_NESTING))
        except (ValueError, UnicodeDecodeError):
            return _problem(400, messages.HTTP_INVALID_JSON)
        if not isinstance(body, dict):
            return _problem(400, messages.HTTP_NOT_AN_ACTIVITY)
        if _may_need_sanitizing(raw) and not sanitize(body):
            return _problem(400, messages.HTTP_NESTED_TOO_DEEPLY.format(limit=MAX_NESTING))
        missing = _missing_field(body)
        if missing:
            return _problem(400, messages.HTTP_MISSING_FIELD.format(field=missing))
        invalid = _invalid_field(body)
        if invalid:
            return _problem(400, messages.HTTP_INVALID_FIELD.format(field=invalid))
        if not _entities_well_formed(body.get("entities")):
            return _problem(400, messages.HTTP_NOT_AN_ACTIVITY)
        activity = IncomingActivity.from_json(body)
        try:
            await authentication.authenticate(activity, request.headers.get("Authorization", ""))
        except PermissionError as error:
            log.info(messages.LOG_REJECTED_TOKEN, error)
            return _problem(401, messages.HTTP_UNAUTHORIZED)
        except ActivityRefused as refused:
            log.info(messages.LOG_ACTIVITY_REFUSED, refused)
            return _problem(403, messages.HTTP_ACTIVITY_REFUSED)
        except SigningKeysUnavailable:
            return _problem(503, messages.HTTP_AUTH_UNAVAILABLE)

        answer = await on_turn(activity)
        if answer is None:
            return web.Response(status=200)
        if answer.body is None:
            return web.Response(status=answer.status)
        return web.Response(
            status=answer.status,
            body=json.dumps(answer.body).encode(),
            content_type="application/json",
        )

    return handle
