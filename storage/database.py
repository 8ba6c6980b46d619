"""Opening the database: MONGODB_URI when set, otherwise the embedded server; indexes at start.

`open_database` is an async context manager that yields a `Database` holding the client and one
store per collection, and closes everything (the embedded server included) on exit. With the
embedded server, `Database.store_lost()` and `wait_store_lost()` tell when it is gone for good.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

import messages
from storage.admin_sessions import AdminSessionStore
from storage.admin_signins import AdminSignInStore
from storage.audit import AuditLog
from storage.connections import ConnectionStore
from storage.embedded import MEMORY, EmbeddedMongo, StoreUnavailable
from storage.leases import LeaseStore
from storage.login_states import LoginStateStore
from storage.outbox import ensure_outbox_index
from storage.privileges import PrivilegeStore
from storage.recipe_runs import RecipeRunStore
from storage.recipe_settings import RecipeSettingsStore
from storage.revocations import ensure_revocation_index
from storage.welcomes import WelcomeStore

log = logging.getLogger(__name__)

Document = dict[str, Any]


@dataclass(frozen=True)
class Database:
    """The open database and its stores."""

    client: AsyncMongoClient[Document]
    db: AsyncDatabase[Document]
    connections: ConnectionStore
    audit: AuditLog
    login_states: LoginStateStore
    recipe_settings: RecipeSettingsStore
    recipe_runs: RecipeRunStore
    leases: LeaseStore
    privileges: PrivilegeStore
    admin_sessions: AdminSessionStore
    admin_signins: AdminSignInStore
    welcomes: WelcomeStore
    description: str
    embedded: EmbeddedMongo | None = None

    async def ping(self, timeout_s: float = 1.5) -> bool:
        """True when the server answers within `timeout_s`; used by the readiness probe.

        The bound keeps the probe within its 2 s budget when the server is stopped or hung
        (server selection alone may wait serverSelectionTimeoutMS, 5 s).
        """
        try:
            async with asyncio.timeout(timeout_s):
                await self.client.admin.command("ping")
        except (PyMongoError, TimeoutError):
            return False
        return True

    def store_lost(self) -> str | None:
        """Why the embedded server is gone for good, or None (always None with MONGODB_URI)."""
        return self.embedded.lost if self.embedded is not None else None

    async def wait_store_lost(self) -> str:
        """Return the reason once the embedded server is gone for good; never with MONGODB_URI."""
        if self.embedded is None:
            await asyncio.Event().wait()
        assert self.embedded is not None
        return await self.embedded.wait_lost()


# The client-side limit of every operation (PyMongo `timeoutMS`: server selection, connecting,
# a pooled connection, and the operation itself with its retries), well inside a turn's budget.
OPERATION_TIMEOUT_MS = 3000


def make_client(uri: str, **options: Any) -> AsyncMongoClient[Document]:
    """A client returning timezone-aware UTC datetimes, every operation bounded in time."""
    # With `timeoutMS`, PyMongo waits with `asyncio.wait_for`, which on Python 3.11 can lose a
    # cancellation: background loops are therefore stopped with `background.stop`.
    for option in ("timeoutMS", "serverSelectionTimeoutMS", "connectTimeoutMS"):
        options.setdefault(option, OPERATION_TIMEOUT_MS)
    return AsyncMongoClient(uri, tz_aware=True, tzinfo=UTC, **options)


async def ensure_indexes(database: Database) -> None:
    """Create every collection's indexes; safe to run at every start and from every process."""
    await database.connections.ensure_indexes()
    await database.audit.ensure_indexes()
    await database.login_states.ensure_indexes()
    await database.recipe_settings.ensure_indexes()
    await database.recipe_runs.ensure_indexes()
    await database.privileges.ensure_indexes()
    await database.admin_sessions.ensure_indexes()
    await database.admin_signins.ensure_indexes()
    await database.welcomes.ensure_indexes()
    # The sweep finds pending audit events and revocations through indexes (storage/outbox.py,
    # storage/revocations.py); connections make theirs in ensure_indexes above.
    for store in (
        database.recipe_runs,
        database.recipe_settings,
        database.login_states,
        database.privileges,
    ):
        await ensure_outbox_index(store.collection)
    await ensure_revocation_index(database.login_states.collection)


@asynccontextmanager
async def open_database(
    *,
    mongodb_uri: str | None,
    database_name: str,
    data_dir: Path | str,
    embedded_command: str = "secantusd-py",
) -> AsyncIterator[Database]:
    """Connect to MongoDB (or start the embedded server) and create the indexes.

    Args:
        mongodb_uri: a MongoDB URI; None starts the embedded server.
        database_name: the database to use.
        data_dir: where the embedded server keeps its files, or `storage.embedded.MEMORY`.
        embedded_command: the embedded server's executable.

    Raises:
        StoreUnavailable: when no database can be reached or started.
    """
    async with AsyncExitStack() as stack:
        embedded: EmbeddedMongo | None = None
        if mongodb_uri:
            uri = mongodb_uri
            description = messages.LOG_STORE_EXTERNAL % database_name
        else:
            embedded = EmbeddedMongo(command=embedded_command, storage=data_dir)
            uri = await stack.enter_async_context(embedded)
            description = (
                messages.LOG_STORE_EMBEDDED % (Path(data_dir) / "mongodb", database_name)
                if str(data_dir) != MEMORY
                else messages.LOG_STORE_EMBEDDED_MEMORY % database_name
            )
        client = make_client(uri)
        stack.push_async_callback(client.close)
        db = client[database_name]
        database = Database(
            client=client,
            db=db,
            connections=ConnectionStore(db["connections"]),
            audit=AuditLog(db["audit_events"]),
            login_states=LoginStateStore(db["login_states"]),
            recipe_settings=RecipeSettingsStore(db["recipe_settings"]),
            recipe_runs=RecipeRunStore(db["recipe_runs"]),
            leases=LeaseStore(db["leases"]),
            privileges=PrivilegeStore(db["privileges"]),
            admin_sessions=AdminSessionStore(db["admin_sessions"]),
            admin_signins=AdminSignInStore(db["admin_signins"]),
            welcomes=WelcomeStore(db["welcomes"]),
            description=description,
            embedded=embedded,
        )
        try:
            await ensure_indexes(database)
        except PyMongoError as error:
            raise StoreUnavailable(
                messages.STORE_UNREACHABLE.format(detail=type(error).__name__)
            ) from None
        log.info(description)
        yield database
