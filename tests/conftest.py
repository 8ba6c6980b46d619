"""Shared fixtures: an isolated environment, the real database, a loopback connector, the bot.

The database is the embedded MongoDB-wire server (or MONGODB_URI when set), one per session,
with a fresh database per test. The bot runs as the real aiohttp application on loopback and is
spoken to over real HTTP; its replies land in a loopback connector that records them.
"""

from __future__ import annotations

import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet
from pydantic import AliasChoices

from app import DATABASE_KEY, PathOnlyAccessLogger, create_app
from settings import Settings, load_settings
from storage.database import Database, open_database
from storage.embedded import MEMORY, EmbeddedMongo
from tests.support.connector import ConnectorServer
from tests.support.sandbox import (
    CLIENT_SECRET,
    SECRET_VARIABLE,
    RunningSandbox,
    run_sandbox,
    sandbox_for_bot,
    write_apps_file,
)

# One encryption key for the bots the tests start (production-like: no generated key file).
TEST_TOKEN_KEY = Fernet.generate_key().decode()

# Read before any test isolates the environment.
EXTERNAL_MONGODB_URI = os.environ.get("MONGODB_URI") or None


def _settings_variables() -> list[str]:
    names: list[str] = []
    for name, field in Settings.model_fields.items():
        aliases = field.validation_alias
        names += [str(a) for a in aliases.choices] if isinstance(aliases, AliasChoices) else [name]
    return names


SETTINGS_VARIABLES = _settings_variables()


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[None]:
    """No test sees the developer's configuration, and none writes outside its tmp_path."""
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture(scope="session")
async def mongodb_uri() -> AsyncIterator[str]:
    if EXTERNAL_MONGODB_URI:
        yield EXTERNAL_MONGODB_URI
        return
    async with EmbeddedMongo(command="secantusd-py", storage=MEMORY) as uri:
        yield uri


def unique_database_name() -> str:
    return f"test_{uuid.uuid4().hex[:16]}"


@pytest.fixture
async def own_store() -> AsyncIterator[EmbeddedMongo]:
    """A store of this test's own, so stopping it (SIGSTOP) stalls no other test."""
    store = EmbeddedMongo(command="secantusd-py", storage=MEMORY)
    await store.__aenter__()
    try:
        yield store
    finally:
        if store.pid is not None:
            os.kill(store.pid, signal.SIGCONT)
        await store.__aexit__(None, None, None)


@pytest.fixture
async def database(mongodb_uri: str) -> AsyncIterator[Database]:
    name = unique_database_name()
    async with open_database(mongodb_uri=mongodb_uri, database_name=name, data_dir=MEMORY) as db:
        yield db
        await db.client.drop_database(name)


@pytest.fixture
async def connector() -> AsyncIterator[ConnectorServer]:
    server = ConnectorServer()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def make_settings(mongodb_uri: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "mongodb_uri": mongodb_uri,
            "database_name": unique_database_name(),
            "token_encryption_keys": TEST_TOKEN_KEY,
        }
        values.update(overrides)
        return load_settings(_env_file=None, **values)

    return make


@dataclass
class RunningBot:
    """The bot application served on loopback, with its database and the connector it replies to."""

    client: TestClient
    settings: Settings
    connector: ConnectorServer

    @property
    def database(self) -> Database:
        return self.client.server.app[DATABASE_KEY]

    @property
    def service_url(self) -> str:
        return self.connector.service_url

    async def post(
        self, activity: Any, *, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """POST an activity to /api/messages; returns (status, JSON body or None)."""
        response = await self.client.post("/api/messages", json=activity, headers=headers)
        text = await response.text()
        body = None
        if text and response.content_type == "application/json":
            body = await response.json()
        return response.status, body


StartBot = Callable[..., Awaitable[RunningBot]]


@pytest.fixture
async def start_bot(
    make_settings: Callable[..., Settings], connector: ConnectorServer
) -> AsyncIterator[StartBot]:
    async with AsyncExitStack() as stack:

        async def start(*, port: int | None = None, **overrides: Any) -> RunningBot:
            settings = make_settings(**overrides)
            server = TestServer(create_app(settings), host="127.0.0.1", port=port)
            # The product's access logger, as `python app.py` uses it (no query strings).
            await server.start_server(access_log_class=PathOnlyAccessLogger)
            client = TestClient(server)
            await client.start_server()
            stack.push_async_callback(client.close)
            return RunningBot(client=client, settings=settings, connector=connector)

        yield start


@pytest.fixture
async def bot(start_bot: StartBot) -> RunningBot:
    return await start_bot()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def bot_port() -> int:
    """The port a bot under test will listen on (its sign-in callback is registered with it)."""
    return free_port()


@pytest.fixture
def sandbox(bot_port: int) -> Iterator[RunningSandbox]:
    """The sandbox OAuth2 provider, with a client redirecting to the bot on `bot_port`."""
    with run_sandbox(sandbox_for_bot(bot_port)) as running:
        yield running


@pytest.fixture
def apps_file(tmp_path: Path, sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An APPS_FILE with the sandbox app and its parent `sandbox_team`; its secret is set."""
    monkeypatch.setenv(SECRET_VARIABLE, CLIENT_SECRET)
    return write_apps_file(tmp_path / "apps.toml", sandbox, contact="Ada Admin")
