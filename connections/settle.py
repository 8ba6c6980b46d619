"""Finishing what a change leaves to do after the person has their answer.

A Disconnect or Delete is one database update that also records its audit event (the record's
outbox) and the tokens to revoke (its `revocation`). `ConnectionSettler` then, outside the
person's wait: moves the events into the audit log, revokes the tokens at the provider (one
short timeout per attempt, a few attempts with growing pauses, a final failure audited as
`connection.revoke_failed`), and purges the record of a deleted connection once nothing is left.
All of it is idempotent and driven by what the database says, so a crash or a restart in any
process only delays it: `sweep()` (run under the sweeper's lease) picks up whatever is left.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId

import messages
from oauth.tokens import GrantRevoker
from storage.audit import CONNECTION_REVOKE_FAILED, CONNECTION_REVOKED, AuditLog
from storage.connections import ConnectionStore
from storage.models import Actor, EncryptedTokens
from storage.outbox import drain

log = logging.getLogger(__name__)

REVOKE_ATTEMPTS = 5
REVOKE_ATTEMPT_TIMEOUT_S = 10.0
FIRST_PAUSE = timedelta(seconds=10)
LEASE = timedelta(seconds=30)
# Results after which there is nothing left to try: done, and failed for good.
_SETTLED = ("revoked", "not_supported", "nothing_to_revoke")
_HOPELESS = ("impossible",)


def pause_after(attempts: int) -> timedelta:
    """The wait before the next attempt: 10 s, 40 s, 160 s, 640 s."""
    return FIRST_PAUSE * (4 ** max(attempts - 1, 0))


@dataclass
class ConnectionSettler:
    store: ConnectionStore
    audit: AuditLog
    revoke_grant: GrantRevoker | None
    holder: str = field(default_factory=lambda: uuid.uuid4().hex)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def record_events(self, connection_id: str) -> None:
        """Move the record's pending events into the audit log now (best effort: the sweep
        finishes it if the store fails here)."""
        try:
            await drain(self.store.collection, ObjectId(connection_id), self.audit)
        except Exception:  # the change itself is safe; the sweep will record the event
            log.warning(messages.LOG_SETTLE_DEFERRED, exc_info=True)

    def settle_later(self, connection_id: str) -> None:
        """Revoke and tidy up in the background, after the person's answer."""
        task = asyncio.create_task(self.settle(ObjectId(connection_id)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self, connection_id: ObjectId) -> None:
        """Everything left for one record: a due revocation, its events, a tombstone."""
        try:
            await self._revoke_if_due(connection_id)
            await drain(self.store.collection, connection_id, self.audit)
            await self.store.purge_tombstone(connection_id)
        except Exception:  # one record must not stop the others; the sweep retries it
            log.warning(messages.LOG_SETTLE_DEFERRED, exc_info=True)

    async def sweep(self) -> int:
        """Settle every record with something left to do; returns how many were looked at."""
        ids = await self.store.needing_settlement(now=datetime.now(UTC))
        for connection_id in ids:
            await self.settle(connection_id)
        return len(ids)

    async def close(self) -> None:
        """Let background settling finish (bounded) at shutdown; the sweep covers the rest."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=REVOKE_ATTEMPT_TIMEOUT_S)

    async def _revoke_if_due(self, connection_id: ObjectId) -> None:
        now = datetime.now(UTC)
        document = await self.store.take_revocation(
            connection_id, holder=self.holder, until=now + LEASE, now=now
        )
        if document is None:
            return
        revocation: dict[str, Any] = document["revocation"]
        result = await self._attempt(revocation)
        attempts = int(revocation.get("attempts", 0)) + 1
        if result in _SETTLED or result in _HOPELESS or attempts >= REVOKE_ATTEMPTS:
            action = CONNECTION_REVOKED if result in _SETTLED else CONNECTION_REVOKE_FAILED
            event = AuditLog.event(
                actor=Actor.model_validate(revocation.get("actor") or {"kind": "operator"}),
                action=action,
                details={"revocation": result, "attempts": attempts},
            )
            event |= {
                "connection_id": connection_id,
                "provider": document.get("provider"),
                "account": (document.get("account") or {}).get("display_name"),
            }
            await self.store.finish_revocation(connection_id, holder=self.holder, event=event)
            return
        log.info(messages.LOG_REVOKE_RETRY, revocation.get("provider"), attempts)
        await self.store.postpone_revocation(
            connection_id, holder=self.holder, next_at=datetime.now(UTC) + pause_after(attempts)
        )

    async def _attempt(self, revocation: dict[str, Any]) -> str:
        if self.revoke_grant is None:
            return "failed"
        try:
            async with asyncio.timeout(REVOKE_ATTEMPT_TIMEOUT_S):
                return str(
                    await self.revoke_grant(
                        str(revocation["provider"]), EncryptedTokens(**revocation["tokens"])
                    )
                )
        except TimeoutError:
            return "failed"
