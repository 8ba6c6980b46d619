"""Disconnect, Delete (with confirmation), Cancel and paging, as Teams sends them.

Action.Execute arrives as an `adaptiveCard/action` invoke answered with the replacement card;
its Action.Submit fallback arrives as a message with a value and is answered with a new card.
A person only ever acts on their own connections.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

import messages
from cards import verbs
from cards.connections import short_date
from storage.models import AuditEvent
from tests.conftest import RunningBot
from tests.support import activities
from tests.support.activities import JANE, OMAR
from tests.support.card_reading import action, choices, texts
from tests.support.card_schema import assert_valid_card
from tests.support.data import runtime
from tests.support.waiting import audited

CARD = "application/vnd.microsoft.card.adaptive"


async def press(
    bot: RunningBot, person: activities.Person, verb: str, data: dict[str, Any]
) -> dict[str, Any]:
    status, body = await bot.post(activities.card_action(person, bot.service_url, verb, data))
    assert status == 200
    assert body["statusCode"] == 200
    assert body["type"] == CARD
    assert_valid_card(body["value"])
    return body["value"]


async def audit_events(bot: RunningBot, connection_id: str, *, count: int) -> list[AuditEvent]:
    """The connection's audit events once there are `count` (bounded wait: some are written
    after the answer)."""
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        events = await bot.database.audit.for_connection(connection_id)
        if len(events) >= count or asyncio.get_running_loop().time() > deadline:
            return events
        await asyncio.sleep(0.02)  # polling the audit log, not waiting for a result


async def test_disconnect_keeps_record_drops_tokens_and_audits(bot: RunningBot) -> None:
    """Disconnect: status Disconnected in card and database, tokens gone, one audit event."""
    box = await runtime(bot.database, JANE, "box", "jane@contoso.com")
    await bot.database.db["connections"].update_one(
        {"_id": __import__("bson").ObjectId(box.id)},
        {"$set": {"tokens": {"key_id": "k1", "ciphertext": b"sealed"}}},
    )

    card = await press(bot, JANE, verbs.DISCONNECT, {"connection_id": box.id, "page": 0})

    assert "Disconnected Box (jane@contoso.com)." in texts(card)
    stored = await bot.database.connections.get(box.id)
    assert stored is not None and stored.status.value == "disconnected"
    since = short_date(stored.updated_at, datetime.now(UTC).date())
    assert choices(card) == [f"Box — jane@contoso.com (Disconnected since {since})"]
    assert stored.tokens is None
    # The event is stored on the record with the answer and reaches the log just after.
    await audited(bot.database)
    events = await bot.database.audit.for_connection(box.id)
    assert [e.action for e in events][:1] == ["connection.disconnected"]
    # Box is not configured in this bot, so its tokens cannot be revoked: that is recorded,
    # after the answer.
    events = await audit_events(bot, box.id, count=2)
    assert [e.action for e in events] == ["connection.disconnected", "connection.revoke_failed"]
    assert all(e.actor.aad_object_id == JANE.aad_object_id for e in events)
    assert events[1].details == {"revocation": "impossible", "attempts": 1}


async def test_disconnect_twice_is_idempotent(bot: RunningBot) -> None:
    """A double click or a Teams retry changes nothing more and audits once."""
    box = await runtime(bot.database, JANE, "box", "jane@contoso.com")
    await press(bot, JANE, verbs.DISCONNECT, {"connection_id": box.id})
    card = await press(bot, JANE, verbs.DISCONNECT, {"connection_id": box.id})

    assert messages.ALREADY_DISCONNECTED.format(label="Box (jane@contoso.com)") in texts(card)
    await audited(bot.database)  # every event of both presses is in the log: then count them
    assert len(await bot.database.audit.for_connection(box.id)) == 1


async def test_delete_asks_for_confirmation_then_removes(bot: RunningBot) -> None:
    """Delete shows Confirm/Cancel; Confirm removes the record and shows the updated list."""
    box = await runtime(bot.database, JANE, "box", "jane@contoso.com")
    salesforce = await runtime(bot.database, JANE, "salesforce", "jane@sf.example")

    confirm_card = await press(bot, JANE, verbs.DELETE, {"connection_id": box.id, "page": 0})
    assert texts(confirm_card)[0] == messages.CONFIRM_DELETE_TITLE
    assert await bot.database.connections.get(box.id) is not None  # not yet

    confirm = action(confirm_card, "Confirm")
    card = await press(bot, JANE, confirm["verb"], confirm["data"])

    assert "Deleted Box (jane@contoso.com)." in texts(card)
    assert choices(card) == ["Salesforce — jane@sf.example (Connected)"]
    assert await bot.database.connections.get(box.id) is None
    assert await bot.database.connections.get(salesforce.id) is not None
    await audited(bot.database)
    [event] = await bot.database.audit.for_connection(box.id)
    assert event.action == "connection.deleted"


async def test_confirm_twice_is_idempotent(bot: RunningBot) -> None:
    """A second Confirm (a double click, a Teams retry) is told the connection was deleted,
    deletes nothing more and audits nothing more."""
    box = await runtime(bot.database, JANE, "box", "jane@contoso.com")
    await press(bot, JANE, verbs.CONFIRM_DELETE, {"connection_id": box.id})
    card = await press(bot, JANE, verbs.CONFIRM_DELETE, {"connection_id": box.id})

    assert messages.ALREADY_DELETED in texts(card)
    await audited(bot.database)  # every event of both presses is in the log: then count them
    assert len(await bot.database.audit.for_connection(box.id)) == 1


async def test_cancel_keeps_the_connection(bot: RunningBot) -> None:
    """Cancel on the confirmation goes back to the list and deletes nothing."""
    box = await runtime(bot.database, JANE, "box", "jane@contoso.com")
    confirm_card = await press(bot, JANE, verbs.DELETE, {"connection_id": box.id})
    cancel = action(confirm_card, "Cancel")

    card = await press(bot, JANE, cancel["verb"], cancel["data"])

    assert messages.DELETE_CANCELLED in texts(card)
    assert choices(card) == ["Box — jane@contoso.com (Connected)"]
    assert await bot.database.connections.get(box.id) is not None


@pytest.mark.parametrize("verb", [verbs.DISCONNECT, verbs.DELETE, verbs.CONFIRM_DELETE])
async def test_someone_elses_connection_is_untouchable(bot: RunningBot, verb: str) -> None:
    """A forged id of another person's connection: a clear message, nothing changed or revealed."""
    omars = await runtime(bot.database, OMAR, "box", "omar@contoso.com")

    card = await press(bot, JANE, verb, {"connection_id": omars.id})

    assert messages.CONNECTION_NOT_FOUND in texts(card)
    assert "omar@contoso.com" not in str(card)
    stored = await bot.database.connections.get(omars.id)
    assert stored is not None and stored.status.value == "connected"
    await audited(bot.database)  # nothing on its way to the log either
    assert await bot.database.audit.for_connection(omars.id) == []


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"connection_id": ""},
        {"connection_id": "not-an-id"},
        {"connection_id": "0" * 24},
        {"connection_id": ["list"]},
        {"connection_id": {"$ne": None}},
        {"connection_id": "zzzzzzzzzzzzzzzzzzzzzzzz", "page": "x"},
    ],
)
@pytest.mark.parametrize("verb", [verbs.DISCONNECT, verbs.DELETE, verbs.CONFIRM_DELETE])
async def test_missing_or_malformed_selection_changes_nothing(
    bot: RunningBot, verb: str, data: dict[str, Any]
) -> None:
    """No selection, a malformed id or an unknown id: a clear message and no change."""
    box = await runtime(bot.database, JANE, "box", "jane@contoso.com")

    card = await press(bot, JANE, verb, data)

    problem = {messages.CHOOSE_A_CONNECTION, messages.CONNECTION_NOT_FOUND} & set(texts(card))
    assert problem
    stored = await bot.database.connections.get(box.id)
    assert stored is not None and stored.status.value == "connected"
    await audited(bot.database)  # nothing on its way to the log either
    assert await bot.database.audit.recent() == []


async def test_paging_ten_at_a_time(bot: RunningBot) -> None:
    """More than ten connections are shown in pages with Next and Previous."""
    for number in range(23):
        await runtime(bot.database, JANE, "box", f"user{number:02d}@contoso.com")

    await bot.post(activities.message(JANE, bot.service_url, "personal_connections"))
    [first] = bot.connector.sent
    assert len(choices(first.card)) == 10
    assert "Showing 1–10 of 23" in texts(first.card)
    assert [a["title"] for a in first.card["actions"]] == ["Disconnect", "Delete", "Next"]

    next_action = action(first.card, "Next")
    second = await press(bot, JANE, next_action["verb"], next_action["data"])
    assert "Showing 11–20 of 23" in texts(second)
    assert choices(second)[0] == "Box — user10@contoso.com (Connected)"

    third = await press(bot, JANE, verbs.PAGE, action(second, "Next")["data"])
    assert "Showing 21–23 of 23" in texts(third)
    assert [a["title"] for a in third["actions"]] == ["Disconnect", "Delete", "Previous"]
    back = await press(bot, JANE, verbs.PAGE, action(third, "Previous")["data"])
    assert "Showing 11–20 of 23" in texts(back)

    beyond = await press(bot, JANE, verbs.PAGE, {"page": 99})
    assert "Showing 21–23 of 23" in texts(beyond)


async def test_action_submit_fallback_reaches_the_same_handler(bot: RunningBot) -> None:
    """Action.Submit (older clients) carries the verb in its data and gets a new card."""
    box = await runtime(bot.database, JANE, "box", "jane@contoso.com")

    status, _ = await bot.post(
        activities.card_submit(
            JANE, bot.service_url, {"verb": verbs.DISCONNECT, "connection_id": box.id, "page": 0}
        )
    )

    assert status == 200
    [reply] = bot.connector.sent
    assert "Disconnected Box (jane@contoso.com)." in texts(reply.card)
    stored = await bot.database.connections.get(box.id)
    assert stored is not None and stored.status.value == "disconnected"


async def test_connection_actions_outside_the_personal_chat_reveal_nothing(
    bot: RunningBot,
) -> None:
    """A connection card action from a channel points to the 1:1 chat and changes nothing."""
    box = await runtime(bot.database, JANE, "box", "jane@contoso.com")

    status, body = await bot.post(
        activities.card_action(
            JANE, bot.service_url, verbs.DISCONNECT, {"connection_id": box.id}, kind="channel"
        )
    )

    assert status == 200
    assert body["type"] == "application/vnd.microsoft.activity.message"
    assert body["value"] == messages.PRIVATE_CHAT_ONLY
    stored = await bot.database.connections.get(box.id)
    assert stored is not None and stored.status.value == "connected"


@pytest.mark.parametrize(
    "value",
    [
        None,
        "text",
        [],
        {"action": "nope"},
        {"action": {"verb": 7, "data": "x"}},
        {"action": {"verb": "no-such-verb", "data": {}}},
    ],
)
async def test_malformed_card_actions_get_a_friendly_200(bot: RunningBot, value: Any) -> None:
    """A forged or malformed adaptiveCard/action is answered with 200 and a message, never 5xx."""
    activity = activities.invoke(JANE, bot.service_url, "adaptiveCard/action", value)
    status, body = await bot.post(activity)
    assert status == 200
    assert body["value"] == messages.CARD_ACTION_UNKNOWN


@pytest.mark.parametrize(
    "name", ["signin/failure", "composeExtension/query", "task/fetch", "", "signin/verifyState"]
)
async def test_unknown_invokes_get_200(bot: RunningBot, name: str) -> None:
    """Invokes the bot doesn't handle are answered with 200 (Teams shows an error for 501)."""
    status, _ = await bot.post(activities.invoke(JANE, bot.service_url, name, {}))
    assert status == 200


async def test_concurrent_disconnect_and_delete_leave_a_consistent_record(
    bot: RunningBot,
) -> None:
    """Racing Disconnect and Confirm-delete on one record: deleted, each change audited once."""
    for _ in range(5):
        box = await runtime(bot.database, JANE, "box", "jane@contoso.com")
        await asyncio.gather(
            press(bot, JANE, verbs.DISCONNECT, {"connection_id": box.id}),
            press(bot, JANE, verbs.CONFIRM_DELETE, {"connection_id": box.id}),
            press(bot, JANE, verbs.CONFIRM_DELETE, {"connection_id": box.id}),
        )
        assert await bot.database.connections.get(box.id) is None
        await audited(bot.database)  # all three presses' events are in the log: count them
        events = [e.action for e in await bot.database.audit.for_connection(box.id)]
        assert events.count("connection.deleted") == 1
        assert events.count("connection.disconnected") <= 1
