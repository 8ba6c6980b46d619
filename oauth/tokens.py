"""Valid access tokens for connections, refreshed once at a time; and revocation.

`TokenService.access_token(connection_id)` returns a usable access token, refreshing it a margin
before it expires. Box and Salesforce refresh tokens are single-use, so two concurrent refreshes
with the same token would cost the connection: only one refresh per connection may run at a
time **across all processes**. The refresh lease lives in the connection document and is taken
with a conditional update; in one process, callers first queue on a lock per connection so a
crowd of turns costs one database round trip each, not a polling storm. Whoever does not get the
lease waits and re-reads the record until the holder has stored the new tokens (bounded).

`invalid_grant` on refresh marks the connection Needs sign-in (`NeedsSignIn`); network errors
and 5xx leave it as it is (`TokenUnavailable`: try again later). Whoever marks a connection
broken calls `on_break` with its id once, so its owner can be told (connections/notices.py).

`refresh_ahead` is the background job's refresh (connections/keep_alive.py): under the same
lease, only while the connection is still due, and never waiting for another holder.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import messages
from oauth.client import OAuthRejected, ProviderUnavailable, TokenSet, refresh, revoke
from oauth.providers import ProviderRegistry
from storage.connections import ConnectionStore
from storage.crypto import TokenCipher, TokenDecryptionError
from storage.models import Connection, ConnectionStatus, EncryptedTokens

log = logging.getLogger(__name__)

REFRESH_MARGIN = timedelta(minutes=5)
LEASE = timedelta(seconds=30)
WAIT_BOUND_S = 20.0
_FIRST_WAIT_S = 0.02
_MAX_WAIT_S = 0.25


class NeedsSignIn(Exception):
    """The connection cannot be used until its owner signs in again."""


class TokenUnavailable(Exception):
    """No valid token right now (provider unreachable or busy); the connection is unchanged."""


# Revokes a grant (sealed tokens of an app) at its provider and says how that went.
GrantRevoker = Callable[[str, EncryptedTokens], Awaitable[str]]


class Ahead(StrEnum):
    """What a refresh ahead of need came to."""

    REFRESHED = "refreshed"
    NOT_DUE = "not_due"  # refreshed meanwhile, signed out, or someone is refreshing it now
    BROKEN = "broken"  # the provider refused: the connection now needs sign-in
    UNAVAILABLE = "unavailable"  # the provider could not answer; the connection is unchanged


# Whether a connection (its record and its opened tokens) still needs refreshing ahead.
StillDue = Callable[[Connection, dict[str, Any]], bool]


class RevokeResult(StrEnum):
    REVOKED = "revoked"
    NOT_SUPPORTED = "not_supported"  # the provider has no revocation endpoint (Microsoft)
    NOTHING_TO_REVOKE = "nothing_to_revoke"
    FAILED = "failed"  # worth trying again later (network, 5xx)
    IMPOSSIBLE = "impossible"  # the app is no longer configured, or the tokens cannot be read


def _error_code(error: str) -> str:
    """An OAuth2 error code fit to keep (RFC 6749's vocabulary); anything else is "refused"."""
    return error if re.fullmatch(r"[a-z_]{1,40}", error or "") else "refused"


def _expires_at(tokens: dict[str, Any]) -> datetime | None:
    value = tokens.get("expires_at")
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _fresh(tokens: dict[str, Any], now: datetime) -> bool:
    expires_at = _expires_at(tokens)
    return bool(tokens.get("access_token")) and (
        expires_at is None or expires_at - REFRESH_MARGIN > now
    )


@dataclass
class TokenService:
    providers: ProviderRegistry
    connections: ConnectionStore
    cipher: TokenCipher
    # Told the id of each connection this service marked Needs sign-in (once per break).
    on_break: Callable[[str], None] | None = None
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    async def access_token(self, connection_id: str) -> str:
        """A valid access token for the connection.

        Raises:
            NeedsSignIn: the connection is disconnected, needs sign-in, or its grant was refused.
            TokenUnavailable: the provider cannot refresh it now; the caller may retry later.
        """
        tokens = await self._read(connection_id)
        if _fresh(tokens, datetime.now(UTC)):
            return str(tokens["access_token"])
        lock = self._locks.setdefault(connection_id, asyncio.Lock())
        async with lock:
            return await self._refresh_once(connection_id)

    async def replace_rejected_token(self, connection_id: str, rejected: str) -> str:
        """A new access token after the provider's API refused `rejected` (a 401): refreshes
        once, unless another caller already replaced that token.

        Raises:
            NeedsSignIn, TokenUnavailable: as `access_token`.
        """
        lock = self._locks.setdefault(connection_id, asyncio.Lock())
        async with lock:
            return await self._refresh_once(connection_id, rejected=rejected)

    async def refresh_ahead(self, connection_id: str, *, still_due: StillDue) -> Ahead:
        """Refresh a connection before anyone needs it, if `still_due` says so once the
        refresh lease is held (so two processes never refresh it twice)."""
        now = datetime.now(UTC)
        holder = uuid.uuid4().hex
        if not await self.connections.take_refresh_lease(
            connection_id=connection_id, holder=holder, until=now + LEASE, now=now
        ):
            return Ahead.NOT_DUE  # someone is refreshing it right now
        try:
            try:
                connection, tokens = await self._read_record(connection_id)
            except NeedsSignIn:
                return Ahead.NOT_DUE  # signed out, removed, or unreadable: nothing to keep
            if not still_due(connection, tokens):
                return Ahead.NOT_DUE
            await self._refresh_with(connection, tokens, holder)
        except NeedsSignIn:
            return Ahead.BROKEN
        except TokenUnavailable:
            return Ahead.UNAVAILABLE
        finally:
            await self.connections.release_refresh_lease(connection_id=connection_id, holder=holder)
        return Ahead.REFRESHED

    async def mark_broken(self, connection_id: str, code: str) -> bool:
        """Mark the connection Needs sign-in because the provider refused it (`code`, never its
        words); True only to the call that made the change, whose owner is then told."""
        marked = await self.connections.mark_needs_reauth(
            connection_id=connection_id, error_code=code
        )
        if marked and self.on_break is not None:
            self.on_break(connection_id)
        return marked

    async def _read(self, connection_id: str) -> dict[str, Any]:
        _, tokens = await self._read_record(connection_id)
        return tokens

    async def _read_record(self, connection_id: str) -> tuple[Connection, dict[str, Any]]:
        """The connected record and its opened tokens (one read)."""
        connection = await self.connections.get(connection_id)
        if (
            connection is None
            or connection.status is not ConnectionStatus.CONNECTED
            or connection.tokens is None
        ):
            raise NeedsSignIn(connection_id)
        try:
            return connection, self.cipher.open(connection.tokens)
        except TokenDecryptionError:
            raise NeedsSignIn(connection_id) from None

    async def _refresh_once(self, connection_id: str, rejected: str | None = None) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_BOUND_S
        pause = _FIRST_WAIT_S
        holder = uuid.uuid4().hex
        while True:
            tokens = await self._read(connection_id)
            now = datetime.now(UTC)
            if _fresh(tokens, now) and tokens["access_token"] != rejected:
                return str(tokens["access_token"])  # someone else refreshed meanwhile
            if await self.connections.take_refresh_lease(
                connection_id=connection_id, holder=holder, until=now + LEASE, now=now
            ):
                try:
                    return await self._refresh_holding_lease(connection_id, holder, rejected)
                finally:
                    await self.connections.release_refresh_lease(
                        connection_id=connection_id, holder=holder
                    )
            if loop.time() > deadline:
                raise TokenUnavailable("another process is still refreshing this connection")
            # Waiting on another process's refresh: there is nothing to await but the record.
            await asyncio.sleep(pause)
            pause = min(pause * 2, _MAX_WAIT_S)

    async def _refresh_holding_lease(
        self, connection_id: str, holder: str, rejected: str | None = None
    ) -> str:
        # Re-read inside the lease: the previous holder may have just finished.
        connection, tokens = await self._read_record(connection_id)
        if _fresh(tokens, datetime.now(UTC)) and tokens["access_token"] != rejected:
            return str(tokens["access_token"])
        return await self._refresh_with(connection, tokens, holder)

    async def _refresh_with(
        self, connection: Connection, tokens: dict[str, Any], holder: str
    ) -> str:
        """Refresh `connection` (as read under the lease, with its opened `tokens`) and store
        the new tokens while the lease is still held."""
        connection_id = connection.id
        provider = self.providers.get(connection.provider)
        refresh_token = tokens.get("refresh_token")
        if provider is None or not isinstance(refresh_token, str):
            await self.mark_broken(connection_id, "no_refresh_token")
            raise NeedsSignIn(connection_id)
        try:
            fresh = await refresh(provider, refresh_token=refresh_token)
        except OAuthRejected as rejected:
            log.info(messages.LOG_REFRESH_REJECTED, connection.provider, rejected.error)
            await self.mark_broken(connection_id, _error_code(rejected.error))
            raise NeedsSignIn(connection_id) from None
        except ProviderUnavailable as unavailable:
            log.warning(messages.LOG_PROVIDER_UNAVAILABLE, connection.provider, unavailable)
            raise TokenUnavailable(str(unavailable)) from None
        stored = await self.connections.store_refreshed_tokens(
            connection_id=connection_id, holder=holder, tokens=self.cipher.seal(fresh.as_record())
        )
        if not stored:
            # Disconnected or deleted while refreshing: the new tokens must not outlive it.
            await self._revoke_quietly(connection, fresh)
            raise NeedsSignIn(connection_id)
        return fresh.access_token

    async def _revoke_quietly(self, connection: Connection, tokens: TokenSet) -> None:
        provider = self.providers.get(connection.provider)
        if provider is None or tokens.refresh_token is None:
            return
        try:
            await revoke(provider, token=tokens.refresh_token, hint="refresh_token")
        except ProviderUnavailable:
            log.warning(messages.LOG_REVOKE_FAILED, connection.provider)

    async def revoke_grant(self, app_key: str, sealed: EncryptedTokens | None) -> RevokeResult:
        """Revoke sealed tokens of app `app_key` at its provider (a connection's, or the grant
        a pending sign-in obtained)."""
        if sealed is None:
            return RevokeResult.NOTHING_TO_REVOKE
        provider = self.providers.get(app_key)
        if provider is None:
            return RevokeResult.IMPOSSIBLE
        if provider.revoke_url is None:
            return RevokeResult.NOT_SUPPORTED
        try:
            tokens = self.cipher.open(sealed)
        except TokenDecryptionError:
            return RevokeResult.IMPOSSIBLE
        try:
            # Revoking the refresh token ends the grant; the access token too, for providers
            # that keep access tokens alive after their refresh token is gone.
            if isinstance(tokens.get("refresh_token"), str):
                await revoke(provider, token=tokens["refresh_token"], hint="refresh_token")
            if isinstance(tokens.get("access_token"), str):
                await revoke(provider, token=tokens["access_token"], hint="access_token")
        except ProviderUnavailable as unavailable:
            log.warning(messages.LOG_REVOKE_FAILED, f"{app_key} ({unavailable})")
            return RevokeResult.FAILED
        return RevokeResult.REVOKED
