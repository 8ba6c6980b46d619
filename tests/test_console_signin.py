"""The admin console's sign-in service against the sandbox OpenID Connect issuer over HTTPS.

msal runs its real authorization code flow (discovery, PKCE, the code exchange) against the
sandbox served with a certificate from a CA made for the test (trusted through
`REQUESTS_CA_BUNDLE`); consent is given on the sandbox's page over HTTP, as a browser would.
Flows and one-time links live in the real database.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import bson
import pytest
from werkzeug.serving import make_server

import messages
from console.signin import (
    ConsoleSignIn,
    SignInFailed,
    SignInFailure,
    id_token_failure,
    safe_return_to,
)
from sandbox import SandboxConfig, create_app
from sandbox.server import SandboxClient
from settings import Settings, load_settings
from storage.admin_sessions import Administrator
from storage.admin_signins import COLLECTION, AdminSignInStore, secret_hash
from storage.crypto import TokenCipher
from storage.database import Database
from storage.models import EncryptedTokens
from tests.conftest import TEST_TOKEN_KEY, free_port
from tests.support.sandbox import (
    CLIENT_ID,
    CLIENT_SECRET,
    RunningSandbox,
    authorize,
    run_sandbox,
    sandbox_config,
)
from tests.support.tls import LocalTls, make_tls

TENANT = "contoso"
PUBLIC_BASE_URL = "http://127.0.0.1:3978"
REDIRECT = f"{PUBLIC_BASE_URL}/admin/callback"
JANE = Administrator(tenant_id=TENANT, object_id="user-jane", name="Jane Doe")
# console.signin silences it when imported; pytest restores the filters after collection.
pytestmark = pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")


def issuer_config() -> SandboxConfig:
    client = SandboxClient(
        CLIENT_ID,
        CLIENT_SECRET,
        redirect_uris=(REDIRECT,),
        scopes=("openid", "profile", "email", "offline_access"),
    )
    return sandbox_config(clients=(client,), oidc_tenant=TENANT)


def oidc_settings(authority: str, **overrides: Any) -> Settings:
    return load_settings(
        _env_file=None,
        ADMIN_OIDC_AUTHORITY=authority,
        ADMIN_CLIENT_ID=CLIENT_ID,
        ADMIN_CLIENT_SECRET=CLIENT_SECRET,
        PUBLIC_BASE_URL=PUBLIC_BASE_URL,
        **overrides,
    )


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalTls:
    made = make_tls(tmp_path / "tls")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(made.ca_bundle))
    return made


@pytest.fixture
def issuer(tls: LocalTls) -> Iterator[RunningSandbox]:
    with run_sandbox(issuer_config(), tls=tls.server_context()) as running:
        yield running


@pytest.fixture
async def store(database: Database) -> AdminSignInStore:
    made = AdminSignInStore(database.db[COLLECTION])
    await made.ensure_indexes()
    return made


@pytest.fixture
def cipher() -> TokenCipher:
    return TokenCipher([TEST_TOKEN_KEY])


MakeSignIn = Callable[..., ConsoleSignIn]


@pytest.fixture
async def make_signin(store: AdminSignInStore, cipher: TokenCipher) -> AsyncIterator[MakeSignIn]:
    made: list[ConsoleSignIn] = []

    def make(settings: Settings, **options: Any) -> ConsoleSignIn:
        signin = ConsoleSignIn(settings, store, cipher, **options)
        made.append(signin)
        return signin

    yield make
    for signin in made:
        await signin.close()


@pytest.fixture
def settings(issuer: RunningSandbox) -> Settings:
    return oidc_settings(f"{issuer.base_url}/{TENANT}")


@pytest.fixture
def signin(make_signin: MakeSignIn, settings: Settings) -> ConsoleSignIn:
    return make_signin(settings)


async def consent(
    tls: LocalTls, auth_uri: str, user: str = "jane", decision: str = "allow"
) -> dict[str, str]:
    """Choose `user` on the sandbox's consent page; the redirect's query, as the routes get it."""
    context = ssl.create_default_context(cafile=str(tls.ca_bundle))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as browser:
        location = await authorize(browser, auth_uri, user=user, decision=decision)
    assert location.startswith(REDIRECT), location
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


async def failure(signin: ConsoleSignIn, query: dict[str, str], binding: str | None) -> Any:
    with pytest.raises(SignInFailed) as failed:
        await signin.finish(query=query, binding=binding)
    return failed.value


async def test_signs_in_with_pkce_and_a_nonce(signin: ConsoleSignIn, tls: LocalTls) -> None:
    assert signin.mode == "oidc"
    started = await signin.start(return_to="/admin/connections?page=2")
    sent = parse_qs(urlsplit(started.url).query)
    assert sent["code_challenge_method"] == ["S256"] and sent["code_challenge"][0]
    assert sent["nonce"][0] and sent["state"][0]
    assert sent["redirect_uri"] == [REDIRECT] and sent["response_mode"] == ["query"]
    assert "openid" in sent["scope"][0].split()
    assert started.binding and started.binding not in repr(started)

    answer = await consent(tls, started.url)
    administrator, return_to = await signin.finish(query=answer, binding=started.binding)
    assert administrator == JANE and not administrator.local_operator
    assert return_to == "/admin/connections?page=2"


async def test_the_stored_flow_is_sealed_and_keyed_by_a_hash(
    signin: ConsoleSignIn, store: AdminSignInStore, cipher: TokenCipher
) -> None:
    started = await signin.start(return_to="/admin/")
    state = parse_qs(urlsplit(started.url).query)["state"][0]
    [document] = await store.collection.find({}).to_list()
    flow = cipher.open(EncryptedTokens.model_validate(document["flow"]))
    assert flow["state"] == state and flow["code_verifier"] and flow["nonce"]
    assert document["_id"] == secret_hash(state) != state
    assert document["binding_hash"] == secret_hash(started.binding)
    stored = bson.encode(document)
    for secret in (state, flow["code_verifier"], flow["nonce"], started.binding):
        assert secret.encode() not in stored
    assert b"code_verifier" not in stored
    assert document["expires_at"] - document["created_at"] == timedelta(minutes=10)


async def test_a_replayed_callback_is_refused(signin: ConsoleSignIn, tls: LocalTls) -> None:
    started = await signin.start(return_to="/admin/")
    answer = await consent(tls, started.url)
    assert (await signin.finish(query=answer, binding=started.binding))[0] == JANE
    failed = await failure(signin, answer, started.binding)
    assert failed.reason is SignInFailure.UNKNOWN_STATE


async def test_of_two_concurrent_callbacks_one_signs_in(
    signin: ConsoleSignIn, tls: LocalTls
) -> None:
    started = await signin.start(return_to="/admin/")
    answer = await consent(tls, started.url)
    results = await asyncio.gather(
        signin.finish(query=answer, binding=started.binding),
        signin.finish(query=answer, binding=started.binding),
        return_exceptions=True,
    )
    assert sorted(type(result).__name__ for result in results) == ["SignInFailed", "tuple"]
    [failed] = [result for result in results if isinstance(result, SignInFailed)]
    assert failed.reason is SignInFailure.UNKNOWN_STATE


@pytest.mark.parametrize("binding", ["another-browser", "", None])
async def test_another_browser_is_refused_and_the_flow_consumed(
    signin: ConsoleSignIn, tls: LocalTls, binding: str | None
) -> None:
    """Login CSRF: a victim's browser handed an attacker's callback has no (or another)
    binding cookie. The flow is gone afterwards, so not even its own browser can use it."""
    started = await signin.start(return_to="/admin/")
    answer = await consent(tls, started.url)
    assert (await failure(signin, answer, binding)).reason is SignInFailure.WRONG_BROWSER
    failed = await failure(signin, answer, started.binding)
    assert failed.reason is SignInFailure.UNKNOWN_STATE


async def test_a_failed_exchange_still_consumes_the_flow(
    signin: ConsoleSignIn, tls: LocalTls
) -> None:
    started = await signin.start(return_to="/admin/")
    answer = await consent(tls, started.url)
    forged = answer | {"code": "not-the-code"}
    failed = await failure(signin, forged, started.binding)
    assert failed.reason is SignInFailure.EXCHANGE_FAILED
    failed = await failure(signin, answer, started.binding)
    assert failed.reason is SignInFailure.UNKNOWN_STATE


@pytest.mark.parametrize("query", [{}, {"state": ""}, {"state": "never-started", "code": "x"}])
async def test_an_unknown_state_is_refused(signin: ConsoleSignIn, query: dict[str, str]) -> None:
    assert (await failure(signin, query, "binding")).reason is SignInFailure.UNKNOWN_STATE


async def test_a_flow_lives_ten_minutes(
    signin: ConsoleSignIn, make_signin: MakeSignIn, settings: Settings, tls: LocalTls
) -> None:
    def later(minutes: int) -> Callable[[], datetime]:
        return lambda: datetime.now(UTC) + timedelta(minutes=minutes)

    in_time = await signin.start(return_to="/admin/")
    answer = await consent(tls, in_time.url)
    administrator, _ = await make_signin(settings, clock=later(9)).finish(
        query=answer, binding=in_time.binding
    )
    assert administrator == JANE

    too_late = await signin.start(return_to="/admin/")
    answer = await consent(tls, too_late.url)
    failed = await failure(make_signin(settings, clock=later(11)), answer, too_late.binding)
    assert failed.reason is SignInFailure.UNKNOWN_STATE


async def test_an_expired_id_token_is_refused(
    make_signin: MakeSignIn, settings: Settings, tls: LocalTls
) -> None:
    """The sandbox's ID tokens live an hour; seen from two hours on, it has expired."""
    signin = make_signin(settings, clock=lambda: datetime.now(UTC) + timedelta(hours=2))
    started = await signin.start(return_to="/admin/")
    answer = await consent(tls, started.url)
    failed = await failure(signin, answer, started.binding)
    assert failed.reason is SignInFailure.INVALID_CLAIMS


async def test_the_providers_error_is_kept_but_not_its_description(
    signin: ConsoleSignIn, tls: LocalTls, caplog: pytest.LogCaptureFixture
) -> None:
    started = await signin.start(return_to="/admin/")
    answer = await consent(tls, started.url, decision="deny")
    assert answer["error"] == "access_denied" and answer.get("error_description")
    with caplog.at_level(logging.DEBUG, logger="console"):
        failed = await failure(signin, answer, started.binding)
    assert failed.reason is SignInFailure.PROVIDER_ERROR
    assert failed.provider_error == "access_denied"
    assert "access_denied" in caplog.text
    assert answer["error_description"] not in caplog.text
    # Denied, the flow is used up as well.
    failed = await failure(signin, answer, started.binding)
    assert failed.reason is SignInFailure.UNKNOWN_STATE


@pytest.mark.parametrize(
    ("allowed", "admitted"), [("fabrikam", False), ("fabrikam,contoso", True), ("*", True)]
)
async def test_only_allowed_tenants_sign_in(
    make_signin: MakeSignIn, issuer: RunningSandbox, tls: LocalTls, allowed: str, admitted: bool
) -> None:
    settings = oidc_settings(f"{issuer.base_url}/{TENANT}", ALLOWED_TENANT_IDS=allowed)
    signin = make_signin(settings)
    started = await signin.start(return_to="/admin/")
    answer = await consent(tls, started.url)
    if admitted:
        assert (await signin.finish(query=answer, binding=started.binding))[0] == JANE
    else:
        failed = await failure(signin, answer, started.binding)
        assert failed.reason is SignInFailure.TENANT_NOT_ALLOWED


@pytest.mark.parametrize(
    ("asked", "kept"),
    [
        ("https://evil.example/admin/", "/admin/"),
        ("//evil.example/admin/", "/admin/"),
        ("/\\evil.example", "/admin/"),
        ("/admin/\\evil.example", "/admin/"),
        ("/other", "/admin/"),
        ("/admin/../other", "/admin/"),
        ("/admin/%2e%2e/other", "/admin/"),
        ("/admin/x\r\nSet-Cookie: a=b", "/admin/"),
        ("javascript:alert(1)", "/admin/"),
        ("", "/admin/"),
        ("/admin/connections?tenant=t1#top", "/admin/connections?tenant=t1#top"),
    ],
)
async def test_return_to_stays_in_the_console(
    signin: ConsoleSignIn, tls: LocalTls, asked: str, kept: str
) -> None:
    started = await signin.start(return_to=asked)
    answer = await consent(tls, started.url)
    assert await signin.finish(query=answer, binding=started.binding) == (JANE, kept)


def test_safe_return_to_more_shapes() -> None:
    for hostile in ("/admin", "///evil", "/ADMIN/", "/admin/%5Cevil", "/admin/\x00", "/admin/\t"):
        assert safe_return_to(hostile) == "/admin/", hostile
    assert safe_return_to(None) == "/admin/"
    assert safe_return_to("/admin/" + "a" * 5000) == "/admin/"
    assert safe_return_to("/admin//double") == "/admin//double"


def test_id_token_checks() -> None:
    now = datetime.now(UTC)
    good = {
        "iss": "https://issuer/contoso",
        "aud": CLIENT_ID,
        "exp": int(now.timestamp()) + 600,
        "tid": "contoso",
    }

    def check(claims: dict[str, Any], issuer: str = "https://issuer/contoso") -> str | None:
        return id_token_failure(claims, issuer=issuer, client_id=CLIENT_ID, now=now)

    assert check(good) is None
    assert check(good | {"iss": "https://issuer/fabrikam"}) == "issuer"
    assert check(good | {"aud": "another-client"}) == "audience"
    assert check(good | {"aud": [CLIENT_ID]}) is None
    assert check(good | {"aud": [CLIENT_ID, "another"]}) == "audience"
    assert check(good | {"aud": [CLIENT_ID, "another"], "azp": CLIENT_ID}) is None
    assert check(good | {"exp": int(now.timestamp()) - 600}) == "expiry"
    assert check(good | {"exp": "tomorrow"}) == "expiry"
    assert check({k: v for k, v in good.items() if k != "exp"}) == "expiry"
    # Entra's multi-tenant issuer stands for the token's own tenant.
    entra = "https://login.microsoftonline.com/{tenantid}/v2.0"
    own = good | {"iss": "https://login.microsoftonline.com/contoso/v2.0"}
    assert check(own, entra) is None
    assert check(own | {"tid": "fabrikam"}, entra) == "issuer"
    assert check({k: v for k, v in own.items() if k != "tid"}, entra) == "issuer"


def test_every_failure_has_a_sentence() -> None:
    for reason in SignInFailure:
        assert SignInFailed(reason).sentence == messages.CONSOLE_SIGNIN_FAILURES[reason.value]


async def test_nothing_secret_is_logged(
    signin: ConsoleSignIn, tls: LocalTls, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="console"):
        started = await signin.start(return_to="/admin/")
        answer = await consent(tls, started.url)
        await failure(signin, answer, "wrong")
        again = await signin.start(return_to="/admin/")
        second = await consent(tls, again.url)
        await signin.finish(query=second, binding=again.binding)
        await failure(signin, second, again.binding)
    secrets = [answer["state"], answer["code"], second["state"], second["code"]]
    secrets += [started.binding, again.binding]
    logged = "\n".join(
        record.getMessage() for record in caplog.records if record.name.startswith("console")
    )
    assert "wrong_browser" in logged and "unknown_state" in logged
    assert not [secret for secret in secrets if secret in logged]


# --- The issuer unreachable -------------------------------------------------------------------


@contextmanager
def black_hole() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung issuer)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


@contextmanager
def issuer_on(port: int, tls: LocalTls) -> Iterator[None]:
    """The sandbox issuer on a given port (run_sandbox picks its own)."""
    server = make_server(
        "127.0.0.1",
        port,
        create_app(issuer_config()),
        threaded=True,
        ssl_context=tls.server_context(),
    )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_a_hung_issuer_is_unavailable_within_the_timeout(
    make_signin: MakeSignIn, tls: LocalTls
) -> None:
    with black_hole() as port:
        signin = make_signin(oidc_settings(f"https://127.0.0.1:{port}/{TENANT}"), timeout_s=0.5)
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(SignInFailed) as failed:
            await signin.start(return_to="/admin/")
        assert failed.value.reason is SignInFailure.UNAVAILABLE
        assert loop.time() - began < 2.5


async def test_an_unreachable_issuer_is_tried_again_on_the_next_sign_in(
    make_signin: MakeSignIn, tls: LocalTls
) -> None:
    port = free_port()  # nothing listens there yet
    signin = make_signin(oidc_settings(f"https://127.0.0.1:{port}/{TENANT}"), timeout_s=3)
    with pytest.raises(SignInFailed) as failed:
        await signin.start(return_to="/admin/")
    assert failed.value.reason is SignInFailure.UNAVAILABLE
    with issuer_on(port, tls):
        started = await signin.start(return_to="/admin/")
        answer = await consent(tls, started.url)
        assert (await signin.finish(query=answer, binding=started.binding))[0] == JANE


async def test_a_hung_token_endpoint_is_unavailable_within_the_timeout(
    make_signin: MakeSignIn, settings: Settings, issuer: RunningSandbox, tls: LocalTls
) -> None:
    signin = make_signin(settings, timeout_s=1)
    started = await signin.start(return_to="/admin/")
    answer = await consent(tls, started.url)
    issuer.control(hang_s=3)
    loop = asyncio.get_running_loop()
    began = loop.time()
    failed = await failure(signin, answer, started.binding)
    assert failed.reason is SignInFailure.UNAVAILABLE
    assert loop.time() - began < 2.5


async def test_a_token_endpoint_that_is_down_is_unavailable(
    signin: ConsoleSignIn, issuer: RunningSandbox, tls: LocalTls
) -> None:
    started = await signin.start(return_to="/admin/")
    answer = await consent(tls, started.url)
    issuer.control(down=True)
    failed = await failure(signin, answer, started.binding)
    assert failed.reason is SignInFailure.UNAVAILABLE


# --- Link mode ----------------------------------------------------------------------------------


@pytest.fixture
def link_signin(make_signin: MakeSignIn) -> ConsoleSignIn:
    return make_signin(load_settings(_env_file=None, PUBLIC_BASE_URL=PUBLIC_BASE_URL))


async def test_a_link_signs_in_the_local_operator_once(
    link_signin: ConsoleSignIn, store: AdminSignInStore
) -> None:
    assert link_signin.mode == "link"
    token = await store.create_link()
    [document] = await store.collection.find({}).to_list()
    assert document["_id"] == secret_hash(token) and token.encode() not in bson.encode(document)

    operator = await link_signin.redeem_link(token)
    assert operator == Administrator(
        tenant_id="*",
        object_id="local-operator",
        name="Operator on this machine",
        local_operator=True,
    )
    with pytest.raises(SignInFailed) as failed:
        await link_signin.redeem_link(token)
    assert failed.value.reason is SignInFailure.UNKNOWN_LINK


async def test_a_link_lives_ten_minutes(
    link_signin: ConsoleSignIn, store: AdminSignInStore
) -> None:
    stale = await store.create_link(now=datetime.now(UTC) - timedelta(minutes=11))
    fresh = await store.create_link(now=datetime.now(UTC) - timedelta(minutes=9))
    with pytest.raises(SignInFailed) as failed:
        await link_signin.redeem_link(stale)
    assert failed.value.reason is SignInFailure.UNKNOWN_LINK
    assert (await link_signin.redeem_link(fresh)).local_operator


@pytest.mark.parametrize("token", ["", "made-up", "x" * 10_000])
async def test_an_unknown_link_is_refused(link_signin: ConsoleSignIn, token: str) -> None:
    with pytest.raises(SignInFailed) as failed:
        await link_signin.redeem_link(token)
    assert failed.value.reason is SignInFailure.UNKNOWN_LINK


async def test_a_flow_state_is_not_a_link(
    link_signin: ConsoleSignIn, signin: ConsoleSignIn, store: AdminSignInStore
) -> None:
    started = await signin.start(return_to="/admin/")
    state = parse_qs(urlsplit(started.url).query)["state"][0]
    assert not await store.take_link(state)
    token = await store.create_link()
    assert await store.take_flow(token) is None
    assert await store.take_link(token)


async def test_each_mode_offers_only_its_own_way_in(
    link_signin: ConsoleSignIn, signin: ConsoleSignIn, store: AdminSignInStore
) -> None:
    token = await store.create_link()
    with pytest.raises(SignInFailed) as failed:
        await signin.redeem_link(token)
    assert failed.value.reason is SignInFailure.NOT_AVAILABLE
    with pytest.raises(SignInFailed) as failed:
        await link_signin.start(return_to="/admin/")
    assert failed.value.reason is SignInFailure.NOT_AVAILABLE
    with pytest.raises(SignInFailed) as failed:
        await link_signin.finish(query={"state": "s", "code": "c"}, binding="b")
    assert failed.value.reason is SignInFailure.NOT_AVAILABLE
    # The link refused in oidc mode was not used up.
    assert await store.take_link(token)
