"""The OAuth2 protocol with a provider, through Authlib's async client.

Authorization URL (state, PKCE S256), code exchange, refresh, revocation and the account lookup.
Failures are mapped to two exceptions the callers can act on: `OAuthRejected` (the provider
said no: `invalid_grant`, `access_denied`…) and `ProviderUnavailable` (network, timeout, 5xx).
Messages never contain codes or tokens.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from httpx2 import HTTPError, HTTPStatusError, create_ssl_context

from oauth.providers import Provider
from storage.models import ProviderAccount

# One short limit per provider call (token, refresh, revoke, userinfo): Teams waits about 15 s
# for an answer, and a recipe's own deadline must hold a refresh as well as its action.
TIMEOUT_S = 5.0


class OAuthRejected(Exception):
    """The provider refused (e.g. `invalid_grant`); `error` is its OAuth error code."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class ProviderUnavailable(Exception):
    """The provider could not be reached or failed (network, timeout, 5xx)."""


@dataclass(frozen=True)
class TokenSet:
    """Tokens as the provider issued them; kept only in memory and sealed before storage."""

    access_token: str
    refresh_token: str | None
    expires_at: datetime | None
    scopes: list[str]
    raw_fields: dict[str, Any]

    def as_record(self) -> dict[str, Any]:
        """What is encrypted into the connection's `tokens` field."""
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }


def new_code_verifier() -> str:
    """A PKCE verifier: 64 characters from the unreserved set (RFC 7636 allows 43 to 128)."""
    return generate_token(64)


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every provider call: building one per client reloads the CA bundle
    each time, which costs native memory on every sign-in, refresh and revocation."""
    return create_ssl_context()


def _client(provider: Provider, redirect_uri: str | None = None) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        verify=_tls(),
        client_id=provider.client_id,
        client_secret=provider.client_secret,
        token_endpoint_auth_method=provider.client_auth_method,
        revocation_endpoint_auth_method=provider.client_auth_method,
        scope=" ".join(provider.scopes) or None,
        redirect_uri=redirect_uri,
        timeout=TIMEOUT_S,
    )


def authorization_url(
    provider: Provider, *, redirect_uri: str, state: str, code_verifier: str | None
) -> str:
    """The provider's authorize URL for this sign-in (PKCE S256 when the provider allows it)."""
    client = _client(provider, redirect_uri)
    extra: dict[str, str] = dict(provider.extra_authorize_params)
    if provider.pkce and code_verifier:
        extra |= {
            "code_challenge": create_s256_code_challenge(code_verifier),
            "code_challenge_method": "S256",
        }
    url, _ = client.create_authorization_url(provider.authorize_url, state=state, **extra)
    return str(url)


def _token_set(token: dict[str, Any], fallback_scopes: tuple[str, ...]) -> TokenSet:
    access_token = token.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise OAuthRejected("invalid_token_response")
    expires_at = None
    if isinstance(token.get("expires_at"), int | float):
        expires_at = datetime.fromtimestamp(token["expires_at"], UTC)
    elif isinstance(token.get("expires_in"), int | float):
        expires_at = datetime.now(UTC) + timedelta(seconds=token["expires_in"])
    scope = token.get("scope")
    scopes = scope.split() if isinstance(scope, str) else list(fallback_scopes)
    refresh_token = token.get("refresh_token")
    return TokenSet(
        access_token=access_token,
        refresh_token=refresh_token if isinstance(refresh_token, str) else None,
        expires_at=expires_at,
        scopes=scopes,
        raw_fields={k: v for k, v in token.items() if k not in ("access_token", "refresh_token")},
    )


async def exchange_code(
    provider: Provider, *, code: str, redirect_uri: str, code_verifier: str | None
) -> TokenSet:
    """Trade an authorization code for tokens."""
    extra = {"code_verifier": code_verifier} if provider.pkce and code_verifier else {}
    async with _client(provider, redirect_uri) as client:
        token = await _token_endpoint(
            client.fetch_token(
                provider.token_url, grant_type="authorization_code", code=code, **extra
            )
        )
    return _token_set(token, provider.scopes)


async def _token_endpoint(request: Awaitable[Any]) -> dict[str, Any]:
    """Await a token endpoint call, sorting failures into refusals and unavailability."""
    try:
        return dict(await request)
    except OAuthError as error:
        if error.error in ("server_error", "temporarily_unavailable"):
            raise ProviderUnavailable(str(error.error)) from None
        raise OAuthRejected(str(error.error or "invalid_grant")) from None
    except HTTPStatusError as error:
        status = error.response.status_code
        if status >= 500:
            raise ProviderUnavailable(f"token endpoint answered {status}") from None
        raise OAuthRejected("invalid_request") from None
    except (HTTPError, ValueError) as error:
        raise ProviderUnavailable(type(error).__name__) from None


def _field(data: dict[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


async def fetch_account(provider: Provider, tokens: TokenSet) -> ProviderAccount:
    """Who signed in: the account id and the name a person recognises (e-mail or username)."""
    if provider.userinfo_url is None:
        subject = str(tokens.raw_fields.get("id_token_sub") or "unknown")
        return ProviderAccount(id=subject, display_name=subject)
    async with _client(provider) as client:
        client.token = {"access_token": tokens.access_token, "token_type": "Bearer"}
        try:
            response = await client.get(provider.userinfo_url)
            response.raise_for_status()
            info = response.json()
        except HTTPStatusError as error:
            raise ProviderUnavailable(
                f"userinfo endpoint answered {error.response.status_code}"
            ) from None
        except (HTTPError, ValueError) as error:
            raise ProviderUnavailable(type(error).__name__) from None
    if not isinstance(info, dict):
        raise ProviderUnavailable("userinfo answer is not an object")
    name = next(
        (str(v) for f in provider.account_fields if (v := _field(info, f)) not in (None, "")),
        None,
    )
    account_id = next(
        (str(v) for f in provider.account_id_fields if (v := _field(info, f)) not in (None, "")),
        None,
    )
    if name is None and account_id is None:
        raise ProviderUnavailable("userinfo names no account")
    return ProviderAccount(id=account_id or str(name), display_name=name or str(account_id))


def api_base_url(provider: Provider, tokens: TokenSet) -> str | None:
    """The API base URL for this connection (Salesforce: the org's instance_url)."""
    if provider.api_base_url_token_field:
        value = tokens.raw_fields.get(provider.api_base_url_token_field)
        if isinstance(value, str) and value.startswith("https://"):
            return value.rstrip("/")
    return provider.api_base_url


async def refresh(provider: Provider, *, refresh_token: str) -> TokenSet:
    """Use a refresh token. A provider that sends no new refresh token keeps the old one valid
    (Authlib then leaves the old one in place); one that rotates sends a new one."""
    async with _client(provider) as client:
        token = await _token_endpoint(
            client.refresh_token(provider.token_url, refresh_token=refresh_token)
        )
    tokens = _token_set(token, provider.scopes)
    if tokens.refresh_token is None:
        tokens = TokenSet(
            access_token=tokens.access_token,
            refresh_token=refresh_token,
            expires_at=tokens.expires_at,
            scopes=tokens.scopes,
            raw_fields=tokens.raw_fields,
        )
    return tokens


async def revoke(provider: Provider, *, token: str, hint: str) -> None:
    """Revoke one token at the provider (RFC 7009 and the presets' endpoints).

    Raises:
        ProviderUnavailable: the revocation did not go through (network, 4xx or 5xx).
    """
    if provider.revoke_url is None:
        return
    async with _client(provider) as client:
        try:
            response = await client.revoke_token(
                provider.revoke_url, token=token, token_type_hint=hint
            )
        except (HTTPError, OAuthError, ValueError) as error:
            raise ProviderUnavailable(type(error).__name__) from None
    # RFC 7009: 200 for a revoked or unknown token; anything else means it may still be alive.
    if response.status_code != 200:
        raise ProviderUnavailable(f"revocation endpoint answered {response.status_code}")
