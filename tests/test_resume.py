"""Sign in mid-run and carry on: runs wait for the invoker's sign-in, then resume by themselves,
exactly once, in order, across processes; or end with a message when the sign-in expires or
is cancelled. Real HTTP against the sandbox provider throughout."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

import messages
from app import WIRING_KEY
from storage.crypto import TokenCipher
from storage.models import ConnectionStatus, ProviderAccount
from tests.conftest import TEST_TOKEN_KEY, RunningBot, StartBot, free_port
from tests.support import activities
from tests.support.activities import JANE
from tests.support.connector import Sent
from tests.support.data import ADMIN, owner
from tests.support.sandbox import RunningSandbox, authorize, issue_tokens

RECIPES = """
[recipes.sandbox_opportunity]
name = "Sandbox opportunity"
phrase = "sandbox opportunity {name} {amount:number}"
parent = "sandbox_team"
verify_user_access = true
secret_arguments = []
[recipes.sandbox_opportunity.action]
method = "POST"
url = "{connection.api_base_url}/api/opportunities"
body = { name = "{name}", amount = "{amount}" }
[recipes.sandbox_opportunity.result]
verb = "Created"
fields = { Id = "id" }
"""


@dataclass
class World:
    bots: list[RunningBot]
    sandbox: RunningSandbox
    base_url: str
    session: aiohttp.ClientSession

    @property
    def bot(self) -> RunningBot:
        return self.bots[0]

    async def run(self, text: str, *, via: int = 0) -> None:
        bot = self.bots[via]
        status, _ = await bot.post(activities.message(JANE, bot.service_url, text))
        assert status == 200

    def login_urls(self) -> list[str]:
        urls = []
        for sent in self.bot.connector.sent:
            for attachment in sent.activity.get("attachments") or []:
                if attachment["contentType"] == "application/vnd.microsoft.card.signin":
                    urls.append(attachment["content"]["buttons"][0]["value"])
        return urls

    async def browser_sign_in(self, url: str, *, user: str = "jane", callback_via: int = 0) -> str:
        """Start → consent → callback (on bot `callback_via`) → the code the page shows."""
        async with self.session.get(url, allow_redirects=False) as response:
            provider_url = response.headers["Location"]
        callback = await authorize(self.session, provider_url, user=user)
        target = self.bots[callback_via].client.make_url(
            urlsplit(callback).path + "?" + urlsplit(callback).query
        )
        async with self.session.get(target, allow_redirects=False) as response:
            assert response.status == 303, await response.text()
        done = self.bots[callback_via].client.make_url("/auth/done")
        async with self.session.get(done) as response:
            page = await response.text()
        match = re.search(r'id="code">(\d{6})<', page)
        assert match, page
        return match.group(1)

    async def verify(self, code: str, *, via: int = 0) -> None:
        bot = self.bots[via]
        status, _ = await bot.post(
            activities.invoke(JANE, bot.service_url, "signin/verifyState", {"state": code})
        )
        assert status == 200

    def created(self) -> list[tuple[str, str]]:
        return [(o["name"], o["created_by"]["email"]) for o in self.sandbox.state.opportunities]

    def cards_saying(self, text: str) -> list[Sent]:
        return [
            sent
            for sent in self.bot.connector.sent
            if sent.card is not None and text in json.dumps(sent.card)
        ]

    def texts(self) -> list[str]:
        return [sent.text for sent in self.bot.connector.sent if sent.text]


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
    base_url = f"http://127.0.0.1:{bot_port}"
    common = {
        "apps_file": str(apps_file),
        "recipes_file": str(recipes),
        "public_base_url": base_url,
        "signin_sweep_s": 0,
    }
    first = await start_bot(port=bot_port, **common)
    # A second process of the same bot behind the same address, on the same database.
    second = await start_bot(
        port=free_port(),
        mongodb_uri=first.settings.mongodb_uri.get_secret_value(),  # type: ignore[union-attr]
        database_name=first.settings.database_name,
        **common,
    )
    tokens = await issue_tokens(apps_file, f"{base_url}/auth/callback", user="omar")
    await first.database.connections.create_parent(
        provider="sandbox",
        owner=ADMIN,
        account=ProviderAccount(id="user-omar", display_name="omar@sandbox.example"),
        tokens=TokenCipher([TEST_TOKEN_KEY]).seal(tokens.as_record()),
        api_base_url=sandbox.base_url,
        name="sandbox_team",
    )
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield World([first, second], sandbox, base_url, session)


async def test_run_waits_then_resumes_exactly_once(world: World) -> None:
    """The run waits for sign-in; after it, the result arrives by itself, once, credited to the
    person, even with verifyState delivered twice and the code typed too."""
    await world.run('sandbox opportunity "Acme" 5000')
    [url] = world.login_urls()
    assert world.created() == []
    [run] = await world.bot.database.recipe_runs.for_recipe("sandbox_opportunity")
    assert run.status == "waiting_for_sign_in"

    code = await world.browser_sign_in(url)
    await world.verify(code)
    await world.verify(code)
    await world.run(code)

    assert world.created() == [("Acme", "jane@sandbox.example")]
    assert len(world.cards_saying("Created in Sandbox as jane@sandbox.example")) == 1
    [run] = await world.bot.database.recipe_runs.for_recipe("sandbox_opportunity")
    assert run.status == "succeeded" and run.sealed_arguments is None
    assert run.acted_as.account == "jane@sandbox.example"


async def test_several_waiting_runs_resume_in_order(world: World) -> None:
    """Runs waiting on the same person and parent all resume, in the order they were made."""
    for name in ("First", "Second", "Third"):
        await world.run(f'sandbox opportunity "{name}" 1')
    urls = world.login_urls()
    assert len(urls) == 3
    code = await world.browser_sign_in(urls[-1])  # the newest card replaced the earlier ones
    await world.verify(code)
    assert world.created() == [
        ("First", "jane@sandbox.example"),
        ("Second", "jane@sandbox.example"),
        ("Third", "jane@sandbox.example"),
    ]


async def test_started_on_one_process_resumed_on_the_other(world: World) -> None:
    """The run starts on one process; the callback and verification land on the other; the run
    resumes once."""
    await world.run('sandbox opportunity "Across" 2', via=0)
    [url] = world.login_urls()
    code = await world.browser_sign_in(url, callback_via=1)
    await world.verify(code, via=1)
    await world.verify(code, via=0)
    assert world.created() == [("Across", "jane@sandbox.example")]
    assert len(world.cards_saying("Created in Sandbox as jane@sandbox.example")) == 1


async def test_expiry_message_sent_once_with_two_processes(world: World) -> None:
    """A run waiting past the sign-in's lifetime ends with one message, however many processes
    sweep at the same moment."""
    await world.run('sandbox opportunity "Too late" 3')
    await world.bot.database.db["recipe_runs"].update_many(
        {}, {"$set": {"wait_expires_at": datetime.now(UTC) - timedelta(seconds=1)}}
    )
    resumers = [bot.client.server.app[WIRING_KEY].resumer for bot in world.bots]
    ended = await asyncio.gather(*(r.sweep_once() for r in resumers * 3))
    assert sum(ended) == 1
    expired = messages.RECIPE_SIGN_IN_EXPIRED.format(recipe="Sandbox opportunity")
    assert world.texts().count(expired) == 1
    [run] = await world.bot.database.recipe_runs.for_recipe("sandbox_opportunity")
    assert run.status == "expired"
    # Signing in afterwards connects, but the expired run does not come back.
    code = await world.browser_sign_in(world.login_urls()[0])
    await world.verify(code)
    assert world.created() == []


async def test_cancelled_sign_in_ends_waiting_runs(world: World) -> None:
    """A cancelled sign-in ends the waiting runs with a clear message."""
    await world.run('sandbox opportunity "Cancelled" 4')
    await world.verify("CancelledByUser")
    abandoned = messages.RECIPE_SIGN_IN_ABANDONED.format(recipe="Sandbox opportunity")
    assert abandoned in world.texts()
    [run] = await world.bot.database.recipe_runs.for_recipe("sandbox_opportunity")
    assert run.status == "cancelled"
    assert world.created() == []


async def test_401_after_refresh_turns_into_sign_in_and_resume(world: World) -> None:
    """A provider 401 that survives a refresh leads to the same Login card and resume."""
    await world.run('sandbox opportunity "Warm up" 1')
    await world.verify(await world.browser_sign_in(world.login_urls()[0]))
    assert world.created() == [("Warm up", "jane@sandbox.example")]
    world.bot.connector.clear()

    world.sandbox.control(expire_access_tokens=True, fail_refresh_with="invalid_grant")
    await world.run('sandbox opportunity "Again" 2')
    [connection] = await world.bot.database.connections.list_for_owner(owner=owner(JANE))
    assert connection.status is ConnectionStatus.NEEDS_REAUTH
    [url] = world.login_urls()
    await world.verify(await world.browser_sign_in(url))
    assert world.created()[-1] == ("Again", "jane@sandbox.example")
