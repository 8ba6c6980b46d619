"""Keeping connections alive when nobody uses them: refreshing ahead, in the background.

Two kinds of connection are refreshed before anyone needs them:

- **Refresh tokens that would lapse unused.** An app's `refresh_token_idle_lifetime` (Box: 60
  days) says how long its provider keeps a refresh token nobody uses. Once half of it has passed
  since the stored refresh token was issued, the connection is refreshed, which restarts the
  clock. Half leaves room for the job itself to be down for a while.
- **Access tokens about to expire on connections recipes use in the background**: parents (a
  recipe runs as its parent whoever asks) and every connection of an app configured with
  `keep_access_token_fresh`. Those expiring before the next round (plus the usual margin) are
  refreshed now, so a recipe never waits for a refresh.

One process at a time runs a round (the `keep_alive` lease, as the sweeper does); within it each
refresh takes the connection's own refresh lease and checks again that the connection is still
due, so no connection is ever refreshed twice, even when a round outlives its lease and another
process starts the next. Apps are worked on side by side, each with a few refreshes at once and
a small random delay before each (jitter), so a crowd of due connections does not arrive at a
provider in the same instant; an app that fails several times in a row is left alone until the
next round, so a provider that is down or hangs costs one round a few seconds, not the others.
A refusal (`invalid_grant`) marks the connection Needs sign-in, and its owner is told
(connections/notices.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import messages
from oauth.providers import Provider, ProviderRegistry
from oauth.tokens import REFRESH_MARGIN, Ahead, TokenService
from storage.connections import ConnectionStore
from storage.leases import LeaseStore
from storage.models import Connection, ConnectionKind

log = logging.getLogger(__name__)

KEEP_ALIVE_LEASE = "keep_alive"
# A connection is refreshed once this share of its app's idle lifetime has passed unused.
IDLE_SHARE = 0.5
# What one round takes on at most; the next round takes the rest.
BATCH = 1000
CONCURRENCY = 8
PER_APP = 4
FAILURES_BEFORE_SKIP = 3
JITTER_S = 1.0


@dataclass
class RoundReport:
    """What one round did (None from `round()` when another process holds the lease)."""

    refreshed: int = 0
    not_due: int = 0
    broken: int = 0
    unavailable: int = 0
    skipped_apps: list[str] = field(default_factory=list)


@dataclass
class KeepAlive:
    providers: ProviderRegistry
    store: ConnectionStore
    tokens: TokenService
    leases: LeaseStore
    # How often a round runs; access tokens expiring before the next round are refreshed now.
    interval_s: float = 300.0
    concurrency: int = CONCURRENCY
    per_app: int = PER_APP
    batch: int = BATCH
    jitter_s: float = JITTER_S
    failures_before_skip: int = FAILURES_BEFORE_SKIP
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    holder: str = field(default_factory=lambda: uuid.uuid4().hex)

    def idle_cutoff(self, provider: Provider, now: datetime) -> datetime | None:
        """Refresh tokens of `provider` issued before this are due (None: they never lapse)."""
        lifetime = provider.refresh_token_idle_lifetime
        return None if lifetime is None else now - lifetime * IDLE_SHARE

    def access_horizon(self, now: datetime) -> datetime:
        """Access tokens expiring before this are refreshed in this round."""
        return now + timedelta(seconds=self.interval_s) + REFRESH_MARGIN

    def still_due(self, connection: Connection, tokens: dict[str, Any]) -> bool:
        """Checked under the connection's refresh lease, just before refreshing it."""
        provider = self.providers.get(connection.provider)
        if provider is None:
            return False
        now = self.clock()
        cutoff = self.idle_cutoff(provider, now)
        issued = connection.tokens_issued_at
        if cutoff is not None and (issued is None or issued < cutoff):
            return True
        if connection.kind is ConnectionKind.PARENT or provider.keep_access_token_fresh:
            expires_at = connection.tokens.expires_at if connection.tokens else None
            return expires_at is not None and expires_at < self.access_horizon(now)
        return False

    async def due(self, now: datetime) -> dict[str, list[str]]:
        """The connections due now, by app."""
        by_app: dict[str, dict[str, None]] = {}
        for key, provider in self.providers.providers.items():
            cutoff = self.idle_cutoff(provider, now)
            if cutoff is None:
                continue
            for connection_id in await self.store.refresh_tokens_issued_before(
                provider=key, before=cutoff, limit=self.batch
            ):
                by_app.setdefault(key, {})[connection_id] = None
        keep_fresh = sorted(
            k for k, p in self.providers.providers.items() if p.keep_access_token_fresh
        )
        for connection_id, key in await self.store.access_tokens_expiring(
            before=self.access_horizon(now), providers=keep_fresh, parents=True, limit=self.batch
        ):
            if key in self.providers.providers:
                by_app.setdefault(key, {})[connection_id] = None
        return {key: list(ids) for key, ids in by_app.items()}

    async def round(self, *, lease_for: timedelta | None = None) -> RoundReport | None:
        """Refresh every connection due now (up to `batch` per kind); one process at a time."""
        now = self.clock()
        lease = lease_for or timedelta(seconds=max(self.interval_s * 0.9, 1.0))
        if not await self.leases.take(
            KEEP_ALIVE_LEASE, holder=self.holder, until=now + lease, now=now
        ):
            return None
        report = RoundReport()
        everyone = asyncio.Semaphore(self.concurrency)
        due = await self.due(now)
        await asyncio.gather(
            *(self._app_round(key, ids, everyone, report) for key, ids in due.items())
        )
        if due:
            log.info(
                messages.LOG_KEEP_ALIVE_ROUND,
                report.refreshed,
                report.not_due,
                report.broken,
                report.unavailable,
                ", ".join(report.skipped_apps) or "none",
            )
        return report

    async def _app_round(
        self, key: str, ids: list[str], everyone: asyncio.Semaphore, report: RoundReport
    ) -> None:
        app = asyncio.Semaphore(self.per_app)
        failures_in_a_row = 0
        skipped = False

        async def one(connection_id: str) -> None:
            nonlocal failures_in_a_row, skipped
            async with app:
                if skipped:
                    return
                # Jitter: a crowd of due connections reaches the provider spread out.
                await asyncio.sleep(random.uniform(0, self.jitter_s))  # noqa: S311 (spread, not secrecy)
                if skipped:
                    return
                async with everyone:
                    outcome = await self.tokens.refresh_ahead(
                        connection_id, still_due=self.still_due
                    )
            if outcome is Ahead.UNAVAILABLE:
                report.unavailable += 1
                failures_in_a_row += 1
                if failures_in_a_row >= self.failures_before_skip and not skipped:
                    skipped = True
                    report.skipped_apps.append(key)
                return
            failures_in_a_row = 0
            if outcome is Ahead.REFRESHED:
                report.refreshed += 1
            elif outcome is Ahead.BROKEN:
                report.broken += 1
            else:
                report.not_due += 1

        await asyncio.gather(*(one(connection_id) for connection_id in ids))

    async def run_forever(self) -> None:
        # Not at start: lapses are days away, a starting process has better things to do, and
        # processes started together spread their rounds.
        await asyncio.sleep(self.interval_s * random.uniform(0.5, 1.0))  # noqa: S311
        while True:
            try:
                await self.round()
            except Exception as error:  # one failed round must not stop the job
                log.warning(messages.LOG_KEEP_ALIVE_FAILED, type(error).__name__)
            await asyncio.sleep(self.interval_s)
