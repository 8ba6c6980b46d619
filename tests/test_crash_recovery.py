"""Survive crashes: a real `python app.py` is killed with SIGKILL at an awkward moment and
another is started on the same database (and the same port, behind the same public address).
Whatever the dead process left — a pending sign-in, a waiting recipe run, a revocation in
flight — is finished by the new one, exactly once, with exactly one audit event per change."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from bson import ObjectId

from cards import verbs
from storage.crypto import TokenCipher
from storage.database import Database, open_database
from storage.embedded import MEMORY
from storage.models import ConnectionStatus, ProviderAccount
from tests.conftest import TEST_TOKEN_KEY, unique_database_name
from tests.support import activities
from tests.support.activities import JANE
from tests.support.connector import ConnectorServer
from tests.support.data import owner
from tests.support.sandbox import RunningSandbox, issue_tokens
from tests.support.waiting import eventually
from tests.test_app_process import wait_until_ready
from tests.test_resume import RECIPES
from tests.test_resume_processes import Cluster, login_urls, sign_in
from tests.test_stranded_runs import store_parent

REPO = Path(__file__).resolve().parents[1]
RESULT = "Created in Sandbox as jane@sandbox.example"
SWEEPER_LEASE = "signin-expiry-sweeper"


@dataclass
class Bot:
    """One `python app.py` at a time on `port`: `kill()` ends it with SIGKILL, `start()` starts
    another on the same database, port and public address."""

    env: dict[str, str]
    port: int
    tmp_path: Path
    database: Database
    connector: ConnectorServer
    sandbox: RunningSandbox
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        with (self.tmp_path / f"bot-{len(self.processes)}.log").open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(REPO / "app.py"),
                env={**self.env, "PORT": str(self.port)},
                cwd=self.tmp_path,
                stdout=log,
                stderr=log,
            )
        self.processes.append(process)
        await wait_until_ready(f"{self.base_url}/readyz", process)

    async def kill(self) -> None:
        process = self.processes[-1]
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL

    async def post(self, activity: dict[str, Any]) -> str:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.base_url}/api/messages", json=activity) as response,
        ):
            assert response.status == 200, await response.text()
            return await response.text()


@pytest.fixture
async def bot(
    bot_port: int,
    sandbox: RunningSandbox,
    mongodb_uri: str,
    connector: ConnectorServer,
    apps_file: Path,
    tmp_path: Path,
) -> AsyncIterator[Bot]:
    recipes = tmp_path / "recipes.toml"
    recipes.write_text(RECIPES)
    name = unique_database_name()
    env = {
        **os.environ,
        "MONGODB_URI": mongodb_uri,
        "DATABASE_NAME": name,
        "APPS_FILE": str(apps_file),
        "RECIPES_FILE": str(recipes),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{bot_port}",
        "TOKEN_ENCRYPTION_KEYS": TEST_TOKEN_KEY,
        "HOST": "127.0.0.1",
        "SIGNIN_SWEEP_SECONDS": "0.3",
    }
    async with open_database(mongodb_uri=mongodb_uri, database_name=name, data_dir=MEMORY) as db:
        running = Bot(env, bot_port, tmp_path, db, connector, sandbox)
        await store_parent(db, apps_file, running.base_url, sandbox.base_url)
        try:
            yield running
        finally:
            for process in running.processes:
                if process.returncode is None:
                    process.send_signal(signal.SIGINT)
                    await asyncio.wait_for(process.wait(), 30)
            await db.client.drop_database(name)


async def sweeps_pass(bot: Bot, rounds: int = 4) -> None:
    """Let the sweeper run a few more rounds (its lease changes hands or is renewed each time)."""
    seen: set[object] = set()

    async def renewed() -> bool:
        lease = await bot.database.db["leases"].find_one({"_id": SWEEPER_LEASE})
        if lease is not None:
            seen.add(lease["until"])
        return len(seen) >= rounds

    await eventually(renewed, within_s=10)


async def browser_sign_in(bot: Bot, login_url: str) -> str:
    """Jane's browser: /auth/start, consent at the sandbox, /auth/callback, then the code
    shown on /auth/done (all served by whichever process now listens on the port)."""
    cluster = Cluster([bot.port], bot.base_url, bot.database, bot.connector, bot.sandbox)
    return await sign_in(cluster, login_url, on=0)


async def audit_actions(bot: Bot) -> Counter[str]:
    return Counter([e["action"] async for e in bot.database.db["audit_events"].find({})])


async def assert_run_ended_once(bot: Bot, name: str) -> None:
    """One opportunity, credited to Jane; one result card; the run succeeded; and after a few
    more sweeps, nothing more was sent or created; one audit event per change."""
    await bot.connector.wait_for(lambda s: RESULT in json.dumps(s.card or {}), within_s=10)
    await sweeps_pass(bot)
    created = [o for o in bot.sandbox.state.opportunities if o["name"] == name]
    assert [o["created_by"]["email"] for o in created] == ["jane@sandbox.example"]
    results = [s for s in bot.connector.sent if RESULT in json.dumps(s.card or {})]
    assert len(results) == 1
    # Nothing else ended the run: no "expired", "unknown" or error text after the Login card.
    assert [s.text for s in bot.connector.sent if s.text] == [
        "Your Sandbox account jane@sandbox.example is connected."
    ]
    [run] = [r async for r in bot.database.db["recipe_runs"].find({})]
    assert run["status"] == "succeeded" and "sealed_arguments" not in run
    [record] = [r async for r in bot.database.db["login_states"].find({})]
    assert record["step"] == "done"
    assert await eventually(lambda: _actions_are(bot, {"connection.created": 1, "recipe.ran": 1}))


async def _actions_are(bot: Bot, expected: dict[str, int]) -> bool:
    return await audit_actions(bot) == Counter(expected)


async def test_killed_before_the_callback_the_same_link_still_works(bot: Bot) -> None:
    """Killed after the Login card was sent, before the browser reached /auth/callback: the
    restarted bot serves /auth/start and /auth/callback for that same link, the code connects
    the account, and the waiting run resumes and posts its result exactly once."""
    await bot.start()
    url = bot.connector.service_url
    await bot.post(activities.message(JANE, url, 'sandbox opportunity "Before" 1'))
    [login] = login_urls(bot.connector)
    [run] = [r async for r in bot.database.db["recipe_runs"].find({})]
    assert run["status"] == "waiting_for_sign_in"

    await bot.kill()
    await bot.start()

    code = await browser_sign_in(bot, login)
    await bot.post(activities.invoke(JANE, url, "signin/verifyState", {"state": code}))
    await assert_run_ended_once(bot, "Before")


async def test_killed_after_the_callback_the_code_still_connects(bot: Bot) -> None:
    """Killed after the callback showed the code, before the code was sent: the code sent to
    the restarted bot (signin/verifyState) connects, and the waiting run resumes exactly once."""
    await bot.start()
    url = bot.connector.service_url
    await bot.post(activities.message(JANE, url, 'sandbox opportunity "After" 2'))
    [login] = login_urls(bot.connector)
    code = await browser_sign_in(bot, login)
    [record] = [r async for r in bot.database.db["login_states"].find({})]
    assert record["step"] == "awaiting_code"

    await bot.kill()
    await bot.start()

    await bot.post(activities.invoke(JANE, url, "signin/verifyState", {"state": code}))
    await assert_run_ended_once(bot, "After")
    connection = await bot.database.connections.list_for_owner(owner=owner(JANE))
    assert [c.status for c in connection] == [ConnectionStatus.CONNECTED]


def revoke_requests(bot: Bot) -> int:
    return bot.sandbox.state.requests.count(("POST", "/oauth/revoke"))


async def userinfo_status(bot: Bot, access_token: str) -> int:
    headers = {"Authorization": f"Bearer {access_token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(bot.sandbox.userinfo_url, headers=headers) as response,
    ):
        return response.status


async def test_killed_with_a_revocation_in_flight_it_is_finished_once(
    bot: Bot, apps_file: Path
) -> None:
    """Killed while the revocation after a Disconnect is in flight (the provider hangs): the
    restarted bot revokes the tokens (they stop working at the provider), and the connection's
    audit events are exactly `connection.disconnected` and `connection.revoked`, once each."""
    cipher = TokenCipher([TEST_TOKEN_KEY])
    tokens = await issue_tokens(apps_file, f"{bot.base_url}/auth/callback", user="jane")
    parent = await bot.database.connections.find_parent("sandbox_team", tenant_id=JANE.tenant_id)
    assert parent is not None
    connection = await bot.database.connections.create_runtime(
        parent_id=parent.id,
        owner=owner(JANE),
        account=ProviderAccount(id="user-jane", display_name="jane@sandbox.example"),
        tokens=cipher.seal(tokens.as_record()),
    )
    access_token = tokens.access_token
    assert await userinfo_status(bot, access_token) == 200
    await bot.start()

    bot.sandbox.control(hang_s=30)
    press = activities.card_action(
        JANE, bot.connector.service_url, verbs.DISCONNECT, {"connection_id": connection.id}
    )
    answer = await bot.post(press)
    assert "Disconnected Sandbox" in answer
    # The revocation is in flight: the process holds its lease and the provider has the call
    # (received and hanging; the sandbox counts it in its stats only once it is answered).
    await eventually(lambda: revoke_requests(bot) == 1)
    raw = await bot.database.db["connections"].find_one({"_id": ObjectId(connection.id)})
    assert raw is not None and raw["revocation"]["lease_until"] is not None
    assert raw["revocation"]["attempts"] == 0
    revokes_before = bot.sandbox.stats().get("revoke", 0)
    assert revokes_before == 0

    await bot.kill()
    bot.sandbox.control(hang_s=0)
    # The dead process's lease on the revocation (connections/settle.py LEASE, 30 s) would
    # keep every other process away for 30 s; we let it run out now instead of waiting, so
    # the test stays short. Nothing else is touched: the attempt counter, the tokens and the
    # pending audit events are as the dead process left them.
    await bot.database.db["connections"].update_one(
        {"_id": ObjectId(connection.id)},
        {"$set": {"revocation.lease_until": datetime.now(UTC)}},
    )
    await bot.start()

    await eventually(lambda: bot.sandbox.stats().get("revoke", 0) > revokes_before)

    async def revoked() -> bool:
        return await userinfo_status(bot, access_token) == 401

    await eventually(revoked)

    async def settled() -> bool:
        raw = await bot.database.db["connections"].find_one({"_id": ObjectId(connection.id)})
        return raw is not None and "revocation" not in raw and not raw.get("outbox")

    await eventually(settled)
    await sweeps_pass(bot)
    events = await bot.database.audit.for_connection(connection.id)
    assert [e.action for e in events] == ["connection.disconnected", "connection.revoked"]
    assert events[1].details["revocation"] == "revoked"
    assert await audit_actions(bot) == Counter([e.action for e in events])  # nothing else
    # One attempt by the restarted process (refresh token, then access token), none repeated,
    # besides the call the dead process left hanging at the provider.
    assert revoke_requests(bot) == 1 + 2
    stored = await bot.database.connections.get(connection.id)
    assert stored is not None and stored.status is ConnectionStatus.DISCONNECTED
    assert stored.tokens is None
