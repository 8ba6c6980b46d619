"""Keeping connections alive in the background, against the sandbox provider over real HTTP.

The sandbox refuses refresh tokens unused for longer than its idle lifetime, as Box does after
60 days; "time passing" is simulated by ageing the sandbox's tokens and the records' issue times
by the same amount, never by waiting.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bson import ObjectId

from connections.keep_alive import KeepAlive
from oauth.client import TokenSet
from oauth.providers import ProviderRegistry, load_registry, parse_lifetime
from oauth.tokens import NeedsSignIn, TokenService
from storage.crypto import TokenCipher
from storage.database import Database
from storage.models import Connection, ConnectionStatus, Owner, ProviderAccount
from tests.conftest import TEST_TOKEN_KEY
from tests.support.data import ADMIN
from tests.support.sandbox import (
    CLIENT_ID,
    CLIENT_SECRET,
    SECRET_VARIABLE,
    RunningSandbox,
    run_sandbox,
    sandbox_config,
)

REPO = Path(__file__).resolve().parents[1]
IDLE_S = 3600


def apps_text(sandbox: RunningSandbox, key: str, extra: str = "") -> str:
    return (
        f"[apps.{key}]\n"
        'preset = "sandbox"\n'
        f'base_url = "{sandbox.base_url}"\n'
        f'client_id = "{CLIENT_ID}"\n'
        f'client_secret_env = "{SECRET_VARIABLE}"\n'
        f"{extra}"
    )


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with run_sandbox(sandbox_config(refresh_token_idle_lifetime=IDLE_S)) as running:
        yield running


def mint(sandbox: RunningSandbox, user: str = "jane", *, expires_in: int = 3600) -> TokenSet:
    """Tokens the sandbox issued to `user` (its own records, as a sign-in leaves them)."""
    from sandbox.server import Token

    state = sandbox.state
    token = Token(
        access_token=secrets.token_urlsafe(24),
        refresh_token=secrets.token_urlsafe(24),
        client=state.clients[CLIENT_ID],
        user=state.users[user],
        scope="profile email",
        issued_at=time.time(),
        expires_in=expires_in,
        grant_id=secrets.token_hex(8),
    )
    state.save_token(token)
    return TokenSet(
        access_token=token.access_token,
        refresh_token=token.refresh_token,
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
        scopes=["profile", "email"],
        raw_fields={},
    )


@dataclass
class Keeper:
    database: Database
    sandbox: RunningSandbox
    providers: ProviderRegistry
    cipher: TokenCipher
    tokens: TokenService
    keep_alive: KeepAlive
    apps_file: Path
    broken: list[str]

    async def connection(
        self, app: str, *, person: str = "jane", parent: bool = False, expires_in: int = 3600
    ) -> Connection:
        tokens = self.cipher.seal(mint(self.sandbox, expires_in=expires_in).as_record())
        who = Owner(tenant_id="tenant-contoso", aad_object_id=f"aad-{person}", name=person)
        account = ProviderAccount(id=f"user-{person}", display_name=f"{person}@sandbox.example")
        store = self.database.connections
        top = await store.create_parent(
            provider=app, owner=ADMIN, account=account, tokens=tokens if parent else None
        )
        if parent:
            return top
        return await store.create_runtime(
            parent_id=top.id, owner=who, account=account, tokens=tokens
        )

    async def let_time_pass(self, seconds: int) -> None:
        """As if `seconds` passed: the sandbox's refresh tokens and the records' issue times age
        alike (access tokens are left alone)."""
        self.sandbox.control(age_refresh_tokens=seconds)
        records = self.database.db["connections"]
        async for document in records.find({"tokens_issued_at": {"$ne": None}}):
            await records.update_one(
                {"_id": document["_id"]},
                {
                    "$set": {
                        "tokens_issued_at": document["tokens_issued_at"]
                        - timedelta(seconds=seconds)
                    }
                },
            )

    async def record(self, connection: Connection) -> Connection:
        stored = await self.database.connections.get(connection.id)
        assert stored is not None
        return stored


async def keeper_for(
    database: Database,
    sandbox: RunningSandbox,
    apps: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    **options: float,
) -> Keeper:
    monkeypatch.setenv(SECRET_VARIABLE, CLIENT_SECRET)
    apps_file = tmp_path / "apps.toml"
    apps_file.write_text(apps)
    providers = load_registry(apps_file)
    cipher = TokenCipher([TEST_TOKEN_KEY])
    broken: list[str] = []
    tokens = TokenService(
        providers=providers,
        connections=database.connections,
        cipher=cipher,
        on_break=broken.append,
    )
    keep_alive = KeepAlive(
        providers=providers,
        store=database.connections,
        tokens=tokens,
        leases=database.leases,
        interval_s=60,
        jitter_s=0.01,
        **options,  # type: ignore[arg-type]
    )
    return Keeper(database, sandbox, providers, cipher, tokens, keep_alive, apps_file, broken)


@pytest.fixture
async def keeper(
    database: Database, sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Keeper]:
    apps = apps_text(sandbox, "boxlike", f'refresh_token_idle_lifetime = "{IDLE_S}s"\n')
    apps += apps_text(sandbox, "plain")
    apps += apps_text(sandbox, "background", "keep_access_token_fresh = true\n")
    yield await keeper_for(database, sandbox, apps, tmp_path, monkeypatch)


def test_lifetimes_are_read_as_people_write_them() -> None:
    assert parse_lifetime("60d") == timedelta(days=60)
    assert parse_lifetime(" 12h ") == timedelta(hours=12)
    assert parse_lifetime("30m") == timedelta(minutes=30)
    assert parse_lifetime("90s") == timedelta(seconds=90)
    assert parse_lifetime("never") is None
    for wrong in ("60", "0d", "-1d", "1.5d", "60 days", "", "d"):
        with pytest.raises(ValueError, match="not a lifetime"):
            parse_lifetime(wrong)


def test_presets_know_which_providers_expire_unused_refresh_tokens(tmp_path: Path) -> None:
    path = tmp_path / "apps.toml"
    path.write_text(
        '[apps.box]\npreset = "box"\nclient_id = "b"\n'
        '[apps.graph]\npreset = "microsoft_graph"\nclient_id = "g"\n'
        '[apps.sf]\npreset = "salesforce"\nclient_id = "s"\n'
        '[apps.sf_policy]\npreset = "salesforce"\nclient_id = "s"\n'
        'refresh_token_idle_lifetime = "30d"\n'
        '[apps.box_never]\npreset = "box"\nclient_id = "b"\nrefresh_token_idle_lifetime = "never"\n'
    )
    registry = load_registry(path)
    lifetimes = {k: p.refresh_token_idle_lifetime for k, p in registry.providers.items()}
    assert lifetimes == {
        "box": timedelta(days=60),
        "graph": timedelta(days=90),
        "sf": None,
        "sf_policy": timedelta(days=30),
        "box_never": None,
    }


def test_a_wrong_lifetime_names_the_file_and_the_key(tmp_path: Path) -> None:
    from oauth.providers import AppsConfigError

    path = tmp_path / "apps.toml"
    path.write_text(
        '[apps.box]\npreset = "box"\nclient_id = "b"\nrefresh_token_idle_lifetime = "2 months"\n'
    )
    with pytest.raises(AppsConfigError) as raised:
        load_registry(path)
    assert "apps.box.refresh_token_idle_lifetime" in str(raised.value)
    assert "not a lifetime" in str(raised.value)


async def test_an_idle_refresh_token_lapses_unless_kept_alive(keeper: Keeper) -> None:
    """Two connections nobody uses: the one whose app declares the idle lifetime is refreshed
    before it lapses and keeps working; the other lapses at the provider."""
    kept = await keeper.connection("boxlike")
    left = await keeper.connection("plain")
    await keeper.let_time_pass(IDLE_S * 6 // 10)  # past half the idle lifetime

    report = await keeper.keep_alive.round()
    assert report is not None and report.refreshed == 1 and report.broken == 0
    assert keeper.sandbox.stats()["token.refresh_token"] == 1
    assert (await keeper.record(kept)).last_refreshed_at is not None
    assert (await keeper.record(left)).last_refreshed_at is None

    await keeper.let_time_pass(IDLE_S * 6 // 10)  # the untouched one is now past its lifetime
    # The app refuses the access tokens (a 401), so both must refresh now.
    keeper.sandbox.control(expire_access_tokens=True)
    current = await keeper.tokens.access_token(kept.id)
    assert await keeper.tokens.replace_rejected_token(kept.id, current) != current
    with pytest.raises(NeedsSignIn):
        await keeper.tokens.replace_rejected_token(
            left.id, await keeper.tokens.access_token(left.id)
        )
    lapsed = await keeper.record(left)
    assert lapsed.status is ConnectionStatus.NEEDS_REAUTH
    assert lapsed.last_error is not None and lapsed.last_error.code == "invalid_grant"
    assert keeper.broken == [left.id]


async def test_nothing_due_costs_no_refresh(keeper: Keeper) -> None:
    await keeper.connection("boxlike")
    await keeper.connection("background")
    report = await keeper.keep_alive.round()
    assert report is not None and report.refreshed == 0
    assert keeper.sandbox.stats()["token.refresh_token"] == 0


async def test_access_tokens_used_in_the_background_are_refreshed_ahead(keeper: Keeper) -> None:
    """Parents and connections of apps marked `keep_access_token_fresh` get a new access token
    before theirs expires; a person's connection of another app waits until it is used."""
    soon = 90  # expires before the next round (60 s) plus the margin (5 min)
    parent = await keeper.connection("plain", parent=True, expires_in=soon)
    background = await keeper.connection("background", expires_in=soon)
    personal = await keeper.connection("plain", person="omar", expires_in=soon)
    later = await keeper.connection("background", person="omar", expires_in=3600)

    report = await keeper.keep_alive.round()
    assert report is not None and report.refreshed == 2
    assert (await keeper.record(parent)).last_refreshed_at is not None
    assert (await keeper.record(background)).last_refreshed_at is not None
    assert (await keeper.record(personal)).last_refreshed_at is None
    assert (await keeper.record(later)).last_refreshed_at is None
    fresh = await keeper.record(parent)
    assert fresh.tokens is not None and fresh.tokens.expires_at is not None
    assert fresh.tokens.expires_at > datetime.now(UTC) + timedelta(minutes=30)


async def test_a_refused_refresh_marks_needs_sign_in_once(keeper: Keeper) -> None:
    connection = await keeper.connection("boxlike")
    await keeper.let_time_pass(IDLE_S * 6 // 10)
    keeper.sandbox.control(fail_refresh_with="invalid_grant", fail_refresh_times=5)
    report = await keeper.keep_alive.round()
    assert report is not None and report.broken == 1 and report.refreshed == 0
    stored = await keeper.record(connection)
    assert stored.status is ConnectionStatus.NEEDS_REAUTH and stored.tokens is None
    document = await keeper.database.db["connections"].find_one({"_id": ObjectId(connection.id)})
    assert document is not None and document["notice"]["reason"] == "invalid_grant"
    assert keeper.broken == [connection.id]
    again = await keeper.keep_alive.round()
    assert again is not None and again.broken == 0  # no longer connected: not due
    assert keeper.broken == [connection.id]


async def test_an_unreachable_provider_does_not_stall_the_others(
    database: Database, sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One app's provider is down: after a few failures in a row the round leaves that app
    alone, and every connection of the healthy app is refreshed in the same round."""
    with run_sandbox(sandbox_config()) as down:
        lifetime = f'refresh_token_idle_lifetime = "{IDLE_S}s"\n'
        apps = apps_text(sandbox, "healthy", lifetime) + apps_text(down, "down", lifetime)
        keeper = await keeper_for(
            database, sandbox, apps, tmp_path, monkeypatch, per_app=2, failures_before_skip=3
        )
        down.control(down=True)
        healthy = [await keeper.connection("healthy", person=f"p{i}") for i in range(12)]
        for i in range(20):
            await keeper.connection("down", person=f"q{i}")
        await keeper.let_time_pass(IDLE_S * 6 // 10)
        report = await keeper.keep_alive.round()
        assert report is not None
        assert report.refreshed == len(healthy)
        assert report.skipped_apps == ["down"]
        # At most the failures in a row plus those already under way when the app was left.
        assert 3 <= down.stats()["token.refresh_token"] <= 3 + 2
        assert report.broken == 0


async def test_one_round_at_a_time_across_processes(keeper: Keeper) -> None:
    other = KeepAlive(
        providers=keeper.providers,
        store=keeper.database.connections,
        tokens=keeper.tokens,
        leases=keeper.database.leases,
        interval_s=60,
    )
    first = await keeper.keep_alive.round()
    second = await other.round()
    assert first is not None and second is None


# --- two processes, 500 due connections ------------------------------------------------------


async def test_500_due_connections_across_two_processes_cost_exactly_500_refreshes(
    keeper: Keeper, mongodb_uri: str
) -> None:
    """Two bot processes run the job against one store with a lease much shorter than a round,
    so their rounds overlap: every due connection is refreshed exactly once."""
    count = 500
    due = [await keeper.connection("boxlike", person=f"p{i}") for i in range(count)]
    await keeper.let_time_pass(IDLE_S * 6 // 10)
    started = datetime.now(UTC)
    workers = [await start_worker(keeper, mongodb_uri) for _ in range(2)]
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write(b"go\n")
        await worker.stdin.drain()
    results = []
    for worker in workers:
        out, _ = await asyncio.wait_for(worker.communicate(), 120)
        assert worker.returncode == 0
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    assert keeper.sandbox.stats()["token.refresh_token"] == count
    assert sum(result["refreshed"] for result in results) == count
    assert all(result["broken"] == 0 and result["unavailable"] == 0 for result in results)
    # Both processes did part of the work (their rounds overlapped).
    assert all(result["refreshed"] > 0 for result in results)
    for connection in due:
        stored = await keeper.record(connection)
        assert stored.status is ConnectionStatus.CONNECTED
        assert stored.tokens_issued_at is not None and stored.tokens_issued_at >= started


async def start_worker(keeper: Keeper, mongodb_uri: str) -> asyncio.subprocess.Process:
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.keep_alive_worker",
        "--mongodb-uri",
        mongodb_uri,
        "--database",
        keeper.database.db.name,
        "--apps-file",
        str(keeper.apps_file),
        f"--key={TEST_TOKEN_KEY}",
        "--lease-s",
        "0.2",
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert worker.stdout is not None
    assert (await asyncio.wait_for(worker.stdout.readline(), 60)).strip() == b"ready"
    return worker


async def test_a_record_from_before_issue_times_were_kept_is_refreshed_once(
    keeper: Keeper,
) -> None:
    connection = await keeper.connection("boxlike")
    await keeper.database.db["connections"].update_one(
        {"_id": ObjectId(connection.id)}, {"$unset": {"tokens_issued_at": ""}}
    )
    first = await keeper.keep_alive.round(lease_for=timedelta(seconds=1))
    assert first is not None and first.refreshed == 1
    assert (await keeper.record(connection)).tokens_issued_at is not None
    keeper.keep_alive.holder = "next round"
    await keeper.database.db["leases"].delete_many({})
    second = await keeper.keep_alive.round()
    assert second is not None and second.refreshed == 0
    assert keeper.sandbox.stats()["token.refresh_token"] == 1
