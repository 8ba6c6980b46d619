"""`python -m admin console-link`, run as an operator runs it: a one-time link, or a refusal."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from admin.console_link import LINK_CREATED
from storage.admin_signins import COLLECTION, AdminSignInStore
from storage.database import Database, open_database
from storage.embedded import MEMORY
from tests.conftest import unique_database_name

REPO = Path(__file__).resolve().parents[1]
PUBLIC_BASE_URL = "http://127.0.0.1:3978"
LINK = re.compile(r"http://127\.0\.0\.1:3978/admin/link\?token=([A-Za-z0-9_-]{43})")


@dataclass
class CliDatabase:
    uri: str
    database: Database


@pytest.fixture
async def cli_database(mongodb_uri: str) -> AsyncIterator[CliDatabase]:
    name = unique_database_name()
    async with open_database(mongodb_uri=mongodb_uri, database_name=name, data_dir=MEMORY) as db:
        yield CliDatabase(mongodb_uri, db)
        await db.client.drop_database(name)


async def console_link(target: CliDatabase, **variables: str) -> tuple[int, str, str]:
    """Run the command in its own process against the test's database."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MONGODB_URI": target.uri,
        "DATABASE_NAME": target.database.db.name,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        **variables,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "admin",
        "console-link",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_prints_a_link_that_works_once(cli_database: CliDatabase) -> None:
    code, out, err = await console_link(cli_database)
    assert code == 0, err
    first, note, *rest = out.splitlines()
    match = LINK.fullmatch(first)
    assert match is not None, out
    assert "once" in note and "10 minutes" in note and "this machine" in note and not rest

    database = cli_database.database
    store = AdminSignInStore(database.db[COLLECTION])
    token = match.group(1)
    [document] = await store.collection.find({}).to_list()
    assert token not in str(document)
    assert await store.take_link(token)
    assert not await store.take_link(token)
    events = [event for event in await database.audit.recent() if event.action == LINK_CREATED]
    assert [event.actor.kind for event in events] == ["operator"]


@pytest.mark.parametrize(
    ("variables", "method"),
    [
        (
            {
                "ADMIN_OIDC_AUTHORITY": "https://127.0.0.1:9/contoso",
                "ADMIN_CLIENT_ID": "console-client",
                "ADMIN_CLIENT_SECRET": "console-secret",
            },
            "OpenID Connect",
        ),
        ({"ADMIN_CLIENT_ID": "console-client", "ADMIN_CLIENT_SECRET": "x"}, "Entra ID"),
    ],
)
async def test_refuses_when_an_identity_provider_signs_in(
    cli_database: CliDatabase, variables: dict[str, str], method: str
) -> None:
    code, out, err = await console_link(cli_database, **variables)
    assert code == 2 and out == ""
    assert method in err and f"{PUBLIC_BASE_URL}/admin/" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert await cli_database.database.db[COLLECTION].count_documents({}) == 0
