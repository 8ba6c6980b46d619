"""First-run clarity (issue #15 item 5), as a new user and a new operator meet the product.

Over real HTTP: Reconnect on a connection whose app is no longer configured says so (and the
list does not offer Reconnect where it cannot work); with no recipes, `help` and the empty list
promise none; a recipe whose parent was never authorized says whom to ask. As subprocesses
(`python -m admin`): unauthorized parents, header rows, owner labels, a missing data folder and
a closed standard input.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

import messages
from cards import verbs
from storage.crypto import TokenCipher
from storage.models import ConnectionStatus, Owner, ProviderAccount
from tests.conftest import TEST_TOKEN_KEY, RunningBot, StartBot
from tests.support import activities
from tests.support.activities import JANE
from tests.support.card_schema import assert_valid_card
from tests.support.data import ADMIN, owner, parent
from tests.support.sandbox import RunningSandbox, authorize

REPO = Path(__file__).resolve().parents[1]

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
fields = { Id = "id" }
"""


def verbs_of(card: dict[str, Any]) -> list[str]:
    return [action.get("verb", "") for action in card.get("actions", [])]


def texts_of(card: dict[str, Any]) -> list[str]:
    return [element.get("text", "") for element in card["body"]]


@pytest.fixture
async def sandbox_bot(start_bot: StartBot, apps_file: Path, bot_port: int) -> RunningBot:
    return await start_bot(
        port=bot_port, apps_file=str(apps_file), public_base_url=f"http://127.0.0.1:{bot_port}"
    )


async def disconnected(bot: RunningBot, parent_id: str, account: str) -> str:
    created = await bot.database.connections.create_runtime(
        parent_id=parent_id,
        owner=owner(JANE),
        account=ProviderAccount(id=account, display_name=account),
        status=ConnectionStatus.DISCONNECTED,
    )
    return created.id


async def picklist(bot: RunningBot) -> dict[str, Any]:
    bot.connector.clear()
    await bot.post(activities.message(JANE, bot.service_url, "personal_connections"))
    [reply] = bot.connector.sent
    assert reply.card is not None
    assert_valid_card(reply.card)
    return reply.card


# --- Reconnect where it cannot work ------------------------------------------------------------


async def test_reconnect_on_an_app_no_longer_configured_says_so(sandbox_bot: RunningBot) -> None:
    """A connection whose app (`box`) is not in APPS_FILE: the answer says Box isn't set up in
    this bot any more, not that its parent was removed; no Login card is sent, and the list
    does not offer Reconnect for it."""
    bot = sandbox_bot
    box_parent = await parent(bot.database, "box", tenant_id=JANE.tenant_id)
    connection_id = await disconnected(bot, box_parent.id, "jane@box.example")

    card = await picklist(bot)
    assert verbs.RECONNECT not in verbs_of(card)
    assert messages.CONNECTIONS_CANNOT_RECONNECT in texts_of(card)

    bot.connector.clear()
    status, body = await bot.post(
        activities.card_action(
            JANE, bot.service_url, verbs.RECONNECT, {"connection_id": connection_id}
        )
    )
    assert status == 200
    assert_valid_card(body["value"])
    expected = messages.RECONNECT_APP_NOT_CONFIGURED.format(
        label="Box (jane@box.example)", app="Box"
    )
    assert expected in str(body["value"])
    assert "isn't set up in this bot any more" in expected
    assert "its app connection was removed" not in str(body["value"])
    assert not [s for s in bot.connector.sent if s.activity.get("attachments")]


async def test_reconnect_is_offered_only_where_it_can_work(sandbox_bot: RunningBot) -> None:
    """A signed-out connection of a configured app with its parent present offers Reconnect;
    once its parent is gone it does not (and pressing it anyway says the parent was removed)."""
    bot = sandbox_bot
    sandbox_parent = await parent(bot.database, "sandbox", tenant_id=JANE.tenant_id)
    connection_id = await disconnected(bot, sandbox_parent.id, "jane@sandbox.example")

    card = await picklist(bot)
    assert verbs_of(card)[0] == verbs.RECONNECT
    assert messages.CONNECTIONS_CANNOT_RECONNECT not in texts_of(card)

    await bot.database.connections.delete(sandbox_parent.id)
    card = await picklist(bot)
    assert verbs.RECONNECT not in verbs_of(card)
    assert verbs.DELETE in verbs_of(card)  # it can still be deleted

    _, body = await bot.post(
        activities.card_action(
            JANE, bot.service_url, verbs.RECONNECT, {"connection_id": connection_id}
        )
    )
    assert "its app connection was removed" in str(body["value"])
    assert verbs.RECONNECT not in verbs_of(body["value"])


# --- No recipes -----------------------------------------------------------------------------


async def test_without_recipes_help_and_the_empty_list_promise_none(bot: RunningBot) -> None:
    """No recipes configured: `help` says the bot has none yet instead of promising them, and
    the empty list says nothing will ask the person to sign in."""
    await bot.post(activities.message(JANE, bot.service_url, "help"))
    [reply] = bot.connector.sent
    assert reply.card is not None
    assert_valid_card(reply.card)
    shown = texts_of(reply.card)
    assert messages.HELP_INTRO_NO_RECIPES in shown
    assert messages.HELP_INTRO not in shown
    assert messages.HELP_RECIPES not in shown

    card = await picklist(bot)
    assert texts_of(card)[1:] == [messages.CONNECTIONS_EMPTY, messages.CONNECTIONS_EMPTY_NO_RECIPES]


async def test_with_recipes_help_lists_them_and_the_empty_list_explains(
    start_bot: StartBot, apps_file: Path, tmp_path: Path
) -> None:
    recipes = tmp_path / "recipes.toml"
    recipes.write_text(RECIPES)
    bot = await start_bot(apps_file=str(apps_file), recipes_file=str(recipes))
    await bot.post(activities.message(JANE, bot.service_url, "help"))
    [reply] = bot.connector.sent
    assert reply.card is not None
    shown = texts_of(reply.card)
    assert messages.HELP_INTRO in shown and messages.HELP_RECIPES in shown
    assert messages.HELP_INTRO_NO_RECIPES not in shown

    card = await picklist(bot)
    assert texts_of(card)[1:] == [messages.CONNECTIONS_EMPTY]


# --- A parent never authorized ------------------------------------------------------------------


async def test_a_recipe_on_a_never_authorized_parent_says_whom_to_ask(
    start_bot: StartBot, sandbox: RunningSandbox, apps_file: Path, bot_port: int, tmp_path: Path
) -> None:
    recipes = tmp_path / "recipes.toml"
    recipes.write_text(RECIPES)
    bot = await start_bot(
        port=bot_port,
        apps_file=str(apps_file),
        recipes_file=str(recipes),
        public_base_url=f"http://127.0.0.1:{bot_port}",
    )
    await bot.database.connections.create_parent(
        provider="sandbox",
        owner=ADMIN,
        account=ProviderAccount(id="a", display_name="admin@sandbox.example"),
        tenant_id=JANE.tenant_id,
        name="sandbox_team",
    )
    await bot.post(activities.message(JANE, bot.service_url, "sandbox opportunity Acme 5"))
    sent = str([s.activity for s in bot.connector.sent])
    expected = messages.RECIPE_PARENT_NOT_AUTHORIZED.format(
        recipe="Sandbox opportunity", app="Sandbox", contact="Ada Admin"
    )
    assert expected in sent
    assert messages.TURN_FAILED not in sent
    assert not sandbox.state.opportunities
    [run] = await bot.database.db["recipe_runs"].find({}).to_list()
    assert run["status"] == "parent_unavailable"


# --- The operator command line -------------------------------------------------------------------


async def admin(
    *argv: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdin: int = asyncio.subprocess.DEVNULL,
) -> tuple[int, str, str]:
    """`python -m admin ...` with `env` added; (exit status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "admin",
        *argv,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        cwd=cwd,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def bot_env(bot: RunningBot) -> dict[str, str]:
    settings = bot.settings
    assert settings.mongodb_uri is not None
    env = {
        "MONGODB_URI": settings.mongodb_uri.get_secret_value(),
        "DATABASE_NAME": settings.database_name,
        "TOKEN_ENCRYPTION_KEYS": TEST_TOKEN_KEY,
        "PUBLIC_BASE_URL": str(settings.public_base_url),
    }
    if settings.apps_file is not None:
        env["APPS_FILE"] = str(settings.apps_file)
    return env


async def test_parents_list_shows_unauthorized_parents_under_a_header(
    sandbox_bot: RunningBot,
) -> None:
    bot = sandbox_bot
    never = await bot.database.connections.create_parent(
        provider="sandbox",
        owner=ADMIN,
        account=ProviderAccount(id="a", display_name="admin@sandbox.example"),
        tenant_id=JANE.tenant_id,
        name="sandbox_team",
    )
    authorized = await bot.database.connections.create_parent(
        provider="sandbox",
        owner=ADMIN,
        account=ProviderAccount(id="b", display_name="omar@sandbox.example"),
        tenant_id="tenant-other",
        name="sandbox_team",
        tokens=TokenCipher([TEST_TOKEN_KEY]).seal({"access_token": "x", "token_type": "bearer"}),
    )
    status, out, err = await admin("parents", "list", env=bot_env(bot))
    assert status == 0, err
    assert err.splitlines()[0] == messages.CLI_PARENTS_HEADER
    rows = {line.split("\t")[0]: line.split("\t") for line in out.splitlines()}
    assert len(rows[never.id]) == len(messages.CLI_PARENTS_HEADER.split("\t"))
    assert rows[never.id][-1] == messages.CLI_PARENT_NOT_AUTHORIZED
    assert rows[authorized.id][-1] == messages.CLI_PARENT_AUTHORIZED


async def test_connections_list_has_a_header_and_readable_owners(bot: RunningBot) -> None:
    """The operator's own parent shows as "operator LOGIN"; no "- </operator>" artefacts."""
    operators = await bot.database.connections.create_parent(
        provider="box",
        owner=Owner(tenant_id="", aad_object_id="operator:alice", name="alice"),
        account=ProviderAccount(id="a", display_name="admin@box.example"),
        tenant_id=JANE.tenant_id,
    )
    status, out, err = await admin(
        "connections", "create-parent", "--provider", "box", "--account", "b@box", "--tenant",
        "t1", env=bot_env(bot),
    )  # fmt: skip
    assert status == 0, err
    status, out, err = await admin("connections", "list", env=bot_env(bot))
    assert status == 0, err
    assert err.splitlines()[0] == messages.CLI_CONNECTIONS_HEADER
    rows = [line.split("\t") for line in out.splitlines()]
    assert all(len(row) == len(messages.CLI_CONNECTIONS_HEADER.split("\t")) for row in rows)
    owners = {row[0]: row[-1] for row in rows}
    assert owners[operators.id] == "operator alice"
    assert "</" not in out and "- <" not in out
    assert sorted(owners.values()) == ["operator", "operator alice"]


async def test_a_missing_data_folder_is_refused_not_created(tmp_path: Path) -> None:
    """Without MONGODB_URI, from a directory with no data folder: a sentence, exit 2, and no
    new empty store."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    status, _out, err = await admin(
        "connections", "list", env={"TOKEN_ENCRYPTION_KEYS": TEST_TOKEN_KEY}, cwd=elsewhere
    )
    assert status == 2
    assert "The data folder" in err and "does not exist" in err
    assert str(elsewhere / "data") in err
    assert "Traceback" not in err
    assert not (elsewhere / "data").exists()
    assert list(elsewhere.iterdir()) == []


async def test_a_closed_stdin_at_the_tenant_prompt_aborts(sandbox_bot: RunningBot) -> None:
    """`parents authorize` asks for the tenant (APPS_FILE does not fix it); stdin is closed:
    a sentence, exit 1, no traceback, nothing stored or started."""
    bot = sandbox_bot
    status, out, err = await admin("parents", "authorize", "sandbox_team", env=bot_env(bot))
    assert status == 1, out + err
    assert messages.CLI_NO_ANSWER in out
    assert "Traceback" not in out + err
    assert await bot.database.connections.list_all() == []
    assert await bot.database.db["login_states"].count_documents({}) == 0


async def test_a_closed_stdin_at_the_store_prompt_stores_nothing(
    sandbox_bot: RunningBot,
) -> None:
    """After the browser sign-in, stdin closes instead of an answer: treated as "no"."""
    import aiohttp

    bot = sandbox_bot
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "admin",
        "parents",
        "authorize",
        "sandbox_team",
        "--tenant",
        JANE.tenant_id,
        env={**os.environ, "PYTHONPATH": str(REPO), **bot_env(bot)},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None and process.stdin is not None
    url = ""
    while not url.startswith("http"):
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line, "the command ended before printing a URL"
        url = line.strip()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(url, allow_redirects=False) as start:
            provider_url = start.headers["Location"]
        callback = await authorize(session, provider_url, user="omar")
        async with session.get(callback) as done:
            await done.read()
    process.stdin.close()
    out = (await asyncio.wait_for(process.stdout.read(), 30)).decode()
    assert await process.wait() == 1, out
    assert messages.CLI_NO_ANSWER in out and messages.CLI_PARENT_NOT_STORED in out
    assert "Traceback" not in out
    assert await bot.database.connections.list_all() == []
