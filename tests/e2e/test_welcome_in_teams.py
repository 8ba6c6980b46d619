"""The welcome on install, in a real Teams client emulator (Agents Playground in headless Chromium).

The Playground announces an install by itself whenever its page loads (its UI posts
`/_debug/conversation/<id>/installation`, and the server sends the bot `installationUpdate` add
and `conversationUpdate` membersAdded). Here that automatic announcement is held back, so the
person installs the app themselves through the Playground's own menu, Mock an Activity →
Install application, and the test knows which event the welcome answers. The test has a
Playground of its own: its personal chat id is new (random per start), so the bot has never
welcomed this 1:1 chat, whichever tests ran before on the same bot and database.

The Playground hands a mocked activity to the bot and answers the UI at once; the Log Panel
prints "<activity type> 200" when the bot has answered it, and the bot answers only once its
reply (a welcome, if any) is posted. The test waits on those lines, never on time.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from playwright.async_api import Browser, Locator, Response, Route, expect

import messages
from storage.models import Owner, ProviderAccount
from tests.e2e.conftest import _CALL_FAILED, E2EBot
from tests.e2e.harness import (
    ARTIFACTS_ROOT,
    DEFAULT_TIMEOUT_S,
    TENANT_ID,
    USER_AAD_OBJECT_ID,
    USER_ID,
    USER_NAME,
    Playground,
    TeamsPage,
    new_loopback_context,
    slug,
)

ALEX = Owner(
    tenant_id=TENANT_ID, aad_object_id=USER_AAD_OBJECT_ID, teams_user_id=USER_ID, name=USER_NAME
)
ADMIN = Owner(tenant_id=TENANT_ID, aad_object_id="admin-object-id", name="Ada Admin")
BOX_ACCOUNT = "alex@box.example"
# What the UI posts on load to have the Playground announce the install.
AUTOMATIC_INSTALL = re.compile(r"/_debug/conversation/[^/]+/installation$")
CUSTOM_ACTIVITIES = "/_internal/v1/customActivities"
CUSTOM_ACTIVITY_TEMPLATE = "/_internal/v1/customActivities/template"
# Mock an Activity's menu items (Playground 0.2.28).
INSTALL_APPLICATION = "Install application"


@pytest.fixture
async def alex_has_a_box_connection(e2e_bot: E2EBot) -> AsyncIterator[str]:
    """One runtime connection of Alex's, for the list Personal accounts opens."""
    connections = e2e_bot.database.connections
    await e2e_bot.database.db["connections"].delete_many({})
    parent = await connections.create_parent(
        provider="box",
        owner=ADMIN,
        account=ProviderAccount(id="box-admin", display_name="admin@box.example"),
    )
    child = await connections.create_runtime(
        parent_id=parent.id,
        owner=ALEX,
        account=ProviderAccount(id=BOX_ACCOUNT, display_name=BOX_ACCOUNT),
    )
    yield child.id
    await e2e_bot.database.db["connections"].delete_many({})


@pytest.fixture
async def not_installed(
    browser: Browser, e2e_bot_base_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[TeamsPage]:
    """The Playground's UI on the personal chat of a Playground started for this test, with
    the app not installed yet: the page load's automatic install announcement is held back.

    Screenshots and the Playground's logs go to test-artifacts/e2e/<test name>/; a failing
    test leaves a last screenshot.
    """
    artifacts = ARTIFACTS_ROOT / slug(request.node.name)
    shutil.rmtree(artifacts, ignore_errors=True)
    held_back = asyncio.Event()

    async def hold_back(route: Route) -> None:
        # Answered as the Playground answers it (200, no body), but never reaches it.
        await route.fulfill(status=200, body="")
        held_back.set()

    async with Playground(f"{e2e_bot_base_url}/api/messages", log_dir=artifacts) as playground:
        context = await new_loopback_context(browser)
        context.set_default_timeout(DEFAULT_TIMEOUT_S * 1000)
        try:
            page = await context.new_page()
            await page.route(AUTOMATIC_INSTALL, hold_back)
            teams = TeamsPage(page, playground, artifacts)
            try:
                await teams.open()
                # The UI asks for it once the chat is shown; only then is the stage set.
                await asyncio.wait_for(held_back.wait(), DEFAULT_TIMEOUT_S)
            except BaseException:
                await teams.screenshot("open-failed")
                raise
            yield teams
            if request.node.stash.get(_CALL_FAILED, False):
                await teams.screenshot("failure")
        finally:
            await context.close()


def welcome_cards(teams: TeamsPage) -> Locator:
    """The Adaptive Cards titled Welcome on screen."""
    title = teams.page.get_by_text(messages.WELCOME_TITLE, exact=True)
    return teams.cards.filter(has=title)


def answered(teams: TeamsPage, activity_type: str) -> Locator:
    """The Log Panel's lines saying the bot answered an activity of this type with 200."""
    return teams.page.get_by_text(f"{activity_type} 200", exact=True)


def _is_template(response: Response) -> bool:
    return urlsplit(response.url).path == CUSTOM_ACTIVITY_TEMPLATE


def _is_custom_activity(response: Response) -> bool:
    return urlsplit(response.url).path == CUSTOM_ACTIVITIES and response.request.method == "POST"


async def mock_activity(teams: TeamsPage, item: str) -> dict[str, Any]:
    """Mock an Activity → `item` → Send activity, in the chat on screen, as a person does it in
    the Playground; returns the activity the Playground was given to deliver to the bot."""
    page = teams.page
    await page.get_by_role("button", name="Mock an Activity").click()
    # A menu item's accessible name is its tooltip (handler names): match the visible text.
    menu_item = page.get_by_role("menuitem").filter(has_text=re.compile(rf"^{re.escape(item)}$"))
    async with page.expect_response(_is_template) as template_info:
        await menu_item.click()
    template = await (await template_info.value).json()
    dialog = page.get_by_role("dialog", name=item)
    # Send posts what the editor holds: an empty body until the template is in it. (Only the
    # page's first dialog shows it; a dialog opened again keeps a blank editor, Playground 0.2.28.)
    await dialog.locator(".view-line").filter(has_text=template["id"]).wait_for()
    async with page.expect_response(_is_custom_activity) as sent_info:
        await dialog.get_by_role("button", name="Send activity", exact=True).click()
    sent = await sent_info.value
    assert sent.ok, f"{sent.url} answered {sent.status}"
    await expect(dialog).to_be_hidden()
    activity = sent.request.post_data_json
    assert activity == template
    return activity


async def activity_template(playground: Playground, kind: str) -> dict[str, Any]:
    """What the Playground would send for Mock an Activity's `kind` ("install", "botAdded", ...)
    in the personal chat, from the endpoint its dialog fills the editor from."""
    query = {"conversationId": await playground.personal_chat_id(), "type": kind}
    async with (
        aiohttp.ClientSession() as http,
        http.get(playground.url + CUSTOM_ACTIVITY_TEMPLATE, params=query) as resp,
    ):
        resp.raise_for_status()
        template: dict[str, Any] = await resp.json()
        return template


async def test_install_welcomes_once_and_opens_personal_accounts(
    not_installed: TeamsPage, e2e_bot: E2EBot, alex_has_a_box_connection: str
) -> None:
    """Install application → one welcome card with Personal accounts and a word on help; the
    same installationUpdate again (a retry) and the conversationUpdate adding the bot (the
    second announcement) → still one; Personal accounts → the connections list."""
    teams = not_installed
    chat_id = await teams.playground.personal_chat_id()
    assert await welcome_cards(teams).count() == 0

    install = await mock_activity(teams, INSTALL_APPLICATION)
    assert install["type"] == "installationUpdate" and install["action"] == "add"
    assert install["conversation"]["id"] == chat_id
    welcome = welcome_cards(teams).last
    await welcome.wait_for()
    await expect(welcome).to_contain_text(messages.WELCOME_TEXT)
    await expect(welcome).to_contain_text(messages.WELCOME_HELP)
    button = welcome.get_by_role("button", name=messages.HELP_PERSONAL_ACCOUNTS, exact=True)
    await expect(button).to_be_visible()
    await expect(answered(teams, "installationUpdate")).to_have_count(1)
    await teams.screenshot("welcome")

    # What Teams sends on its own, through the Playground's custom-activity endpoint: a retry
    # of the install (the very same activity, same id), and the install's other announcement.
    await teams.playground.send_custom_activity(install)
    added = await activity_template(teams.playground, "botAdded")
    assert added["type"] == "conversationUpdate"
    assert added["recipient"]["id"] in [member["id"] for member in added["membersAdded"]]
    await teams.playground.send_custom_activity(added)
    # Both answered by the bot, then a later reply rendered: a second welcome would show by now.
    await expect(answered(teams, "installationUpdate")).to_have_count(2)
    await expect(answered(teams, "conversationUpdate")).to_have_count(1)
    await teams.send("help")
    await teams.wait_for_card_text(messages.HELP_TITLE)
    assert await welcome_cards(teams).count() == 1
    await teams.screenshot("still-one-welcome")
    welcomes = e2e_bot.database.welcomes.collection
    assert await welcomes.count_documents({"kind": "welcome", "conversation_id": chat_id}) == 1

    answer = await teams.click_action(messages.HELP_PERSONAL_ACCOUNTS, card=welcome_cards(teams))
    assert answer is not None and f"Box — {BOX_ACCOUNT} (Connected)" in str(answer)
    listing = await teams.wait_for_card_text(messages.CONNECTIONS_TITLE)
    await expect(welcome_cards(teams)).to_have_count(0)  # the list took the welcome's place
    await teams.screenshot("personal-accounts")
    await listing.get_by_role("combobox").click()
    options = await teams.page.get_by_role("option").all_inner_texts()
    assert options == [f"Box — {BOX_ACCOUNT} (Connected)"]
