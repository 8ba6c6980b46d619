"""Bot Framework authentication of incoming activities.

Channel tokens are checked here, asynchronously, by the Bot Framework's published rules
(issuer api.botframework.com, audience = our app id, RS256 signature by a key from the
configured OpenID metadata whose endorsements include the activity's channel, expiry with five
minutes of skew, `serviceurl` claim equal to the activity's serviceUrl). Tokens from other
issuers (the Emulator, skills) are not accepted. Any failure raises `PermissionError` (401).

The signing keys are fetched when the bot starts and then refreshed in the background: a turn
waits for them only when none were ever fetched, or when a token names a key that was not
published at the last fetch (the Bot Framework rolls its keys).

With authentication off (local use) no token is read, and replies may only go to this machine.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt

import background
import messages
from bots.activity import IncomingActivity
from settings import Settings, is_loopback_host

log = logging.getLogger(__name__)

CHANNEL_TOKEN_ISSUER = "https://api.botframework.com"  # noqa: S105 - an issuer URL
CLOCK_SKEW_S = 300
KEYS_MAX_AGE_S = 24 * 3600
UNKNOWN_KEY_REFRESH_S = 300
# A turn waits this long at most for keys being fetched.
KEYS_WAIT_S = 3.0


class SigningKeysUnavailable(RuntimeError):
    """The signing keys could not be fetched, so no token can be checked right now."""


class ActivityRefused(Exception):
    """An authentic request the bot will not act on (403): a channel not trusted to assert
    identity, or (authentication off) a reply address off this machine."""


@functools.lru_cache(maxsize=256)  # a few serviceUrls, each seen on every turn
def _is_loopback_url(url: str | None) -> bool:
    try:
        parts = urlsplit(url or "")
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and is_loopback_host(parts.hostname)


class SigningKeys:
    """The Bot Framework's token signing keys, fetched without blocking a turn and cached.

    Refreshed in the background once a day; a token naming an unknown key waits for a fetch,
    at most every five minutes (the Bot Framework rolls its keys).
    """

    def __init__(self, metadata_url: str, session: aiohttp.ClientSession) -> None:
        self.metadata_url = metadata_url
        self._session = session
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at = float("-inf")
        self._fetching: asyncio.Task[None] | None = None
        # How many times the keys were fetched (tests read it).
        self.fetches = 0

    def prefetch(self) -> None:
        """Start fetching now, so that the first turn finds the keys."""
        self._start_fetch()

    async def find(self, key_id: str) -> dict[str, Any] | None:
        """The JWK with that key id, or None when the issuer does not publish it.

        Raises:
            SigningKeysUnavailable: no keys were ever fetched and none can be now.
        """
        age = time.monotonic() - self._fetched_at
        if key_id in self._keys:
            if age > KEYS_MAX_AGE_S:
                self._start_fetch()  # keep serving these meanwhile
            return self._keys[key_id]
        if self._keys and age <= UNKNOWN_KEY_REFRESH_S:
            return None
        fetch = self._start_fetch()
        try:
            async with asyncio.timeout(KEYS_WAIT_S):
                await asyncio.shield(fetch)
        except TimeoutError:
            pass
        if not self._keys:
            raise SigningKeysUnavailable(self.metadata_url)
        return self._keys.get(key_id)

    def _start_fetch(self) -> asyncio.Task[None]:
        if self._fetching is None or self._fetching.done():
            self._fetching = asyncio.create_task(self._fetch(), name="signing-keys-fetch")
        return self._fetching

    async def _fetch(self) -> None:
        self.fetches += 1
        try:
            timeout = aiohttp.ClientTimeout(total=10)
            async with self._session.get(self.metadata_url, timeout=timeout) as response:
                response.raise_for_status()
                jwks_uri = (await response.json(content_type=None))["jwks_uri"]
            async with self._session.get(jwks_uri, timeout=timeout) as response:
                response.raise_for_status()
                keys = (await response.json(content_type=None))["keys"]
            self._keys = {key["kid"]: key for key in keys if isinstance(key, dict)}
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as error:
            log.warning(
                messages.LOG_SIGNING_KEYS_UNAVAILABLE, self.metadata_url, type(error).__name__
            )
            # Asked again after UNKNOWN_KEY_REFRESH_S (by a token naming a key) at the soonest.
            if self._keys:
                self._fetched_at = time.monotonic() - KEYS_MAX_AGE_S + UNKNOWN_KEY_REFRESH_S
            return
        self._fetched_at = time.monotonic()

    async def close(self) -> None:
        await background.stop(self._fetching)


class ChannelAuthentication:
    """Decides whether an incoming activity is authentic and may be acted on.

    Args:
        settings: the bot's settings (app id, allowed channels, OpenID metadata URL).
        session: the shared aiohttp session used to fetch signing keys.
    """

    def __init__(self, settings: Settings, session: aiohttp.ClientSession) -> None:
        self._app_id = settings.app_id or ""
        self._auth_enabled = settings.auth_enabled
        self._allowed_channels = settings.allowed_channel_ids
        self._keys = SigningKeys(str(settings.openid_metadata_url), session)
        if self._auth_enabled:
            self._keys.prefetch()

    @property
    def signing_keys(self) -> SigningKeys:
        return self._keys

    async def close(self) -> None:
        await self._keys.close()

    async def authenticate(self, activity: IncomingActivity, auth_header: str) -> None:
        """Return when the activity may be acted on.

        Raises:
            PermissionError: the token is missing or not valid for this bot (401).
            ActivityRefused: an authentic request the bot will not act on (403).
            SigningKeysUnavailable: no signing keys could be fetched to check it (503).
        """
        if not self._auth_enabled:
            # Local use: replies go only to this machine, or anyone could make the bot send
            # requests anywhere (server-side request forgery). A header is ignored rather than
            # validated, since that would fetch keys from the internet.
            if not _is_loopback_url(activity.service_url):
                raise ActivityRefused("serviceUrl is not on this machine")
            return
        await self.validate_channel_token(activity, auth_header)
        if activity.channel_id not in self._allowed_channels:
            # A valid token for Direct Line or Web Chat proves nothing about a Teams user's ids.
            raise ActivityRefused("channel not trusted to assert identity")

    async def validate_channel_token(
        self, activity: IncomingActivity, auth_header: str
    ) -> dict[str, Any]:
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
