"""The sandbox OAuth2 provider: Authlib's authorization server over in-memory models.

Endpoints (all paths are fixed; the base URL is wherever the app is served):

- `GET /oauth/authorize` consent page, `POST /oauth/authorize` the decision;
- `POST /oauth/token` (authorization_code with PKCE S256, refresh_token with rotation,
  client_credentials for an app's own token);
- `POST /oauth/revoke` (RFC 7009), `GET|POST /oauth/userinfo` (Bearer);
- `POST /api/opportunities` (Bearer) and `GET /api/opportunities` (no authentication);
- `GET /api/opportunities/<id>/summary` (Bearer): one opportunity; `GET /api/summary` (Bearer):
  every opportunity's count and total, the endpoint a recipe would reach if `..` as an id
  escaped its path segment (the recipe URL tests check it is never called);
- `GET /.well-known/oauth-authorization-server` (RFC 8414);
- `GET /_stats`, `GET|POST /_control`: test controls, answered on loopback only.

Counters (`/_stats`) count every request received, failed ones included (`api.summary` and
`api.opportunities.summary` appear once called). `SandboxState.requests` keeps the method and
raw request target (path and query, exactly as received) of every request. `POST /_control`
takes a JSON object; `reset` is applied first, then the other keys:

- `reset: true`: counters to 0, controls off, lifetime back to the config, opportunities and
  the request log cleared (issued codes and tokens stay valid);
- `down: bool`: token, revoke and userinfo answer 503 `temporarily_unavailable`;
- `fail_refresh_with: "<error>"` (null clears): the next refresh answers that error (400; 401
  for invalid_client, 500 server_error, 503 temporarily_unavailable) before any validation, so
  the refresh token stays usable; `fail_refresh_times: n` for the next n, or null for every
  refresh until cleared or reset;
- `access_token_lifetime: seconds` (>= 1): for tokens issued from now on;
- `hang_s: seconds` (0 to 120; 0 is off): token, revoke, userinfo and `/api/*` requests wait
  that long before they are answered (a provider that hangs);
- `expire_access_tokens: true`: every access token issued so far is expired now;
- `refresh_token_idle_lifetime: seconds` (>= 1, null: never): a refresh token unused for that
  long is refused with `invalid_grant`, as Box does after 60 days;
- `age_refresh_tokens: seconds`: every refresh token issued so far counts as that much older
  (time passing, without waiting for it).
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import itertools
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from authlib.common.security import generate_token
from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2 import OAuth2Error, OAuth2Request
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    ClientMixin,
    InvalidGrantError,
    InvalidRequestError,
    MissingAuthorizationError,
    TokenMixin,
    UnsupportedTokenTypeError,
    grants,
)
from authlib.oauth2.rfc6749.util import list_to_scope, scope_to_list
from authlib.oauth2.rfc6750 import BearerTokenGenerator, BearerTokenValidator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge, create_s256_code_challenge
from flask import Flask, Response, jsonify, request

from sandbox.oidc import SandboxIssuer, SandboxOpenIDCode

TokenEndpointAuthMethod = Literal["client_secret_post", "client_secret_basic"]
AUTH_METHODS: tuple[TokenEndpointAuthMethod, ...] = ("client_secret_post", "client_secret_basic")
DEFAULT_SCOPES: tuple[str, ...] = ("profile", "email", "opportunities")
AUTHORIZATION_CODE_LIFETIME_S = 600  # RFC 6749 §4.1.2 recommends at most 10 minutes.
REALM = "sandbox"
EXTENSION_KEY = "sandbox"

# Every counter exists from the start so tests can compare whole dictionaries.
STAT_KEYS: tuple[str, ...] = (
    "authorize",
    "authorize.decision",
    "token.authorization_code",
    "token.refresh_token",
    "token.client_credentials",
    "token.other",
    "revoke",
    "userinfo",
    "api.opportunities",
    "api.opportunities.list",
)

# Status codes for errors injected with `fail_refresh_with`; anything else is a 400.
_INJECTED_ERROR_STATUS = {
    "invalid_client": 401,
    "server_error": 500,
    "temporarily_unavailable": 503,
}


@dataclass(frozen=True)
class SandboxUser:
    """A person who can be chosen on the consent page (there are no passwords)."""

    id: str
    username: str
    name: str
    email: str


DEFAULT_USERS: tuple[SandboxUser, ...] = (
    SandboxUser("user-alex", "alex", "Alex Wilber", "alex@sandbox.example"),
    SandboxUser("user-jane", "jane", "Jane Doe", "jane@sandbox.example"),
    SandboxUser("user-omar", "omar", "Omar Ali", "omar@sandbox.example"),
)


@dataclass(frozen=True)
class SandboxClient:
    """One registered confidential client."""

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uris: tuple[str, ...]
    token_endpoint_auth_method: TokenEndpointAuthMethod = "client_secret_post"  # noqa: S105
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    name: str = "Sandbox client"

    def __post_init__(self) -> None:
        # Accept lists from callers but keep the config immutable and hashable.
        object.__setattr__(self, "redirect_uris", tuple(self.redirect_uris))
        object.__setattr__(self, "scopes", tuple(self.scopes))
        if not self.client_id or not self.client_secret:
            raise ValueError("a client needs a client_id and a client_secret")
        if not self.redirect_uris:
            raise ValueError(f"client {self.client_id!r} needs at least one redirect URI")
        if self.token_endpoint_auth_method not in AUTH_METHODS:
            raise ValueError(f"token_endpoint_auth_method must be one of {AUTH_METHODS}")


@dataclass(frozen=True)
class SandboxConfig:
    """What the sandbox serves: its clients, its users, token lifetime and issuer.

    `issuer` is the public base URL without a trailing slash; when None it is taken from each
    request's host, which is what you want when the port is only known once the server runs.
    """

    clients: tuple[SandboxClient, ...]
    users: tuple[SandboxUser, ...] = DEFAULT_USERS
    access_token_lifetime: int = 3600
    # Seconds a refresh token may stay unused before it is refused (None: forever).
    refresh_token_idle_lifetime: int | None = None
    issuer: str | None = None
    # When set, the sandbox is also an OpenID Connect issuer at `<base>/<oidc_tenant>` whose ID
    # tokens name this tenant (`tid`): see sandbox/oidc.py.
    oidc_tenant: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "clients", tuple(self.clients))
        object.__setattr__(self, "users", tuple(self.users))
        if not self.clients or not self.users:
            raise ValueError("the sandbox needs at least one client and one user")
        if len({c.client_id for c in self.clients}) != len(self.clients):
            raise ValueError("client ids must be unique")
        if len({u.username for u in self.users}) != len(self.users):
            raise ValueError("usernames must be unique")
        _check_lifetime(self.access_token_lifetime)
        if self.issuer is not None:
            object.__setattr__(self, "issuer", self.issuer.rstrip("/"))


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_lifetime(value: object) -> None:
    # Authlib leaves `expires_in` out of the token response when it is 0, so require >= 1.
    if not _is_count(value):
        raise ValueError("access_token_lifetime must be a whole number of seconds >= 1")


# --- models: plain objects with the mixins Authlib calls into ----------------------------------


class Client(ClientMixin):
    def __init__(self, config: SandboxClient) -> None:
        self.config = config
        self.client_id = config.client_id

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # RFC 6749 §3.1.2.3: with several registered URIs the request must name one.
        uris = self.config.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        allowed = self.config.scopes
        if not scope:
            return list_to_scope(list(allowed))
        requested = list(dict.fromkeys(scope_to_list(scope)))
        # Strict on purpose: asking for a scope the client may not have is invalid_scope
        # rather than a silently narrower grant, so misconfigured apps show up in tests.
        if any(s not in allowed for s in requested):
            return None
        return list_to_scope(requested)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Exact string match, as RFC 9700 §2.1 asks; no prefix or pattern matching.
        return redirect_uri in self.config.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self.config.client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        # One registered method for the token and the revocation endpoint alike.
        return method == self.config.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token", "client_credentials")


@dataclass(eq=False)
class AuthorizationCode(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str | None
    scope: str
    user: SandboxUser
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: float
    # Tokens from this code and from its refreshes share one grant id, so a reused code or a
    # revoked refresh token can take the whole chain down.
    grant_id: str
    used: bool = False
    # OpenID Connect: the client's nonce, echoed in the ID token, and when the user consented.
    nonce: str | None = None
    auth_time: float = 0.0

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return int(self.auth_time)

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclass(eq=False)
class Token(TokenMixin):
    access_token: str
    refresh_token: str | None
    client: Client
    user: SandboxUser
    scope: str
    issued_at: float
    expires_in: int
    grant_id: str
    access_revoked: bool = False
    refresh_revoked: bool = False
    expired: bool = False

    def check_client(self, client: ClientMixin) -> bool:
        return client.get_client_id() == self.client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return self.expired or time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.access_revoked

    def get_user(self) -> SandboxUser:
        return self.user

    def get_client(self) -> Client:
        return self.client


# --- in-memory state, counters and test controls -----------------------------------------------

_ABSENT: Any = object()


class SandboxState:
    """Everything the sandbox knows; every read and write holds `lock` (werkzeug is threaded)."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.clients = {c.client_id: Client(c) for c in config.clients}
        self.users = {u.username: u for u in config.users}
        self.codes: dict[str, AuthorizationCode] = {}
        self.by_access: dict[str, Token] = {}
        self.by_refresh: dict[str, Token] = {}
        self.revoked_grants: set[str] = set()
        self.opportunities: list[dict[str, Any]] = []
        self._opportunity_ids = itertools.count(1)
        self.counters: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        # (method, raw request target) of every request, in order.
        self.requests: list[tuple[str, str]] = []
        self.down = False
        self.fail_refresh_with: str | None = None
        self.fail_refresh_remaining: int | None = None  # None with an error set: every refresh
        self.access_token_lifetime = config.access_token_lifetime
        self.refresh_token_idle_lifetime = config.refresh_token_idle_lifetime
        self.hang_s = 0.0

    # counters

    def count(self, key: str) -> None:
        with self.lock:
            self.counters[key] = self.counters.get(key, 0) + 1

    def stats(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counters)

    # controls

    def controls(self) -> dict[str, Any]:
        with self.lock:
            return {
                "down": self.down,
                "fail_refresh_with": self.fail_refresh_with,
                "fail_refresh_remaining": self.fail_refresh_remaining,
                "access_token_lifetime": self.access_token_lifetime,
                "refresh_token_idle_lifetime": self.refresh_token_idle_lifetime,
                "hang_s": self.hang_s,
            }

    def control(self, **changes: Any) -> dict[str, Any]:
        """Change test behaviour (see the module docstring); ValueError on bad input."""
        known = {
            "reset",
            "down",
            "fail_refresh_with",
            "fail_refresh_times",
            "access_token_lifetime",
            "expire_access_tokens",
            "hang_s",
            "refresh_token_idle_lifetime",
            "age_refresh_tokens",
        }
        if unknown := sorted(set(changes) - known):
            raise ValueError(f"unknown control(s): {', '.join(unknown)}")
        for name in ("reset", "down", "expire_access_tokens"):
            if name in changes and not isinstance(changes[name], bool):
                raise ValueError(f"{name} must be true or false")
        error = changes.get("fail_refresh_with", _ABSENT)
        if error is not _ABSENT and error is not None and (not isinstance(error, str) or not error):
            raise ValueError("fail_refresh_with must be an OAuth2 error code or null")
        times = changes.get("fail_refresh_times", _ABSENT)
        if times is not _ABSENT and times is not None and not _is_count(times):
            raise ValueError("fail_refresh_times must be a whole number >= 1 or null")
        if "fail_refresh_times" in changes and error is _ABSENT:
            raise ValueError("fail_refresh_times needs fail_refresh_with")
        lifetime = changes.get("access_token_lifetime", _ABSENT)
        if lifetime is not _ABSENT:
            _check_lifetime(lifetime)
        idle = changes.get("refresh_token_idle_lifetime", _ABSENT)
        if idle is not _ABSENT and idle is not None:
            _check_lifetime(idle)
        age = changes.get("age_refresh_tokens", _ABSENT)
        if age is not _ABSENT and (
            isinstance(age, bool) or not isinstance(age, int | float) or age < 0
        ):
            raise ValueError("age_refresh_tokens must be a number of seconds >= 0")
        hang = changes.get("hang_s", _ABSENT)
        if hang is not _ABSENT and (
            isinstance(hang, bool) or not isinstance(hang, int | float) or not 0 <= hang <= 120
        ):
            raise ValueError("hang_s must be a number of seconds from 0 to 120")

        with self.lock:
            # Reset first, so {"reset": true, "down": true} means "clean slate, then down".
            if changes.get("reset"):
                self.counters = dict.fromkeys(STAT_KEYS, 0)
                self.requests.clear()
                self.down = False
                self.fail_refresh_with = None
                self.fail_refresh_remaining = None
                self.access_token_lifetime = self.config.access_token_lifetime
                self.refresh_token_idle_lifetime = self.config.refresh_token_idle_lifetime
                self.opportunities.clear()
                self.hang_s = 0.0
            if "down" in changes:
                self.down = changes["down"]
            if hang is not _ABSENT:
                self.hang_s = float(hang)
            if error is not _ABSENT:
                self.fail_refresh_with = error
                self.fail_refresh_remaining = None if error is None else 1
                if error is not None and times is not _ABSENT:
                    self.fail_refresh_remaining = times
            if lifetime is not _ABSENT:
                self.access_token_lifetime = lifetime
            if idle is not _ABSENT:
                self.refresh_token_idle_lifetime = idle
            if age is not _ABSENT:
                for token in self.by_refresh.values():
                    token.issued_at -= age
            if changes.get("expire_access_tokens"):
                for token in self.by_access.values():
                    token.expired = True
        return self.controls()

    def take_refresh_failure(self) -> str | None:
        """The injected refresh error to answer with now, if any (and use it up)."""
        with self.lock:
            error = self.fail_refresh_with
            if error is None:
                return None
            if self.fail_refresh_remaining is not None:
                self.fail_refresh_remaining -= 1
                if self.fail_refresh_remaining <= 0:
                    self.fail_refresh_with = None
                    self.fail_refresh_remaining = None
            return error

    # tokens

    def save_token(self, token: Token) -> None:
        with self.lock:
            if token.grant_id in self.revoked_grants:
                token.access_revoked = token.refresh_revoked = True
            self.by_access[token.access_token] = token
            if token.refresh_token:
                self.by_refresh[token.refresh_token] = token

    def revoke_grant(self, grant_id: str) -> None:
        """Revoke every access and refresh token descended from one authorization code."""
        with self.lock:
            self.revoked_grants.add(grant_id)
            for token in self.by_access.values():
                if token.grant_id == grant_id:
                    token.access_revoked = token.refresh_revoked = True


# --- Authlib server pieces ---------------------------------------------------------------------


class _SandboxAuthorizationServer(AuthorizationServer):
    """Authlib's Flask server with a handle on our state (grants reach it via `self.server`)."""

    def __init__(self, state: SandboxState) -> None:
        super().__init__()
        self.sandbox = state


def _state_of(server: Any) -> SandboxState:
    return cast(_SandboxAuthorizationServer, server).sandbox


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    """Authlib's client credentials grant, with the client's registered authentication method
    (Authlib's default accepts only client_secret_basic; msal posts the secret)."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)  # noqa: RUF012 (Authlib's class attribute)


class RequiredS256CodeChallenge(CodeChallenge):
    """PKCE that is really required, and S256 only.

    Authlib's `CodeChallenge(required=True)` only insists on a verifier from *public* clients
    and lets an authorization request without `code_challenge` through; this refuses it.
    """

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012 (Authlib's class attribute)
    CODE_CHALLENGE_METHODS = {  # noqa: RUF012
        "S256": CodeChallenge.CODE_CHALLENGE_METHODS["S256"],
    }

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: missing 'code_challenge'.")
        # An absent method means "plain" (RFC 7636 §4.3), which this server does not support.
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)  # noqa: RUF012

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        state = _state_of(self.server)
        data = request.payload.data
        item = AuthorizationCode(
            code=code,
            client_id=request.client.get_client_id(),
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope,
            user=request.user,
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            expires_at=time.time() + AUTHORIZATION_CODE_LIFETIME_S,
            grant_id=uuid.uuid4().hex,
            nonce=data.get("nonce"),
            auth_time=time.time(),
        )
        with state.lock:
            state.codes[code] = item

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        state = _state_of(self.server)
        with state.lock:
            item = state.codes.get(code)
            if item is None or item.client_id != client.client_id:
                return None
            if item.used:
                # RFC 6749 §4.1.2: a code used twice SHOULD revoke what it already issued.
                state.revoke_grant(item.grant_id)
                return None
            if time.time() >= item.expires_at:
                return None
            return item

    def create_token_response(self) -> Any:
        # Claim the code before issuing so two concurrent exchanges cannot both succeed
        # (Authlib only deletes the code after saving the token).
        state = _state_of(self.server)
        item = cast(AuthorizationCode, self.request.authorization_code)
        with state.lock:
            if item.used:
                raise InvalidGrantError("Invalid 'code' in request.")
            item.used = True
        return super().create_token_response()

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        # Kept, marked used, so a replay is recognised (and revokes the grant) later.
        authorization_code.used = True

    def authenticate_user(self, authorization_code: AuthorizationCode) -> SandboxUser:
        return authorization_code.user


class RefreshTokenGrant(grants.RefreshTokenGrant):
    # Authlib's default here is client_secret_basic only.
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)  # noqa: RUF012
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        state = _state_of(self.server)
        with state.lock:
            token = state.by_refresh.get(refresh_token)
            if token is None or token.refresh_revoked:
                return None
            idle = state.refresh_token_idle_lifetime
            if idle is not None and time.time() - token.issued_at >= idle:
                return None  # unused for too long (refreshing issues a new one)
            return token

    def authenticate_user(self, refresh_token: Token) -> SandboxUser:
        return refresh_token.user

    def create_token_response(self) -> Any:
        # Rotation: take the old refresh token out of service before issuing, so of two
        # concurrent refreshes with the same token exactly one wins (the other: invalid_grant).
        state = _state_of(self.server)
        token = cast(Token, self.request.refresh_token)
        with state.lock:
            if token.refresh_revoked:
                raise InvalidGrantError()
            token.refresh_revoked = True
        try:
            return super().create_token_response()
        except OAuth2Error:
            with state.lock:
                token.refresh_revoked = token.grant_id in state.revoked_grants
            raise

    def revoke_old_credential(self, refresh_token: Token) -> None:
        # The old access token stays valid until it expires, as with most providers.
        refresh_token.refresh_revoked = True


class SandboxRevocationEndpoint(RevocationEndpoint):
    # Authlib's default here is client_secret_basic only.
    CLIENT_AUTH_METHODS = list(AUTH_METHODS)  # noqa: RUF012

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        # The hint is only a hint (RFC 7009 §2.1): look the string up as both kinds.
        state = _state_of(self.server)
        with state.lock:
            return state.by_access.get(token_string) or state.by_refresh.get(token_string)

    def revoke_token(self, token: Token, request: OAuth2Request) -> None:
        state = _state_of(self.server)
        if request.form["token"] == token.refresh_token:
            # RFC 7009 §2.1: revoking a refresh token also ends the grant's access tokens.
            state.revoke_grant(token.grant_id)
        else:
            with state.lock:
                token.access_revoked = True


class SandboxBearerTokenValidator(BearerTokenValidator):
    def __init__(self, state: SandboxState) -> None:
        super().__init__(realm=REALM)
        self.state = state

    def authenticate_token(self, token_string: str) -> Token | None:
        with self.state.lock:
            return self.state.by_access.get(token_string)


# --- the Flask app -----------------------------------------------------------------------------


def sandbox_state(app: Flask) -> SandboxState:
    """The state behind an app made by `create_app` (counters, controls, tokens)."""
    return cast(SandboxState, app.extensions[EXTENSION_KEY])


def create_app(config: SandboxConfig) -> Flask:
    """A Flask app serving the sandbox provider for `config`, with fresh in-memory state."""
    app = Flask("sandbox")
    state = SandboxState(config)
    app.extensions[EXTENSION_KEY] = state

    server = _SandboxAuthorizationServer(state)
    server.init_app(app, query_client=state.clients.get, save_token=_token_saver(state))
    # Replaces the generator init_app made from app.config: Authlib's defaults issue no refresh
    # token and give authorization_code tokens 10 days; here the lifetime follows the controls.
    server.register_token_generator(
        "default",
        BearerTokenGenerator(
            access_token_generator=lambda **_: generate_token(42),
            refresh_token_generator=lambda **_: generate_token(48),
            expires_generator=lambda client, grant_type: state.access_token_lifetime,
        ),
    )
    server.scopes_supported = sorted({s for c in config.clients for s in c.scopes})
    code_extensions: list[Any] = [RequiredS256CodeChallenge(required=True)]
    issuer = SandboxIssuer(config.oidc_tenant) if config.oidc_tenant else None
    if issuer is not None:

        def nonce_used(client_id: str, nonce: str) -> bool:
            with state.lock:
                return any(
                    code.client_id == client_id and code.nonce == nonce
                    for code in state.codes.values()
                )

        code_extensions.append(
            SandboxOpenIDCode(
                issuer,
                base_url=lambda: config.issuer or request.host_url.rstrip("/"),
                nonce_used=nonce_used,
            )
        )
    server.register_grant(AuthorizationCodeGrant, code_extensions)
    server.register_grant(RefreshTokenGrant)
    # An app's own token (the bot's token for the Bot Framework connector, in Entra ID's place).
    server.register_grant(ClientCredentialsGrant)
    server.register_endpoint(SandboxRevocationEndpoint)

    protector = ResourceProtector()
    protector.register_token_validator(SandboxBearerTokenValidator(state))

    def bearer_token() -> Token | Response:
        """The request's valid access token, or the 401 answer to send instead."""
        try:
            return cast(Token, protector.acquire_token())
        except (MissingAuthorizationError, UnsupportedTokenTypeError):
            # RFC 6750 §3.1: no credentials at all gets a challenge without an error code.
            response = jsonify(error="invalid_request", error_description="Bearer token required.")
            response.status_code = 401
            response.headers["WWW-Authenticate"] = f'Bearer realm="{REALM}"'
            return response
        except OAuth2Error as error:
            return _oauth_error_response(error)

    def unavailable() -> Response | None:
        if not state.down:
            return None
        response = jsonify(
            error="temporarily_unavailable", error_description="The sandbox is down (test control)."
        )
        response.status_code = 503
        response.headers["Retry-After"] = "1"
        return response

    @app.before_request
    def _log_request() -> None:
        # werkzeug's server keeps the request line's target as sent (before any decoding).
        raw = request.environ.get("RAW_URI") or request.full_path
        with state.lock:
            state.requests.append((request.method, str(raw)))
            hang = state.hang_s
        if hang and request.path.startswith(
            ("/oauth/token", "/oauth/revoke", "/oauth/userinfo", "/api/")
        ):
            time.sleep(hang)  # a provider that hangs (test control); the server is threaded

    @app.after_request
    def _no_referrer(response: Response) -> Response:
        # Authorization pages carry state and codes in URLs; don't leak them onwards.
        if request.path.startswith("/oauth/"):
            response.headers["Referrer-Policy"] = "no-referrer"
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.get("/<tenant>/.well-known/openid-configuration")
    def openid_configuration(tenant: str) -> Response | tuple[Response, int]:
        if issuer is None or tenant != issuer.tenant:
            return jsonify(error="not_found"), 404
        base = config.issuer or request.host_url.rstrip("/")
        return jsonify(issuer.discovery(base, list(server.scopes_supported or [])))

    @app.get("/<tenant>/discovery/keys")
    def signing_keys(tenant: str) -> Response | tuple[Response, int]:
        if issuer is None or tenant != issuer.tenant:
            return jsonify(error="not_found"), 404
        return jsonify(issuer.jwks())

    @app.get("/oauth/authorize")
    def authorize_page() -> Response:
        state.count("authorize")
        try:
            grant = server.get_consent_grant(end_user=None)
        except OAuth2Error as error:
            return _authorize_error(server, error)
        client = cast(Client, grant.client)
        return _consent_page(client, grant.request.scope, grant.redirect_uri, config.users)

    @app.post("/oauth/authorize")
    def authorize_decision() -> Response:
        state.count("authorize.decision")
        try:
            # Validate the kept query again: the POST is just as forgeable as the GET.
            grant = server.get_consent_grant(end_user=None)
        except OAuth2Error as error:
            return _authorize_error(server, error)
        decision = request.form.get("decision")
        if decision not in ("allow", "deny"):
            return _error_page("invalid_request", "The decision must be allow or deny.")
        user = None
        if decision == "allow":
            user = state.users.get(request.form.get("user", ""))
            if user is None:
                return _error_page("invalid_request", "Choose one of the listed accounts.")
        return cast(Response, server.create_authorization_response(grant=grant, grant_user=user))

    @app.post("/oauth/token")
    def token() -> Response:
        grant_type = request.form.get("grant_type")
        known = ("authorization_code", "refresh_token", "client_credentials")
        key = f"token.{grant_type}" if grant_type in known else ""
        state.count(key or "token.other")
        if down := unavailable():
            return down
        if grant_type == "refresh_token" and (error := state.take_refresh_failure()):
            response = jsonify(error=error, error_description="Injected by /_control.")
            response.status_code = _INJECTED_ERROR_STATUS.get(error, 400)
            response.headers["Cache-Control"] = "no-store"
            return response
        return cast(Response, server.create_token_response())

    @app.post("/oauth/revoke")
    def revoke() -> Response:
        state.count("revoke")
        if down := unavailable():
            return down
        return cast(Response, server.create_endpoint_response("revocation"))

    @app.route("/oauth/userinfo", methods=["GET", "POST"])
    def userinfo() -> Response:
        state.count("userinfo")
        if down := unavailable():
            return down
        token = bearer_token()
        if isinstance(token, Response):
            return token
        user = token.user
        return jsonify(
            sub=user.id, name=user.name, email=user.email, preferred_username=user.username
        )

    @app.post("/api/opportunities")
    def create_opportunity() -> Response | tuple[Response, int]:
        state.count("api.opportunities")
        token = bearer_token()
        if isinstance(token, Response):
            return token
        body = request.get_json(force=True, silent=True)
        problem = _opportunity_problem(body)
        if problem:
            return jsonify(error="invalid_request", error_description=problem), 400
        body = cast(dict[str, Any], body)
        with state.lock:
            item = {
                "id": f"opp-{next(state._opportunity_ids)}",
                "name": body["name"],
                "amount": body["amount"],
                "created_by": {"sub": token.user.id, "email": token.user.email},
            }
            state.opportunities.append(item)
        return jsonify(item), 201

    @app.get("/api/opportunities/<opportunity_id>/summary")
    def opportunity_summary(opportunity_id: str) -> Response | tuple[Response, int]:
        state.count("api.opportunities.summary")
        token = bearer_token()
        if isinstance(token, Response):
            return token
        with state.lock:
            found = [o for o in state.opportunities if o["id"] == opportunity_id]
        if not found:
            description = "No opportunity has that id."
            return jsonify(error="not_found", error_description=description), 404
        item = found[0]
        return jsonify(id=item["id"], name=item["name"], amount=item["amount"])

    @app.get("/api/summary")
    def summary() -> Response:
        # Every opportunity, whoever created it: what an id of ".." must never reach.
        state.count("api.summary")
        token = bearer_token()
        if isinstance(token, Response):
            return token
        with state.lock:
            amounts = [o["amount"] for o in state.opportunities]
        return jsonify(count=len(amounts), total=sum(amounts))

    @app.get("/api/opportunities")
    def list_opportunities() -> Response:
        # No authentication on the list on purpose: tests read what recipes created.
        state.count("api.opportunities.list")
        with state.lock:
            return jsonify(list(state.opportunities))

    @app.get("/.well-known/oauth-authorization-server")
    def metadata() -> Response:
        issuer = config.issuer or request.host_url.rstrip("/")
        methods = list(AUTH_METHODS)
        return jsonify(
            issuer=issuer,
            authorization_endpoint=f"{issuer}/oauth/authorize",
            token_endpoint=f"{issuer}/oauth/token",
            revocation_endpoint=f"{issuer}/oauth/revoke",
            userinfo_endpoint=f"{issuer}/oauth/userinfo",
            scopes_supported=server.scopes_supported,
            response_types_supported=["code"],
            response_modes_supported=["query"],
            grant_types_supported=["authorization_code", "refresh_token", "client_credentials"],
            token_endpoint_auth_methods_supported=methods,
            revocation_endpoint_auth_methods_supported=methods,
            code_challenge_methods_supported=["S256"],
        )

    @app.get("/_stats")
    def stats() -> Response | tuple[Response, int]:
        if not _from_loopback():
            return jsonify(error="forbidden"), 403
        return jsonify(state.stats())

    @app.route("/_control", methods=["GET", "POST"])
    def control() -> Response | tuple[Response, int]:
        if not _from_loopback():
            return jsonify(error="forbidden"), 403
        if request.method == "GET":
            return jsonify(state.controls())
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            return jsonify(error="invalid_request", error_description="Send a JSON object."), 400
        try:
            return jsonify(state.control(**body))
        except ValueError as error:
            return jsonify(error="invalid_request", error_description=str(error)), 400

    return app


def _token_saver(state: SandboxState) -> Callable[[dict[str, Any], OAuth2Request], None]:
    def save_token(token: dict[str, Any], request: OAuth2Request) -> None:
        parent = request.authorization_code or request.refresh_token
        client = cast(Client, request.client)
        if parent is None:  # client credentials: the app acts as itself, a grant of its own
            user = SandboxUser(f"app-{client.client_id}", client.client_id, client.config.name, "")
            grant_id = uuid.uuid4().hex
        else:
            user = cast(SandboxUser, request.user)
            grant_id = cast(AuthorizationCode | Token, parent).grant_id
        state.save_token(
            Token(
                access_token=token["access_token"],
                refresh_token=token.get("refresh_token"),
                client=client,
                user=user,
                scope=token.get("scope", ""),
                issued_at=time.time(),
                expires_in=int(token["expires_in"]),
                grant_id=grant_id,
            )
        )

    return save_token


def _opportunity_problem(body: object) -> str | None:
    if not isinstance(body, dict):
        return "The body must be a JSON object."
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        return "'name' must be a non-empty string."
    amount = body.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not math.isfinite(amount):
        return "'amount' must be a number."
    return None


def _from_loopback() -> bool:
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


def _oauth_error_response(error: OAuth2Error) -> Response:
    response = jsonify(dict(error.get_body()))
    response.status_code = error.status_code
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _authorize_error(server: AuthorizationServer, error: OAuth2Error) -> Response:
    # Authlib sets redirect_uri on an error only once client and redirect URI are verified;
    # then RFC 6749 §4.1.2.1 says tell the client. Otherwise never redirect: show a page.
    if error.redirect_uri:
        return cast(Response, server.handle_error_response(None, error))
    return _error_page(error.error or "invalid_request", error.get_error_description())


def _error_page(error: str, description: str | None) -> Response:
    body = _page(
        "Sign-in error",
        f"<h1>Sign-in error</h1><p><code>{html.escape(error)}</code></p>"
        f"<p>{html.escape(description or '')}</p>",
    )
    return Response(body, status=400, mimetype="text/html")


def _consent_page(
    client: Client, scope: str, redirect_uri: str, users: Iterable[SandboxUser]
) -> Response:
    scopes = "".join(f"<li>{html.escape(s)}</li>" for s in scope_to_list(scope) or [])
    radios = "".join(
        f'<label><input type="radio" name="user" value="{html.escape(u.username)}"'
        f"{' checked' if i == 0 else ''}> {html.escape(u.name)} "
        f"&lt;{html.escape(u.email)}&gt;</label><br>"
        for i, u in enumerate(users)
    )
    # Post back to the same URL: the original query (client, PKCE, state) rides along and is
    # validated again, and no parameter appears twice (Authlib refuses duplicates).
    query = request.query_string.decode("latin-1")
    action = html.escape(f"/oauth/authorize?{query}", quote=True)
    target = html.escape(urlsplit(redirect_uri).netloc or redirect_uri)
    body = _page(
        "Sign in to the sandbox",
        f"<h1>{html.escape(client.config.name)} wants to use your sandbox account</h1>"
        f"<p>It asks for:</p><ul>{scopes}</ul>"
        f'<form method="post" action="{action}">'
        f"<fieldset><legend>Continue as</legend>{radios}</fieldset>"
        '<button type="submit" name="decision" value="allow">Allow</button> '
        '<button type="submit" name="decision" value="deny">Deny</button>'
        "</form>"
        f"<p><small>You will be sent back to {target}.</small></p>",
    )
    response = Response(body, status=200, mimetype="text/html")
    response.headers["X-Frame-Options"] = "DENY"
    return response


def _page(title: str, content: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;"
        "padding:0 1rem}button{padding:.4rem 1.2rem;margin-right:.5rem}</style>"
        f"</head><body>{content}</body></html>"
    )


def s256_challenge(verifier: str) -> str:
    """The PKCE S256 code challenge for `verifier` (handy for tests and scripts)."""
    return cast(str, create_s256_code_challenge(verifier))


__all__ = [
    "DEFAULT_SCOPES",
    "DEFAULT_USERS",
    "SandboxClient",
    "SandboxConfig",
    "SandboxState",
    "SandboxUser",
    "create_app",
    "s256_challenge",
    "sandbox_state",
]
