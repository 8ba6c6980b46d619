"""At most two database round trips per turn for the connections list and its buttons.

How the commands are counted, and why the count is honest:

- Every MongoDB command the bot's client sends is seen by a `pymongo.monitoring`
  `CommandListener` given to the client when it is made (`storage.database.make_client`),
  together with the asyncio task that sent it (the listener runs in the sending task). Server
  heartbeats and connection handshakes are not commands here; `endSessions` (sent at close) is
  left out.
- A turn is the handling of one HTTP request: an aiohttp middleware, innermost in the bot's
  own application, notes the task that handles the request, and the turn's commands are those
  that task sent between the request arriving and the response being returned. The turn's work
  runs in that task: the adapter, the turn entry and the handlers await each other.
- Work the turn only schedules (the revocation at the provider, moving the audit events out of
  the record's outbox, purging a tombstone: `ConnectionSettler.settle`, started with
  `asyncio.create_task`) runs in its own task after the answer and is not counted. So that
  nothing is hidden that way, every other command sent while a request is handled must come
  from such a background task (`BACKGROUND`); the sweeper is off
  (`SIGNIN_SWEEP_SECONDS=0`). A turn must also send at least one command: a turn whose work
  moved out of the request's task would count zero and fail here rather than pass.

What a Disconnect or a Confirm delete sends: one `find` of the person's records (the list the
answer shows, the ownership check and the record as it was) and one conditional `update_one`
(the change with its audit event on the record's outbox and its pending revocation): two, with
nothing set aside. The audit event is stored with the change, in that same update, so it is
durable before the answer; it is written to `audit_events` by the background settle task
(`ConnectionSettler.settle`) after the answer. So the turn itself must send no `insert` into
`audit_events`, and once the outbox is empty (`tests.support.waiting.audited`) the log holds
the change's one event.

Each test also checks that the turn did its job (the card's contents, the stored record), so it
fails when the feature is missing, not only when it is slow.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from bson import ObjectId
from pymongo import monitoring

import messages
import storage.database
from app import create_app
from cards import verbs
from cards.connections import short_date
from settings import Settings
from storage.audit import CONNECTION_REVOKE_FAILED, CONNECTION_REVOKED
from tests.conftest import RunningBot
from tests.support import activities
from tests.support.activities import JANE, OMAR
from tests.support.card_reading import action, choices, texts
from tests.support.card_schema import assert_valid_card
from tests.support.connector import ConnectorServer
from tests.support.data import runtime
from tests.support.waiting import audited

CARD = "application/vnd.microsoft.card.adaptive"
# The most database commands one turn may send.
ROUND_TRIPS = 2
# Not round trips of a turn: sessions ended when the client closes.
IGNORED = frozenset({"endSessions"})
# Coroutines that run in tasks of their own, never awaited by a turn: what a turn schedules
# for after its answer, and the search terms' backfill that starts with the bot.
BACKGROUND = frozenset({"ConnectionSettler.settle", "ConnectionSearch._backfill_in_background"})


@dataclass(frozen=True)
class Command:
    name: str
    collection: str
    task: asyncio.Task[Any] | None
    coroutine: str

    def __str__(self) -> str:
        return f"{self.name} {self.collection} ({self.coroutine})"


@dataclass
class CommandLog(monitoring.CommandListener):
    """The commands the bot's client sends while a request is handled, each with the task that
    sent it, and the task that handled the request."""

    during_turn: list[Command] = field(default_factory=list)
    turn_task: asyncio.Task[Any] | None = None
    turns: int = 0
    in_turn: bool = False

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in IGNORED:
            return
        task = asyncio.current_task()
        target = event.command.get(event.command_name)
        if event.command_name == "getMore":
            target = event.command.get("collection")
        command = Command(
            name=event.command_name,
            collection=target if isinstance(target, str) else "",
            task=task,
            coroutine=getattr(task.get_coro(), "__qualname__", "?") if task else "",
        )
        if self.in_turn:
            self.during_turn.append(command)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.turns += 1
        self.turn_task = asyncio.current_task()
        self.in_turn = True
        try:
            return await handler(request)
        finally:
            self.in_turn = False

    def start(self) -> None:
        self.during_turn = []
        self.turn_task = None
        self.turns = 0

    def of_turn(self) -> list[Command]:
        """The commands the last turn's own task sent; checks nothing else was hidden."""
        assert self.turns == 1
        own = [c for c in self.during_turn if c.task is self.turn_task]
        others = [c for c in self.during_turn if c.task is not self.turn_task]
        unexplained = [str(c) for c in others if c.coroutine not in BACKGROUND]
        assert unexplained == [], "commands sent during the turn by another task"
        assert own, "a turn that sends no command: its work ran elsewhere"
        return own


@dataclass
class CountedBot:
    bot: RunningBot
    log: CommandLog

    @property
    def database(self) -> storage.database.Database:
        return self.bot.database

    async def message(self, text: str) -> tuple[dict[str, Any], list[Command]]:
        """Type `text` in Jane's 1:1 chat; returns the card the bot sent and the turn's commands."""
        sent = len(self.bot.connector.sent)
        self.log.start()
        status, _ = await self.bot.post(activities.message(JANE, self.bot.service_url, text))
        commands = self.log.of_turn()
        assert status == 200
        [reply] = self.bot.connector.sent[sent:]
        assert reply.card is not None
        assert_valid_card(reply.card)
        return reply.card, commands

    async def press(self, verb: str, data: dict[str, Any]) -> tuple[dict[str, Any], list[Command]]:
        """Jane presses a card button (Action.Execute); returns the new card and the commands."""
        self.log.start()
        status, body = await self.bot.post(
            activities.card_action(JANE, self.bot.service_url, verb, data)
        )
        commands = self.log.of_turn()
        assert status == 200
        assert body["statusCode"] == 200
        assert body["type"] == CARD
        assert_valid_card(body["value"])
        return body["value"], commands


@pytest.fixture
async def counted(
    make_settings: Callable[..., Settings],
    connector: ConnectorServer,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[CountedBot]:
    """The bot application on loopback, its client's commands counted per turn."""
    log = CommandLog()
    make_client = storage.database.make_client

    def listened_client(uri: str, **options: Any) -> Any:
        return make_client(uri, event_listeners=[log], **options)

    monkeypatch.setattr(storage.database, "make_client", listened_client)
    settings = make_settings(signin_sweep_s=0)
    app = create_app(settings)
    app.middlewares.append(log.middleware)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield CountedBot(RunningBot(client=client, settings=settings, connector=connector), log)
    finally:
        await client.close()


def within_budget(commands: list[Command]) -> None:
    """At most `ROUND_TRIPS` commands."""
    assert len(commands) <= ROUND_TRIPS, [str(c) for c in commands]


def leaves_audit_log_to_settle(commands: list[Command]) -> None:
    """The turn wrote nothing to `audit_events` itself: its event went with the change, onto
    the record's outbox, and the background settle task logs it (see the module's docstring)."""
    inserts = [c for c in commands if (c.name, c.collection) == ("insert", "audit_events")]
    assert inserts == [], [str(c) for c in commands]


async def test_personal_connections_with_five_connections(counted: CountedBot) -> None:
    """`personal_connections` lists Jane's five connections (not Omar's) in ≤ 2 round trips."""
    for number in range(5):
        await runtime(counted.database, JANE, "box", f"jane{number}@contoso.com")
    await runtime(counted.database, OMAR, "box", "omar@contoso.com")

    card, commands = await counted.message("personal_connections")

    assert choices(card) == [f"Box — jane{n}@contoso.com (Connected)" for n in range(5)]
    within_budget(commands)


async def test_second_page_of_a_long_list(counted: CountedBot) -> None:
    """Next on a list of 23 shows connections 11 to 20 in ≤ 2 round trips."""
    for number in range(23):
        await runtime(counted.database, JANE, "box", f"user{number:02d}@contoso.com")

    card, commands = await counted.press(verbs.PAGE, {verbs.PAGE_KEY: 1})

    assert "Showing 11–20 of 23" in texts(card)
    assert choices(card) == [f"Box — user{n}@contoso.com (Connected)" for n in range(10, 20)]
    within_budget(commands)


async def test_disconnect(counted: CountedBot) -> None:
    """Disconnect changes the record (tokens dropped, status Disconnected, its audit event on
    the outbox) and answers with the updated list, within budget; the event reaches the audit
    log after the answer, once."""
    box = await runtime(counted.database, JANE, "box", "jane@contoso.com")
    await runtime(counted.database, JANE, "salesforce", "jane@sf.example")
    await counted.database.db["connections"].update_one(
        {"_id": ObjectId(box.id)}, {"$set": {"tokens": {"key_id": "k1", "ciphertext": b"sealed"}}}
    )

    card, commands = await counted.press(verbs.DISCONNECT, {"connection_id": box.id, "page": 0})

    assert "Disconnected Box (jane@contoso.com)." in texts(card)
    stored = await counted.database.connections.get(box.id)
    assert stored is not None and stored.status.value == "disconnected" and stored.tokens is None
    since = short_date(stored.updated_at, datetime.now(UTC).date())
    assert choices(card) == [
        f"Box — jane@contoso.com (Disconnected since {since})",
        "Salesforce — jane@sf.example (Connected)",
    ]
    within_budget(commands)
    leaves_audit_log_to_settle(commands)
    await audited(counted.database)
    actions = [e.action for e in await counted.database.audit.for_connection(box.id)]
    # The change's one event, then only the revocation's outcome (Box is not configured here).
    assert actions[:1] == ["connection.disconnected"]
    assert actions.count("connection.disconnected") == 1
    assert set(actions[1:]) <= {CONNECTION_REVOKED, CONNECTION_REVOKE_FAILED}


async def test_delete_then_confirm(counted: CountedBot) -> None:
    """Delete asks for confirmation and Confirm removes the record and answers with the list,
    each within budget; a repeated Confirm is told it was deleted, within budget too."""
    box = await runtime(counted.database, JANE, "box", "jane@contoso.com")
    await runtime(counted.database, JANE, "salesforce", "jane@sf.example")

    confirm_card, asking = await counted.press(verbs.DELETE, {"connection_id": box.id, "page": 0})

    assert texts(confirm_card)[0] == messages.CONFIRM_DELETE_TITLE
    assert await counted.database.connections.get(box.id) is not None
    within_budget(asking)

    confirm = action(confirm_card, messages.BUTTON_CONFIRM_DELETE)
    card, deleting = await counted.press(confirm["verb"], confirm["data"])

    assert "Deleted Box (jane@contoso.com)." in texts(card)
    assert choices(card) == ["Salesforce — jane@sf.example (Connected)"]
    assert await counted.database.connections.get(box.id) is None
    within_budget(deleting)
    leaves_audit_log_to_settle(deleting)
    await audited(counted.database)
    [event] = await counted.database.audit.for_connection(box.id)
    assert event.action == "connection.deleted"

    again, retried = await counted.press(confirm["verb"], confirm["data"])

    assert messages.ALREADY_DELETED in texts(again)
    assert choices(again) == ["Salesforce — jane@sf.example (Connected)"]
    within_budget(retried)
    leaves_audit_log_to_settle(retried)
    await audited(counted.database)
    assert len(await counted.database.audit.for_connection(box.id)) == 1


async def test_someone_elses_connection(counted: CountedBot) -> None:
    """Jane pressing Disconnect or Confirm with Omar's connection id is told it was not found
    and changes nothing, within budget (the owner check is in the read and in the update)."""
    await runtime(counted.database, JANE, "box", "jane@contoso.com")
    omars = await runtime(counted.database, OMAR, "box", "omar@contoso.com")

    for verb in (verbs.DISCONNECT, verbs.CONFIRM_DELETE):
        card, commands = await counted.press(verb, {"connection_id": omars.id})

        assert messages.CONNECTION_NOT_FOUND in texts(card)
        assert choices(card) == ["Box — jane@contoso.com (Connected)"]
        within_budget(commands)
    stored = await counted.database.connections.get(omars.id)
    assert stored is not None and stored.status.value == "connected"
    await audited(counted.database)  # nothing on its way to the log either
    assert await counted.database.audit.for_connection(omars.id) == []
