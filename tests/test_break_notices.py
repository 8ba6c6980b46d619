"""A broken connection is told to its owner once, in their 1:1 chat, and audited.

Over real HTTP: the bot, the sandbox provider (which refuses refreshes on request), the
embedded store and the connector fake that records what the bot posts and which 1:1 chats it
opens. Jane signs in through the real flow, so the record knows where she can be reached.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from app import WIRING_KEY
from cards import verbs
from connections.notices import Told
from storage import notices
from storage.models import Actor, Connection, ConnectionStatus
from tests.support import activities
from tests.support.activities import JANE
from tests.support.connector import Sent
from tests.support.data import owner
from tests.support.waiting import audited, eventually
from tests.test_signin_flow import World
from tests.test_signin_flow import world as signin_world  # noqa: F401 (a fixture)


@pytest.fixture
def world(signin_world: World) -> World:  # noqa: F811 (the sign-in tests' world)
    return signin_world


ADMINISTRATOR = Actor.administrator(tenant_id=JANE.tenant_id, object_id="aad-ada", name="Ada Admin")


async def janes_connection(world: World) -> Connection:
    code = await world.sign_in(JANE, user="jane")
    await world.verify(JANE, code)
    connection = await world.runtime_of(JANE)
    assert connection is not None and connection.status is ConnectionStatus.CONNECTED
    world.bot.connector.clear()
    return connection


def wiring(world: World) -> Any:
    return world.bot.client.server.app[WIRING_KEY]


async def notice_of(world: World, connection: Connection) -> dict[str, Any]:
    document = await world.bot.database.db["connections"].find_one({"_id": ObjectId(connection.id)})
    assert document is not None
    return document.get(notices.NOTICE) or {}


async def told(world: World, connection: Connection) -> dict[str, Any]:
    """The notice once it is over (bounded wait on the record, not on time)."""

    async def over() -> bool:
        return (await notice_of(world, connection)).get("state") not in (*notices.UNFINISHED, None)

    await eventually(over)
    return await notice_of(world, connection)


def notice_cards(world: World) -> list[Sent]:
    return [
        sent
        for sent in world.bot.connector.sent
        if (sent.card is not None and "needs attention" in json.dumps(sent.card))
        or (sent.card is not None and "was removed" in json.dumps(sent.card))
    ]


async def break_notified(world: World, connection: Connection) -> list[dict[str, Any]]:
    # The outcome and its event are one update; the event reaches the log just after.
    await audited(world.bot.database)
    events = await world.bot.database.audit.for_connection(connection.id)
    return [e.model_dump() for e in events if e.action == "connection.break_notified"]


async def refuse_refresh(world: World, connection: Connection) -> None:
    """The provider refuses the saved sign-in the next time the bot refreshes it."""
    world.sandbox.control(fail_refresh_with="invalid_grant", fail_refresh_times=10)
    tokens = wiring(world).tokens
    current = await tokens.access_token(connection.id)
    try:
        await tokens.replace_rejected_token(connection.id, current)
    except Exception as error:  # NeedsSignIn: what the test is about
        assert type(error).__name__ == "NeedsSignIn"
    else:
        raise AssertionError("the refresh was not refused")


async def test_a_refused_refresh_is_told_once_with_reconnect(world: World) -> None:
    connection = await janes_connection(world)
    await refuse_refresh(world, connection)

    notice = await told(world, connection)
    assert notice["state"] == Told.TOLD.value and notice["reason"] == "invalid_grant"
    [opened] = world.bot.connector.created_conversations
    assert opened["members"][0]["id"] == JANE.teams_id
    assert opened["tenantId"] == JANE.tenant_id
    [sent] = notice_cards(world)
    assert sent.conversation_id == f"a:private-{JANE.teams_id}"
    shown = json.dumps(sent.card)
    assert "Sandbox" in shown and "jane@sandbox.example" in shown
    assert "no longer accepts your saved sign-in" in shown
    reconnect = [a for a in sent.card["actions"] if a.get("verb") == verbs.RECONNECT]
    assert reconnect and reconnect[0]["data"] == {
        verbs.CONNECTION_INPUT: connection.id,
        verbs.FROM_NOTICE_KEY: True,
    }
    for token in world.sandbox.state.by_access:
        assert token not in shown
    [event] = await break_notified(world, connection)
    assert event["details"] == {"reason": "invalid_grant", "outcome": "told"}
    assert event["actor"]["kind"] == "bot"

    # The same break seen again (another run, the sweep) tells nothing more.
    await refuse_refresh_again(world, connection)
    assert await wiring(world).notices.sweep() == 0
    assert len(notice_cards(world)) == 1
    assert len(await break_notified(world, connection)) == 1

    # Reconnect on the notice sends a Login card, as from the list, and the notice keeps
    # naming the account (it does not turn into the whole list).
    world.bot.connector.clear()
    status, answer = await world.bot.post(
        activities.card_action(JANE, world.bot.service_url, verbs.RECONNECT, reconnect[0]["data"])
    )
    assert status == 200
    assert any(
        a.get("contentType") == "application/vnd.microsoft.card.signin"
        for s in world.bot.connector.sent
        for a in s.activity.get("attachments") or []
    )
    answered = json.dumps(answer)
    assert "jane@sandbox.example" in answered
    assert "sign-in card for Sandbox" in answered
    assert "Next" not in answered and "Disconnect" not in answered


async def refuse_refresh_again(world: World, connection: Connection) -> None:
    marked = await wiring(world).tokens.mark_broken(connection.id, "invalid_grant")
    assert marked is False  # already Needs sign-in: not a new break


async def test_a_401_that_survives_a_refresh_is_told_as_refused_access(world: World) -> None:
    connection = await janes_connection(world)
    assert await wiring(world).tokens.mark_broken(connection.id, "unauthorized")
    notice = await told(world, connection)
    assert notice["reason"] == "unauthorized" and notice["state"] == "told"
    [sent] = notice_cards(world)
    assert "refused the bot's access" in json.dumps(sent.card)


async def test_an_administrator_disconnect_is_told_with_reconnect(world: World) -> None:
    connection = await janes_connection(world)
    service = wiring(world).console.connections
    result, _ = await service.disconnect_as_administrator(
        ADMINISTRATOR, connection.id, tenants=None
    )
    assert result.value == "done"
    notice = await told(world, connection)
    assert notice["reason"] == notices.DISCONNECTED_BY_ADMINISTRATOR
    [sent] = notice_cards(world)
    shown = json.dumps(sent.card)
    assert "Ada Admin signed this connection out" in shown
    assert any(a.get("verb") == verbs.RECONNECT for a in sent.card["actions"])
    [event] = await break_notified(world, connection)
    assert event["details"]["outcome"] == "told"


async def test_an_administrator_delete_says_whom_to_ask_and_offers_no_reconnect(
    world: World,
) -> None:
    connection = await janes_connection(world)
    # The parent is the configured `sandbox_team`, whose contact people ask.
    await world.bot.database.db["connections"].update_one(
        {"_id": ObjectId(world.parent.id)}, {"$set": {"name": "sandbox_team"}}
    )
    service = wiring(world).console.connections
    result, _ = await service.delete_as_administrator(ADMINISTRATOR, connection.id, tenants=None)
    assert result.value == "done"
    notice = await told(world, connection)
    assert notice["reason"] == notices.DELETED_BY_ADMINISTRATOR and notice["state"] == "told"
    [sent] = notice_cards(world)
    shown = json.dumps(sent.card)
    assert "was removed" in shown and "Ada Admin removed this connection" in shown
    assert "ask Ada Admin" in shown
    assert "actions" not in sent.card


async def test_the_persons_own_disconnect_and_delete_tell_nothing(world: World) -> None:
    connection = await janes_connection(world)
    for verb in (verbs.DISCONNECT, verbs.CONFIRM_DELETE):
        status, _ = await world.bot.post(
            activities.card_action(
                JANE, world.bot.service_url, verb, {verbs.CONNECTION_INPUT: connection.id}
            )
        )
        assert status == 200
    assert await notice_of(world, connection) == {}
    assert await wiring(world).notices.sweep() == 0
    assert notice_cards(world) == []
    assert world.bot.connector.created_conversations == []


async def test_a_notice_outdated_by_a_new_sign_in_is_not_told(world: World) -> None:
    """Broken, then signed in again before the notice went out: nothing to tell any more."""
    connection = await janes_connection(world)
    tokens = wiring(world).tokens
    tokens.on_break = None  # nobody tells it right away: the sweep will
    assert await tokens.mark_broken(connection.id, "invalid_grant")
    code = await world.sign_in(JANE, user="jane")
    await world.verify(JANE, code)
    world.bot.connector.clear()
    assert await wiring(world).notices.sweep() == 1
    notice = await notice_of(world, connection)
    assert notice["state"] == Told.OUTDATED.value
    assert notice_cards(world) == []
    [event] = await break_notified(world, connection)
    assert event["details"]["outcome"] == "outdated"


async def test_a_sender_that_stopped_mid_way_never_tells_twice(world: World) -> None:
    """A process claimed the notice and died before finishing: after the claim runs out the
    sweep closes it as unknown (maybe told) and posts nothing."""
    connection = await janes_connection(world)
    tokens = wiring(world).tokens
    tokens.on_break = None
    assert await tokens.mark_broken(connection.id, "invalid_grant")
    collection = world.bot.database.db["connections"]
    now = datetime.now(UTC)
    claimed = await notices.claim(
        collection,
        ObjectId(connection.id),
        holder="dead",
        until=now - timedelta(seconds=1),
        now=now,
    )
    assert claimed is not None
    assert await wiring(world).notices.sweep() == 1
    assert (await notice_of(world, connection))["state"] == Told.UNKNOWN.value
    assert notice_cards(world) == []
    [event] = await break_notified(world, connection)
    assert event["details"]["outcome"] == "unknown"


async def test_the_app_not_installed_for_the_person_is_audited_not_retried(world: World) -> None:
    connection = await janes_connection(world)
    world.bot.connector.uninstalled_users.add(JANE.teams_id)
    await refuse_refresh(world, connection)
    notice = await told(world, connection)
    assert notice["state"] == Told.REFUSED.value
    assert notice_cards(world) == []
    assert await wiring(world).notices.sweep() == 0
    [event] = await break_notified(world, connection)
    assert event["details"]["outcome"] == "refused"


async def test_a_connection_nobody_can_reach_is_audited_as_such(world: World) -> None:
    """A record without a reach (stored before reaches were kept, or by an operator)."""
    connection = await janes_connection(world)
    await world.bot.database.db["connections"].update_one(
        {"_id": ObjectId(connection.id)}, {"$set": {"reach": None}}
    )
    await refuse_refresh(world, connection)
    notice = await told(world, connection)
    assert notice["state"] == Told.NO_CHAT.value
    assert world.bot.connector.created_conversations == []
    assert (await world.bot.database.connections.get(connection.id)).status is (  # type: ignore[union-attr]
        ConnectionStatus.NEEDS_REAUTH
    )
    assert owner(JANE).aad_object_id == connection.owner.aad_object_id
