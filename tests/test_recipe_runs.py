"""Recipes acting as the right person, over real HTTP against the sandbox provider's API.

The identity matrix: "Verify user access at runtime" on/off by the invoker's connection absent /
connected / disconnected / needs sign-in / deleted by the parent present / deleted. For each, the
sandbox records who created the opportunity (or that nothing was created) and the test checks
what the person saw. Zero actions under the wrong identity.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import messages
from oauth.client import TokenSet
from storage.crypto import TokenCipher
from storage.models import Connection, ConnectionStatus, ProviderAccount
from tests.conftest import TEST_TOKEN_KEY, RunningBot, StartBot, free_port
from tests.support import activities
from tests.support.activities import JANE
from tests.support.data import ADMIN, owner
from tests.support.sandbox import RunningSandbox, issue_tokens

RECIPES = """
[recipes.sandbox_opportunity]
name = "Sandbox opportunity"
phrase = "sandbox opportunity {name} {amount:number}"
parent = "sandbox_team"
verify_user_access = false
description = "Create an opportunity in the sandbox app"
[recipes.sandbox_opportunity.action]
method = "POST"
url = "{connection.api_base_url}/api/opportunities"
body = { name = "{name}", amount = "{amount}" }
[recipes.sandbox_opportunity.result]
verb = "Created"
fields = { Id = "id", "Created by" = "created_by.email" }

[recipes.broken_opportunity]
name = "Broken opportunity"
phrase = "broken opportunity {name}"
parent = "sandbox_team"
[recipes.broken_opportunity.action]
method = "POST"
url = "{connection.api_base_url}/api/opportunities"
body = { name = "{name}" }
"""
_names = itertools.count(1)


@dataclass
class World:
    bot: RunningBot
    sandbox: RunningSandbox
    cipher: TokenCipher
    parent: Connection

    async def tokens_for(self, user: str) -> TokenSet:
        assert self.bot.settings.apps_file is not None
        redirect = f"{str(self.bot.settings.public_base_url).rstrip('/')}/auth/callback"
        return await issue_tokens(self.bot.settings.apps_file, redirect, user=user)

    async def janes_connection(self, state: str) -> None:
        """Put Jane's runtime connection in `state`: absent, connected, disconnected,
        needs_reauth or deleted."""
        if state == "absent":
            return
        tokens = await self.tokens_for("jane")
        connection = await self.bot.database.connections.create_runtime(
            parent_id=self.parent.id,
            owner=owner(JANE),
            account=ProviderAccount(id="user-jane", display_name="jane@sandbox.example"),
            tokens=self.cipher.seal(tokens.as_record()),
            api_base_url=self.sandbox.base_url,
        )
        store = self.bot.database.connections
        if state == "disconnected":
            await store.disconnect_for_owner(connection_id=connection.id, owner=owner(JANE))
        elif state == "needs_reauth":
            await store.mark_needs_reauth(connection_id=connection.id)
        elif state == "deleted":
            await store.delete_for_owner(connection_id=connection.id, owner=owner(JANE))

    async def run(self, text: str, **activity: Any) -> dict[str, Any]:
        self.bot.connector.clear()
        message = activities.message(JANE, self.bot.service_url, text, **activity)
        status, _ = await self.bot.post(message)
        assert status == 200
        return message

    def created_by(self, name: str) -> list[str]:
        return [
            o["created_by"]["email"] for o in self.sandbox.state.opportunities if o["name"] == name
        ]

    def texts(self) -> str:
        return json.dumps([s.activity for s in self.bot.connector.sent], ensure_ascii=False)


@pytest.fixture
async def world(
    start_bot: StartBot,
    sandbox: RunningSandbox,
    apps_file: Path,
    bot_port: int,
    tmp_path: Path,
) -> AsyncIterator[World]:
    recipes = tmp_path / "recipes.toml"
    recipes.write_text(RECIPES)
    bot = await start_bot(
        port=bot_port,
        apps_file=str(apps_file),
        recipes_file=str(recipes),
        public_base_url=f"http://127.0.0.1:{bot_port}",
    )
    cipher = TokenCipher([TEST_TOKEN_KEY])
    world = World(bot, sandbox, cipher, parent=None)  # type: ignore[arg-type]
    parent_tokens = await world.tokens_for("omar")
    world.parent = await bot.database.connections.create_parent(
        provider="sandbox",
        owner=ADMIN,
        account=ProviderAccount(id="user-omar", display_name="omar@sandbox.example"),
        tokens=cipher.seal(parent_tokens.as_record()),
        api_base_url=sandbox.base_url,
        name="sandbox_team",
    )
    yield world


JANE_STATES = ["absent", "connected", "disconnected", "needs_reauth", "deleted"]


@pytest.mark.parametrize("parent_present", [True, False])
@pytest.mark.parametrize("jane", JANE_STATES)
@pytest.mark.parametrize("verify", [True, False])
async def test_identity_matrix(world: World, verify: bool, jane: str, parent_present: bool) -> None:
    """Toggle by invoker connection by parent: the action runs as exactly the right account, or
    not at all, and the person is told which."""
    await world.bot.database.recipe_settings.set_verify_user_access(
        "sandbox_opportunity", verify, changed_by="test"
    )
    await world.janes_connection(jane)
    if not parent_present:
        await world.bot.database.connections.delete(world.parent.id)
    name = f"Deal {next(_names)}"

    await world.run(f'sandbox opportunity "{name}" 5000')

    shown = world.texts()
    if not parent_present:
        assert world.created_by(name) == []
        assert "app connection was removed. Ask Ada Admin" in shown
    elif not verify:
        assert world.created_by(name) == ["omar@sandbox.example"]
        assert "Created in Sandbox as omar@sandbox.example" in shown
    elif jane == "connected":
        assert world.created_by(name) == ["jane@sandbox.example"]
        assert "Created in Sandbox as jane@sandbox.example" in shown
    else:
        assert world.created_by(name) == []
        assert "you need to sign in with your own Sandbox account first" in shown
        assert "application/vnd.microsoft.card.signin" in shown  # the Login card, 1:1 chat
    # Zero actions under the wrong identity, whatever happened.
    everyone = {o["created_by"]["email"] for o in world.sandbox.state.opportunities}
    assert everyone <= {"omar@sandbox.example", "jane@sandbox.example"}
    if verify:
        assert "omar@sandbox.example" not in everyone
    else:
        assert "jane@sandbox.example" not in everyone


async def test_run_is_audited_with_identity_and_without_secrets(world: World) -> None:
    """Each run records recipe, invoker, inputs, the connection and account it acted as,
    the outcome and timings."""
    await world.run('sandbox opportunity "Audited deal" 42')
    [run] = await world.bot.database.recipe_runs.for_recipe("sandbox_opportunity")
    assert run.invoker.aad_object_id == JANE.aad_object_id
    assert run.inputs == {"name": "Audited deal", "amount": 42}
    assert run.acted_as.connection_id == world.parent.id
    assert run.acted_as.account == "omar@sandbox.example"
    assert run.status == "succeeded"
    assert run.duration_ms is not None and run.finished_at >= run.started_at
    events = [e for e in await world.bot.database.audit.recent() if e.action == "recipe.ran"]
    assert events and events[0].connection_id == world.parent.id


async def test_same_activity_twice_creates_one_record(world: World) -> None:
    """A Teams retry of the same activity never runs the action twice."""
    message = activities.message(JANE, world.bot.service_url, 'sandbox opportunity "Once" 1')
    for _ in range(3):
        status, _ = await world.bot.post(message)
        assert status == 200
    assert world.created_by("Once") == ["omar@sandbox.example"]
    assert len(await world.bot.database.recipe_runs.for_recipe("sandbox_opportunity")) == 1


async def test_expired_token_at_the_api_is_refreshed_once_and_retried(world: World) -> None:
    """A 401 from the app's API triggers one refresh and one retry."""
    world.sandbox.control(expire_access_tokens=True)
    await world.run('sandbox opportunity "After refresh" 7')
    assert world.created_by("After refresh") == ["omar@sandbox.example"]
    assert world.sandbox.stats()["token.refresh_token"] == 1


async def test_401_that_survives_refresh_means_needs_sign_in(world: World) -> None:
    """Toggle on, the API refuses and the refresh is refused too: Needs sign-in, Login card."""
    await world.bot.database.recipe_settings.set_verify_user_access(
        "sandbox_opportunity", True, changed_by="test"
    )
    await world.janes_connection("connected")
    world.sandbox.control(expire_access_tokens=True, fail_refresh_with="invalid_grant")
    await world.run('sandbox opportunity "Never" 7')
    assert world.created_by("Never") == []
    assert "application/vnd.microsoft.card.signin" in world.texts()
    [connection] = await world.bot.database.connections.list_for_owner(owner=owner(JANE))
    assert connection.status is ConnectionStatus.NEEDS_REAUTH


async def test_provider_error_is_shown_without_secrets(world: World) -> None:
    """The app refusing the request gives a clear card with its message, no token, no trace."""
    await world.run("broken opportunity Nameless")
    shown = world.texts()
    assert "Sandbox did not accept the request" in shown
    assert "(HTTP 400)" in shown
    assert "Traceback" not in shown
    for token in world.sandbox.state.by_access:
        assert token not in shown


async def test_missing_or_bad_arguments_get_usage_and_example(world: World) -> None:
    """A known command with missing or bad arguments says what was expected, with an example."""
    await world.run("sandbox opportunity")
    assert "Example: sandbox opportunity" in world.texts()
    await world.run("sandbox opportunity Acme lots")
    assert 'amount must be a number, not \\"lots\\"' in world.texts()
    assert world.sandbox.state.opportunities == []


async def test_recipe_by_mention_in_a_channel(world: World) -> None:
    """@mentioning the bot in a channel runs the recipe there."""
    await world.run(
        'sandbox opportunity "From the channel" 3',
        kind="channel",
        mention=True,
        conversation_id="19:sales",
    )
    assert world.created_by("From the channel") == ["omar@sandbox.example"]
    [reply] = world.bot.connector.in_conversation("19:sales")
    assert "Created in Sandbox as omar@sandbox.example" in json.dumps(reply.activity)


async def test_help_lists_the_recipes(world: World) -> None:
    """The help card lists each recipe's usage."""
    await world.run("help")
    assert "sandbox opportunity <name> <amount: number>" in world.texts()


async def test_slow_action_is_acknowledged_then_posted(start_bot: StartBot, world: World) -> None:
    """When the result is not ready at once, the person gets "Working on it" and the result
    arrives by itself in the same conversation."""
    settings = world.bot.settings
    slow = await start_bot(
        port=free_port(),
        apps_file=str(settings.apps_file),
        recipes_file=str(settings.recipes_file),
        public_base_url=str(settings.public_base_url),
        mongodb_uri=settings.mongodb_uri.get_secret_value(),  # type: ignore[union-attr]
        database_name=settings.database_name,
        recipe_acknowledge_after_s=0,
    )
    slow.connector.clear()
    status, _ = await slow.post(
        activities.message(JANE, slow.service_url, 'sandbox opportunity "Later" 9')
    )
    assert status == 200
    result = await slow.connector.wait_for(lambda sent: sent.card is not None)
    assert "Created in Sandbox as omar@sandbox.example" in json.dumps(result.activity)
    texts = [sent.text for sent in slow.connector.sent]
    assert messages.RECIPE_WORKING.format(recipe="Sandbox opportunity") in texts
    assert world.created_by("Later") == ["omar@sandbox.example"]


async def test_setting_change_takes_effect_on_the_next_run(world: World) -> None:
    """The database setting wins and is read per run: no restart needed."""
    await world.janes_connection("connected")
    await world.run('sandbox opportunity "First" 1')
    await world.bot.database.recipe_settings.set_verify_user_access(
        "sandbox_opportunity", True, changed_by="test"
    )
    await world.run('sandbox opportunity "Second" 2')
    assert world.created_by("First") == ["omar@sandbox.example"]
    assert world.created_by("Second") == ["jane@sandbox.example"]


async def test_operator_lists_and_toggles_the_setting(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`admin recipes list` shows database and file values; `toggle` changes the next run."""
    import asyncio
    import io

    from admin.cli import main

    settings = world.bot.settings
    monkeypatch.setenv("MONGODB_URI", settings.mongodb_uri.get_secret_value())  # type: ignore[union-attr]
    monkeypatch.setenv("DATABASE_NAME", settings.database_name)
    monkeypatch.setenv("APPS_FILE", str(settings.apps_file))
    monkeypatch.setenv("RECIPES_FILE", str(settings.recipes_file))

    async def cli(*argv: str) -> str:
        out = io.StringIO()
        assert await asyncio.to_thread(main, list(argv), out=out) == 0
        return out.getvalue()

    assert "sandbox_opportunity\tdatabase: off\tfile: off\n" in await cli("recipes", "list")
    await cli("recipes", "toggle", "sandbox_opportunity", "on")
    listing = await cli("recipes", "list")
    assert "sandbox_opportunity\tdatabase: on\tfile: off\tdiffers from the file" in listing

    await world.janes_connection("connected")
    await world.run('sandbox opportunity "Toggled" 1')
    assert world.created_by("Toggled") == ["jane@sandbox.example"]


async def test_connection_under_another_parent_is_never_used(world: World) -> None:
    """Jane's connection to the same app under another parent does not stand in for this one."""
    await world.bot.database.recipe_settings.set_verify_user_access(
        "sandbox_opportunity", True, changed_by="test"
    )
    other = await world.bot.database.connections.create_parent(
        provider="sandbox", owner=ADMIN, account=None, name="other_team"
    )
    tokens = await world.tokens_for("jane")
    await world.bot.database.connections.create_runtime(
        parent_id=other.id,
        owner=owner(JANE),
        account=ProviderAccount(id="user-jane", display_name="jane@sandbox.example"),
        tokens=world.cipher.seal(tokens.as_record()),
        api_base_url=world.sandbox.base_url,
    )
    await world.run('sandbox opportunity "Elsewhere" 1')
    assert world.created_by("Elsewhere") == []
    assert "application/vnd.microsoft.card.signin" in world.texts()


async def test_code_recipe_acts_through_the_same_runner(world: World) -> None:
    """A recipe registered in Python gets the connection's token and HTTP with the same rules."""
    from app import WIRING_KEY
    from recipes.model import ActionContext, ActionResult

    async def count_opportunities(context: ActionContext) -> ActionResult:
        response = await context.http("GET", f"{context.api_base_url}/api/opportunities")
        return ActionResult(fields={"Opportunities": str(len(response.json))})

    book = world.bot.client.server.app[WIRING_KEY].book
    book.register(
        "count_opportunities",
        name="Count opportunities",
        phrase="count sandbox opportunities",
        parent="sandbox_team",
        verify_user_access=False,
        handler=count_opportunities,
        verb="Counted",
    )
    await world.run('sandbox opportunity "One" 1')
    await world.run("count sandbox opportunities")
    shown = world.texts()
    assert "Counted in Sandbox as omar@sandbox.example" in shown
    assert '"value": "1"' in shown
