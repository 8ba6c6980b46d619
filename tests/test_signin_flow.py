"""Verified runtime sign-in over real HTTP against the sandbox OAuth2 provider.

Login card → /auth/start → consent at the sandbox → /auth/callback → /auth/done (code) →
`signin/verifyState` or the typed code → a runtime connection that is provably the person's.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from cryptography.fernet import Fernet

import messages
from admin.cli import main
from app import WIRING_KEY
from bots.activity import IncomingActivity
from bots.delivery import turn_of
from cards import verbs
from oauth.signin import hash_state
from storage.crypto import TokenCipher
from storage.models import Connection, ConnectionStatus, ProviderAccount
from tests.conftest import TEST_TOKEN_KEY, RunningBot, StartBot
from tests.support import activities
from tests.support.activities import JANE, OMAR, Person
from tests.support.data import ADMIN, owner
from tests.support.sandbox import RunningSandbox, authorize


@dataclass
class World:
    bot: RunningBot
    sandbox: RunningSandbox
    parent: Connection
    session: aiohttp.ClientSession
    base_url: str

    async def login_card_url(self, person: Person = JANE) -> str:
        """Reconnect a disconnected connection and return the Login card's button URL."""
        self.bot.connector.clear()
        existing = await self.bot.database.connections.list_for_owner(owner=owner(person))
        if existing:
            connection_id = existing[0].id
        else:
            created = await self.bot.database.connections.create_runtime(
                parent_id=self.parent.id,
                owner=owner(person),
                account=ProviderAccount(id="old", display_name="old@sandbox.example"),
                status=ConnectionStatus.DISCONNECTED,
            )
            connection_id = created.id
        status, body = await self.bot.post(
            activities.card_action(
                person, self.bot.service_url, verbs.RECONNECT, {"connection_id": connection_id}
            )
        )
        assert status == 200, body
        [sent] = [s for s in self.bot.connector.sent if s.activity.get("attachments")]
        [attachment] = sent.activity["attachments"]
        assert attachment["contentType"] == "application/vnd.microsoft.card.signin"
        [button] = attachment["content"]["buttons"]
        assert button["type"] == "signin"
        assert attachment["content"]["text"] == "Sign in to Sandbox to continue"
        return str(button["value"])

    async def start(self, url: str) -> str:
        """GET /auth/start; returns the provider URL it redirects to."""
        async with self.session.get(url, allow_redirects=False) as response:
            assert response.status == 302, await response.text()
            assert response.headers["Referrer-Policy"] == "no-referrer"
            return response.headers["Location"]

    async def callback(self, location: str) -> aiohttp.ClientResponse:
        async with self.session.get(location, allow_redirects=False) as response:
            await response.read()
            return response

    async def sign_in(self, person: Person = JANE, *, user: str = "jane") -> str:
        """The whole browser part; returns the verification code the done page shows."""
        provider_url = await self.start(await self.login_card_url(person))
        callback = await authorize(self.session, provider_url, user=user)
        response = await self.callback(callback)
        assert response.status == 303
        assert response.headers["Location"] == "/auth/done"
        return await self.done_code()

    async def done_code(self) -> str:
        async with self.session.get(f"{self.base_url}/auth/done") as response:
            assert response.status == 200
            page = await response.text()
        match = re.search(r'id="code">(\d{6})<', page)
        assert match, page
        return match.group(1)

    async def verify(self, person: Person, code: str) -> list[str]:
        self.bot.connector.clear()
        status, _ = await self.bot.post(
            activities.invoke(person, self.bot.service_url, "signin/verifyState", {"state": code})
        )
        assert status == 200
        return [sent.text for sent in self.bot.connector.sent]

    async def type_code(self, person: Person, code: str) -> list[str]:
        self.bot.connector.clear()
        await self.bot.post(activities.message(person, self.bot.service_url, code))
        return [sent.text for sent in self.bot.connector.sent]

    async def runtime_of(self, person: Person) -> Connection | None:
        found = await self.bot.database.connections.list_for_owner(owner=owner(person))
        return found[0] if found else None


@pytest.fixture
async def world(
    start_bot: StartBot,
    sandbox: RunningSandbox,
    apps_file: Path,
    bot_port: int,
) -> AsyncIterator[World]:
    base_url = f"http://127.0.0.1:{bot_port}"
    bot = await start_bot(port=bot_port, apps_file=str(apps_file), public_base_url=base_url)
    parent = await bot.database.connections.create_parent(
        provider="sandbox",
        owner=ADMIN,
        account=ProviderAccount(id="user-omar", display_name="omar@sandbox.example"),
    )
    # unsafe=True: keep cookies from an IP-address host (the bot on 127.0.0.1), as browsers do.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield World(bot, sandbox, parent, session, base_url)


async def test_full_flow_with_verify_state(world: World) -> None:
    """Login card → start → consent → callback → code → verifyState → Connected, tokens sealed."""
    code = await world.sign_in(JANE, user="jane")
    replies = await world.verify(JANE, code)

    assert replies == ["Your Sandbox account jane@sandbox.example is connected."]
    connection = await world.runtime_of(JANE)
    assert connection is not None
    assert connection.status is ConnectionStatus.CONNECTED
    assert connection.account is not None and connection.account.display_name == (
        "jane@sandbox.example"
    )
    assert connection.parent_id == world.parent.id
    assert connection.tokens is not None
    assert world.sandbox.stats()["token.authorization_code"] == 1
    assert world.sandbox.stats()["userinfo"] == 1


async def test_full_flow_with_typed_code(world: World) -> None:
    """The 6-digit code typed in the 1:1 chat completes the sign-in just the same."""
    code = await world.sign_in(JANE, user="jane")
    replies = await world.type_code(JANE, code)
    assert replies == ["Your Sandbox account jane@sandbox.example is connected."]
    connection = await world.runtime_of(JANE)
    assert connection is not None and connection.status is ConnectionStatus.CONNECTED


async def test_authorize_redirect_uses_pkce_and_the_configured_provider(world: World) -> None:
    """/auth/start redirects only to the configured authorize URL, with state and PKCE S256."""
    provider_url = await world.start(await world.login_card_url(JANE))
    parts = urlsplit(provider_url)
    query = parse_qs(parts.query)
    assert provider_url.startswith(f"{world.sandbox.base_url}/oauth/authorize?")
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    assert query["redirect_uri"] == [f"{world.base_url}/auth/callback"]
    assert query["client_id"] == ["sandbox-client"]
    assert len(query["state"][0]) >= 32


async def test_used_code_repeated_changes_nothing(world: World) -> None:
    """verifyState twice and the code typed too: one connection, one audit, a calm answer."""
    code = await world.sign_in(JANE, user="jane")
    await world.verify(JANE, code)
    again = await world.verify(JANE, code)
    typed = await world.type_code(JANE, code)

    assert again == [
        messages.SIGNIN_ALREADY_USED.format(app="Sandbox", account="jane@sandbox.example")
    ]
    assert typed == again
    connection = await world.runtime_of(JANE)
    assert connection is not None
    events = await world.bot.database.audit.for_connection(connection.id)
    assert [e.action for e in events].count("connection.reconnected") == 1


async def test_cancelled_by_user(world: World) -> None:
    """`CancelledByUser` discards the pending sign-in; nothing is connected."""
    await world.start(await world.login_card_url(JANE))
    replies = await world.verify(JANE, "CancelledByUser")
    assert replies == [messages.SIGNIN_CANCELLED]
    assert await world.bot.database.login_states.pending_for(owner(JANE)) == []
    connection = await world.runtime_of(JANE)
    assert connection is not None and connection.status is ConnectionStatus.DISCONNECTED


async def test_access_denied_writes_nothing(world: World) -> None:
    """Deny at the provider: a clear page with reason access_denied, no tokens anywhere."""
    provider_url = await world.start(await world.login_card_url(JANE))
    callback = await authorize(world.session, provider_url, decision="deny")
    response = await world.callback(callback)
    assert response.status == 403
    async with world.session.get(callback, allow_redirects=False) as again:
        page = await again.text()
    assert "invalid_state" in page  # the state was used up by the first callback
    assert world.sandbox.stats().get("token.authorization_code", 0) == 0
    raw = await world.bot.database.db["login_states"].find_one({})
    assert raw is not None and raw["step"] == "failed" and raw.get("tokens") is None


async def test_expired_state_is_refused(world: World) -> None:
    """A state older than ten minutes is refused with expired_state; no code is exchanged."""
    provider_url = await world.start(await world.login_card_url(JANE))
    callback = await authorize(world.session, provider_url, user="jane")
    await world.bot.database.db["login_states"].update_many(
        {}, {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}}
    )
    response = await world.callback(callback)
    assert response.status == 410
    assert world.sandbox.stats().get("token.authorization_code", 0) == 0


async def test_replayed_state_is_refused(world: World) -> None:
    """The callback URL used twice: the second time is invalid_state, nothing exchanged again."""
    provider_url = await world.start(await world.login_card_url(JANE))
    callback = await authorize(world.session, provider_url, user="jane")
    first = await world.callback(callback)
    second = await world.callback(callback)
    assert first.status == 303
    assert second.status == 400
    assert world.sandbox.stats()["token.authorization_code"] == 1


@pytest.mark.parametrize("state", ["", "tampered", "x" * 300])
async def test_tampered_or_missing_state_is_refused(world: World, state: str) -> None:
    """A callback whose state matches no sign-in is invalid_state and writes nothing."""
    provider_url = await world.start(await world.login_card_url(JANE))
    callback = await authorize(world.session, provider_url, user="jane")
    tampered = re.sub(r"state=[^&]*", f"state={state}", callback)
    response = await world.callback(tampered)
    assert response.status == 400
    assert world.sandbox.stats().get("token.authorization_code", 0) == 0
    raw = await world.bot.database.db["login_states"].find_one({})
    assert raw is not None and raw["step"] == "started"


async def test_missing_code_is_refused(world: World) -> None:
    """A callback without a code is missing_code."""
    provider_url = await world.start(await world.login_card_url(JANE))
    callback = await authorize(world.session, provider_url, user="jane")
    response = await world.callback(re.sub(r"code=[^&]*&?", "", callback))
    assert response.status == 400


async def test_bad_code_is_invalid_code(world: World) -> None:
    """A code the provider rejects is invalid_code; nothing is stored."""
    provider_url = await world.start(await world.login_card_url(JANE))
    callback = await authorize(world.session, provider_url, user="jane")
    response = await world.callback(re.sub(r"code=[^&]*", "code=forged", callback))
    assert response.status == 400
    raw = await world.bot.database.db["login_states"].find_one({})
    assert raw is not None and raw.get("tokens") is None and raw.get("code_hash") is None


async def test_provider_down_is_provider_error(world: World) -> None:
    """The token endpoint failing: provider_error (502), nothing stored."""
    provider_url = await world.start(await world.login_card_url(JANE))
    callback = await authorize(world.session, provider_url, user="jane")
    world.sandbox.control(down=True)
    response = await world.callback(callback)
    assert response.status == 502
    raw = await world.bot.database.db["login_states"].find_one({})
    assert raw is not None and raw.get("tokens") is None


async def test_wrong_code_discards_the_pending_sign_in(world: World) -> None:
    """A wrong code: the pending sign-in is discarded and the person is told to start again."""
    code = await world.sign_in(JANE, user="jane")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    replies = await world.verify(JANE, wrong)
    assert replies == [messages.SIGNIN_WRONG_CODE]
    after = await world.verify(JANE, code)
    # The sign-in is void: the right code no longer works, and the person is told again.
    assert after == [messages.SIGNIN_WRONG_CODE]
    connection = await world.runtime_of(JANE)
    assert connection is not None and connection.status is ConnectionStatus.DISCONNECTED


async def test_code_typed_by_another_user_binds_nothing(world: World) -> None:
    """Jane's code sent by Omar connects nothing for either of them."""
    code = await world.sign_in(JANE, user="jane")
    replies = await world.verify(OMAR, code)
    assert replies == []  # Omar has nothing pending: it is not a code for him
    assert await world.runtime_of(OMAR) is None
    jane = await world.runtime_of(JANE)
    assert jane is not None and jane.status is ConnectionStatus.DISCONNECTED
    # Jane can still finish her own sign-in.
    assert await world.verify(JANE, code) == [
        "Your Sandbox account jane@sandbox.example is connected."
    ]


async def test_forwarded_link_completed_by_someone_else_binds_nothing(world: World) -> None:
    """Jane's link opened by Omar, who consents as himself and types the code he sees: nothing
    is bound to anyone, and Jane's connection is unchanged."""
    url = await world.login_card_url(JANE)
    await world.login_card_url(OMAR)  # Omar has a sign-in of his own pending too
    provider_url = await world.start(url)
    callback = await authorize(world.session, provider_url, user="omar")
    await world.callback(callback)
    code_omar_sees = await world.done_code()

    replies = await world.verify(OMAR, code_omar_sees)

    assert replies == [messages.SIGNIN_WRONG_CODE]
    jane = await world.runtime_of(JANE)
    assert jane is not None and jane.status is ConnectionStatus.DISCONNECTED
    assert jane.account is not None and jane.account.display_name == "old@sandbox.example"
    omar = await world.runtime_of(OMAR)
    assert omar is not None and omar.status is ConnectionStatus.DISCONNECTED


async def test_reconnect_with_a_different_account_updates_and_audits(world: World) -> None:
    """Signing in again with another account updates the one connection and audits the change."""
    await world.verify(JANE, await world.sign_in(JANE, user="jane"))
    first = await world.runtime_of(JANE)
    assert first is not None
    await world.bot.post(
        activities.card_action(
            JANE, world.bot.service_url, verbs.DISCONNECT, {"connection_id": first.id}
        )
    )

    replies = await world.verify(JANE, await world.sign_in(JANE, user="alex"))

    assert replies == ["Your Sandbox account alex@sandbox.example is connected."]
    connections = await world.bot.database.connections.list_for_owner(owner=owner(JANE))
    assert [c.id for c in connections] == [first.id]
    assert connections[0].account is not None
    assert connections[0].account.display_name == "alex@sandbox.example"
    actions = [e.action for e in await world.bot.database.audit.for_connection(first.id)]
    assert "connection.account_changed" in actions


async def test_new_sign_in_replaces_the_pending_one(world: World) -> None:
    """At most one pending sign-in per person and parent: a new Login card replaces the old."""
    first_url = await world.login_card_url(JANE)
    await world.login_card_url(JANE)
    pending = await world.bot.database.login_states.pending_for(owner(JANE))
    assert len(pending) == 1
    async with world.session.get(first_url, allow_redirects=False) as response:
        assert response.status == 400


async def test_nothing_secret_in_documents_pages_or_logs(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Codes, tokens, verifier and state never appear in logs or raw documents."""
    with caplog.at_level(logging.DEBUG):
        url = await world.login_card_url(JANE)
        state = parse_qs(urlsplit(url).query)["state"][0]
        pending = await world.bot.database.login_states.find_by_state(hash_state(state))
        assert pending is not None and pending.verifier is not None
        verifier = world.bot.client.server.app[WIRING_KEY].signin.cipher.open_text(pending.verifier)
        provider_url = await world.start(url)
        callback = await authorize(world.session, provider_url, user="jane")
        authorization_code = parse_qs(urlsplit(callback).query)["code"][0]
        await world.callback(callback)
        code = await world.done_code()
        await world.verify(JANE, code)

    issued = [*world.sandbox.state.by_access, *world.sandbox.state.by_refresh]
    assert len(issued) == 2
    secrets_seen = [state, authorization_code, code, verifier, *issued]
    # The bot's own log lines: the sandbox is the provider, and what it logs in its request
    # threads (werkzeug's access log, Authlib's server) is the provider's business.
    logged = "\n".join(
        record.getMessage()
        for record in caplog.records
        if record.name != "werkzeug" and "process_request_thread" not in record.threadName
    )
    raw_documents = []
    for name in ("connections", "login_states", "audit_events"):
        raw_documents += [str(doc) async for doc in world.bot.database.db[name].find({})]
    stored = "\n".join(raw_documents)
    for secret in secrets_seen:
        leaks = [line for line in logged.splitlines() if secret in line]
        assert not leaks, leaks[0][:300]
        assert secret not in stored
    assert "access_token" not in stored and "refresh_token" not in stored
    assert TEST_TOKEN_KEY not in logged


async def test_key_rotation_and_reencrypt_command(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a new key is put first, `admin tokens reencrypt` moves stored tokens to it; they
    then open with the new key alone and still hold the token the provider issued."""
    await world.verify(JANE, await world.sign_in(JANE, user="jane"))
    new = Fernet.generate_key().decode()
    monkeypatch.setenv("MONGODB_URI", str(world.bot.settings.mongodb_uri.get_secret_value()))
    monkeypatch.setenv("DATABASE_NAME", world.bot.settings.database_name)
    monkeypatch.setenv("TOKEN_ENCRYPTION_KEYS", f"{new},{TEST_TOKEN_KEY}")
    out = io.StringIO()

    code = await asyncio.to_thread(main, ["tokens", "reencrypt"], out=out)

    assert code == 0
    assert "connections: 1 re-encrypted" in out.getvalue()
    connection = await world.runtime_of(JANE)
    assert connection is not None and connection.tokens is not None
    only_new = TokenCipher([new])
    assert connection.tokens.key_id == only_new.key_id
    opened = only_new.open(connection.tokens)
    assert opened["access_token"] in world.sandbox.state.by_access
    again = io.StringIO()
    await asyncio.to_thread(main, ["tokens", "reencrypt"], out=again)
    assert "connections: 0 re-encrypted" in again.getvalue()


async def test_done_page_loads_teams_js_with_integrity(world: World) -> None:
    """The code page loads the pinned teams-js from the bot with a matching integrity hash and
    sends no referrer; without a result cookie it has nothing to show."""
    provider_url = await world.start(await world.login_card_url(JANE))
    response = await world.callback(await authorize(world.session, provider_url, user="jane"))
    assert response.status == 303
    async with world.session.get(f"{world.base_url}/auth/done") as response:  # the one view
        page = await response.text()
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Cache-Control"] == "no-store"
    match = re.search(r'src="(/auth/static/[^"]+)" integrity="(sha384-[^"]+)"', page)
    assert match, page
    async with world.session.get(world.base_url + match.group(1)) as script:
        body = await script.read()
    digest = "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()
    assert digest == match.group(2)
    assert b"notifySuccess" in body
    async with (
        aiohttp.ClientSession() as stranger,
        stranger.get(f"{world.base_url}/auth/done") as response,
    ):
        assert response.status == 404


async def test_login_card_from_a_channel_goes_to_the_personal_chat(world: World) -> None:
    """Asked for from a channel, the Login card goes to the 1:1 chat; the channel gets a notice
    without any link."""
    app = world.bot.client.server.app
    activity = IncomingActivity.from_json(
        activities.message(JANE, world.bot.service_url, "x", kind="channel", conversation_id="19:c")
    )
    wiring = app[WIRING_KEY]
    turn = turn_of(activity, wiring.proactive)
    await wiring.login_cards.send(turn, owner=owner(JANE), parent=world.parent)

    [private] = world.bot.connector.in_conversation(f"a:private-{JANE.teams_id}")
    [attachment] = private.activity["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.signin"
    [notice] = world.bot.connector.in_conversation("19:c")
    assert "private sign-in card for Sandbox" in notice.text
    assert "/auth/start" not in str(notice.activity)
    [pending] = await world.bot.database.login_states.pending_for(owner(JANE))
    assert pending.conversation["conversation"]["id"] == f"a:private-{JANE.teams_id}"


async def test_reconnect_refuses_connected_and_orphaned_connections(world: World) -> None:
    """Reconnect on a Connected connection, or one whose parent was removed, sends no card."""
    await world.verify(JANE, await world.sign_in(JANE, user="jane"))
    connection = await world.runtime_of(JANE)
    assert connection is not None
    world.bot.connector.clear()
    _, body = await world.bot.post(
        activities.card_action(
            JANE, world.bot.service_url, verbs.RECONNECT, {"connection_id": connection.id}
        )
    )
    assert "there is nothing to reconnect" in str(body["value"])

    await world.bot.post(
        activities.card_action(
            JANE, world.bot.service_url, verbs.DISCONNECT, {"connection_id": connection.id}
        )
    )
    await world.bot.database.connections.delete(world.parent.id)
    _, body = await world.bot.post(
        activities.card_action(
            JANE, world.bot.service_url, verbs.RECONNECT, {"connection_id": connection.id}
        )
    )
    assert "its app connection was removed" in str(body["value"])
    assert not [s for s in world.bot.connector.sent if s.activity.get("attachments")]
