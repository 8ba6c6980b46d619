"""Signing administrators in to the admin console (the service the console's routes call).

Three modes, from `Settings.console_sign_in`:

- `entra` and `oidc`: msal's authorization code flow (PKCE S256 and nonce are msal's) with a
  `ConfidentialClientApplication`, at Entra ID (`authority=`) or at any OpenID Connect issuer
  (`oidc_authority=`, the sandbox's in the tests). `start` seals the whole msal flow with the
  token cipher and keeps it for ten minutes under the hash of its `state`, bound to the hash of
  a random value the routes put in a short-lived cookie; `finish` takes the flow (deleting it,
  so it is single use even when what follows fails), checks the cookie (login CSRF), and then
  lets msal exchange the code.
- `link`: no identity provider. `python -m admin console-link` stores a one-time link and
  `redeem_link` takes it; the routes serve this only on loopback.

The ID token: msal checks its nonce; its issuer, audience and expiry are checked here. Its
signature is not checked: the token came straight from the token endpoint over TLS (the
authority must be HTTPS), which OpenID Connect Core 3.1.3.7 (item 6) allows in place of the
signature check.

msal is synchronous (it uses `requests`), so the application is built (which fetches the
issuer's discovery document) and the code exchanged in threads, each bounded by `timeout_s`.
Nothing here logs tokens, codes, states, bindings or flows, nor the provider's error
descriptions (only its error codes).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import secrets
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import msal
from msal.exceptions import MsalServiceError
from pymongo.errors import PyMongoError

import messages
from settings import Settings
from storage.admin_sessions import Administrator
from storage.admin_signins import AdminSignInStore, secret_hash
from storage.crypto import TokenCipher, TokenDecryptionError

log = logging.getLogger(__name__)

# The redirect comes back as a query (a top-level GET), the one way a SameSite=Lax binding
# cookie comes along with it; msal would rather have form_post and warns about it.
warnings.filterwarnings(
    "ignore", message="response_mode='form_post' is recommended", category=UserWarning
)

# Inside the 10 s most browsers and proxies wait for a page, with time left for the database.
TIMEOUT_S = 8.0
DEFAULT_RETURN_TO = "/admin/"
# How far the issuer's clock may be ahead of ours for an ID token to count as unexpired.
CLOCK_SKEW = timedelta(minutes=2)
LOCAL_OPERATOR_ID = "local-operator"
# What a provider's error code may look like to be logged (RFC 6749 codes are of this shape).
ERROR_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
# Token endpoint errors that mean "try again later" rather than "this sign-in is refused".
PROVIDER_BUSY = frozenset({"temporarily_unavailable", "server_error"})
MAX_SECRET_LENGTH = 512
MAX_RETURN_TO_LENGTH = 2048


class SignInFailure(StrEnum):
    """Why signing in did not work (a sentence for each is in messages.CONSOLE_SIGNIN_FAILURES)."""

    NOT_AVAILABLE = "not_available"  # this way of signing in is not the configured one
    UNKNOWN_STATE = "unknown_state"  # no state, or its flow expired, was used or never existed
    WRONG_BROWSER = "wrong_browser"  # binding cookie missing or not the flow's (login CSRF)
    PROVIDER_ERROR = "provider_error"  # the identity provider redirected back with error=…
    EXCHANGE_FAILED = "exchange_failed"  # msal answered an error, or raised
    INVALID_CLAIMS = "invalid_claims"  # the ID token's issuer, audience or expiry is wrong
    NO_IDENTITY = "no_identity"  # no ID token, or it lacks tid or oid/sub
    TENANT_NOT_ALLOWED = "tenant_not_allowed"  # settings.tenant_allowed(tid) is false
    UNAVAILABLE = "unavailable"  # the provider (or the database) timed out or is unreachable
    UNKNOWN_LINK = "unknown_link"  # a one-time link that expired, was used or never existed


class SignInFailed(Exception):
    """Signing in did not work; `reason` says why, `provider_error` the provider's error code."""

    def __init__(self, reason: SignInFailure, *, provider_error: str | None = None) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.provider_error = provider_error

    @property
    def sentence(self) -> str:
        """What to tell the person."""
        return messages.CONSOLE_SIGNIN_FAILURES[self.reason.value]


@dataclass(frozen=True)
class SignInStart:
    """Where to send the browser, and the value for its short-lived binding cookie."""

    url: str
    binding: str = field(repr=False)


@dataclass(frozen=True)
class _Provider:
    app: msal.ConfidentialClientApplication
    issuer: str  # from the discovery document; Entra's multi-tenant one holds {tenantid}


class _NoTokenCache(msal.TokenCache):  # type: ignore[misc]
    """Keeps nothing: the console needs only the ID token's claims, never the tokens, so
    administrators' tokens must not pile up in the process's memory."""

    def add(self, event: Any, now: Any = None) -> None:
        return None


def safe_return_to(value: object) -> str:
    """`value` when it is a path under /admin/ of this site, else /admin/ (no open redirect)."""
    if not isinstance(value, str) or len(value) > MAX_RETURN_TO_LENGTH:
        return DEFAULT_RETURN_TO
    if not value.startswith(DEFAULT_RETURN_TO) or any(
        character == "\\" or ord(character) < 0x20 or ord(character) == 0x7F for character in value
    ):
        return DEFAULT_RETURN_TO
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return DEFAULT_RETURN_TO
    # Encoded dot segments and backslashes could lead a browser out of /admin/ all the same.
    path = unquote(parts.path)
    if "\\" in path or any(segment in (".", "..") for segment in path.split("/")):
        return DEFAULT_RETURN_TO
    return value


def id_token_failure(
    claims: Mapping[str, Any], *, issuer: str, client_id: str, now: datetime
) -> str | None:
    """What is wrong with an ID token's issuer, audience or expiry (OIDC Core 3.1.3.7 items
    2, 3, 4, 5 and 9), or None when nothing is.

    `issuer` is the discovery document's; Entra's multi-tenant authorities name it with a
    `{tenantid}` placeholder, which stands for the token's own `tid`.
    """
    tenant = claims.get("tid")
    expected = issuer
    if "{tenantid}" in issuer:
        if not isinstance(tenant, str) or not tenant:
            return "issuer"
        expected = issuer.replace("{tenantid}", tenant)
    if claims.get("iss") != expected:
        return "issuer"
    audience = claims.get("aud")
    if isinstance(audience, list):
        if client_id not in audience:
            return "audience"
        if len(audience) > 1 and claims.get("azp") != client_id:
            return "audience"
    elif audience != client_id:
        return "audience"
    expiry = claims.get("exp")
    if isinstance(expiry, bool) or not isinstance(expiry, int | float):
        return "expiry"
    if expiry <= (now - CLOCK_SKEW).timestamp():
        return "expiry"
    return None


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if isinstance(item, str))


def _error_code(value: object) -> str:
    """The provider's error code when it looks like one; anything else is not repeated."""
    if isinstance(value, str) and ERROR_CODE.fullmatch(value):
        return value
    return "unrecognised"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ConsoleSignIn:
    """The admin console's sign-in, in the mode the settings choose.

    Args:
        settings: the console's client, authority, redirect URI and allowed tenants.
        store: where flows and one-time links wait (collection `admin_signins`).
        cipher: seals the msal flows (they hold the PKCE verifier and the nonce).
        timeout_s: the bound of building the msal application and of each code exchange.
        clock: the current time (tests move it).
    """

    def __init__(
        self,
        settings: Settings,
        store: AdminSignInStore,
        cipher: TokenCipher,
        *,
        timeout_s: float = TIMEOUT_S,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._settings = settings
        self._store = store
        self._cipher = cipher
        self._timeout_s = timeout_s
        self._clock = clock
        self._provider: _Provider | None = None
        self._building = asyncio.Lock()

    @property
    def mode(self) -> Literal["entra", "oidc", "link"]:
        return self._settings.console_sign_in

    async def start(self, *, return_to: str) -> SignInStart:
        """Begin signing in: the identity provider's URL, and the browser's binding value.

        Raises:
            SignInFailed: `not_available` in link mode; `unavailable` when the provider's
                discovery or the database cannot be reached.
        """
        self._require(identity_provider=True)
        provider = await self._app()
        flow: dict[str, Any] = provider.app.initiate_auth_code_flow(
            scopes=[], redirect_uri=self._settings.console_redirect_uri, response_mode="query"
        )
        binding = secrets.token_urlsafe(32)
        try:
            await self._store.save_flow(
                state=flow["state"],
                flow=self._cipher.seal(flow),
                binding=binding,
                return_to=safe_return_to(return_to),
                now=self._clock(),
            )
        except PyMongoError as error:
            raise self._failed(SignInFailure.UNAVAILABLE, type(error).__name__) from None
        return SignInStart(url=flow["auth_uri"], binding=binding)

    async def finish(
        self, *, query: Mapping[str, str], binding: str | None
    ) -> tuple[Administrator, str]:
        """Complete signing in from the identity provider's redirect.

        Args:
            query: the redirect's query parameters (state, code or error, ...).
            binding: the binding cookie's value, None when the browser sent none.

        Returns:
            The administrator and the path under /admin/ to go to.

        Raises:
            SignInFailed: with the reason (see `SignInFailure`).
        """
        self._require(identity_provider=True)
        state = query.get("state")
        if not isinstance(state, str) or not state or len(state) > MAX_SECRET_LENGTH:
            raise self._failed(SignInFailure.UNKNOWN_STATE)
        try:
            pending = await self._store.take_flow(state, now=self._clock())
        except PyMongoError as error:
            raise self._failed(SignInFailure.UNAVAILABLE, type(error).__name__) from None
        if pending is None:
            raise self._failed(SignInFailure.UNKNOWN_STATE)
        if not isinstance(binding, str) or not hmac.compare_digest(
            secret_hash(binding), pending.binding_hash
        ):
            raise self._failed(SignInFailure.WRONG_BROWSER)
        if "error" in query:
            code = _error_code(query.get("error"))
            raise self._failed(SignInFailure.PROVIDER_ERROR, code, provider_error=code)
        try:
            flow = self._cipher.open(pending.flow)
        except TokenDecryptionError:
            # Sealed with a key no longer configured: as good as unknown; start again.
            raise self._failed(SignInFailure.UNKNOWN_STATE) from None
        provider = await self._app()
        try:
            async with asyncio.timeout(self._timeout_s):
                result = await asyncio.to_thread(
                    provider.app.acquire_token_by_auth_code_flow, flow, dict(query)
                )
        except (OSError, MsalServiceError) as error:
            # TimeoutError, requests' errors (OSErrors too), and msal's for an HTTP 5xx answer.
            raise self._failed(SignInFailure.UNAVAILABLE, type(error).__name__) from None
        except Exception as error:
            # Only the type: msal's messages may quote the ID token's claims.
            raise self._failed(SignInFailure.EXCHANGE_FAILED, type(error).__name__) from None
        if not isinstance(result, dict) or "error" in result:
            code = _error_code(result.get("error") if isinstance(result, dict) else None)
            if code in PROVIDER_BUSY:
                raise self._failed(SignInFailure.UNAVAILABLE, code)
            raise self._failed(SignInFailure.EXCHANGE_FAILED, code)
        return self._administrator(result.get("id_token_claims"), provider), pending.return_to

    async def redeem_link(self, token: str) -> Administrator:
        """Sign in the operator on this machine with a one-time link (link mode only).

        Raises:
            SignInFailed: `not_available` outside link mode; `unknown_link` for a link that
                expired, was used or never existed; `unavailable` when the database is.
        """
        self._require(identity_provider=False)
        if not isinstance(token, str) or not token or len(token) > MAX_SECRET_LENGTH:
            raise self._failed(SignInFailure.UNKNOWN_LINK)
        try:
            taken = await self._store.take_link(token, now=self._clock())
        except PyMongoError as error:
            raise self._failed(SignInFailure.UNAVAILABLE, type(error).__name__) from None
        if not taken:
            raise self._failed(SignInFailure.UNKNOWN_LINK)
        return Administrator(
            tenant_id="*",
            object_id=LOCAL_OPERATOR_ID,
            name=messages.CONSOLE_LOCAL_OPERATOR,
            local_operator=True,
        )

    async def close(self) -> None:
        provider, self._provider = self._provider, None
        if provider is not None:
            provider.app.http_client.close()

    def _require(self, *, identity_provider: bool) -> None:
        if (self.mode != "link") != identity_provider:
            raise self._failed(SignInFailure.NOT_AVAILABLE, self.mode)

    def _failed(
        self, reason: SignInFailure, detail: str | None = None, *, provider_error: str | None = None
    ) -> SignInFailed:
        if reason is SignInFailure.UNAVAILABLE:
            log.warning(messages.LOG_CONSOLE_SIGNIN_FAILED_WITH, reason.value, detail)
        elif detail:
            log.info(messages.LOG_CONSOLE_SIGNIN_FAILED_WITH, reason.value, detail)
        else:
            log.info(messages.LOG_CONSOLE_SIGNIN_FAILED, reason.value)
        return SignInFailed(reason, provider_error=provider_error)

    def _administrator(self, claims: object, provider: _Provider) -> Administrator:
        if not isinstance(claims, dict):
            raise self._failed(SignInFailure.NO_IDENTITY)
        client_id = self._settings.console_client_id or ""
        problem = id_token_failure(
            claims, issuer=provider.issuer, client_id=client_id, now=self._clock()
        )
        if problem is not None:
            raise self._failed(SignInFailure.INVALID_CLAIMS, problem)
        tenant_id = claims.get("tid")
        object_id = claims.get("oid") or claims.get("sub")
        if not isinstance(tenant_id, str) or not tenant_id or not isinstance(object_id, str):
            raise self._failed(SignInFailure.NO_IDENTITY)
        if not self._settings.tenant_allowed(tenant_id):
            raise self._failed(SignInFailure.TENANT_NOT_ALLOWED, tenant_id)
        name = claims.get("name") or claims.get("preferred_username") or ""
        return Administrator(
            tenant_id=tenant_id,
            object_id=object_id,
            name=name if isinstance(name, str) else "",
            groups=_strings(claims.get("groups")),
            roles=_strings(claims.get("roles")),
        )

    async def _app(self) -> _Provider:
        """The msal application, built once; a failed build is tried again on the next call."""
        if self._provider is not None:
            return self._provider
        try:
            # One bound for waiting on another caller's build and for building.
            async with asyncio.timeout(self._timeout_s), self._building:
                if self._provider is None:
                    self._provider = await asyncio.to_thread(self._build)
        except Exception as error:  # TimeoutError, requests' errors, msal's ValueErrors
            log.warning(messages.LOG_CONSOLE_PROVIDER_UNAVAILABLE, type(error).__name__)
            raise SignInFailed(SignInFailure.UNAVAILABLE) from None
        return self._provider

    def _build(self) -> _Provider:
        """Build the msal application and read the issuer (blocking: run in a thread)."""
        settings = self._settings
        authority = settings.console_authority
        common: dict[str, Any] = {
            "client_credential": settings.console_client_secret,
            "token_cache": _NoTokenCache(),
            # Each HTTP request is bounded too, so a thread outliving its await ends.
            "timeout": self._timeout_s,
            # The console never uses a refresh token; don't ask for one.
            "exclude_scopes": ["offline_access"],
        }
        if settings.console_sign_in == "oidc":
            app = msal.ConfidentialClientApplication(
                settings.console_client_id, oidc_authority=authority, **common
            )
            discovery = f"{authority}/.well-known/openid-configuration"
        else:
            app = msal.ConfidentialClientApplication(
                settings.console_client_id, authority=authority, **common
            )
            discovery = f"{authority}/v2.0/.well-known/openid-configuration"
        # msal keeps the issuer to itself; ask for it through msal's own HTTP client (same TLS
        # trust and timeout), and usually from its cache.
        response = app.http_client.get(discovery)
        if response.status_code != 200:
            raise ValueError(f"discovery answered HTTP {response.status_code}")
        issuer = json.loads(response.text).get("issuer")
        if not isinstance(issuer, str) or not issuer:
            raise ValueError("the discovery document names no issuer")
        return _Provider(app=app, issuer=issuer)
