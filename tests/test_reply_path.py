"""The reply path without the Bot Framework SDK: the JSON, its cost per turn, and faults.

Replies are built as JSON by bots/delivery.py and posted by bots/connector.py on the process's
one aiohttp session. These tests hold that path to what the SDK guaranteed and to what it must
do better: the activity and the invoke answer are exactly what the SDK's own schema reads and
writes; a turn converts nothing through msrest and opens no HTTP client; a throttling, failing
or silent connector is retried a bounded number of times, within the turn's time, and logged
by host and status only.
"""

from __future__ import annotations

import asyncio
import copy
import email.utils
import functools
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from botbuilder.schema import Activity, AdaptiveCardInvokeResponse
from msrest.serialization import Deserializer, Model, Serializer

import bots.connector
import messages
from app import WIRING_KEY
from bots.bot import TELL_BUDGET_S, TURN_BUDGET_S
from bots.connector import Connector, ConnectorError
from bots.delivery import activity_json, addressed
from bots.turn import Attachment
from cards import verbs
from cards.signin import SIGNIN_CARD_CONTENT_TYPE, login_card
from storage.models import ConnectionStatus, ProviderAccount
from tests.conftest import RunningBot, StartBot
from tests.support import activities
from tests.support.activities import BOT_ID, JANE
from tests.support.connector import ConnectorServer, Sent
from tests.support.data import ADMIN, owner, runtime

CARD = "application/vnd.microsoft.card.adaptive"
TEXT = "application/vnd.microsoft.activity.message"
# An account label only the card shows: it must never reach a log.
CANARY = "canary-reply-7f3a@contoso.example"
UNKNOWN_WORDS = "make me a sandwich"
# The application's loggers and the web server's (not the database driver's, which logs
# stored documents at DEBUG by design).
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
    "aiohttp.client",
    "asyncio",
)


@pytest.fixture
def app_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Everything the application logs, at DEBUG."""
    for name in APP_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every record as it would be written, traceback included."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return [formatter.format(record) for record in caplog.records]


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{record.name}: {record.getMessage()[:120]} {record.exc_info!r:.200}"
        for record in caplog.records
        if record.exc_info or record.exc_text or record.stack_info
    ]


def connector_of(bot: RunningBot) -> Connector:
    """The bot's own Connector (its counters)."""
    return bot.client.server.app[WIRING_KEY].connector


async def turn(bot: RunningBot, activity: dict[str, Any], *, within_s: float = 10.0) -> Any:
    """POST one activity and return the invoke answer (None for a message); bounded in time."""
    async with asyncio.timeout(within_s):
        status, body = await bot.post(activity)
    assert status == 200, body
    return body


# ---------------------------------------------------------------------------------------------
# 1. The JSON is what the Bot Framework's REST API (the SDK's schema) expects.


def assert_schema_round_trip(sent: dict[str, Any]) -> None:
    """`sent` is an Activity as the SDK defines it: every key known, every value of its type.

    The one spelling the Python SDK does not share with the REST API (and the .NET and JS SDKs)
    is `conversation.tenantId`, which its schema calls `tenantID`; it is renamed first so that
    the comparison holds every other key exactly.
    """
    expected = copy.deepcopy(sent)
    conversation = expected.get("conversation")
    if isinstance(conversation, dict) and "tenantId" in conversation:
        assert isinstance(conversation["tenantId"], str)
        conversation["tenantID"] = conversation.pop("tenantId")
    assert Activity().deserialize(expected).serialize() == expected


def assert_addressed_reply(sent: Sent, incoming: dict[str, Any]) -> None:
    """A message from the bot to the person, in the incoming conversation, replying to it."""
    body = sent.activity
    assert_schema_round_trip(body)
    assert body["type"] == "message"
    assert body["from"]["id"] == incoming["recipient"]["id"] == BOT_ID
    assert body["recipient"]["id"] == incoming["from"]["id"] == JANE.teams_id
    assert body["conversation"]["id"] == incoming["conversation"]["id"]
    assert body["conversation"]["tenantId"] == JANE.tenant_id
    assert body["channelId"] == "msteams"
    assert body["serviceUrl"] == incoming["serviceUrl"]
    assert sent.method == "POST"
    assert sent.conversation_id == incoming["conversation"]["id"]
    # Posted to /v3/conversations/{id}/activities/{incoming activity id}, and says so.
    assert sent.reply_to_id == incoming["id"] != ""
    assert body["replyToId"] == incoming["id"]


async def test_text_reply_is_a_bot_framework_activity(bot: RunningBot) -> None:
    """A sentence (the "didn't understand" hint) is a schema-exact message replying in place."""
    incoming = activities.message(JANE, bot.service_url, UNKNOWN_WORDS)

    await turn(bot, incoming)

    [sent] = bot.connector.sent
    assert_addressed_reply(sent, incoming)
    assert sent.activity["text"] == messages.DID_NOT_UNDERSTAND
    assert "attachments" not in sent.activity


async def test_adaptive_card_reply_is_a_bot_framework_activity(bot: RunningBot) -> None:
    """The connections list is a schema-exact message with one Adaptive Card attachment."""
    await runtime(bot.database, JANE, "box", "jane@contoso.com")
    incoming = activities.message(JANE, bot.service_url, "personal_connections")

    await turn(bot, incoming)

    [sent] = bot.connector.sent
    assert_addressed_reply(sent, incoming)
    [attachment] = Activity().deserialize(sent.activity).attachments
    assert attachment.content_type == CARD
    assert attachment.content["type"] == "AdaptiveCard"
    assert "jane@contoso.com" in str(attachment.content)


async def test_login_card_reply_is_a_bot_framework_activity(
    start_bot: StartBot, apps_file: Path
) -> None:
    """The Login card (a Reconnect in the 1:1 chat) is a schema-exact message with a sign-in
    card attachment, replying to the card action that asked for it."""
    bot = await start_bot(apps_file=str(apps_file))
    parent = await bot.database.connections.create_parent(
        provider="sandbox",
        owner=ADMIN,
        account=ProviderAccount(id="user-omar", display_name="omar@sandbox.example"),
    )
    disconnected = await bot.database.connections.create_runtime(
        parent_id=parent.id,
        owner=owner(JANE),
        account=ProviderAccount(id="old", display_name="old@sandbox.example"),
        status=ConnectionStatus.DISCONNECTED,
    )
    incoming = activities.card_action(
        JANE, bot.service_url, verbs.RECONNECT, {"connection_id": disconnected.id}
    )

    answer = await turn(bot, incoming)

    assert answer["type"] == CARD
    [sent] = bot.connector.sent
    assert_addressed_reply(sent, incoming)
    [attachment] = Activity().deserialize(sent.activity).attachments
    assert attachment.content_type == SIGNIN_CARD_CONTENT_TYPE
    [button] = attachment.content["buttons"]
    assert button["type"] == "signin"
    assert button["value"].startswith("http")


def test_login_card_json_round_trips_through_the_schema() -> None:
    """The Login card as activity_json builds it, addressed as a reference says."""
    card = login_card(app_name="Sandbox", start_url="https://bot.example/auth/start?s=1")
    reference = activities.message(JANE, "https://smba.example/", "x")
    body = addressed(
        activity_json(Attachment(card["contentType"], card["content"])),
        {
            "user": reference["from"],
            "bot": reference["recipient"],
            "conversation": reference["conversation"],
            "channelId": reference["channelId"],
            "serviceUrl": reference["serviceUrl"],
            "locale": reference["locale"],
        },
        "activity-1",
    )

    assert_schema_round_trip(body)
    assert body["attachments"] == [card]
    assert body["from"]["id"] == BOT_ID and body["recipient"]["id"] == JANE.teams_id
    assert body["replyToId"] == "activity-1"


def assert_invoke_answer(answer: Any) -> None:
    """The answer's keys are AdaptiveCardInvokeResponse's, each of its type."""
    assert set(answer) == {"statusCode", "type", "value"}
    assert answer["statusCode"] == 200
    if isinstance(answer["value"], dict):
        response = AdaptiveCardInvokeResponse().deserialize(answer)
        assert response.serialize() == answer
    else:
        # The SDK types `value` as an object (a card); Universal Actions' message answer carries
        # a string there, which the schema cannot read: the rest must still round-trip.
        assert isinstance(answer["value"], str)
        head = {key: item for key, item in answer.items() if key != "value"}
        assert AdaptiveCardInvokeResponse().deserialize(head).serialize() == head


async def test_card_action_answer_with_a_card_is_an_adaptive_card_invoke_response(
    bot: RunningBot,
) -> None:
    """A card action answered with a card: statusCode 200, the Adaptive Card content type."""
    await runtime(bot.database, JANE, "box", "jane@contoso.com")

    answer = await turn(bot, activities.card_action(JANE, bot.service_url, verbs.PAGE, {"page": 0}))

    assert_invoke_answer(answer)
    assert answer["type"] == CARD
    assert answer["value"]["type"] == "AdaptiveCard"
    assert "jane@contoso.com" in str(answer["value"])
    assert bot.connector.sent == []  # the answer is the HTTP response, nothing is posted


async def test_card_action_answer_with_a_text_is_an_adaptive_card_invoke_response(
    bot: RunningBot,
) -> None:
    """A card action answered with a sentence: statusCode 200, the message content type."""
    answer = await turn(
        bot, activities.card_action(JANE, bot.service_url, verbs.PAGE, {"page": 0}, kind="channel")
    )

    assert_invoke_answer(answer)
    assert answer["type"] == TEXT
    assert answer["value"] == messages.PRIVATE_CHAT_ONLY


# ---------------------------------------------------------------------------------------------
# 2. No msrest serialisation and no new HTTP client per turn.


def counting(calls: Counter[str], name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return function(*args, **kwargs)

    return wrapper


async def test_turns_convert_nothing_through_msrest_and_open_no_http_client(
    bot: RunningBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages and card actions, after start-up: no msrest (de)serialisation, no new
    aiohttp.ClientSession; the replies are delivered and the cards answered all the same."""
    for number in range(12):
        await runtime(bot.database, JANE, "box", f"user{number:02d}@contoso.com")
    [first, *_] = await bot.database.connections.list_for_owner(owner=owner(JANE))
    calls: Counter[str] = Counter()
    deserialize = Model.__dict__["deserialize"].__func__
    monkeypatch.setattr(Model, "serialize", counting(calls, "Model.serialize", Model.serialize))
    monkeypatch.setattr(
        Model, "deserialize", classmethod(counting(calls, "Model.deserialize", deserialize))
    )
    monkeypatch.setattr(Serializer, "body", counting(calls, "Serializer.body", Serializer.body))
    monkeypatch.setattr(
        Deserializer, "__call__", counting(calls, "Deserializer.__call__", Deserializer.__call__)
    )
    monkeypatch.setattr(
        aiohttp.ClientSession,
        "__init__",
        counting(calls, "ClientSession.__init__", aiohttp.ClientSession.__init__),
    )

    for _ in range(5):
        await turn(bot, activities.message(JANE, bot.service_url, "personal_connections"))
    pages = [
        await turn(bot, activities.card_action(JANE, bot.service_url, verbs.PAGE, {"page": 1}))
        for _ in range(2)
    ]
    disconnected = await turn(
        bot,
        activities.card_action(
            JANE, bot.service_url, verbs.DISCONNECT, {"connection_id": first.id, "page": 0}
        ),
    )

    assert dict(calls) == {}
    assert len(bot.connector.sent) == 5
    assert all("Showing 1–10 of 12" in str(sent.card) for sent in bot.connector.sent)
    assert all(page["type"] == CARD and "Showing 11–12 of 12" in str(page) for page in pages)
    assert disconnected["type"] == CARD
    assert f"Disconnected Box ({first.account.display_name})." in str(disconnected["value"])
    stored = await bot.database.connections.get(first.id)
    assert stored is not None and stored.status is ConnectionStatus.DISCONNECTED

    # The wrappers do count what they wrap (so the zeros above are not vacuous).
    Activity.deserialize(Activity(type="message").serialize())
    Serializer({"Activity": Activity}).body(Activity(type="message"), "Activity")
    async with aiohttp.ClientSession():
        pass
    assert set(calls) == {
        "Model.serialize",
        "Model.deserialize",
        "Serializer.body",
        "Deserializer.__call__",
        "ClientSession.__init__",
    }


# ---------------------------------------------------------------------------------------------
# 3. Connector faults, through real turns.


async def reply_turn(bot: RunningBot, kind: str) -> tuple[dict[str, Any], str]:
    """An incoming message whose reply is a card (with CANARY) or a text, and that reply's
    tell-tale (what must be delivered, and must never be logged)."""
    if kind == "card":
        await runtime(bot.database, JANE, "box", CANARY)
        return activities.message(JANE, bot.service_url, "personal_connections"), CANARY
    return activities.message(JANE, bot.service_url, UNKNOWN_WORDS), messages.DID_NOT_UNDERSTAND


def assert_not_logged(caplog: pytest.LogCaptureFixture, *contents: str) -> None:
    lines = logged(caplog)
    assert lines, "nothing was captured: the check below would be vacuous"
    assert [line[:200] for line in lines if any(content in line for content in contents)] == []


def connector_records(caplog: pytest.LogCaptureFixture, template: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.msg == template]


@pytest.mark.parametrize("kind", ["card", "text"])
@pytest.mark.parametrize(
    ("faults", "statuses"),
    [
        pytest.param([(429, {"Retry-After": "0"})], [429], id="throttled-once"),
        pytest.param([(503, {}), (503, {})], [503, 503], id="unavailable-twice"),
    ],
)
async def test_retried_reply_is_delivered_once(
    bot: RunningBot,
    app_log: pytest.LogCaptureFixture,
    kind: str,
    faults: list[tuple[int, dict[str, str]]],
    statuses: list[int],
) -> None:
    """A 429 (Retry-After: 0) or 5xx answers before success: the reply arrives exactly once,
    after one attempt per fault and one more; each retry is logged by host and status only."""
    incoming, content = await reply_turn(bot, kind)
    bot.connector.faults.extend(faults)

    await turn(bot, incoming)

    [sent] = bot.connector.sent
    assert content in str(sent.activity)
    assert sent.reply_to_id == incoming["id"]
    assert bot.connector.attempts == len(faults) + 1
    assert connector_of(bot).retries == len(faults)
    retries = connector_records(app_log, messages.LOG_CONNECTOR_RETRY)
    host = bot.service_url.split("//")[1].rstrip("/")
    assert [record.args for record in retries] == [
        (host, status, number, 3) for number, status in enumerate(statuses, start=1)
    ]
    assert_not_logged(app_log, content, UNKNOWN_WORDS)
    assert tracebacks(app_log) == []


@pytest.mark.parametrize("kind", ["card", "text"])
async def test_reply_to_a_failing_connector_is_tried_three_times_then_apologised_for(
    bot: RunningBot, app_log: pytest.LogCaptureFixture, kind: str
) -> None:
    """Three 503s: the reply is tried exactly 3 times and never delivered; the turn still gets
    its 200 and the person is told it failed (one more post, which the connector accepts)."""
    incoming, content = await reply_turn(bot, kind)
    bot.connector.faults.extend([(503, {})] * 3)

    started = time.monotonic()
    await turn(bot, incoming)

    assert time.monotonic() - started < TURN_BUDGET_S + TELL_BUDGET_S
    assert [sent.text for sent in bot.connector.sent] == [messages.TURN_FAILED]
    assert content not in str([sent.activity for sent in bot.connector.sent])
    assert bot.connector.attempts == 4  # 3 for the reply, 1 for the apology
    assert connector_of(bot).posts == 2
    assert connector_of(bot).retries == 2
    [failed] = connector_records(app_log, messages.LOG_CONNECTOR_FAILED)
    assert failed.args[1] == 503
    assert_not_logged(app_log, content, UNKNOWN_WORDS)


async def test_a_connector_that_stays_down_costs_a_bounded_number_of_attempts(
    bot: RunningBot, app_log: pytest.LogCaptureFixture
) -> None:
    """A connector answering 503 to everything: nothing is delivered, the reply and the
    apology are tried 3 times each (6 posts, no more), and the turn still answers 200 in time."""
    incoming, content = await reply_turn(bot, "card")
    bot.connector.faults.extend([(503, {})] * 50)

    started = time.monotonic()
    await turn(bot, incoming)

    assert time.monotonic() - started < TURN_BUDGET_S + TELL_BUDGET_S
    assert bot.connector.sent == []
    assert bot.connector.attempts == 6
    assert connector_of(bot).posts == 2
    assert len(connector_records(app_log, messages.LOG_CONNECTOR_FAILED)) == 2
    assert_not_logged(app_log, content)


async def test_a_failing_connector_is_logged_without_a_traceback(
    bot: RunningBot, app_log: pytest.LogCaptureFixture
) -> None:
    """The connector being down is an outside condition, logged by host and status: not a
    traceback (the project's rule for anything it expects)."""
    incoming, _ = await reply_turn(bot, "text")
    bot.connector.faults.extend([(503, {})] * 3)

    await turn(bot, incoming)

    assert bot.connector.attempts == 4
    assert tracebacks(app_log) == []


@pytest.mark.parametrize("status", [400, 403, 404])
async def test_a_refused_reply_is_not_retried(
    bot: RunningBot, app_log: pytest.LogCaptureFixture, status: int
) -> None:
    """A 4xx other than 429 is final: one attempt for the reply (then the apology is posted)."""
    incoming, content = await reply_turn(bot, "card")
    bot.connector.faults.append((status, {}))

    await turn(bot, incoming)

    assert [sent.text for sent in bot.connector.sent] == [messages.TURN_FAILED]
    assert bot.connector.attempts == 2  # 1 for the reply, 1 for the apology
    assert connector_of(bot).retries == 0
    assert connector_records(app_log, messages.LOG_CONNECTOR_RETRY) == []
    [failed] = connector_records(app_log, messages.LOG_CONNECTOR_FAILED)
    assert failed.args[1] == status
    assert_not_logged(app_log, content)


def http_date_in(seconds: float) -> str:
    return email.utils.formatdate(time.time() + seconds, usegmt=True)


@pytest.mark.parametrize(
    "retry_after",
    [pytest.param("3600", id="seconds"), pytest.param(http_date_in(3600), id="http-date")],
)
async def test_a_long_retry_after_is_capped(
    bot: RunningBot,
    app_log: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    retry_after: str,
) -> None:
    """`Retry-After: 3600` (or a date an hour away) is waited for at most MAX_RETRY_WAIT_S: the
    turn completes in moments and the reply is delivered once."""
    monkeypatch.setattr(bots.connector, "MAX_RETRY_WAIT_S", 0.05)
    incoming, content = await reply_turn(bot, "card")
    bot.connector.faults.append((429, {"Retry-After": retry_after}))

    started = time.monotonic()
    await turn(bot, incoming, within_s=5)
    elapsed = time.monotonic() - started

    assert 0.05 <= elapsed < 3
    [sent] = bot.connector.sent
    assert content in str(sent.card)
    assert bot.connector.attempts == 2
    assert_not_logged(app_log, content)


async def test_retry_after_is_waited_for(bot: RunningBot, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 429 with `Retry-After: 1` is retried after that second, not after the (shorter)
    backoff."""
    monkeypatch.setattr(bots.connector, "BACKOFF_S", 0.001)
    incoming, _ = await reply_turn(bot, "text")
    bot.connector.faults.append((429, {"Retry-After": "1"}))

    started = time.monotonic()
    await turn(bot, incoming)

    assert time.monotonic() - started >= 1.0
    [sent] = bot.connector.sent
    assert sent.text == messages.DID_NOT_UNDERSTAND
    assert bot.connector.attempts == 2


# ---------------------------------------------------------------------------------------------
# 4. A connector that accepts the connection and never answers.


async def test_a_silent_connector_is_given_up_on_after_the_attempts() -> None:
    """Each attempt ends at attempt_timeout_s; after `attempts` of them, ConnectorError(None)."""
    connections = 0
    requests = 0
    release = asyncio.Event()
    handlers: list[asyncio.Task[Any]] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections, requests
        connections += 1
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        try:
            await reader.readuntil(b"\r\n\r\n")
            requests += 1
            await release.wait()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as session:
            connector = Connector(session, None, attempts=2, attempt_timeout_s=0.2)
            started = time.monotonic()
            async with asyncio.timeout(3):
                with pytest.raises(ConnectorError) as raised:
                    await connector.send(
                        f"http://127.0.0.1:{port}/", "a:1", {"type": "message", "text": "hi"}
                    )
            elapsed = time.monotonic() - started
    finally:
        release.set()
        server.close()
        await server.wait_closed()
        await asyncio.gather(*handlers, return_exceptions=True)

    assert raised.value.status is None
    assert 0.4 <= elapsed < 1.5
    assert requests == 2
    assert connections == 2
    assert (connector.posts, connector.retries) == (1, 1)


# ---------------------------------------------------------------------------------------------
# 5. Ids are quoted as one path segment each.


@pytest.mark.parametrize(
    ("conversation_id", "reply_to_id"),
    [
        ("19:abc@thread.skype;messageid=1", "1:abc"),
        ("a:1/2?x=3#y %2F%", "activity/1?x=2#z"),
        ("29:plain", ""),
    ],
)
async def test_ids_reach_the_connector_intact(
    connector: ConnectorServer, conversation_id: str, reply_to_id: str
) -> None:
    """A Teams conversation id and ids with `/`, `?`, `#`, `%` arrive as the one path segment
    they are, for the conversation and for the activity replied to."""
    async with aiohttp.ClientSession() as session:
        await Connector(session, None).send(
            connector.service_url, conversation_id, {"type": "message", "text": "hi"}, reply_to_id
        )

    [sent] = connector.sent
    assert sent.conversation_id == conversation_id
    assert sent.reply_to_id == reply_to_id
    assert sent.activity == {"type": "message", "text": "hi"}
    assert connector.attempts == 1
