"""Keeping connections alive: single-flight refresh across processes, rotation, refusals, and
revocation on Disconnect and Delete — against the sandbox provider over real HTTP."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from bson import ObjectId

from cards import verbs
from cards.connections import short_date
from connections.service import ConnectionsService
from connections.settle import REVOKE_ATTEMPTS, ConnectionSettler
from oauth.client import OAuthRejected, exchange_code, new_code_verifier, refresh
from oauth.providers import ProviderRegistry, load_registry
from oauth.tokens import NeedsSignIn, TokenService, TokenUnavailable
from storage.crypto import TokenCipher
from storage.database import Database
from storage.models import Connection, ConnectionStatus, ProviderAccount
from tests.conftest import TEST_TOKEN_KEY, RunningBot, StartBot
from tests.support import activities
from tests.support.activities import JANE
from tests.support.data import ADMIN, owner
from tests.support.sandbox import RunningSandbox, authorize, run_sandbox, sandbox_config
from tests.support.waiting import audited

REPO = Path(__file__).resolve().parents[1]
REDIRECT = "http://127.0.0.1:9/auth/callback"  # never called: tests read the code themselves


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    from sandbox import SandboxClient

    client = SandboxClient("sandbox-client", "sandbox-secret", redirect_uris=(REDIRECT,))
    with run_sandbox(sandbox_config(clients=(client,))) as running:
        yield running


@pytest.fixture
def apps_file(tmp_path: Path, sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "apps.toml"
    path.write_text(
        "[apps.sandbox]\n"
        'preset = "sandbox"\n'
        f'base_url = "{sandbox.base_url}"\n'
        'client_id = "sandbox-client"\n'
        'client_secret_env = "SANDBOX_CLIENT_SECRET"\n'
    )
    monkeypatch.setenv("SANDBOX_CLIENT_SECRET", "sandbox-secret")
    return path


@dataclass
class Setup:
    database: Database
    sandbox: RunningSandbox
    providers: ProviderRegistry
    cipher: TokenCipher
    service: TokenService
    connection: Connection
    apps_file: Path
    mongodb_uri: str

    async def expire_locally(self) -> None:
        """Make the stored access token look expired, as time passing would."""
        stored = await self.database.connections.get(self.connection.id)
        assert stored is not None and stored.tokens is not None
        tokens = self.cipher.open(stored.tokens)
        tokens["expires_at"] = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
        await self.database.db["connections"].update_one(
            {"_id": __import__("bson").ObjectId(self.connection.id)},
            {"$set": {"tokens": self.cipher.seal(tokens).model_dump()}},
        )

    def stat(self, key: str) -> int:
        return self.sandbox.stats().get(key, 0)


async def signed_in_tokens(sandbox: RunningSandbox, providers: ProviderRegistry, user: str):
    """Real tokens for `user` from the sandbox, through consent and the code exchange."""
    provider = providers.get("sandbox")
    assert provider is not None
    verifier = new_code_verifier()
    from oauth.client import authorization_url

    url = authorization_url(provider, redirect_uri=REDIRECT, state="s", code_verifier=verifier)
    async with aiohttp.ClientSession() as session:
        location = await authorize(session, url, user=user)
    code = parse_qs(urlsplit(location).query)["code"][0]
    return await exchange_code(provider, code=code, redirect_uri=REDIRECT, code_verifier=verifier)


@pytest.fixture
async def setup(
    database: Database, sandbox: RunningSandbox, apps_file: Path, mongodb_uri: str
) -> AsyncIterator[Setup]:
    providers = load_registry(apps_file)
    cipher = TokenCipher([TEST_TOKEN_KEY])
    tokens = await signed_in_tokens(sandbox, providers, "jane")
    parent = await database.connections.create_parent(
        provider="sandbox", owner=ADMIN, account=ProviderAccount(id="a", display_name="admin")
    )
    connection = await database.connections.create_runtime(
        parent_id=parent.id,
        owner=owner(JANE),
        account=ProviderAccount(id="user-jane", display_name="jane@sandbox.example"),
        tokens=cipher.seal(tokens.as_record()),
    )
    service = TokenService(providers=providers, connections=database.connections, cipher=cipher)
    yield Setup(database, sandbox, providers, cipher, service, connection, apps_file, mongodb_uri)


async def test_fresh_token_costs_no_refresh(setup: Setup) -> None:
    """A token far from expiry is returned as stored; the provider is not called."""
    token = await setup.service.access_token(setup.connection.id)
    assert token in setup.sandbox.state.by_access
    assert setup.stat("token.refresh_token") == 0


async def start_worker(setup: Setup, callers: int) -> asyncio.subprocess.Process:
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.refresh_worker",
        "--mongodb-uri",
        setup.mongodb_uri,
        "--database",
        setup.database.db.name,
        "--apps-file",
        str(setup.apps_file),
        # One argument: a Fernet key may begin with "-", which argparse would take for an option.
        f"--key={TEST_TOKEN_KEY}",
        "--connection",
        setup.connection.id,
        "--callers",
        str(callers),
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert worker.stdout is not None
    assert (await worker.stdout.readline()).strip() == b"ready"
    return worker


async def refresh_from_two_processes(setup: Setup) -> list[str]:
    workers = [await start_worker(setup, 100) for _ in range(2)]
    for worker in workers:  # both are connected and waiting: release them together
        assert worker.stdin is not None
        worker.stdin.write(b"go\n")
        await worker.stdin.drain()
    tokens: list[str] = []
    for worker in workers:
        out, _ = await worker.communicate()
        result = json.loads(out.decode().strip().splitlines()[-1])
        assert result["errors"] == []
        tokens += result["tokens"]
    return tokens


async def test_two_processes_200_callers_one_refresh_then_rotation(setup: Setup) -> None:
    """Two processes, 100 concurrent callers on an expired token: exactly one refresh, all get
    the new token; the next expiry (rotated refresh token) again costs exactly one."""
    await setup.expire_locally()
    first = await refresh_from_two_processes(setup)
    assert len(first) == 200 and len(set(first)) == 1
    assert setup.stat("token.refresh_token") == 1

    await setup.expire_locally()
    second = await refresh_from_two_processes(setup)
    assert len(set(second)) == 1 and second[0] != first[0]
    assert setup.stat("token.refresh_token") == 2
    stored = await setup.database.connections.get(setup.connection.id)
    assert stored is not None and stored.status is ConnectionStatus.CONNECTED


async def test_rotation_keeps_the_new_refresh_token(setup: Setup) -> None:
    """The rotated refresh token is stored; the old one is dead at the provider."""
    before = setup.cipher.open((await setup.database.connections.get(setup.connection.id)).tokens)  # type: ignore[union-attr,arg-type]
    await setup.expire_locally()
    await setup.service.access_token(setup.connection.id)
    after = setup.cipher.open((await setup.database.connections.get(setup.connection.id)).tokens)  # type: ignore[union-attr,arg-type]
    assert after["refresh_token"] != before["refresh_token"]
    assert after["refresh_token"] in setup.sandbox.state.by_refresh
    provider = setup.providers.get("sandbox")
    assert provider is not None
    with pytest.raises(OAuthRejected):  # single-use: the old refresh token is dead
        await refresh(provider, refresh_token=before["refresh_token"])


async def test_invalid_grant_means_needs_sign_in(setup: Setup) -> None:
    """`invalid_grant` on refresh: Needs sign-in, tokens dropped, the caller told."""
    setup.sandbox.control(fail_refresh_with="invalid_grant")
    await setup.expire_locally()
    with pytest.raises(NeedsSignIn):
        await setup.service.access_token(setup.connection.id)
    stored = await setup.database.connections.get(setup.connection.id)
    assert stored is not None and stored.status is ConnectionStatus.NEEDS_REAUTH
    assert stored.tokens is None
    with pytest.raises(NeedsSignIn):  # and it stays so, without calling the provider again
        await setup.service.access_token(setup.connection.id)
    assert setup.stat("token.refresh_token") == 1


async def test_provider_down_leaves_the_connection_unchanged(setup: Setup) -> None:
    """Provider down: TokenUnavailable, status and tokens unchanged, a later call succeeds."""
    await setup.expire_locally()
    before = await setup.database.connections.get(setup.connection.id)
    setup.sandbox.control(down=True)
    with pytest.raises(TokenUnavailable):
        await setup.service.access_token(setup.connection.id)
    after = await setup.database.connections.get(setup.connection.id)
    assert after is not None and before is not None
    assert after.status is ConnectionStatus.CONNECTED and after.tokens == before.tokens
    setup.sandbox.control(down=False)
    assert await setup.service.access_token(setup.connection.id) in setup.sandbox.state.by_access


async def test_disconnected_connection_gives_no_token(setup: Setup) -> None:
    """A Disconnected connection never yields a token."""
    await setup.database.connections.disconnect_for_owner(
        connection_id=setup.connection.id, owner=owner(JANE)
    )
    with pytest.raises(NeedsSignIn):
        await setup.service.access_token(setup.connection.id)


def service_for(setup: Setup) -> tuple[ConnectionsService, ConnectionSettler]:
    settler = ConnectionSettler(
        store=setup.database.connections,
        audit=setup.database.audit,
        revoke_grant=setup.service.revoke_grant,
    )
    service = ConnectionsService(
        store=setup.database.connections, audit=setup.database.audit, settler=settler
    )
    return service, settler


async def userinfo_status(setup: Setup, token: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            setup.sandbox.userinfo_url, headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        return response.status


async def actions_of(setup: Setup) -> list[tuple[str, dict[str, object]]]:
    events = await setup.database.audit.for_connection(setup.connection.id)
    return [(e.action, e.details) for e in events]


async def assert_tombstone_is_bare(setup: Setup) -> None:
    """A deleted connection is kept only as a tombstone with nothing left to do (no tokens, no
    pending revocation or event), until Teams can no longer retry the Delete."""
    raw = await setup.database.db["connections"].find_one({"_id": ObjectId(setup.connection.id)})
    assert raw is not None and raw["kind"] == "deleted"
    assert raw["tokens"] is None and "revocation" not in raw and not raw.get("outbox")


async def test_disconnect_revokes_at_the_provider(setup: Setup) -> None:
    """Disconnect answers at once with its audit event stored on the record (its outbox, in
    the same update as the change), written to the audit log right after; the tokens are then
    revoked at the provider (they stop working there) and that is audited too."""
    token = await setup.service.access_token(setup.connection.id)
    assert await userinfo_status(setup, token) == 200
    service, settler = service_for(setup)
    outcome = await service.disconnect(owner(JANE), setup.connection.id)
    assert outcome.result.value == "done"
    # Durable with the answer: on the record, or already moved to the log (an event leaves the
    # outbox only once it is logged, so the record is read first).
    raw = await setup.database.db["connections"].find_one({"_id": ObjectId(setup.connection.id)})
    assert raw is not None
    pending = [event["action"] for event in raw.get("outbox") or []]
    logged = [a for a, _ in await actions_of(setup)]
    assert "connection.disconnected" in pending + logged
    await audited(setup.database)
    assert next(a for a, _ in await actions_of(setup)) == "connection.disconnected"
    await settler.close()  # the revocation ran after the answer
    assert setup.stat("revoke") == 2  # refresh token, then access token
    assert await userinfo_status(setup, token) == 401
    assert await actions_of(setup) == [
        ("connection.disconnected", {}),
        ("connection.revoked", {"revocation": "revoked", "attempts": 1}),
    ]
    raw = await setup.database.db["connections"].find_one({"_id": ObjectId(setup.connection.id)})
    assert raw is not None and "revocation" not in raw and not raw.get("outbox")


async def test_delete_revokes_at_the_provider(setup: Setup) -> None:
    """Delete revokes too, and the record is gone once that is done."""
    token = await setup.service.access_token(setup.connection.id)
    service, settler = service_for(setup)
    await service.delete(owner(JANE), setup.connection.id)
    assert await setup.database.connections.get(setup.connection.id) is None  # at once
    await settler.close()
    assert setup.stat("revoke") == 2
    assert await userinfo_status(setup, token) == 401
    await assert_tombstone_is_bare(setup)
    assert [a for a, _ in await actions_of(setup)] == ["connection.deleted", "connection.revoked"]


async def test_failed_revocation_is_retried_then_audited(setup: Setup) -> None:
    """Provider down during Disconnect: the connection is disconnected at once; the revocation
    is retried with pauses, by any process (a fresh settler stands for a restarted bot), and
    after the last attempt the failure is audited once."""
    token = await setup.service.access_token(setup.connection.id)
    setup.sandbox.control(down=True)
    service, settler = service_for(setup)
    outcome = await service.disconnect(owner(JANE), setup.connection.id)
    assert outcome.result.value == "done"
    stored = await setup.database.connections.get(setup.connection.id)
    assert stored is not None and stored.status is ConnectionStatus.DISCONNECTED
    assert stored.tokens is None
    await settler.close()
    raw = await setup.database.db["connections"].find_one({"_id": ObjectId(setup.connection.id)})
    assert raw is not None and raw["revocation"]["attempts"] == 1
    assert raw["revocation"]["next_at"] > datetime.now(UTC)  # paused, not hammered
    for attempt in range(2, REVOKE_ATTEMPTS + 1):
        await setup.database.db["connections"].update_one(
            {"_id": ObjectId(setup.connection.id)},
            {"$set": {"revocation.next_at": datetime.now(UTC)}},
        )
        restarted, _ = service_for(setup)
        assert restarted.settler is not None
        await restarted.settler.sweep()
        raw = await setup.database.db["connections"].find_one(
            {"_id": ObjectId(setup.connection.id)}
        )
        assert raw is not None
        if attempt < REVOKE_ATTEMPTS:
            assert raw["revocation"]["attempts"] == attempt
    assert "revocation" not in raw
    assert await actions_of(setup) == [
        ("connection.disconnected", {}),
        ("connection.revoke_failed", {"revocation": "failed", "attempts": REVOKE_ATTEMPTS}),
    ]
    setup.sandbox.control(down=False)
    assert await userinfo_status(setup, token) == 200  # what the audit warns about


async def test_revocation_survives_a_restart(setup: Setup) -> None:
    """A revocation pending when the bot stops (provider down) is finished by the next sweep
    of another process once the provider is back."""
    token = await setup.service.access_token(setup.connection.id)
    setup.sandbox.control(down=True)
    service, settler = service_for(setup)
    await service.delete(owner(JANE), setup.connection.id)
    await settler.close()
    setup.sandbox.control(down=False)
    await setup.database.db["connections"].update_one(
        {"_id": ObjectId(setup.connection.id)}, {"$set": {"revocation.next_at": datetime.now(UTC)}}
    )
    _, next_process = service_for(setup)
    await next_process.sweep()
    assert await userinfo_status(setup, token) == 401
    assert [a for a, _ in await actions_of(setup)] == ["connection.deleted", "connection.revoked"]
    await assert_tombstone_is_bare(setup)


async def test_needs_sign_in_shows_in_the_picklist(
    start_bot: StartBot, sandbox: RunningSandbox, apps_file: Path
) -> None:
    """After invalid_grant the person's list shows the connection as Needs sign-in."""
    bot: RunningBot = await start_bot(apps_file=str(apps_file))
    providers = load_registry(apps_file)
    cipher = TokenCipher([TEST_TOKEN_KEY])
    tokens = await signed_in_tokens(sandbox, providers, "jane")
    parent = await bot.database.connections.create_parent(
        provider="sandbox", owner=ADMIN, account=None
    )
    connection = await bot.database.connections.create_runtime(
        parent_id=parent.id,
        owner=owner(JANE),
        account=ProviderAccount(id="user-jane", display_name="jane@sandbox.example"),
        tokens=cipher.seal({**tokens.as_record(), "expires_at": datetime.now(UTC).isoformat()}),
    )
    sandbox.control(fail_refresh_with="invalid_grant")
    service = TokenService(providers=providers, connections=bot.database.connections, cipher=cipher)
    with pytest.raises(NeedsSignIn):
        await service.access_token(connection.id)

    await bot.post(activities.message(JANE, bot.service_url, "personal_connections"))
    [reply] = bot.connector.sent
    stored = await bot.database.connections.get(connection.id)
    assert stored is not None and stored.last_error is not None
    since = short_date(stored.last_error.at, datetime.now(UTC).date())
    assert f"Sandbox — jane@sandbox.example (Needs sign-in since {since})" in json.dumps(
        reply.card, ensure_ascii=False
    )
    assert verbs.RECONNECT in json.dumps(reply.card)
