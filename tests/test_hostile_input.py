"""Hostile request bodies over real HTTP never reach a traceback.

Every class of hostile input the bot has seen break something (deep nesting, oversized bodies,
very long text, lone surrogates, malformed mention entities, card pages of any shape, wrong types
in any field) gets a 4xx with a short JSON message or a friendly reply: never a 500, never the
"something went wrong" apology, never a logged traceback.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import messages
from bots.bot import MAX_TEXT_CHARS
from bots.endpoint import MAX_BODY_BYTES, MAX_NESTING
from cards import verbs
from tests.conftest import RunningBot
from tests.support import activities
from tests.support.activities import BOT_ID, BOT_NAME, JANE, OMAR
from tests.support.card_schema import assert_valid_card
from tests.support.data import runtime
from tests.support.waiting import audited

CARD = "application/vnd.microsoft.card.adaptive"
TEXT = "application/vnd.microsoft.activity.message"
# The loggers of the application and of the web server that runs it.
APP_LOGGERS = (
    "runtime_connections",
    "bots",
    "cards",
    "connections",
    "oauth",
    "recipes",
    "storage",
    "aiohttp.server",
    "aiohttp.web",
    "asyncio",
)


@pytest.fixture
def app_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Everything the application logs, at DEBUG."""
    for name in APP_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The logged records that carry a traceback, described in one line each."""
    found = []
    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info or record.exc_text or record.stack_info or "Traceback" in text:
            error = record.exc_info[1] if record.exc_info else None
            found.append(f"{record.name}: {text[:120]} {error!r}"[:300])
    return found


async def post_raw(
    bot: RunningBot, data: bytes | AsyncIterator[bytes], headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """POST raw bytes to /api/messages; returns (status, JSON body or text)."""
    response = await bot.client.post(
        "/api/messages", data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    text = await response.text()
    if response.content_type == "application/json" and text:
        return response.status, json.loads(text)
    return response.status, text


def with_raw(activity: dict[str, Any], marker: str, literal: str) -> bytes:
    """The activity as JSON with the string `"marker"` replaced by a raw JSON literal."""
    encoded = json.dumps(activity)
    assert f'"{marker}"' in encoded
    return encoded.replace(f'"{marker}"', literal).encode()


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def texts_of(card: dict[str, Any]) -> list[str]:
    return [element["text"] for element in card["body"] if element.get("type") == "TextBlock"]


def choice_titles(card: dict[str, Any]) -> list[str]:
    for element in card["body"]:
        if element.get("type") == "Input.ChoiceSet":
            return [choice["title"] for choice in element["choices"]]
    return []


async def test_deeply_nested_bodies_get_400(bot: RunningBot, app_log: Any) -> None:
    """JSON nested deeper than MAX_NESTING levels is a 400, from 65 levels to 100,000.

    Python's parser fails with RecursionError near 1,000 levels (a 500 before); anything deeper
    than the limit would still break msrest or MongoDB (which refuses documents nested beyond
    100) later, so it is refused before the token is even looked at.
    """
    expected = {"error": messages.HTTP_NESTED_TOO_DEEPLY.format(limit=MAX_NESTING)}
    hello = activities.message(JANE, bot.service_url, "help")
    bodies = {
        "1,000 arrays": b"[" * 1000 + b"]" * 1000,
        "100,000 arrays": b"[" * 100_000 + b"]" * 100_000,
        "1,000 objects": nested(1000).encode(),
        "40,000 objects": nested(40_000).encode(),
        "channelData 1,000 deep": with_raw(hello | {"channelData": "X"}, "X", nested(1000)),
        "value 100 deep": with_raw(hello | {"value": "X"}, "X", nested(100)),
        "entities 70 deep": with_raw(
            hello | {"entities": [{"type": "x", "deep": "X"}]}, "X", nested(70)
        ),
    }
    results = {name: await post_raw(bot, body) for name, body in bodies.items()}

    assert results == dict.fromkeys(bodies, (400, expected))
    assert bot.connector.sent == []
    assert tracebacks(app_log) == []
    # Ordinary nesting (a few levels of channelData) is still served.
    status, _ = await post_raw(
        bot,
        with_raw(hello | {"channelData": "X"}, "X", '{"tenant":{"id":"t"},"x":' + nested(20) + "}"),
    )
    assert status == 200
    assert len(bot.connector.sent) == 1


async def test_oversized_bodies_get_413_with_a_json_message(bot: RunningBot, app_log: Any) -> None:
    """A body over MAX_BODY_BYTES is a 413 with a short JSON message, however it is sent.

    Declared (Content-Length), streamed (chunked) or expanding from a small gzip body, it is
    never read past the limit; a Content-Encoding that does not decode is a 400.
    """
    too_large = {"error": messages.HTTP_BODY_TOO_LARGE.format(kb=MAX_BODY_BYTES // 1024)}
    megabyte = json.dumps(activities.message(JANE, bot.service_url, "x " * 500_000)).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b" " * 10_000  # whitespace is valid JSON padding, 400 KB in all

    started = time.monotonic()
    declared = await post_raw(bot, megabyte)
    elapsed = time.monotonic() - started
    streamed = await post_raw(bot, chunks())
    bomb = await post_raw(
        bot, gzip.compress(b" " * 20_000_000 + b"{}"), headers={"Content-Encoding": "gzip"}
    )
    broken = await post_raw(bot, b"\x1f\x8bnot gzip at all", headers={"Content-Encoding": "gzip"})

    assert declared == (413, too_large)
    assert elapsed < 1.0
    assert streamed == (413, too_large)
    assert bomb == (413, too_large)
    assert broken == (400, {"error": messages.HTTP_UNREADABLE_BODY})
    assert bot.connector.sent == []
    assert tracebacks(app_log) == []


async def test_long_text_gets_a_short_reply_and_blocks_no_one(
    bot: RunningBot, app_log: Any
) -> None:
    """Text over MAX_TEXT_CHARS gets a short reply without being matched, in well under 1 s.

    Splitting text into words is quadratic in the length of a word: a 250,000-character word
    took over a second of event-loop time (a 1 MB message took 37 s), during which nobody else's
    turn ran. The largest body accepted (under MAX_BODY_BYTES; a 1 MB message is a 413, see
    above) is answered at once, and Omar's `personal_connections` sent right behind it is
    answered within a second of the hostile request.
    """
    await runtime(bot.database, OMAR, "box", "omar@contoso.com")
    hostile = activities.message(JANE, bot.service_url, "x" * 250_000)
    assert len(json.dumps(hostile)) < MAX_BODY_BYTES

    started = time.monotonic()
    hostile_post = asyncio.create_task(bot.post(hostile))
    await asyncio.sleep(0.01)  # the hostile request goes first
    status, _ = await bot.post(activities.message(OMAR, bot.service_url, "personal_connections"))
    omar = await bot.connector.wait_for(
        lambda sent: sent.conversation_id == OMAR.personal_conversation, within_s=5
    )
    omar_answered = time.monotonic() - started
    hostile_status, _ = await hostile_post
    hostile_done = time.monotonic() - started

    assert (status, hostile_status) == (200, 200)
    assert omar.card is not None and choice_titles(omar.card) == [
        "Box — omar@contoso.com (Connected)"
    ]
    assert omar_answered < 1.0
    assert hostile_done < 1.0
    [reply] = bot.connector.in_conversation(JANE.personal_conversation)
    assert reply.text == messages.MESSAGE_TOO_LONG.format(limit=MAX_TEXT_CHARS)

    # The limit itself: one character more is too long, the limit is still read.
    bot.connector.clear()
    await bot.post(activities.message(JANE, bot.service_url, "y" * (MAX_TEXT_CHARS + 1)))
    await bot.post(activities.message(JANE, bot.service_url, "y" * MAX_TEXT_CHARS))
    assert [sent.text for sent in bot.connector.sent] == [
        messages.MESSAGE_TOO_LONG.format(limit=MAX_TEXT_CHARS),
        messages.DID_NOT_UNDERSTAND,
    ]
    assert tracebacks(app_log) == []


async def test_lone_surrogates_become_replacement_characters(bot: RunningBot, app_log: Any) -> None:
    """A lone surrogate anywhere (name, object id, tenant, ids, text, keys) is read as U+FFFD.

    UTF-8, BSON and URL quoting all refuse such a string, so before, when one reached MongoDB or
    the reply path, the turn failed. Now the person gets their normal answer, or a 400 for a
    conversation id, which must be printable ASCII.
    """
    box = await runtime(bot.database, JANE, "box", "jane@contoso.com")
    url = bot.service_url

    def personal_connections(**changes: Any) -> dict[str, Any]:
        activity = activities.message(JANE, url, "personal_connections")
        for path, value in changes.items():
            *parents, last = path.split("__")
            target = activity
            for key in parents:
                target = target[key]
            target[last] = value
        return activity

    cases = {
        "aadObjectId": personal_connections(from__aadObjectId="aad-\ud800"),
        "tenant": personal_connections(channelData__tenant__id="tenant-\udfff"),
        "activity id": personal_connections(id="\udc00"),
        "key": personal_connections(channelData__tenant={"id": "t", "\ud800": "\udfff"}),
    }
    for name, activity in cases.items():
        bot.connector.clear()
        status, _ = await bot.post(activity)
        assert status == 200, name
        [reply] = bot.connector.sent
        assert reply.card is not None, name
        assert_valid_card(reply.card)

    # The conversation id also travels in an HTTP header, so it must be printable ASCII.
    bot.connector.clear()
    status, body = await bot.post(personal_connections(conversation__id="a:\ud800-chat"))
    assert (status, body) == (
        400,
        {"error": messages.HTTP_INVALID_FIELD.format(field="conversation.id")},
    )
    assert bot.connector.sent == []

    await bot.post(activities.message(JANE, url, "help\ud800"))
    assert [sent.text for sent in bot.connector.sent] == [messages.DID_NOT_UNDERSTAND]

    # A name with a surrogate reaches the audit log, which is stored in MongoDB.
    press = activities.card_action(JANE, url, verbs.DISCONNECT, {"connection_id": box.id})
    press["from"]["name"] = "Jane \ud800"
    press["value"]["action"]["data"]["\ud800"] = "\udfff"
    status, body = await bot.post(press)
    assert status == 200
    assert body["type"] == CARD
    assert "Disconnected Box (jane@contoso.com)." in texts_of(body["value"])
    await audited(bot.database)
    events = await bot.database.audit.for_connection(box.id)
    assert {event.actor.name for event in events} == {"Jane \ufffd"}

    # A surrogate pair (an emoji escaped in JSON) is one character, and it is kept as it is.
    other = await runtime(bot.database, JANE, "box", "jane2@contoso.com")
    press = activities.card_action(JANE, url, verbs.DISCONNECT, {"connection_id": other.id})
    press["from"]["name"] = "Jane \U0001f600"
    assert "\\ud83d\\ude00" in json.dumps(press)
    assert (await bot.post(press))[0] == 200
    await audited(bot.database)
    events = await bot.database.audit.for_connection(other.id)
    assert {event.actor.name for event in events} == {"Jane \U0001f600"}
    assert tracebacks(app_log) == []


BOT_MENTION = {
    "type": "mention",
    "text": f"<at>{BOT_NAME}</at>",
    "mentioned": {"id": BOT_ID, "name": BOT_NAME},
}
MALFORMED_MENTIONS: list[Any] = [
    {"type": "mention"},
    {"type": "mention", "mentioned": BOT_ID},
    {"type": "mention", "mentioned": None},
    {"type": "mention", "mentioned": []},
    {"type": "mention", "mentioned": {"id": BOT_ID}},
    {"type": "mention", "mentioned": {"id": BOT_ID, "name": None}},
    {"type": "mention", "mentioned": {"id": BOT_ID, "name": 7}, "text": 5},
    {"type": "mention", "mentioned": {"id": BOT_ID}, "text": ["<at>x</at>"]},
    {"type": "mention", "mentioned": {"id": BOT_ID}, "text": "<at>(a+)+$[</at>"},
    {"type": "mention", "mentioned": {"id": [BOT_ID]}},
    {"type": None},
    {"type": 5, "mentioned": {"id": BOT_ID}},
    {},
    None,
]


async def test_malformed_mention_entities_are_ignored(bot: RunningBot, app_log: Any) -> None:
    """Mention entities of any shape never break a turn: a malformed one is not a mention.

    Before, the SDK's mention removal indexed `mentioned` and `text` blindly (KeyError,
    TypeError, AttributeError on `None`) and the person got "something went wrong".
    Entities that are not a list of objects are a 400.
    """
    url = bot.service_url
    for entity in MALFORMED_MENTIONS:
        bot.connector.clear()
        personal = activities.message(JANE, url, "help") | {"entities": [entity]}
        channel = activities.message(
            JANE, url, "help", kind="channel", mention=True, conversation_id="19:c"
        )
        channel["entities"] = [entity, BOT_MENTION]
        for activity in (personal, channel):
            status, _ = await bot.post(activity)
            assert status == 200, entity
        replies = [(sent.conversation_id, sent.card is not None) for sent in bot.connector.sent]
        assert replies == [(JANE.personal_conversation, True), ("19:c", True)], entity

    # Only a well-formed mention of the bot makes a channel message the bot's.
    bot.connector.clear()
    unaddressed = activities.message(JANE, url, "help", kind="channel", conversation_id="19:c")
    unaddressed["entities"] = [
        entity
        for entity in MALFORMED_MENTIONS
        if entity is not None
        and not (isinstance(entity.get("mentioned"), dict) and entity["mentioned"]["id"] == BOT_ID)
    ]
    assert (await bot.post(unaddressed))[0] == 200
    assert bot.connector.sent == []

    for entities in ({"type": "mention"}, "mention", 5, [1], [[BOT_MENTION]], [True]):
        status, body = await bot.post(
            activities.message(JANE, url, "help") | {"entities": entities}
        )
        assert (status, body) == (400, {"error": messages.HTTP_NOT_AN_ACTIVITY}), entities
    assert tracebacks(app_log) == []


PAGES = ["1e999", "-1e999", "NaN", "Infinity", "-5", str(10**30), str(-(10**30)), '"x"']
PAGES += ['"7"', "null", "[]", "{}", "[1]", '{"page": 1}', "true", "2.5", '"' + "9" * 5000 + '"']


async def test_card_actions_with_any_page_get_a_card(bot: RunningBot, app_log: Any) -> None:
    """A page of any JSON shape in a card action answers with a valid card, never a failure.

    1e999 parses as float infinity, which `int()` refused with OverflowError: Teams showed
    "something went wrong" on the card. Huge, negative or non-numeric pages show a page that
    exists; both Action.Execute (invoke) and its Action.Submit fallback (message) are covered.
    """
    for number in range(12):
        await runtime(bot.database, JANE, "box", f"user{number:02d}@contoso.com")
    url = bot.service_url
    failures = []
    validated: set[str] = set()

    def assert_valid_once(card: dict[str, Any]) -> None:
        key = json.dumps(card, sort_keys=True)
        if key not in validated:
            assert_valid_card(card)
            validated.add(key)

    for page in PAGES:
        for verb in (verbs.PAGE, verbs.CANCEL_DELETE, verbs.DELETE, verbs.RECONNECT):
            invoke = activities.card_action(JANE, url, verb, {"page": "PAGE"})
            status, body = await post_raw(bot, with_raw(invoke, "PAGE", page))
            if status != 200 or body["type"] != CARD:
                failures.append(f"invoke {verb} page={page[:20]}: {status} {body}"[:200])
            else:
                assert_valid_once(body["value"])
                assert len(choice_titles(body["value"])) in (10, 2), (verb, page)

            bot.connector.clear()
            submit = activities.card_submit(JANE, url, {"verb": verb, "page": "PAGE"})
            status, _ = await post_raw(bot, with_raw(submit, "PAGE", page))
            cards = [sent.card for sent in bot.connector.sent if sent.card is not None]
            if status != 200 or len(cards) != 1 or len(bot.connector.sent) != 1:
                failures.append(f"submit {verb} page={page[:20]}: {status} {bot.connector.sent}")
            else:
                assert_valid_once(cards[0])
    assert failures == []
    assert tracebacks(app_log) == []


WRONG_VALUES: list[Any] = [
    0,
    -1,
    2**64,
    10**30,
    1.5,
    float("inf"),
    float("nan"),
    True,
    None,
    "",
    "z" * 300,
    [],
    [None],
    [1, "a", {}],
    {},
    {"a": {"b": [None, {"c": -(10**40)}]}},
    {"\x00$key.with.dots": "\ud800"},
]
# Every field an activity carries, top level and the nested ones the bot reads.
FIELDS = [
    ("type",),
    ("id",),
    ("timestamp",),
    ("channelId",),
    ("serviceUrl",),
    ("from",),
    ("from", "id"),
    ("from", "name"),
    ("from", "aadObjectId"),
    ("from", "properties"),
    ("recipient",),
    ("recipient", "id"),
    ("conversation",),
    ("conversation", "id"),
    ("conversation", "conversationType"),
    ("conversation", "isGroup"),
    ("conversation", "tenantId"),
    ("channelData",),
    ("channelData", "tenant"),
    ("channelData", "tenant", "id"),
    ("locale",),
    ("text",),
    ("textFormat",),
    ("entities",),
    ("attachments",),
    ("value",),
    ("name",),
    ("replyToId",),
    ("deliveryMode",),
    ("membersAdded",),
    ("relatesTo",),
]


def with_field(activity: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    changed = json.loads(json.dumps(activity))
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


async def test_wrong_types_in_every_field_get_a_reply_or_a_400(
    bot: RunningBot, app_log: Any
) -> None:
    """Any field of a message or a card action holding any JSON type: a 400 or a normal turn.

    Ids and names must be short strings, required fields present, nesting shallow; everything
    else that msrest accepts runs a normal turn. Before, `entities: [null]` crashed the mention
    removal, non-finite or huge numbers broke the page, and surrogates the stores.
    (A string serviceUrl other than the connector's is left to the serviceUrl checks.)
    """
    url = bot.service_url
    templates = {
        "message": activities.message(JANE, url, "personal_connections"),
        "card action": activities.card_action(JANE, url, verbs.PAGE, {"page": 1}),
        "card submit": activities.card_submit(JANE, url, {"verb": verbs.PAGE, "page": 1}),
    }
    failures = []
    statuses: dict[int, int] = {}
    for template_name, template in templates.items():
        for path in FIELDS:
            for value in WRONG_VALUES:
                if path == ("serviceUrl",) and isinstance(value, str):
                    continue
                bot.connector.clear()
                activity = with_field(template, path, value)
                response = await bot.client.post(
                    "/api/messages",
                    data=json.dumps(activity).encode(),
                    headers={"Content-Type": "application/json"},
                )
                body = await response.text()
                statuses[response.status] = statuses.get(response.status, 0) + 1
                case = f"{template_name} {'.'.join(path)}={value!r:.40}"
                if response.status == 400:
                    if "error" not in json.loads(body):
                        failures.append(f"{case}: 400 without a message")
                elif response.status != 200:
                    failures.append(f"{case}: {response.status}")
                elif messages.TURN_FAILED in body or any(
                    sent.text == messages.TURN_FAILED for sent in bot.connector.sent
                ):
                    failures.append(f"{case}: the turn failed")
    assert failures == []
    assert statuses[200] > 100 and statuses[400] > 100  # both kinds of answer were exercised
    assert tracebacks(app_log) == []


async def test_identity_fields_must_be_short_strings(bot: RunningBot) -> None:
    """Ids and names that are not strings, or longer than reply URLs and stores allow, are 400."""
    url = bot.service_url
    for path in [("from", "id"), ("from", "name"), ("conversation", "id"), ("id",)]:
        status, body = await bot.post(
            with_field(activities.message(JANE, url, "help"), path, "i" * 10_000)
        )
        assert status == 400, path
        assert body == {"error": messages.HTTP_INVALID_FIELD.format(field=".".join(path))}
    status, _ = await bot.post(with_field(activities.message(JANE, url, "help"), ("id",), 12))
    assert status == 400
    assert bot.connector.sent == []
