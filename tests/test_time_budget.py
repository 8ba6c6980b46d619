"""Every wait fits in Teams' patience: a hanging provider holds no answer longer than its
budget, over real HTTP against the running bot and the sandbox provider (told to hang)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from bson import ObjectId

import messages
from bots.bot import TELL_BUDGET_S, TURN_BUDGET_S
from cards import verbs
from storage.crypto import TokenCipher
from storage.models import ConnectionStatus, ProviderAccount
from tests.conftest import TEST_TOKEN_KEY, RunningBot, StartBot, free_port
from tests.support import activities
from tests.support.activities import JANE
from tests.support.data import ADMIN, owner
from tests.support.sandbox import RunningSandbox, authorize, issue_tokens
from tests.support.waiting import eventually
from tests.test_recipe_runs import RECIPES
from tests.test_signin_flow import World

HANG_S = 8.0  # longer than any budget below


@pytest.fixture
def recipes_file(tmp_path: Path) -> Path:
    path = tmp_path / "recipes.toml"
    path.write_text(RECIPES)
    return path


@pytest.fixture
async def bot(
    start_bot: StartBot,
    sandbox: RunningSandbox,
    apps_file: Path,
    bot_port: int,
    recipes_file: Path,
) -> AsyncIterator[RunningBot]:
    running = await start_bot(
        port=bot_port,
        apps_file=str(apps_file),
        recipes_file=str(recipes_file),
        public_base_url=f"http://127.0.0.1:{bot_port}",
        recipe_timeout_s=2,
        recipe_acknowledge_after_s=0.5,
    )
    yield running
    sandbox.control(reset=True)  # let hanging request threads finish quickly


async def sealed_tokens(bot: RunningBot, user: str, *, expired: bool = False) -> object:
    assert bot.settings.apps_file is not None
    redirect = f"{str(bot.settings.public_base_url).rstrip('/')}/auth/callback"
    tokens = await issue_tokens(bot.settings.apps_file, redirect, user=user)
    record = tokens.as_record()
    if expired:
        record["expires_at"] = datetime.now(UTC).isoformat()
    return TokenCipher([TEST_TOKEN_KEY]).seal(record)


async def test_hanging_refresh_counts_against_the_recipe_deadline(
    bot: RunningBot, sandbox: RunningSandbox
) -> None:
    """The parent's token must be refreshed and the token endpoint hangs: the run still ends
    within the recipe's own deadline (2 s here) with a clear message, not deadline + refresh
    timeout, and the connection is left as it was."""
    parent = await bot.database.connections.create_parent(
        provider="sandbox",
        owner=ADMIN,
        account=ProviderAccount(id="user-omar", display_name="omar@sandbox.example"),
        tokens=await sealed_tokens(bot, "omar", expired=True),  # type: ignore[arg-type]
        api_base_url=sandbox.base_url,
        name="sandbox_team",
    )
    sandbox.control(hang_s=HANG_S)
    started = time.monotonic()
    await bot.post(activities.message(JANE, bot.service_url, 'sandbox opportunity "Slow" 1'))
    timed_out = messages.RECIPE_TIMEOUT.format(app="Sandbox")
    await bot.connector.wait_for(lambda s: timed_out in json.dumps(s.card or {}), within_s=6)
    assert time.monotonic() - started < 2 + 1.5
    stored = await bot.database.connections.get(parent.id)
    assert stored is not None and stored.status is ConnectionStatus.CONNECTED


async def test_disconnect_answers_at_once_while_the_provider_hangs(
    bot: RunningBot, sandbox: RunningSandbox
) -> None:
    """Disconnect does not wait for revocation at a hanging provider: the card is answered at
    once, the connection is Disconnected, and the revocation is attempted afterwards."""
    parent = await bot.database.connections.create_parent(
        provider="sandbox", owner=ADMIN, account=None, api_base_url=sandbox.base_url
    )
    connection = await bot.database.connections.create_runtime(
        parent_id=parent.id,
        owner=owner(JANE),
        account=ProviderAccount(id="user-jane", display_name="jane@sandbox.example"),
        tokens=await sealed_tokens(bot, "jane"),  # type: ignore[arg-type]
    )
    sandbox.control(hang_s=HANG_S)
    started = time.monotonic()
    status, body = await bot.post(
        activities.card_action(
            JANE, bot.service_url, verbs.DISCONNECT, {verbs.CONNECTION_INPUT: connection.id}
        )
    )
    assert time.monotonic() - started < 1.5
    assert status == 200 and "Disconnected Sandbox (jane@sandbox.example)." in json.dumps(body)
    stored = await bot.database.connections.get(connection.id)
    assert stored is not None and stored.status is ConnectionStatus.DISCONNECTED
    raw = await bot.database.db["connections"].find_one({"_id": ObjectId(connection.id)})
    assert raw is not None and raw["revocation"]["provider"] == "sandbox"  # still to do
    # The event reaches the log just after the answer, not held back by the hanging provider.
    await eventually(lambda: bot.database.audit.for_connection(connection.id), within_s=3)
    events = await bot.database.audit.for_connection(connection.id)
    assert [e.action for e in events] == ["connection.disconnected"]


async def test_callback_with_a_hanging_provider_is_bounded(
    bot: RunningBot, sandbox: RunningSandbox
) -> None:
    """The token endpoint hangs during the sign-in callback: the page answers provider_error
    within the provider timeout (5 s), and nothing is stored."""
    parent = await bot.database.connections.create_parent(
        provider="sandbox", owner=ADMIN, account=None
    )
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        world = World(bot, sandbox, parent, session, str(bot.settings.public_base_url))
        provider_url = await world.start(await world.login_card_url(JANE))
        callback = await authorize(session, provider_url, user="jane")
        sandbox.control(hang_s=HANG_S)
        started = time.monotonic()
        response = await world.callback(callback)
        elapsed = time.monotonic() - started
    assert response.status == 502
    assert elapsed < 5 + 1.5
    raw = await bot.database.db["login_states"].find_one({})
    assert raw is not None and raw.get("tokens") is None


async def test_a_dead_connector_holds_a_turn_no_longer_than_its_budgets(
    start_bot: StartBot,
) -> None:
    """Nothing listens at the activity's serviceUrl, so every reply is refused (and retried by
    the SDK): the request is still answered within the turn's budget plus the budget for
    saying "try again", not after the retries of every attempt; the same bot then answers the
    next request normally."""
    running = await start_bot()
    dead = f"http://127.0.0.1:{free_port()}/"
    started = time.monotonic()
    status, _ = await running.post(activities.message(JANE, dead, "help"))
    elapsed = time.monotonic() - started
    assert status == 200
    assert elapsed < TURN_BUDGET_S + TELL_BUDGET_S + 1.5, elapsed
    status, _ = await running.post(activities.message(JANE, running.service_url, "help"))
    assert status == 200
    [reply] = running.connector.sent
    assert reply.card is not None and messages.HELP_TITLE in json.dumps(reply.card)
