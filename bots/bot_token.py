"""The bot's own access token for the Bot Framework connector, from msal.

One `BotTokens` per process: `acquire_token_for_client` (or a managed identity's token) is asked
once, kept in memory, and asked again in the background when a fifth of its lifetime is left
(at most five minutes before expiry), so turns never wait for it after the first. Only one
request is in flight at a time; while a valid token is held, a failing identity provider costs
nothing but a log line. msal is blocking (requests), so it runs in a worker thread, each HTTP
request bounded by msal's `timeout`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msal
import requests

import background
import messages
from settings import Settings

log = logging.getLogger(__name__)

# Refresh when this share of the lifetime is left, but never earlier than REFRESH_AHEAD_S.
REFRESH_SHARE = 0.2
REFRESH_AHEAD_S = 300.0
# A provider that answers an error or nothing is asked again after this long at the soonest.
RETRY_AFTER_FAILURE_S = 10.0
REQUEST_TIMEOUT_S = 5.0
MANAGED_IDENTITY_RESOURCE = "https://api.botframework.com"

# A blocking call returning msal's result dict ({"access_token", "expires_in"} or an error).
Acquire = Callable[[], dict[str, Any]]


class BotTokenUnavailable(RuntimeError):
    """No valid token for the bot could be had (the message is the provider's error code)."""


@dataclass
class _Held:
    token: str
    expires_at: float
    refresh_at: float


class BotTokens:
    """The bot's access token: cached, refreshed ahead of expiry, one request at a time."""

    def __init__(
        self,
        acquire: Acquire,
        *,
        clock: Callable[[], float] = time.monotonic,
        wait_s: float = 2 * REQUEST_TIMEOUT_S,
    ) -> None:
        self._acquire = acquire
        self._clock = clock
        self._wait_s = wait_s
        self._held: _Held | None = None
        self._refreshing: asyncio.Task[_Held] | None = None
        self._not_before = float("-inf")
        # How many times the identity provider was asked (the benchmark and tests read it).
        self.requests = 0

    async def token(self) -> str:
        """A valid access token; waits only when none is held.

        Raises:
            BotTokenUnavailable: none is held and the identity provider gave none in time.
        """
        now = self._clock()
        held = self._held
        if held is not None and now < held.expires_at:
            if now >= held.refresh_at and now >= self._not_before:
                self._start_refresh()
            return held.token
        task = self._start_refresh()
        try:
            async with asyncio.timeout(self._wait_s):
                return (await asyncio.shield(task)).token
        except TimeoutError:
            raise BotTokenUnavailable("timeout") from None

    def _start_refresh(self) -> asyncio.Task[_Held]:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._refresh(), name="bot-token-refresh")
            self._refreshing.add_done_callback(_quiet)
        return self._refreshing

    async def _refresh(self) -> _Held:
        self.requests += 1
        started = self._clock()
        try:
            result = await asyncio.to_thread(self._acquire)
        except Exception as error:  # requests' and msal's errors: the provider is unreachable
            self._not_before = self._clock() + RETRY_AFTER_FAILURE_S
            log.warning(messages.LOG_BOT_TOKEN_FAILED, type(error).__name__)
            raise BotTokenUnavailable(type(error).__name__) from None
        token = result.get("access_token")
        lifetime = result.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(lifetime, int | float):
            self._not_before = self._clock() + RETRY_AFTER_FAILURE_S
            code = str(result.get("error") or "no access_token")[:64]
            log.warning(messages.LOG_BOT_TOKEN_FAILED, code)
            raise BotTokenUnavailable(code)
        ahead = min(REFRESH_AHEAD_S, lifetime * REFRESH_SHARE)
        self._held = _Held(token, started + lifetime, started + lifetime - ahead)
        return self._held

    async def close(self) -> None:
        await background.stop(self._refreshing)


def _quiet(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # a background refresh's failure is logged already


def bot_tokens(
    settings: Settings, *, clock: Callable[[], float] = time.monotonic
) -> BotTokens | None:
    """The bot's token source for these settings; None when authentication is off."""
    if not settings.auth_enabled:
        return None
    http = requests.Session()
    app_id = settings.app_id or ""
    if settings.app_type == "UserAssignedMSI":
        identity = msal.ManagedIdentityClient(
            msal.UserAssignedManagedIdentity(client_id=app_id),
            http_client=http,
            token_cache=msal.TokenCache(),
        )

        def acquire_managed() -> dict[str, Any]:
            return identity.acquire_token_for_client(resource=MANAGED_IDENTITY_RESOURCE)

        return BotTokens(acquire_managed, clock=clock)

    password = settings.app_password.get_secret_value() if settings.app_password else ""
    common: dict[str, Any] = {"client_credential": password, "timeout": REQUEST_TIMEOUT_S}
    scopes = [settings.bot_token_scope]
    authority = settings.bot_authority
    built: list[msal.ConfidentialClientApplication] = []

    def acquire() -> dict[str, Any]:
        # Built on first use (in the worker thread): msal reads the authority's metadata then.
        if not built:
            if settings.bot_token_authority is not None:
                app = msal.ConfidentialClientApplication(
                    app_id, oidc_authority=authority, http_client=http, **common
                )
            else:
                app = msal.ConfidentialClientApplication(
                    app_id, authority=authority, http_client=http, **common
                )
            built.append(app)
        return built[0].acquire_token_for_client(scopes=scopes)

    return BotTokens(acquire, clock=clock)
