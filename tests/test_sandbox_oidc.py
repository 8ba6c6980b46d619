"""The sandbox as an OpenID Connect issuer that msal signs in against (for the admin console).

Served over HTTPS with a certificate from a CA made for the test (msal refuses a non-HTTPS
authority, and one without a path segment), trusted through `REQUESTS_CA_BUNDLE`. msal runs its
real authorization code flow with PKCE against `oidc_authority=https://127.0.0.1:PORT/contoso`:
discovery, the consent page, the code exchange, and its own checks of the ID token (issuer,
audience, nonce); the ID token's signature is then checked here with the published keys.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import msal
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from sandbox.server import SandboxClient
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
REDIRECT = "http://127.0.0.1:3978/admin/callback"


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalTls:
    made = make_tls(tmp_path / "tls")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(made.ca_bundle))
    return made


@pytest.fixture
def issuer(tls: LocalTls) -> Iterator[RunningSandbox]:
    client = SandboxClient(
        CLIENT_ID,
        CLIENT_SECRET,
        redirect_uris=(REDIRECT,),
        scopes=("openid", "profile", "email", "offline_access"),
    )
    config = sandbox_config(clients=(client,), oidc_tenant=TENANT)
    with run_sandbox(config, tls=tls.server_context()) as running:
        yield running


def msal_app(issuer: RunningSandbox) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        CLIENT_ID,
        client_credential=CLIENT_SECRET,
        oidc_authority=f"{issuer.base_url}/{TENANT}",
    )


async def consent(tls: LocalTls, auth_uri: str, user: str) -> dict[str, str]:
    """Choose `user` on the sandbox's consent page; the redirect's query, as msal wants it."""
    context = ssl.create_default_context(cafile=str(tls.ca_bundle))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as browser:
        location = await authorize(browser, auth_uri, user=user)
    assert location.startswith(REDIRECT), location
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


async def test_msal_signs_in_with_pkce_and_gets_entra_like_claims(
    issuer: RunningSandbox, tls: LocalTls
) -> None:
    app = await asyncio.to_thread(msal_app, issuer)
    flow = await asyncio.to_thread(app.initiate_auth_code_flow, [], redirect_uri=REDIRECT)
    query = parse_qs(urlsplit(flow["auth_uri"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"]
    result = await asyncio.to_thread(
        app.acquire_token_by_auth_code_flow, flow, await consent(tls, flow["auth_uri"], "jane")
    )
    assert "error" not in result, result
    claims = result["id_token_claims"]
    assert claims["iss"] == f"{issuer.base_url}/{TENANT}"
    assert (claims["tid"], claims["oid"], claims["sub"]) == (TENANT, "user-jane", "user-jane")
    assert claims["name"] == "Jane Doe" and claims["aud"] == CLIENT_ID
    # The signature verifies with the keys the discovery document points to.
    context_keys = KeySet.import_key_set(
        issuer.app.test_client().get(f"/{TENANT}/discovery/keys").json
    )
    token = jwt.decode(result["id_token"], context_keys)
    assert token.claims["oid"] == "user-jane" and token.header["alg"] == "RS256"


async def test_a_replayed_answer_is_refused(issuer: RunningSandbox, tls: LocalTls) -> None:
    """The same redirect answer used twice (a replayed code): msal gets an error, no token."""
    app = await asyncio.to_thread(msal_app, issuer)
    flow = await asyncio.to_thread(app.initiate_auth_code_flow, [], redirect_uri=REDIRECT)
    answer = await consent(tls, flow["auth_uri"], "omar")
    first = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, dict(flow), answer)
    assert "id_token_claims" in first, first
    second = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, dict(flow), answer)
    assert "id_token_claims" not in second and second.get("error"), second


async def test_a_forged_state_is_refused(issuer: RunningSandbox, tls: LocalTls) -> None:
    """An answer whose state is not the flow's own is refused by msal before any exchange."""
    app = await asyncio.to_thread(msal_app, issuer)
    flow = await asyncio.to_thread(app.initiate_auth_code_flow, [], redirect_uri=REDIRECT)
    answer = await consent(tls, flow["auth_uri"], "alex") | {"state": "forged"}
    with pytest.raises(ValueError):
        await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow, answer)


def test_other_tenants_and_plain_sandboxes_serve_no_discovery(issuer: RunningSandbox) -> None:
    client = issuer.app.test_client()
    assert client.get(f"/{TENANT}/.well-known/openid-configuration").status_code == 200
    assert client.get("/fabrikam/.well-known/openid-configuration").status_code == 404
    with run_sandbox() as plain:
        assert plain.app.test_client().get("/x/discovery/keys").status_code == 404
