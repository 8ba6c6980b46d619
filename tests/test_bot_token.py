"""The bot's own token for the connector: msal's client credentials grant, once per process.

The identity provider is the sandbox (Authlib) serving OpenID Connect over HTTPS on loopback,
in Entra ID's place (`BOT_TOKEN_AUTHORITY`); incoming activities carry channel tokens signed by
a local key server (tests/support/tokens.py). Time for the refresh-ahead cases is a fake clock
given to `BotTokens`; msal itself sees real time, and the sandbox's short-lived tokens make it
ask the provider each time it is called (msal treats a token within five minutes of expiry as
expired).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bots.bot_token import BotTokens, BotTokenUnavailable, bot_tokens
from sandbox import SandboxClient
from settings import Settings, load_settings
from tests.conftest import RunningBot, StartBot
from tests.support import activities
from tests.support.activities import JANE
from tests.support.sandbox import RunningSandbox, run_sandbox, sandbox_config
from tests.support.tls import LocalTls, make_tls
from tests.support.tokens import SigningKeyServer

APP_ID = "00000000-0000-0000-0000-00000000b07f"
SECRET = "s3cret-from-the-vault"
TENANT = "bot-tenant"
SCOPE = "https://api.botframework.com/.default"


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalTls:
    made = make_tls(tmp_path / "tls")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(made.ca_bundle))
    return made


def _issuer(tls: LocalTls, lifetime: int) -> Iterator[RunningSandbox]:
    client = SandboxClient(
        APP_ID, SECRET, redirect_uris=("http://localhost:3978/unused",), scopes=(SCOPE,)
    )
    config = sandbox_config(clients=(client,), oidc_tenant=TENANT, access_token_lifetime=lifetime)
    with run_sandbox(config, tls=tls.server_context()) as running:
        yield running


@pytest.fixture
def issuer(tls: LocalTls) -> Iterator[RunningSandbox]:
    yield from _issuer(tls, 3600)


@pytest.fixture
def short_lived_issuer(tls: LocalTls) -> Iterator[RunningSandbox]:
    yield from _issuer(tls, 120)


@pytest.fixture
async def signing_keys() -> AsyncIterator[SigningKeyServer]:
    server = SigningKeyServer()
    await server.start()
    yield server
    await server.close()


def token_requests(issuer: RunningSandbox) -> int:
    return issuer.state.stats()["token.client_credentials"]


def settings_for(issuer: RunningSandbox, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "MicrosoftAppId": APP_ID,
        "MicrosoftAppPassword": SECRET,
        "ALLOWED_TENANT_IDS": "*",
        "MONGODB_URI": "mongodb://127.0.0.1:9/",
        "BOT_TOKEN_AUTHORITY": f"{issuer.base_url}/{TENANT}",
    }
    values.update(overrides)
    return load_settings(_env_file=None, **values)


async def secured_bot(
    start_bot: StartBot, issuer: RunningSandbox, signing_keys: SigningKeyServer, **overrides: Any
) -> RunningBot:
    return await start_bot(
        app_id=APP_ID,
        app_password=overrides.pop("app_password", SECRET),
        allowed_tenant_ids="*",
        openid_metadata_url=signing_keys.metadata_url,
        bot_token_authority=f"{issuer.base_url}/{TENANT}",
    )


async def post_signed(bot: RunningBot, keys: SigningKeyServer, activity: dict[str, Any]) -> int:
    token = keys.token(audience=APP_ID, service_url=bot.service_url)
    status, _ = await bot.post(activity, headers={"Authorization": f"Bearer {token}"})
    return status


async def test_replies_carry_one_token_from_the_identity_provider(
    start_bot: StartBot, issuer: RunningSandbox, signing_keys: SigningKeyServer
) -> None:
    """Twenty turns, in parallel and in sequence: every reply carries the bearer token msal got
    from the identity provider with the bot's real secret, and the provider was asked once."""
    bot = await secured_bot(start_bot, issuer, signing_keys)
    first = [activities.message(JANE, bot.service_url, "help") for _ in range(10)]
    statuses = await asyncio.gather(*(post_signed(bot, signing_keys, item) for item in first))
    for _ in range(10):
        statuses.append(
            await post_signed(bot, signing_keys, activities.message(JANE, bot.service_url, "help"))
        )
    assert statuses == [200] * 20
    assert len(bot.connector.sent) == 20
    headers = {sent.authorization for sent in bot.connector.sent}
    assert len(headers) == 1
    [header] = headers
    scheme, _, token = header.partition(" ")
    assert scheme == "Bearer"
    issued = issuer.state.by_access[token]
    assert issued.client.client_id == APP_ID
    assert issued.scope == SCOPE
    assert token_requests(issuer) == 1


async def test_a_wrong_secret_sends_nothing(
    start_bot: StartBot,
    issuer: RunningSandbox,
    signing_keys: SigningKeyServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The provider refuses a wrong secret: no reply goes out without a token, the turn is still
    answered, and the log names the error without the secret."""
    caplog.set_level(logging.INFO)
    bot = await secured_bot(start_bot, issuer, signing_keys, app_password="not-the-secret")
    status = await post_signed(bot, signing_keys, activities.message(JANE, bot.service_url, "help"))
    assert status == 200
    assert bot.connector.sent == []
    assert bot.connector.attempts == 0
    assert "invalid_client" in caplog.text
    assert "not-the-secret" not in caplog.text


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tokens_at(issuer: RunningSandbox, clock: FakeClock) -> BotTokens:
    made = bot_tokens(settings_for(issuer), clock=clock)
    assert made is not None
    return made


async def test_one_request_for_many_waiting_callers(short_lived_issuer: RunningSandbox) -> None:
    """Fifty callers with no token held wait for one request, and all get its token."""
    tokens = tokens_at(short_lived_issuer, FakeClock())
    got = await asyncio.gather(*(tokens.token() for _ in range(50)))
    assert len(set(got)) == 1
    assert token_requests(short_lived_issuer) == 1
    await tokens.close()


async def test_refreshed_ahead_of_expiry_in_the_background(
    short_lived_issuer: RunningSandbox,
) -> None:
    """Before the refresh point the held token is used without asking; past it, callers still
    get the held token at once while one request runs in the background; then the new one."""
    clock = FakeClock()
    tokens = tokens_at(short_lived_issuer, clock)
    first = await tokens.token()
    clock.now += 60  # half the lifetime: nothing to do
    assert await tokens.token() == first
    assert token_requests(short_lived_issuer) == 1

    clock.now += 40  # 20 s left: within the last fifth
    during = await asyncio.gather(*(tokens.token() for _ in range(20)))
    assert set(during) == {first}
    refreshing = tokens._refreshing
    assert refreshing is not None
    await refreshing
    assert token_requests(short_lived_issuer) == 2
    second = await tokens.token()
    assert second != first
    assert token_requests(short_lived_issuer) == 2
    await tokens.close()


async def test_a_failing_provider_costs_nothing_while_a_token_is_held(
    short_lived_issuer: RunningSandbox,
) -> None:
    """The provider goes down after the first token: turns keep the held token, the refresh is
    not retried on every call, and once the token has expired callers are told, quickly."""
    clock = FakeClock()
    tokens = tokens_at(short_lived_issuer, clock)
    held = await tokens.token()
    short_lived_issuer.state.control(down=True)

    clock.now += 100  # due for a refresh, still valid
    assert await tokens.token() == held
    refreshing = tokens._refreshing
    assert refreshing is not None
    with pytest.raises(BotTokenUnavailable):
        await refreshing
    for _ in range(10):
        assert await tokens.token() == held
    assert token_requests(short_lived_issuer) == 2  # the first token and one failed refresh

    clock.now += 100  # expired, and past the pause after a failure
    async with asyncio.timeout(15):
        with pytest.raises(BotTokenUnavailable):
            await tokens.token()
    await tokens.close()


def test_authority_follows_the_app_type() -> None:
    """Without BOT_TOKEN_AUTHORITY: Entra ID at botframework.com, or the app's own tenant."""
    base = {"MicrosoftAppId": APP_ID, "MicrosoftAppPassword": SECRET, "ALLOWED_TENANT_IDS": "*"}
    base["MONGODB_URI"] = "mongodb://127.0.0.1:9/"
    multi = load_settings(_env_file=None, **base)
    single = load_settings(
        _env_file=None, **base, MicrosoftAppType="SingleTenant", MicrosoftAppTenantId="t-1"
    )
    assert multi.bot_authority == "https://login.microsoftonline.com/botframework.com"
    assert single.bot_authority == "https://login.microsoftonline.com/t-1"
    assert bot_tokens(load_settings(_env_file=None)) is None  # authentication off: no token


async def test_a_managed_identity_gets_the_token_from_its_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MicrosoftAppType=UserAssignedMSI: msal asks the managed identity endpoint (App Service's
    wire format, served on loopback) for the Bot Framework resource, once, as that identity."""
    seen: list[dict[str, str]] = []

    async def identity(request: web.Request) -> web.Response:
        seen.append({**request.query, "header": request.headers.get("X-IDENTITY-HEADER", "")})
        expires_on = int(time.time()) + 3600
        return web.json_response(
            {
                "access_token": "msi-token",
                "expires_on": str(expires_on),
                "resource": request.query.get("resource"),
                "token_type": "Bearer",
            }
        )

    app = web.Application()
    app.router.add_get("/msi/token", identity)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        monkeypatch.setenv("IDENTITY_ENDPOINT", str(server.make_url("/msi/token")))
        monkeypatch.setenv("IDENTITY_HEADER", "header-secret")
        settings = load_settings(
            _env_file=None,
            MicrosoftAppId=APP_ID,
            MicrosoftAppType="UserAssignedMSI",
            MicrosoftAppTenantId="t-1",
            ALLOWED_TENANT_IDS="*",
            MONGODB_URI="mongodb://127.0.0.1:9/",
        )
        tokens = bot_tokens(settings)
        assert tokens is not None
        assert await tokens.token() == "msi-token"
        assert await tokens.token() == "msi-token"
        await tokens.close()
    finally:
        await server.close()
    [request] = seen
    assert request["client_id"] == APP_ID
    assert request["resource"] == "https://api.botframework.com"
    assert request["header"] == "header-secret"
