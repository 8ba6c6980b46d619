"""Personal connections in a real Teams client emulator (Agents Playground in headless Chromium).

The Playground's user is Alex Wilber; their connections are stored through the store API, then
everything else happens as a person would do it: typing, picking, pressing buttons.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from cards.connections import short_date
from storage.crypto import TokenCipher
from storage.database import Database
from storage.models import ConnectionStatus, Owner, ProviderAccount
from tests.conftest import TEST_TOKEN_KEY
from tests.e2e.conftest import E2EBot
from tests.e2e.harness import TENANT_ID, USER_AAD_OBJECT_ID, USER_ID, USER_NAME, TeamsPage
from tests.support.sandbox import issue_tokens

ALEX = Owner(
    tenant_id=TENANT_ID, aad_object_id=USER_AAD_OBJECT_ID, teams_user_id=USER_ID, name=USER_NAME
)
ADMIN = Owner(tenant_id=TENANT_ID, aad_object_id="admin-object-id", name="Ada Admin")


async def store_connection(database: Database, provider: str, account: str) -> str:
    parent = await database.connections.create_parent(
        provider=provider,
        owner=ADMIN,
        account=ProviderAccount(id=f"{provider}-admin", display_name=f"admin@{provider}.example"),
    )
    child = await database.connections.create_runtime(
        parent_id=parent.id, owner=ALEX, account=ProviderAccount(id=account, display_name=account)
    )
    return child.id


@pytest.fixture
async def two_connections(e2e_bot: E2EBot) -> AsyncIterator[dict[str, str]]:
    database = e2e_bot.database
    await database.db["connections"].delete_many({})
    yield {
        "salesforce": await store_connection(database, "salesforce", "alex@contoso.com"),
        "box": await store_connection(database, "box", "alex@box.example"),
    }
    await database.db["connections"].delete_many({})


async def test_disconnect_then_delete(
    teams_page: TeamsPage, e2e_bot: E2EBot, two_connections: dict[str, str]
) -> None:
    """Pick a connection, Disconnect it, then Delete → Confirm: the card and database follow."""
    connections = e2e_bot.database.connections
    await teams_page.send("personal_connections")
    listing = await teams_page.wait_for_card_text("Your personal connections")
    await teams_page.screenshot("list")

    await teams_page.choose("Box — alex@box.example (Connected)", card=listing)
    await teams_page.screenshot("picked")
    answer = await teams_page.click_action("Disconnect", card=listing)
    assert answer is not None and "Disconnected Box (alex@box.example)." in str(answer)
    after_disconnect = await teams_page.wait_for_card_text("Disconnected Box (alex@box.example).")
    await teams_page.screenshot("disconnected")
    stored = await connections.get(two_connections["box"])
    assert stored is not None and stored.status is ConnectionStatus.DISCONNECTED

    since = short_date(stored.updated_at, datetime.now(UTC).date())
    await teams_page.choose(
        f"Box — alex@box.example (Disconnected since {since})", card=after_disconnect
    )
    await teams_page.click_action("Delete", card=after_disconnect)
    confirmation = await teams_page.wait_for_card_text("Delete this connection?")
    await teams_page.screenshot("confirm")
    assert await connections.get(two_connections["box"]) is not None  # not before Confirm

    await teams_page.click_action("Confirm", card=confirmation)
    after_delete = await teams_page.wait_for_card_text("Deleted Box (alex@box.example).")
    await teams_page.screenshot("deleted")
    assert await connections.get(two_connections["box"]) is None
    salesforce = await connections.get(two_connections["salesforce"])
    assert salesforce is not None and salesforce.status is ConnectionStatus.CONNECTED
    await after_delete.get_by_role("combobox").click()
    options = teams_page.page.get_by_role("option")
    assert await options.all_inner_texts() == ["Salesforce — alex@contoso.com (Connected)"]


async def test_help_then_personal_accounts(
    teams_page: TeamsPage, two_connections: dict[str, str]
) -> None:
    """`help` shows the help card; its Personal accounts button replaces it with the list."""
    await teams_page.send("help")
    help_card = await teams_page.wait_for_card_text("What I can do")
    await teams_page.screenshot("help")

    answer = await teams_page.click_action("Personal accounts", card=help_card)
    assert answer is not None and "Salesforce — alex@contoso.com (Connected)" in str(answer)
    await teams_page.wait_for_card_text("Your personal connections")
    await teams_page.screenshot("personal-accounts")


async def test_mention_in_channel_sends_the_list_to_the_personal_chat(
    teams_page: TeamsPage, two_connections: dict[str, str]
) -> None:
    """@mention in a channel: a notice in the channel, the list in the 1:1 chat."""
    await teams_page.switch_to_channel()
    await teams_page.mention_bot_and_send("personal_connections")
    await teams_page.wait_for_text("I've sent your personal connections to you in a private chat")
    await teams_page.screenshot("channel-notice")
    assert await teams_page.cards.filter(has_text="alex@contoso.com").count() == 0

    await teams_page.switch_to_personal_chat()
    listing = await teams_page.wait_for_card_text("Your personal connections")
    await teams_page.screenshot("personal-chat")
    await listing.get_by_role("combobox").click()
    options = await teams_page.page.get_by_role("option").all_inner_texts()
    assert sorted(options) == [
        "Box — alex@box.example (Connected)",
        "Salesforce — alex@contoso.com (Connected)",
    ]


async def test_reconnect_signs_in_at_the_sandbox_and_lists_the_account(
    teams_page: TeamsPage, e2e_bot: E2EBot
) -> None:
    """Reconnect → Login card → consent in the popup → type the code → connected, listed."""
    database = e2e_bot.database
    await database.db["connections"].delete_many({})
    parent = await database.connections.create_parent(
        provider="sandbox",
        owner=ADMIN,
        account=ProviderAccount(id="user-omar", display_name="omar@sandbox.example"),
    )
    old = await database.connections.create_runtime(
        parent_id=parent.id,
        owner=ALEX,
        account=ProviderAccount(id="old", display_name="old@sandbox.example"),
        status=ConnectionStatus.DISCONNECTED,
    )
    since = short_date(old.updated_at, datetime.now(UTC).date())

    await teams_page.send("personal_connections")
    listing = await teams_page.wait_for_card_text("Your personal connections")
    await teams_page.choose(
        f"Sandbox — old@sandbox.example (Disconnected since {since})", card=listing
    )
    await teams_page.click_action("Reconnect", card=listing)
    # The Login card is a Bot Framework sign-in card, not an Adaptive Card.
    await teams_page.page.get_by_text("Sign in to Sandbox to continue").last.wait_for()
    await teams_page.screenshot("login-card")

    popup = await teams_page.click_sign_in("Sign in")
    await popup.get_by_text("Jane Doe").click()
    await popup.screenshot(path=str(teams_page.artifacts_dir / "consent.png"))
    await popup.get_by_role("button", name="Allow").click()
    code_element = popup.locator("#code")
    await code_element.wait_for(state="visible")
    await popup.screenshot(path=str(teams_page.artifacts_dir / "code.png"))
    code = (await code_element.inner_text()).strip()
    assert len(code) == 6 and code.isdigit()
    assert "code=" not in popup.url and "state=" not in popup.url
    await popup.close()

    await teams_page.send(code)
    await teams_page.wait_for_text("Your Sandbox account jane@sandbox.example is connected.")
    await teams_page.screenshot("connected")

    await teams_page.send("personal_connections")
    await teams_page.wait_for_card_text("Your personal connections")
    latest = teams_page.latest_card()
    await latest.get_by_role("combobox").click()
    options = await teams_page.page.get_by_role("option").all_inner_texts()
    assert options == ["Sandbox — jane@sandbox.example (Connected)"]
    await teams_page.screenshot("listed")
    [stored] = await database.connections.list_for_owner(owner=ALEX)
    assert stored.status is ConnectionStatus.CONNECTED and stored.tokens is not None


async def test_recipe_signs_in_mid_run_and_carries_on(
    teams_page: TeamsPage, e2e_bot: E2EBot
) -> None:
    """Toggle on: create opportunity → Login card → sign in → type the code → the result appears
    by itself, credited to the person; toggle off → credited to the parent's account; the
    connection is listed; after Delete the next run asks to sign in again."""
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
    await database.recipe_settings.set_verify_user_access(
        "create_opportunity", True, changed_by="test"
    )

    await teams_page.send("create opportunity Acme 5000")
    await teams_page.page.get_by_text("Sign in to Sandbox to continue").last.wait_for()
    await teams_page.screenshot("login-card")
    popup = await teams_page.click_sign_in("Sign in")
    await popup.get_by_text("Alex Wilber").click()
    await popup.get_by_role("button", name="Allow").click()
    code_element = popup.locator("#code")
    await code_element.wait_for(state="visible")
    code = (await code_element.inner_text()).strip()
    await popup.close()
    await teams_page.send(code)
    result = await teams_page.wait_for_card_text("Created in Sandbox as alex@sandbox.example")
    await teams_page.screenshot("resumed-result")
    assert "alex@sandbox.example" in await result.inner_text()
    created = [(o["name"], o["created_by"]["email"]) for o in e2e_bot.sandbox.state.opportunities]
    assert created[-1] == ("Acme", "alex@sandbox.example")

    await database.recipe_settings.set_verify_user_access(
        "create_opportunity", False, changed_by="test"
    )
    await teams_page.send('create opportunity "Acme Parent" 10')
    await teams_page.wait_for_card_text("Created in Sandbox as omar@sandbox.example")
    await teams_page.screenshot("toggle-off")

    await teams_page.send("personal_connections")
    listing = await teams_page.wait_for_card_text("Your personal connections")
    await teams_page.choose("Sandbox — alex@sandbox.example (Connected)", card=listing)
    await teams_page.click_action("Delete", card=listing)
    confirmation = await teams_page.wait_for_card_text("Delete this connection?")
    await teams_page.click_action("Confirm", card=confirmation)
    await teams_page.wait_for_card_text("Deleted Sandbox (alex@sandbox.example).")

    await database.recipe_settings.set_verify_user_access(
        "create_opportunity", True, changed_by="test"
    )
    signin_cards = teams_page.page.get_by_text("Sign in to Sandbox to continue")
    before = await signin_cards.count()
    await teams_page.send("create opportunity Again 1")
    await signin_cards.nth(before).wait_for()
    await teams_page.screenshot("login-card-again")
