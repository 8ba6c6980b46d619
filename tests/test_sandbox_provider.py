"""The sandbox OAuth2 provider, spoken to over real HTTP on loopback with aiohttp."""

from __future__ import annotations

import asyncio
import base64
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

from sandbox import SandboxClient
from sandbox.__main__ import parse_args
from sandbox.server import STAT_KEYS
from tests.support.sandbox import (
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    RunningSandbox,
    authorize,
    pkce_pair,
    run_sandbox,
    sandbox_config,
)

REPO = Path(__file__).resolve().parents[1]
BASIC_CLIENT = SandboxClient(
    "basic-client",
    "basic-secret",
    redirect_uris=("http://127.0.0.1:9/cb",),
    token_endpoint_auth_method="client_secret_basic",
    name="Basic app",
)


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with run_sandbox(sandbox_config()) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def get_code(
    session: aiohttp.ClientSession, sandbox: RunningSandbox, *, user: str = "alex"
) -> tuple[str, str]:
    """Consent as `user`; the authorization code and its PKCE verifier."""
    verifier, challenge = pkce_pair()
    location = await authorize(session, sandbox.authorize_url(code_challenge=challenge), user=user)
    assert location.startswith(REDIRECT_URI + "?")
    return query_of(location)["code"], verifier


async def post_token(
    session: aiohttp.ClientSession,
    sandbox: RunningSandbox,
    data: dict[str, str],
    *,
    client_id: str = CLIENT_ID,
    client_secret: str = CLIENT_SECRET,
    basic: bool = False,
) -> tuple[int, dict[str, Any]]:
    form = dict(data)
    headers = {}
    if basic:
        pair = base64.b64encode(f"{quote(client_id)}:{quote(client_secret)}".encode()).decode()
        headers["Authorization"] = f"Basic {pair}"
    else:
        form |= {"client_id": client_id, "client_secret": client_secret}
    async with session.post(sandbox.token_url, data=form, headers=headers) as response:
        return response.status, await response.json()


async def exchange(
    session: aiohttp.ClientSession, sandbox: RunningSandbox, code: str, verifier: str
) -> tuple[int, dict[str, Any]]:
    return await post_token(
        session,
        sandbox,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
    )


async def refresh(
    session: aiohttp.ClientSession, sandbox: RunningSandbox, refresh_token: str
) -> tuple[int, dict[str, Any]]:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return await post_token(session, sandbox, data)


async def sign_in(
    session: aiohttp.ClientSession, sandbox: RunningSandbox, *, user: str = "alex"
) -> dict[str, Any]:
    code, verifier = await get_code(session, sandbox, user=user)
    status, token = await exchange(session, sandbox, code, verifier)
    assert status == 200, token
    return token


async def userinfo(
    session: aiohttp.ClientSession, sandbox: RunningSandbox, access_token: str | None
) -> aiohttp.ClientResponse:
    headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
    async with session.get(sandbox.userinfo_url, headers=headers) as response:
        await response.read()
        return response


async def revoke(
    session: aiohttp.ClientSession, sandbox: RunningSandbox, token: str, hint: str | None = None
) -> int:
    data = {"token": token, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    if hint:
        data["token_type_hint"] = hint
    async with session.post(sandbox.revoke_url, data=data) as response:
        return response.status


async def test_code_flow_with_pkce_issues_tokens_for_the_chosen_user(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """Consent as Jane, exchange the code with its S256 verifier: tokens, and userinfo is Jane."""
    verifier, challenge = pkce_pair()
    url = sandbox.authorize_url(code_challenge=challenge, state="st-123")
    location = await authorize(session, url, user="jane")
    params = query_of(location)
    assert location.startswith(REDIRECT_URI + "?")
    assert params["state"] == "st-123"

    status, token = await exchange(session, sandbox, params["code"], verifier)
    assert status == 200, token
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    assert token["scope"] == "profile email"
    assert token["access_token"] and token["refresh_token"]

    response = await userinfo(session, sandbox, token["access_token"])
    assert response.status == 200
    assert await response.json() == {
        "sub": "user-jane",
        "name": "Jane Doe",
        "email": "jane@sandbox.example",
        "preferred_username": "jane",
    }


async def test_consent_page_offers_users_scopes_and_both_buttons(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """The consent page names the client and scopes, lists every user (first checked)."""
    _, challenge = pkce_pair()
    async with session.get(sandbox.authorize_url(code_challenge=challenge)) as response:
        assert response.status == 200
        assert response.headers["Referrer-Policy"] == "no-referrer"
        page = await response.text()
    assert "Sandbox client" in page
    assert "<li>profile</li><li>email</li>" in page
    assert 'name="user" value="alex" checked' in page
    for name in ("Alex Wilber", "Jane Doe", "Omar Ali"):
        assert name in page
    assert '<button type="submit" name="decision" value="allow">Allow</button>' in page
    assert '<button type="submit" name="decision" value="deny">Deny</button>' in page


async def test_wrong_code_verifier_is_invalid_grant(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """A code exchanged with a verifier that does not match its challenge is invalid_grant."""
    code, _ = await get_code(session, sandbox)
    other_verifier, _ = pkce_pair()
    status, body = await exchange(session, sandbox, code, other_verifier)
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_token_request_without_verifier_is_refused(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """A code issued with a challenge cannot be exchanged without a code_verifier."""
    code, _ = await get_code(session, sandbox)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    status, body = await post_token(session, sandbox, data)
    assert (status, body["error"]) == (400, "invalid_request")


@pytest.mark.parametrize(
    ("challenge", "method"),
    [(None, None), (None, "S256"), ("x" * 43, None), ("x" * 43, "plain"), ("short", "S256")],
)
async def test_authorize_without_s256_pkce_redirects_invalid_request(
    session: aiohttp.ClientSession,
    sandbox: RunningSandbox,
    challenge: str | None,
    method: str | None,
) -> None:
    """PKCE is required and S256 only: otherwise the client gets error=invalid_request."""
    url = sandbox.authorize_url(code_challenge=challenge, code_challenge_method=method)
    location = await authorize(session, url)
    params = query_of(location)
    assert location.startswith(REDIRECT_URI + "?")
    assert params["error"] == "invalid_request"
    assert params["state"] == "xyz"
    assert "code" not in params


async def test_code_reuse_is_invalid_grant_and_revokes_its_tokens(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """A code works once; a second exchange is invalid_grant and revokes what it issued."""
    code, verifier = await get_code(session, sandbox)
    status, token = await exchange(session, sandbox, code, verifier)
    assert status == 200
    status, body = await exchange(session, sandbox, code, verifier)
    assert (status, body["error"]) == (400, "invalid_grant")
    assert (await userinfo(session, sandbox, token["access_token"])).status == 401
    status, body = await refresh(session, sandbox, token["refresh_token"])
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_refresh_rotates_and_the_used_refresh_token_fails(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """Each refresh returns a new refresh token; the one used is then invalid_grant."""
    token = await sign_in(session, sandbox, user="omar")
    status, second = await refresh(session, sandbox, token["refresh_token"])
    assert status == 200, second
    assert second["refresh_token"] != token["refresh_token"]
    assert second["access_token"] != token["access_token"]
    assert (second["token_type"], second["expires_in"]) == ("Bearer", 3600)
    assert second["scope"] == token["scope"]

    status, body = await refresh(session, sandbox, token["refresh_token"])
    assert (status, body["error"]) == (400, "invalid_grant")

    status, third = await refresh(session, sandbox, second["refresh_token"])
    assert status == 200
    response = await userinfo(session, sandbox, third["access_token"])
    assert (await response.json())["sub"] == "user-omar"


async def test_concurrent_refreshes_with_one_token_have_one_winner(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """Of several simultaneous refreshes with the same refresh token exactly one succeeds."""
    token = await sign_in(session, sandbox)
    results = await asyncio.gather(
        *(refresh(session, sandbox, token["refresh_token"]) for _ in range(8))
    )
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [400] * 7
    assert {body["error"] for status, body in results if status == 400} == {"invalid_grant"}


async def test_revoking_the_access_token_makes_userinfo_401(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """After RFC 7009 revocation of the access token, userinfo answers 401 with a challenge."""
    token = await sign_in(session, sandbox)
    assert await revoke(session, sandbox, token["access_token"], "access_token") == 200
    response = await userinfo(session, sandbox, token["access_token"])
    assert response.status == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="sandbox"')
    assert 'error="invalid_token"' in challenge
    # Revoking only the access token leaves the refresh token working.
    status, _ = await refresh(session, sandbox, token["refresh_token"])
    assert status == 200


async def test_revoking_the_refresh_token_ends_the_grant(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """Revoking a refresh token (no hint) kills it and the grant's access token."""
    token = await sign_in(session, sandbox)
    assert await revoke(session, sandbox, token["refresh_token"]) == 200
    status, body = await refresh(session, sandbox, token["refresh_token"])
    assert (status, body["error"]) == (400, "invalid_grant")
    assert (await userinfo(session, sandbox, token["access_token"])).status == 401


async def test_revoking_unknown_or_revoked_tokens_is_200(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """RFC 7009: an unknown or already revoked token still gets 200."""
    token = await sign_in(session, sandbox)
    assert await revoke(session, sandbox, "no-such-token", "refresh_token") == 200
    assert await revoke(session, sandbox, token["access_token"]) == 200
    assert await revoke(session, sandbox, token["access_token"]) == 200


async def test_revocation_requires_client_authentication(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """A revoke request with a wrong client secret is invalid_client and revokes nothing."""
    token = await sign_in(session, sandbox)
    data = {"token": token["access_token"], "client_id": CLIENT_ID, "client_secret": "wrong"}
    async with session.post(sandbox.revoke_url, data=data) as response:
        assert response.status in (400, 401)
        assert (await response.json())["error"] == "invalid_client"
    assert (await userinfo(session, sandbox, token["access_token"])).status == 200


async def test_userinfo_without_a_token_is_401_with_a_challenge(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """No or an unknown bearer token: 401 with WWW-Authenticate: Bearer."""
    response = await userinfo(session, sandbox, None)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="sandbox"'
    response = await userinfo(session, sandbox, "not-a-token")
    assert response.status == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


async def test_deny_redirects_with_access_denied_and_state(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """Pressing Deny sends the client error=access_denied with its state, and no code."""
    _, challenge = pkce_pair()
    url = sandbox.authorize_url(code_challenge=challenge, state="keep-me")
    location = await authorize(session, url, decision="deny")
    assert location.startswith(REDIRECT_URI + "?")
    params = query_of(location)
    assert (params["error"], params["state"]) == ("access_denied", "keep-me")
    assert "code" not in params


@pytest.mark.parametrize(
    "overrides",
    [
        {"redirect_uri": "http://evil.example/cb"},
        {"redirect_uri": REDIRECT_URI + "/extra"},
        {"client_id": "no-such-client"},
        {"client_id": None},
    ],
)
async def test_bad_client_or_redirect_uri_gets_a_400_page_not_a_redirect(
    session: aiohttp.ClientSession, sandbox: RunningSandbox, overrides: dict[str, Any]
) -> None:
    """An unknown client or unregistered redirect_uri is a 400 page, never a redirect."""
    _, challenge = pkce_pair()
    url = sandbox.authorize_url(code_challenge=challenge, **overrides)
    for method in ("GET", "POST"):
        data = {"user": "alex", "decision": "allow"} if method == "POST" else None
        async with session.request(method, url, data=data, allow_redirects=False) as response:
            assert response.status == 400
            assert "Location" not in response.headers
            assert response.content_type == "text/html"
            assert "Sign-in error" in await response.text()


async def test_unknown_scope_is_invalid_scope(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """A scope the client may not ask for is refused with error=invalid_scope."""
    _, challenge = pkce_pair()
    url = sandbox.authorize_url(code_challenge=challenge, scope="profile admin")
    params = query_of(await authorize(session, url))
    assert params["error"] == "invalid_scope"


async def test_wrong_client_secret_is_invalid_client(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """A token request with a wrong client secret is invalid_client and leaves the code usable."""
    code, verifier = await get_code(session, sandbox)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    status, body = await post_token(session, sandbox, data, client_secret="wrong")
    # 401, not 400: Authlib answers 401 whenever client_secret_basic is an accepted method.
    assert (status, body["error"]) == (401, "invalid_client")
    status, _ = await exchange(session, sandbox, code, verifier)
    assert status == 200


async def test_client_secret_basic_client_must_use_basic(
    session: aiohttp.ClientSession,
) -> None:
    """A client registered for client_secret_basic gets tokens with Basic and not with POST."""
    with run_sandbox(sandbox_config(clients=(BASIC_CLIENT,))) as basic_sandbox:
        verifier, challenge = pkce_pair()
        url = basic_sandbox.authorize_url(
            client_id="basic-client", redirect_uri="http://127.0.0.1:9/cb", code_challenge=challenge
        )
        code = query_of(await authorize(session, url))["code"]
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "http://127.0.0.1:9/cb",
            "code_verifier": verifier,
        }
        credentials = {"client_id": "basic-client", "client_secret": "basic-secret"}
        status, body = await post_token(session, basic_sandbox, data, **credentials)
        assert (status, body["error"]) == (401, "invalid_client")
        status, token = await post_token(session, basic_sandbox, data, basic=True, **credentials)
        assert status == 200, token
        status, _ = await post_token(
            session,
            basic_sandbox,
            {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
            basic=True,
            **credentials,
        )
        assert status == 200


async def test_counters_count_each_call_exactly(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """Every call counts once under its endpoint or grant type, failures included."""
    assert sandbox.stats() == dict.fromkeys(STAT_KEYS, 0)
    token = await sign_in(session, sandbox)  # authorize (GET), decision (POST), code exchange
    status, second = await refresh(session, sandbox, token["refresh_token"])
    assert status == 200
    await refresh(session, sandbox, token["refresh_token"])  # fails, still a call
    await userinfo(session, sandbox, second["access_token"])
    await revoke(session, sandbox, second["access_token"])
    await post_token(session, sandbox, {"grant_type": "password"})
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    body = {"name": "Deal", "amount": 1}
    async with session.post(
        f"{sandbox.base_url}/api/opportunities", json=body, headers=headers
    ) as response:
        assert response.status == 201
    assert sandbox.stats() == {
        "authorize": 1,
        "authorize.decision": 1,
        "token.authorization_code": 1,
        "token.refresh_token": 2,
        "token.client_credentials": 0,
        "token.other": 1,
        "revoke": 1,
        "userinfo": 1,
        "api.opportunities": 1,
        "api.opportunities.list": 0,
    }
    async with session.get(f"{sandbox.base_url}/_stats") as response:
        assert await response.json() == sandbox.stats()
    sandbox.control(reset=True)
    assert sandbox.stats() == dict.fromkeys(STAT_KEYS, 0)


async def test_down_answers_503_until_brought_back(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """With down set, token, revoke and userinfo answer 503; clearing it restores them."""
    token = await sign_in(session, sandbox)
    sandbox.control(down=True)
    status, body = await refresh(session, sandbox, token["refresh_token"])
    assert (status, body["error"]) == (503, "temporarily_unavailable")
    assert await revoke(session, sandbox, token["access_token"]) == 503
    assert (await userinfo(session, sandbox, token["access_token"])).status == 503
    sandbox.control(down=False)
    # The refresh token was not used up by the failed attempt.
    status, _ = await refresh(session, sandbox, token["refresh_token"])
    assert status == 200


async def test_expire_access_tokens_makes_userinfo_401(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """expire_access_tokens expires every current access token; a refresh gives a working one."""
    token = await sign_in(session, sandbox)
    sandbox.control(expire_access_tokens=True)
    response = await userinfo(session, sandbox, token["access_token"])
    assert response.status == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    status, second = await refresh(session, sandbox, token["refresh_token"])
    assert status == 200
    assert (await userinfo(session, sandbox, second["access_token"])).status == 200


async def test_fail_refresh_with_fails_the_next_refresh_only(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """fail_refresh_with fails exactly the next refresh; the refresh token stays usable."""
    token = await sign_in(session, sandbox)
    sandbox.control(fail_refresh_with="invalid_grant")
    status, body = await refresh(session, sandbox, token["refresh_token"])
    assert (status, body["error"]) == (400, "invalid_grant")
    status, _ = await refresh(session, sandbox, token["refresh_token"])
    assert status == 200


async def test_fail_refresh_times_null_fails_every_refresh_until_reset(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """fail_refresh_times=None keeps failing refreshes (with the error's status) until reset."""
    token = await sign_in(session, sandbox)
    sandbox.control(fail_refresh_with="temporarily_unavailable", fail_refresh_times=None)
    for _ in range(3):
        status, body = await refresh(session, sandbox, token["refresh_token"])
        assert (status, body["error"]) == (503, "temporarily_unavailable")
    sandbox.control(reset=True)
    status, _ = await refresh(session, sandbox, token["refresh_token"])
    assert status == 200


async def test_access_token_lifetime_control_sets_expires_in(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """access_token_lifetime applies to tokens issued afterwards; reset restores the config."""
    sandbox.control(access_token_lifetime=1)
    token = await sign_in(session, sandbox)
    assert token["expires_in"] == 1
    sandbox.control(reset=True)
    status, second = await refresh(session, sandbox, token["refresh_token"])
    assert (status, second["expires_in"]) == (200, 3600)


async def test_control_over_http_and_bad_controls(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """POST /_control sets behaviour and answers the controls; unknown keys are a 400."""
    url = f"{sandbox.base_url}/_control"
    async with session.post(url, json={"down": True, "fail_refresh_with": "invalid_grant"}) as r:
        assert r.status == 200
        assert await r.json() == {
            "down": True,
            "fail_refresh_with": "invalid_grant",
            "fail_refresh_remaining": 1,
            "access_token_lifetime": 3600,
            "refresh_token_idle_lifetime": None,
            "hang_s": 0.0,
        }
    for bad in (
        {"dwn": True},
        {"down": "yes"},
        {"access_token_lifetime": 0},
        {"hang_s": -1},
        {"hang_s": True},
        {"refresh_token_idle_lifetime": 0},
        {"age_refresh_tokens": -5},
        {"age_refresh_tokens": "old"},
        [1],
    ):
        async with session.post(url, json=bad) as r:
            assert r.status == 400
    async with session.post(url, json={"reset": True}) as r:
        assert (await r.json())["down"] is False


async def test_a_refresh_token_unused_too_long_is_refused(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """With an idle lifetime, a refresh token unused for that long is `invalid_grant` (as Box
    after 60 days); a refreshed one starts its own lifetime."""
    used = await sign_in(session, sandbox)
    unused = await sign_in(session, sandbox)
    sandbox.control(refresh_token_idle_lifetime=100, age_refresh_tokens=60)
    status, fresh = await refresh(session, sandbox, used["refresh_token"])
    assert status == 200
    sandbox.control(age_refresh_tokens=60)  # 120 s for the unused one, 60 s for the new one
    status, refused = await refresh(session, sandbox, unused["refresh_token"])
    assert (status, refused["error"]) == (400, "invalid_grant")
    status, _ = await refresh(session, sandbox, fresh["refresh_token"])
    assert status == 200


async def test_opportunities_record_their_creator(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """POST /api/opportunities stores who created it (from the token); GET lists them all."""
    alex = await sign_in(session, sandbox, user="alex")
    jane = await sign_in(session, sandbox, user="jane")
    url = f"{sandbox.base_url}/api/opportunities"
    created = []
    for token, body in ((alex, {"name": "A", "amount": 10}), (jane, {"name": "B", "amount": 2.5})):
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        async with session.post(url, json=body, headers=headers) as response:
            assert response.status == 201
            created.append(await response.json())
    assert created == [
        {
            "id": "opp-1",
            "name": "A",
            "amount": 10,
            "created_by": {"sub": "user-alex", "email": "alex@sandbox.example"},
        },
        {
            "id": "opp-2",
            "name": "B",
            "amount": 2.5,
            "created_by": {"sub": "user-jane", "email": "jane@sandbox.example"},
        },
    ]
    async with session.get(url) as response:
        assert await response.json() == created


async def test_opportunities_refuse_bad_json_and_missing_tokens(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """Bad bodies are a 400; no or a revoked token is a 401; nothing is stored."""
    token = await sign_in(session, sandbox)
    url = f"{sandbox.base_url}/api/opportunities"
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    for body in (b"{not json", b"[]", b'{"name": "", "amount": 1}', b'{"name": "x"}'):
        async with session.post(url, data=body, headers=headers) as response:
            assert response.status == 400
            assert (await response.json())["error"] == "invalid_request"
    async with session.post(url, json={"name": "x", "amount": 1}) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    await revoke(session, sandbox, token["access_token"])
    async with session.post(url, json={"name": "x", "amount": 1}, headers=headers) as response:
        assert response.status == 401
    async with session.get(url) as response:
        assert await response.json() == []


async def test_metadata_lists_the_endpoints(
    session: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    """RFC 8414 metadata names every endpoint under the issuer and validates with Authlib."""
    async with session.get(f"{sandbox.base_url}/.well-known/oauth-authorization-server") as r:
        metadata = await r.json()
    AuthorizationServerMetadata(metadata).validate()
    base = sandbox.base_url
    assert metadata["issuer"] == base
    assert metadata["authorization_endpoint"] == f"{base}/oauth/authorize"
    assert metadata["token_endpoint"] == f"{base}/oauth/token"
    assert metadata["revocation_endpoint"] == f"{base}/oauth/revoke"
    assert metadata["userinfo_endpoint"] == f"{base}/oauth/userinfo"
    assert metadata["code_challenge_methods_supported"] == ["S256"]


def test_command_line_refuses_a_public_host_without_the_flag() -> None:
    """`python -m sandbox` listens on loopback unless --allow-public-host is given."""
    with pytest.raises(SystemExit):
        parse_args(["--host", "0.0.0.0"])
    assert parse_args(["--host", "0.0.0.0", "--allow-public-host"]).allow_public_host
    args = parse_args(["--host", "127.0.0.1", "--access-token-lifetime", "60"])
    assert (args.host, args.port, args.access_token_lifetime) == ("127.0.0.1", 5001, 60)


async def test_command_line_serves_the_sandbox(session: aiohttp.ClientSession) -> None:
    """`python -m sandbox --host 127.0.0.1 --port N …` serves the metadata on that port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandbox",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--client-id",
        CLIENT_ID,
        "--client-secret",
        CLIENT_SECRET,
        "--redirect-uri",
        REDIRECT_URI,
        # Tests run in a tmp_path; the package is found from the repository root.
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/.well-known/oauth-authorization-server"
    try:
        for _ in range(100):
            try:
                async with session.get(url) as response:
                    metadata = await response.json()
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
        else:
            pytest.fail(f"python -m sandbox did not start (exit code {process.returncode})")
        assert metadata["token_endpoint"] == f"http://127.0.0.1:{port}/oauth/token"
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()
