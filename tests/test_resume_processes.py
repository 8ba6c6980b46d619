"""Two real bot processes (`python app.py`) on one database: a run started on one resumes once
after the sign-in lands on the other, and an expired sign-in is announced once while both
processes sweep."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

import messages
from storage.crypto import TokenCipher
from storage.database import Database, open_database
from storage.embedded import MEMORY
from storage.models import ProviderAccount
from tests.conftest import TEST_TOKEN_KEY, free_port, unique_database_name
from tests.support import activities
from tests.support.activities import JANE
from tests.support.connector import ConnectorServer
from tests.support.data import ADMIN
from tests.support.sandbox import RunningSandbox, authorize, issue_tokens
from tests.test_app_process import wait_until_ready
from tests.test_resume import RECIPES

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Cluster:
    ports: list[int]
    base_url: str
    database: Database
    connector: ConnectorServer
    sandbox: RunningSandbox

    def url(self, process: int, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[process]}{path}"

    async def post(self, process: int, activity: dict[str, object]) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url(process, "/api/messages"), json=activity) as response,
        ):
            assert response.status == 200, await response.text()


@pytest.fixture
def ports(bot_port: int) -> list[int]:
    # Process 0 listens where the sandbox redirects; both serve the same PUBLIC_BASE_URL.
    return [bot_port, free_port()]


@pytest.fixture
async def cluster(
    ports: list[int],
    sandbox: RunningSandbox,
    mongodb_uri: str,
    connector: ConnectorServer,
    apps_file: Path,
    tmp_path: Path,
) -> AsyncIterator[Cluster]:
    apps = apps_file
    recipes = tmp_path / "recipes.toml"
    recipes.write_text(RECIPES)
    name = unique_database_name()
    base_url = f"http://127.0.0.1:{ports[0]}"  # both processes behind one address
    processes: list[asyncio.subprocess.Process] = []
    async with open_database(mongodb_uri=mongodb_uri, database_name=name, data_dir=MEMORY) as db:
        tokens = await issue_tokens(apps, f"{base_url}/auth/callback", user="omar")
        await db.connections.create_parent(
            provider="sandbox",
            owner=ADMIN,
            account=ProviderAccount(id="user-omar", display_name="omar@sandbox.example"),
            tokens=TokenCipher([TEST_TOKEN_KEY]).seal(tokens.as_record()),
            api_base_url=sandbox.base_url,
            name="sandbox_team",
        )
        try:
            for index, port in enumerate(ports):
                env = {
                    **os.environ,
                    "MONGODB_URI": mongodb_uri,
                    "DATABASE_NAME": name,
                    "APPS_FILE": str(apps),
                    "RECIPES_FILE": str(recipes),
                    "PUBLIC_BASE_URL": base_url,
                    "TOKEN_ENCRYPTION_KEYS": TEST_TOKEN_KEY,
                    "SANDBOX_CLIENT_SECRET": "sandbox-secret",
                    "HOST": "127.0.0.1",
                    "PORT": str(port),
                    "SIGNIN_SWEEP_SECONDS": "0.2",
                }
                with (tmp_path / f"bot-{index}.log").open("wb") as log:
                    process = await asyncio.create_subprocess_exec(
                        sys.executable,
                        str(REPO / "app.py"),
                        env=env,
                        cwd=tmp_path,
                        stdout=log,
                        stderr=log,
                    )
                processes.append(process)
                await wait_until_ready(f"http://127.0.0.1:{port}/readyz", process)
            yield Cluster(ports, base_url, db, connector, sandbox)
        finally:
            for process in processes:
                if process.returncode is None:
                    process.send_signal(signal.SIGINT)
                    await asyncio.wait_for(process.wait(), 30)


async def sign_in(cluster: Cluster, login_url: str, *, on: int) -> str:
    """The browser part, with /auth/start and the callback served by process `on`."""
    start = cluster.url(on, urlsplit(login_url).path + "?" + urlsplit(login_url).query)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(start, allow_redirects=False) as response:
            provider_url = response.headers["Location"]
        callback = await authorize(session, provider_url, user="jane")
        parts = urlsplit(callback)
        async with session.get(cluster.url(on, f"{parts.path}?{parts.query}")) as response:
            page = await response.text()
    match = re.search(r'id="code">(\d{6})<', page)
    assert match, page
    return match.group(1)


def login_urls(connector: ConnectorServer) -> list[str]:
    return [
        attachment["content"]["buttons"][0]["value"]
        for sent in connector.sent
        for attachment in sent.activity.get("attachments") or []
        if attachment["contentType"] == "application/vnd.microsoft.card.signin"
    ]


async def test_run_on_one_process_resumes_once_on_the_other(cluster: Cluster) -> None:
    """Started on process 0, signed in and verified on process 1 (and the code repeated on
    process 0): one opportunity, credited to Jane, one result card."""
    url = cluster.connector.service_url
    await cluster.post(0, activities.message(JANE, url, 'sandbox opportunity "Split" 1'))
    [login] = login_urls(cluster.connector)
    code = await sign_in(cluster, login, on=1)
    verify = activities.invoke(JANE, url, "signin/verifyState", {"state": code})
    await cluster.post(1, verify)
    await cluster.post(0, verify)
    await cluster.post(0, activities.message(JANE, url, code))

    created = [(o["name"], o["created_by"]["email"]) for o in cluster.sandbox.state.opportunities]
    assert created == [("Split", "jane@sandbox.example")]
    results = [
        s
        for s in cluster.connector.sent
        if s.card and "Created in Sandbox as jane@sandbox.example" in json.dumps(s.card)
    ]
    assert len(results) == 1


async def test_expiry_is_announced_once_with_both_processes_sweeping(cluster: Cluster) -> None:
    """Both processes sweep every 0.2 s; the expired run is announced exactly once."""
    url = cluster.connector.service_url
    await cluster.post(0, activities.message(JANE, url, 'sandbox opportunity "Late" 2'))
    await cluster.database.db["recipe_runs"].update_many(
        {}, {"$set": {"wait_expires_at": datetime.now(UTC) - timedelta(seconds=1)}}
    )
    expired = messages.RECIPE_SIGN_IN_EXPIRED.format(recipe="Sandbox opportunity")
    await cluster.connector.wait_for(lambda sent: sent.text == expired, within_s=15)

    # Let several more sweep rounds pass (the lease changes hands or is renewed each round),
    # then check that no second message followed.
    leases = cluster.database.db["leases"]
    seen: set[object] = set()
    while len(seen) < 4:
        lease = await leases.find_one({"_id": "signin-expiry-sweeper"})
        assert lease is not None
        seen.add(lease["until"])
        await asyncio.sleep(0.05)  # polling the lease document, not waiting for a result
    assert [s.text for s in cluster.connector.sent].count(expired) == 1
    [run] = await cluster.database.recipe_runs.for_recipe("sandbox_opportunity")
    assert run.status == "expired"
