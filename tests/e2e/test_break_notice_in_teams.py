"""The break notice, in a real Teams client emulator (Agents Playground in headless Chromium).

Alex Wilber signs in at the sandbox provider the way a person does, from a recipe that acts as
them (create opportunity, "verify user access" on): the Login card, consent in the popup, the
code typed in the chat. That sign-in keeps where Alex can be reached (the connection's `reach`).
Then the connection breaks from outside the chat, as it does in life:

- the provider refuses it: the sandbox expires every access token and refuses the next refresh
  with `invalid_grant`, and Alex runs the recipe again. The app refuses the token, the refresh
  is refused, the connection needs sign-in, and one notice card arrives in Alex's 1:1 chat with
  the account, the reason and Reconnect. Running the recipe again tells nothing more; Reconnect
  on the notice sends the Login card.
- an administrator deletes it in the admin console (signed in with a one-time link, as
  `python -m admin console-link` gives one): the notice says it was removed and whom to ask,
  with no Reconnect.

Notices are found by their text (the Playground announces an install on each page load, so a
Welcome card may be in the chat too), and counted only once a later reply is on screen.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import ObjectId
from playwright.async_api import Locator, Page, expect

import messages
from cards.connections import short_date
from storage import notices
from storage.admin_signins import COLLECTION as ADMIN_SIGNINS
from storage.admin_signins import AdminSignInStore
from storage.audit import CONNECTION_BREAK_NOTIFIED
from storage.crypto import TokenCipher
from storage.models import Connection, ConnectionStatus, Owner, ProviderAccount
from storage.outbox import HAS_EVENTS
from tests.conftest import TEST_TOKEN_KEY
from tests.e2e.conftest import E2EBot
from tests.e2e.harness import (
    TENANT_ID,
    USER_AAD_OBJECT_ID,
    USER_ID,
    USER_NAME,
    TeamsPage,
    WsFrame,
)
from tests.support.sandbox import issue_tokens
from tests.support.waiting import eventually

ALEX = Owner(
    tenant_id=TENANT_ID, aad_object_id=USER_AAD_OBJECT_ID, teams_user_id=USER_ID, name=USER_NAME
)
ADMIN = Owner(tenant_id=TENANT_ID, aad_object_id="admin-object-id", name="Ada Admin")
APP = "Sandbox"
ACCOUNT = "alex@sandbox.example"
LABEL = messages.CONNECTION_LABEL.format(app=APP, account=ACCOUNT)
LOGIN_TEXT = messages.LOGIN_CARD_TEXT.format(app=APP)
NEEDS_ATTENTION = messages.NOTICE_TITLE.format(app=APP)
REMOVED = messages.NOTICE_TITLE_REMOVED.format(app=APP)
RECIPE = "create_opportunity"


@pytest.fixture
async def sandbox_team(e2e_bot: E2EBot) -> AsyncIterator[None]:
    """The recipe's parent `sandbox_team` (authorized as Omar), no connection of Alex's yet,
    verify user access on; afterwards nothing is left that a later sign-in could resume."""
    database = e2e_bot.database
    await database.db["connections"].delete_many({})
    await database.db["recipe_runs"].delete_many({})
    tokens = await issue_tokens(e2e_bot.apps_file, f"{e2e_bot.base_url}/auth/callback", user="omar")
    await database.connections.create_parent(
        provider="sandbox",
        owner=ADMIN,
        account=ProviderAccount(id="user-omar", display_name="omar@sandbox.example"),
        tokens=TokenCipher([TEST_TOKEN_KEY]).seal(tokens.as_record()),
        api_base_url=e2e_bot.sandbox.base_url,
        name="sandbox_team",
    )
    await database.recipe_settings.set_verify_user_access(RECIPE, True, changed_by="test")
    try:
        yield
    finally:
        e2e_bot.sandbox.control(fail_refresh_with=None)
        await database.db["recipe_runs"].delete_many({})
        await database.db["connections"].delete_many({})


def login_cards(teams: TeamsPage) -> Locator:
    """Every Login card on screen (a Bot Framework sign-in card, not an Adaptive Card)."""
    return teams.page.get_by_text(LOGIN_TEXT)


def notice_cards(teams: TeamsPage, heading: str) -> Locator:
    """The Adaptive Cards on screen titled `heading`."""
    return teams.cards.filter(has=teams.page.get_by_text(heading, exact=True))


def notice_frames(teams: TeamsPage, heading: str) -> list[WsFrame]:
    """Messages the Playground pushed to the UI with `heading` in them, in any conversation."""
    return [
        frame
        for frame in teams.ws_frames
        if frame.action == "createMessage" and heading in json.dumps(frame.message)
    ]


async def consent_and_read_code(popup: Page, person: str) -> str:
    """On the sandbox's consent page: choose `person`, Allow; the 6-digit code it shows."""
    await popup.get_by_text(person).click()
    await popup.get_by_role("button", name="Allow").click()
    code_element = popup.locator("#code")
    await code_element.wait_for(state="visible")
    code = (await code_element.inner_text()).strip()
    assert len(code) == 6 and code.isdigit()
    await popup.close()
    return code


async def sign_in_through_the_recipe(teams: TeamsPage, e2e_bot: E2EBot) -> Connection:
    """create opportunity → Login card → consent as Alex → code typed → the run carries on;
    Alex's connection, which now knows where Alex can be reached."""
    before = await login_cards(teams).count()
    await teams.send("create opportunity Acme 5000")
    await login_cards(teams).nth(before).wait_for()
    popup = await teams.click_sign_in("Sign in")
    await teams.send(await consent_and_read_code(popup, USER_NAME))
    await teams.wait_for_card_text(f"Created in {APP} as {ACCOUNT}")
    await teams.screenshot("signed-in")
    [connection] = await e2e_bot.database.connections.list_for_owner(owner=ALEX)
    assert connection.status is ConnectionStatus.CONNECTED
    reach = await raw_field(e2e_bot, connection.id, "reach")
    assert reach["serviceUrl"].rstrip("/") == teams.playground.service_url
    assert reach["conversation"]["id"] == await teams.playground.personal_chat_id()
    return connection


async def raw_field(e2e_bot: E2EBot, connection_id: str, name: str) -> Any:
    document = await e2e_bot.database.db["connections"].find_one({"_id": ObjectId(connection_id)})
    assert document is not None
    return document.get(name)


async def told(e2e_bot: E2EBot, connection_id: str) -> dict[str, Any]:
    """The record's notice once telling it is over and audited (the card shows a moment
    before the bot records how it went): a bounded wait on the record, not on time."""

    collection = e2e_bot.database.db["connections"]

    async def over() -> dict[str, Any] | None:
        document = await collection.find_one({"_id": ObjectId(connection_id)})
        notice = (document or {}).get(notices.NOTICE) or {}
        if notice.get("state") in (*notices.UNFINISHED, None):
            return None
        unaudited = await collection.find_one({"_id": ObjectId(connection_id), **HAS_EVENTS})
        return notice if unaudited is None else None

    notice: dict[str, Any] = await eventually(over)
    return notice


async def break_notified(e2e_bot: E2EBot, connection_id: str) -> list[dict[str, Any]]:
    events = await e2e_bot.database.audit.for_connection(connection_id)
    return [e.details for e in events if e.action == CONNECTION_BREAK_NOTIFIED]


async def test_a_refused_sign_in_is_told_once_in_the_personal_chat_with_reconnect(
    teams_page: TeamsPage, e2e_bot: E2EBot, sandbox_team: None
) -> None:
    """The provider refuses Alex's token and then their saved sign-in during a recipe run:
    one notice card in the 1:1 chat (account, reason, since when, Reconnect); the recipe run
    again tells nothing more; Reconnect on the notice sends the Login card."""
    teams = teams_page
    connection = await sign_in_through_the_recipe(teams, e2e_bot)
    chat_id = await teams.playground.personal_chat_id()
    refreshes_before = e2e_bot.sandbox.stats().get("token.refresh_token", 0)

    # The app stops accepting the access token and refuses the refresh token, once.
    e2e_bot.sandbox.control(
        expire_access_tokens=True, fail_refresh_with="invalid_grant", fail_refresh_times=1
    )
    before = await login_cards(teams).count()
    await teams.send("create opportunity Broken 1")
    notice = notice_cards(teams, NEEDS_ATTENTION)
    await notice.last.wait_for()
    await login_cards(teams).nth(before).wait_for()  # the run asks Alex to sign in again
    await teams.screenshot("break-notice")

    stored = await e2e_bot.database.connections.get(connection.id)
    assert stored is not None and stored.status is ConnectionStatus.NEEDS_REAUTH
    assert e2e_bot.sandbox.stats().get("token.refresh_token", 0) == refreshes_before + 1
    assert "Broken" not in [o["name"] for o in e2e_bot.sandbox.state.opportunities]
    record = await told(e2e_bot, connection.id)
    assert record["reason"] == notices.REFRESH_REFUSED and record["state"] == "told"
    since = messages.NOTICE_SINCE.format(date=short_date(record["at"], datetime.now(UTC).date()))
    card = notice.last
    for line in (
        NEEDS_ATTENTION,
        LABEL,
        messages.NOTICE_WHY_REFRESH_REFUSED,
        since,
        messages.NOTICE_RECONNECT,
    ):
        await expect(card).to_contain_text(line)
    reconnect = card.get_by_role("button", name=messages.BUTTON_RECONNECT, exact=True)
    await expect(reconnect).to_be_visible()
    # Posted in Alex's 1:1 chat with the bot, and only there.
    [frame] = notice_frames(teams, NEEDS_ATTENTION)
    assert frame.conversation_id == chat_id
    assert await break_notified(e2e_bot, connection.id) == [
        {"reason": notices.REFRESH_REFUSED, "outcome": "told"}
    ]

    # The same break met again: another run asks for a sign-in, and tells nothing more.
    before = await login_cards(teams).count()
    await teams.send("create opportunity Again 1")
    await login_cards(teams).nth(before).wait_for()
    await teams.screenshot("run-again")
    assert await notice.count() == 1
    assert len(notice_frames(teams, NEEDS_ATTENTION)) == 1
    assert len(await break_notified(e2e_bot, connection.id)) == 1

    # Reconnect on the notice: a Login card for the same app, in the same chat.
    before = await login_cards(teams).count()
    answer = await teams.click_action(messages.BUTTON_RECONNECT, card=card)
    assert answer is not None
    await login_cards(teams).nth(before).wait_for()
    await teams.screenshot("reconnect-from-notice")
    # The notice keeps naming the account and says the Login card is below.
    sent = messages.RECONNECT_SENT.format(app=APP)
    assert sent in json.dumps(answer)
    assert ACCOUNT in json.dumps(answer)
    await teams.card_with_text(sent).wait_for()


async def test_an_administrator_delete_is_told_with_whom_to_ask_and_no_reconnect(
    teams_page: TeamsPage, e2e_bot: E2EBot, sandbox_team: None
) -> None:
    """An administrator deletes Alex's connection in the admin console: one notice in the
    1:1 chat saying it was removed, by whom and whom to ask, with no Reconnect."""
    teams = teams_page
    connection = await sign_in_through_the_recipe(teams, e2e_bot)
    chat_id = await teams.playground.personal_chat_id()

    # The console, in another tab of the same browser, signed in with a one-time link.
    token = await AdminSignInStore(e2e_bot.database.db[ADMIN_SIGNINS]).create_link()
    console = await teams.page.context.new_page()
    await console.goto(f"{e2e_bot.base_url}/admin/link?token={token}")
    await expect(console.locator("main")).to_contain_text(
        f"Signed in as {messages.CONSOLE_LOCAL_OPERATOR}"
    )
    await console.goto(f"{e2e_bot.base_url}/admin/connections")
    await console.get_by_label(f"Choose {USER_NAME}'s {APP} connection").check()
    await console.get_by_role("button", name="Delete chosen…").click()
    await expect(console.get_by_role("heading", level=1)).to_have_text("Delete 1 connection?")
    await console.screenshot(path=str(teams.artifacts_dir / "console-confirm.png"))
    await console.get_by_role("button", name="Yes, delete it").click()
    await expect(console.get_by_role("status")).to_contain_text(f"{LABEL} is removed")
    await console.screenshot(path=str(teams.artifacts_dir / "console-done.png"))
    await console.close()

    notice = notice_cards(teams, REMOVED)
    await notice.last.wait_for()
    # A later reply on screen before counting: the connections list, now empty of it.
    await teams.send("personal_connections")
    await teams.wait_for_card_text(messages.CONNECTIONS_TITLE)
    await teams.screenshot("removed-notice")

    assert await notice.count() == 1
    assert await notice_cards(teams, NEEDS_ATTENTION).count() == 0
    card = notice.last
    by = messages.CONSOLE_LOCAL_OPERATOR
    for line in (
        REMOVED,
        LABEL,
        messages.NOTICE_WHY_DELETED.format(by=by),
        messages.NOTICE_ASK.format(contact=messages.RECIPE_CONTACT_UNKNOWN),
    ):
        await expect(card).to_contain_text(line)
    await expect(card.get_by_role("button")).to_have_count(0)
    await expect(card).not_to_contain_text(messages.NOTICE_RECONNECT)
    [frame] = notice_frames(teams, REMOVED)
    assert frame.conversation_id == chat_id
    assert await e2e_bot.database.connections.get(connection.id) is None
    record = await told(e2e_bot, connection.id)
    assert record["reason"] == notices.DELETED_BY_ADMINISTRATOR and record["state"] == "told"
    assert await break_notified(e2e_bot, connection.id) == [
        {"reason": notices.DELETED_BY_ADMINISTRATOR, "outcome": "told"}
    ]
