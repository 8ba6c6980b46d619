"""Parent connections from the command line: authorize with accept or reject, list, delete."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import pytest

from storage.crypto import TokenCipher
from storage.models import ConnectionKind, ProviderAccount
from tests.conftest import TEST_TOKEN_KEY, RunningBot, StartBot
from tests.support.activities import JANE
from tests.support.data import owner
from tests.support.sandbox import RunningSandbox, authorize, issue_tokens

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
async def bot(start_bot: StartBot, apps_file: Path, bot_port: int) -> RunningBot:
    return await start_bot(
        port=bot_port,
        apps_file=str(apps_file),
        public_base_url=f"http://127.0.0.1:{bot_port}",
    )


async def run_cli(bot: RunningBot, *argv: str) -> asyncio.subprocess.Process:
    settings = bot.settings
    env = {
        **os.environ,
        "MONGODB_URI": settings.mongodb_uri.get_secret_value(),  # type: ignore[union-attr]
        "DATABASE_NAME": settings.database_name,
        "APPS_FILE": str(settings.apps_file),
        "PUBLIC_BASE_URL": str(settings.public_base_url),
        "TOKEN_ENCRYPTION_KEYS": TEST_TOKEN_KEY,
        "PYTHONPATH": str(REPO),
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "admin",
        *argv,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def sign_in_from_cli(
    bot: RunningBot, user: str, *, tenant: str = JANE.tenant_id
) -> asyncio.subprocess.Process:
    """Start `parents authorize`, complete the browser part as `user`, wait for the prompt."""
    cli = await run_cli(bot, "parents", "authorize", "sandbox_team", "--tenant", tenant)
    assert cli.stdout is not None
    url = ""
    while not url.startswith("http"):
        line = (await asyncio.wait_for(cli.stdout.readline(), 30)).decode()
        assert line, "the command ended before printing a URL"
        url = line.strip()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(url, allow_redirects=False) as start:
            provider_url = start.headers["Location"]
        callback = await authorize(session, provider_url, user=user)
        async with session.get(callback) as done:
            page = await done.text()
    assert "Go back to the command line" in page
    assert 'id="code"' not in page  # no Teams code for an operator's sign-in
    line = (await asyncio.wait_for(cli.stdout.readline(), 30)).decode()
    assert "Signed in to Sandbox as" in line
    return cli


async def test_authorize_and_accept_stores_the_parent(bot: RunningBot) -> None:
    """The operator sees the account that signed in and accepts: the parent is stored."""
    cli = await sign_in_from_cli(bot, "omar")
    out, _ = await cli.communicate(b"y\n")
    assert cli.returncode == 0, out
    parents = await bot.database.connections.list_all(kind=ConnectionKind.PARENT)
    assert len(parents) == 1
    assert parents[0].account is not None
    assert parents[0].account.display_name == "omar@sandbox.example"
    assert parents[0].tokens is not None and parents[0].name == "sandbox_team"
    assert parents[0].tenant_id == JANE.tenant_id
    assert b"Stored parent connection" in out

    again = await sign_in_from_cli(bot, "alex")  # authorizing again replaces, same record
    await again.communicate(b"y\n")
    [replaced] = await bot.database.connections.list_all(kind=ConnectionKind.PARENT)
    assert replaced.id == parents[0].id
    assert replaced.account is not None
    assert replaced.account.display_name == "alex@sandbox.example"


async def test_authorize_and_reject_stores_nothing(bot: RunningBot) -> None:
    """Rejecting the account (someone else's, e.g. a forwarded URL) stores nothing."""
    cli = await sign_in_from_cli(bot, "jane")
    out, _ = await cli.communicate(b"n\n")
    assert cli.returncode == 1
    assert b"Not stored." in out
    assert await bot.database.connections.list_all(kind=ConnectionKind.PARENT) == []
    raw = await bot.database.db["login_states"].find_one({})
    assert raw is not None and raw["step"] == "discarded" and raw.get("tokens") is None


async def test_list_and_delete_keep_children(bot: RunningBot) -> None:
    """`parents list` shows each parent with its children; deleting a parent keeps them."""
    parent = await bot.database.connections.create_parent(
        provider="sandbox",
        owner=owner(JANE),
        account=ProviderAccount(id="a", display_name="admin@sandbox.example"),
    )
    child = await bot.database.connections.create_runtime(
        parent_id=parent.id,
        owner=owner(JANE),
        account=ProviderAccount(id="j", display_name="jane@sandbox.example"),
    )
    listing = await run_cli(bot, "parents", "list")
    out, _ = await listing.communicate()
    assert (
        f"{parent.id}\t-\ttenant-contoso\tSandbox\tadmin@sandbox.example\tconnected\t"
        "1 runtime connection(s)" in out.decode()
    )

    deleting = await run_cli(bot, "parents", "delete", parent.id)
    out, _ = await deleting.communicate()
    assert deleting.returncode == 0, out
    assert await bot.database.connections.get(parent.id) is None
    assert await bot.database.connections.get(child.id) is not None

    refused = await run_cli(bot, "parents", "delete", child.id)
    out, _ = await refused.communicate()
    assert refused.returncode == 1 and b"No parent connection" in out
    assert await bot.database.connections.get(child.id) is not None


@pytest.mark.parametrize("command", [("connections", "delete"), ("parents", "delete")])
async def test_operator_deletes_revoke_and_audit(
    bot: RunningBot, sandbox: RunningSandbox, command: tuple[str, str]
) -> None:
    """An operator's delete goes through the connections service, like a person's: the tokens
    stop working at the provider and one audit event records the delete and the revocation."""
    cipher = TokenCipher([TEST_TOKEN_KEY])
    assert bot.settings.apps_file is not None
    tokens = await issue_tokens(
        bot.settings.apps_file, f"{bot.settings.public_base_url}auth/callback", user="omar"
    )
    parent = await bot.database.connections.create_parent(
        provider="sandbox",
        owner=owner(JANE),
        account=ProviderAccount(id="user-omar", display_name="omar@sandbox.example"),
        tokens=cipher.seal(tokens.as_record()),
        name="sandbox_team",
    )
    revocations = sandbox.stats().get("revoke", 0)
    deleting = await run_cli(bot, *command, parent.id)
    out, _ = await deleting.communicate()
    assert deleting.returncode == 0, out
    assert await bot.database.connections.get(parent.id) is None
    assert sandbox.stats().get("revoke", 0) == revocations + 2  # refresh, then access token
    events = await bot.database.audit.for_connection(parent.id)
    assert [(e.action, e.actor.kind) for e in events] == [
        ("connection.deleted", "operator"),
        ("connection.revoked", "operator"),
    ]
    assert events[1].details == {"revocation": "revoked", "attempts": 1}
