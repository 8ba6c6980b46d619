"""Bot Framework authentication for the bot: inbound token checks and cached outbound clients.

Inbound: the SDK validates tokens with a blocking `requests.get` of the OpenID metadata inside
the event loop, answers malformed tokens with exceptions that become 500s, and does not let us
choose the metadata URL without re-declaring every cloud endpoint. So channel tokens are checked
here, asynchronously, by the Bot Framework's published rules (issuer api.botframework.com,
audience = our app id, RS256 signature by a key from the configured OpenID metadata whose
endorsements include the activity's channel, expiry with five minutes of skew, `serviceurl`
claim equal to the activity's serviceUrl). Tokens from other issuers (the Emulator, skills) are
not accepted. Any failure raises `PermissionError` (401).

Outbound: the stock SDK builds a new ConnectorClient and TokenApiClient, with fresh credentials
and token cache, for every activity, which costs most of a turn's CPU. One client per
(app id, serviceUrl, audience) and one user token client per app id are kept instead.

Secrets leave their `SecretStr` only in `_sdk_configuration`, because the SDK reads plain
strings (given a SecretStr it would send "**********" as the password).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt
from botbuilder.integration.aiohttp import ConfigurationBotFrameworkAuthentication
from botbuilder.schema import Activity, CallerIdConstants
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import (
    AuthenticateRequestResult,
    AuthenticationConstants,
    BotFrameworkAuthentication,
    ClaimsIdentity,
    ConnectorFactory,
    UserTokenClient,
)
from botframework.connector.skills import BotFrameworkClient

import messages
from settings import Settings, is_loopback_host

log = logging.getLogger(__name__)

CHANNEL_TOKEN_ISSUER = "https://api.botframework.com"  # noqa: S105 - an issuer URL
CLOCK_SKEW_S = 300
KEYS_MAX_AGE_S = 24 * 3600
UNKNOWN_KEY_REFRESH_S = 300
CONNECTOR_CACHE_SIZE = 64


class SigningKeysUnavailable(RuntimeError):
    """The signing keys could not be fetched, so no token can be checked right now."""


class ActivityRefused(Exception):
    """An authentic request the bot will not act on (403): a channel not trusted to assert
    identity, or (authentication off) a reply address off this machine."""


@dataclass
class _SdkConfiguration:
    """The attribute names ConfigurationBotFrameworkAuthentication reads, as plain strings."""

    APP_ID: str
    APP_PASSWORD: str
    APP_TYPE: str
    APP_TENANTID: str


def _is_loopback_url(url: str | None) -> bool:
    try:
        parts = urlsplit(url or "")
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and is_loopback_host(parts.hostname)


def _sdk_configuration(settings: Settings) -> _SdkConfiguration:
    password = settings.app_password.get_secret_value() if settings.app_password else ""
    return _SdkConfiguration(
        APP_ID=settings.app_id or "",
        APP_PASSWORD=password,
        APP_TYPE=settings.app_type,
        APP_TENANTID=settings.app_tenant_id or "",
    )


@dataclass
class SigningKeys:
    """The Bot Framework's token signing keys, fetched without blocking and cached.

    Refreshed once a day, and at most every five minutes when a token names an unknown key
    (the Bot Framework rolls its keys).
    """

    metadata_url: str
    session: aiohttp.ClientSession
    _keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    _fetched_at: float = float("-inf")
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def find(self, key_id: str) -> dict[str, Any] | None:
        """The JWK with that key id, or None when the issuer does not publish it."""
        age = time.monotonic() - self._fetched_at
        if age > KEYS_MAX_AGE_S or (key_id not in self._keys and age > UNKNOWN_KEY_REFRESH_S):
            await self._refresh(self._fetched_at)
        return self._keys.get(key_id)

    async def _refresh(self, seen_fetch: float) -> None:
        async with self._lock:
            if self._fetched_at != seen_fetch:
                return  # someone else refreshed while we waited
            try:
                timeout = aiohttp.ClientTimeout(total=10)
                async with self.session.get(self.metadata_url, timeout=timeout) as response:
                    response.raise_for_status()
                    jwks_uri = (await response.json(content_type=None))["jwks_uri"]
                async with self.session.get(jwks_uri, timeout=timeout) as response:
                    response.raise_for_status()
                    keys = (await response.json(content_type=None))["keys"]
                self._keys = {key["kid"]: key for key in keys if isinstance(key, dict)}
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as error:
                log.warning(
                    messages.LOG_SIGNING_KEYS_UNAVAILABLE, self.metadata_url, type(error).__name__
                )
                if not self._keys:
                    raise SigningKeysUnavailable(self.metadata_url) from None
                return  # keep serving the keys we have
            self._fetched_at = time.monotonic()


class _CachingConnectorFactory(ConnectorFactory):
    def __init__(self, owner: TeamsBotAuthentication, inner: ConnectorFactory, app_id: str) -> None:
        self._owner = owner
        self._inner = inner
        self._app_id = app_id

    async def create(self, service_url: str, audience: str | None = None) -> ConnectorClient:
        return await self._owner.connector_client(self._inner, self._app_id, service_url, audience)


class TeamsBotAuthentication(BotFrameworkAuthentication):
    """The BotFrameworkAuthentication handed to CloudAdapter.

    Args:
        settings: the bot's settings (app id, password, type, tenant, OpenID metadata URL).
        session: a shared aiohttp session used to fetch signing keys.
    """

    def __init__(self, settings: Settings, session: aiohttp.ClientSession) -> None:
        self._app_id = settings.app_id or ""
        self._auth_enabled = settings.auth_enabled
        self._allowed_channels = settings.allowed_channel_ids
        self._inner = ConfigurationBotFrameworkAuthentication(_sdk_configuration(settings))
        self._keys = SigningKeys(str(settings.openid_metadata_url), session)
        self._connectors: OrderedDict[tuple[str, str, str], ConnectorClient] = OrderedDict()
        self._user_token_clients: dict[str, UserTokenClient] = {}
        self._creating = asyncio.Lock()

    async def authenticate_request(
        self, activity: Activity, auth_header: str
    ) -> AuthenticateRequestResult:
        if not self._auth_enabled:
            # Local use: replies go only to this machine, or anyone could make the bot send
            # requests anywhere (server-side request forgery).
            if not _is_loopback_url(activity.service_url):
                raise ActivityRefused("serviceUrl is not on this machine")
            # The SDK grants anonymous claims to a request without a header. A header is
            # ignored rather than validated, since that would fetch keys from the internet.
            anonymous = await self._inner.authenticate_request(activity, "")
            anonymous.connector_factory = self.create_connector_factory(anonymous.claims_identity)
            return anonymous
        claims = await self.validate_channel_token(activity, auth_header)
        if activity.channel_id not in self._allowed_channels:
            # A valid token for Direct Line or Web Chat proves nothing about a Teams user's ids.
            raise ActivityRefused("channel not trusted to assert identity")
        identity = ClaimsIdentity(claims, True)
        result = AuthenticateRequestResult()
        result.claims_identity = identity
        result.audience = AuthenticationConstants.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE
        result.caller_id = CallerIdConstants.public_azure_channel
        result.connector_factory = self.create_connector_factory(identity)
        return result

    async def validate_channel_token(self, activity: Activity, auth_header: str) -> dict[str, Any]:
        """The claims of a valid channel token for this activity.

        Raises:
            PermissionError: the header is missing or the token is not valid for this bot.
            SigningKeysUnavailable: no signing keys could be fetched to check it.
        """
        scheme, _, token = (auth_header or "").partition(" ")
        if scheme != "Bearer" or not token.strip():
            raise PermissionError("missing bearer token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise PermissionError("malformed token") from None
        key_id = header.get("kid")
        if header.get("alg") != "RS256" or not isinstance(key_id, str):
            raise PermissionError("unexpected token header")
        jwk = await self._keys.find(key_id)
        if jwk is None:
            raise PermissionError("unknown signing key")
        endorsements = jwk.get("endorsements")
        if isinstance(endorsements, list) and activity.channel_id not in endorsements:
            raise PermissionError("signing key not endorsed for this channel")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=jwt.PyJWK(jwk, algorithm="RS256").key,
                algorithms=["RS256"],
                audience=self._app_id,
                issuer=CHANNEL_TOKEN_ISSUER,
                leeway=CLOCK_SKEW_S,
                options={"require": ["exp", "iss", "aud"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as error:
            raise PermissionError(type(error).__name__) from None
        if claims.get("aud") != self._app_id:
            # PyJWT accepts a list that contains our id; the Bot Framework issues one audience.
            raise PermissionError("unexpected audience")
        if claims.get("serviceurl") != activity.service_url:
            raise PermissionError("serviceurl claim does not match the activity")
        return claims

    def create_connector_factory(self, claims_identity: ClaimsIdentity) -> ConnectorFactory:
        inner = self._inner.create_connector_factory(claims_identity)
        app_id = (
            claims_identity.get_claim_value(AuthenticationConstants.AUDIENCE_CLAIM)
            or claims_identity.get_claim_value(AuthenticationConstants.APP_ID_CLAIM)
            or ""
        )
        return _CachingConnectorFactory(self, inner, app_id)

    async def connector_client(
        self, inner: ConnectorFactory, app_id: str, service_url: str, audience: str | None
    ) -> ConnectorClient:
        """One ConnectorClient per (app id, serviceUrl, audience), least recently used dropped."""
        key = (app_id, service_url, audience or "")
        client = self._connectors.get(key)
        if client is None:
            async with self._creating:
                client = self._connectors.get(key)
                if client is None:
                    client = await inner.create(service_url, audience)
                    self._connectors[key] = client
                    while len(self._connectors) > CONNECTOR_CACHE_SIZE:
                        self._connectors.popitem(last=False)
        self._connectors.move_to_end(key)
        return client

    async def create_user_token_client(self, claims_identity: ClaimsIdentity) -> UserTokenClient:
        app_id = claims_identity.get_claim_value(AuthenticationConstants.AUDIENCE_CLAIM) or ""
        client = self._user_token_clients.get(app_id)
        if client is None:
            client = await self._inner.create_user_token_client(claims_identity)
            self._user_token_clients[app_id] = client
        return client

    def create_bot_framework_client(self) -> BotFrameworkClient:
        return self._inner.create_bot_framework_client()

    def get_originating_audience(self) -> str:
        return self._inner.get_originating_audience()

    async def authenticate_channel_request(self, auth_header: str) -> ClaimsIdentity:
        # Only used by skills, which this bot does not host.
        raise PermissionError("channel requests are not accepted")

    async def authenticate_streaming_request(
        self, auth_header: str, channel_id_header: str
    ) -> AuthenticateRequestResult:
        raise PermissionError("streaming requests are not accepted")
