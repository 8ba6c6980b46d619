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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

import messages
from oauth.revocations import ATTEMPT_TIMEOUT_S, ATTEMPTS, Revocations, succeeded
from oauth.tokens import GrantRevoker
from storage import notices
from storage.audit import CONNECTION_REVOKE_FAILED, CONNECTION_REVOKED, AuditLog
from storage.connections import ConnectionStore
from storage.models import Actor
from storage.outbox import drain, record_events

log = logging.getLogger(__name__)

REVOKE_ATTEMPTS = ATTEMPTS


def revocation_event(document: dict[str, Any], result: str, attempts: int) -> dict[str, Any]:
    """The audit event that ends a connection's revocation."""
    revocation = document["revocation"]
    event = AuditLog.event(
        actor=Actor.model_validate(revocation.get("actor") or {"kind": "operator"}),
        action=CONNECTION_REVOKED if succeeded(result) else CONNECTION_REVOKE_FAILED,
        details={"revocation": result, "attempts": attempts},
    )
    return event | {
        "connection_id": document["_id"],
        "provider": document.get("provider"),
        "account": (document.get("account") or {}).get("display_name"),
    }


@dataclass
class ConnectionSettler:
    store: ConnectionStore
    audit: AuditLog
    revoke_grant: GrantRevoker | None
    # Tells the owner about a break the change left a notice for (connections/notices.py).
    tell_notice: Callable[[ObjectId], Awaitable[Any]] | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.revocations = Revocations(self.revoke_grant, self.audit)

    async def record_events(self, connection_id: str) -> None:
        """Move the record's pending events into the audit log now (best effort: the sweep
        finishes it if the store fails here)."""
        try:
            await drain(self.store.collection, ObjectId(connection_id), self.audit)
        except Exception:  # the change itself is safe; the sweep will record the event
            log.warning(messages.LOG_SETTLE_DEFERRED, exc_info=True)

    def settle_later(self, connection_id: str, *, notice: bool = True) -> None:
        """Revoke and tidy up in the background, after the person's answer (`notice`: the
        change may have left a break notice to tell; a person's own change never does)."""
        task = asyncio.create_task(self.settle(ObjectId(connection_id), notice=notice))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self, connection_id: ObjectId, *, notice: bool = True) -> None:
        """Everything left for one record: its events, a due revocation (and its event), a
        tombstone. The change's events go first, so a slow provider does not hold them back."""
        try:
            # One read decides what is left, so a record with nothing to do (or whose work
            # another process holds) costs no write: writes are what the store serializes.
            collection = self.store.collection
            record = await collection.find_one({"_id": connection_id})
            if record is None:
                return
            # The change's events reach the audit log first, so a slow provider does not hold
            # them back; they leave the outbox in the write that takes the revocation's lease.
            recorded = await record_events(record, self.audit)
            await self.revocations.attempt_due(
                collection, connection_id, revocation_event, record=record, also=recorded
            )
            if notice and self.tell_notice is not None and notices.is_pending(record):
                await self.tell_notice(connection_id)
            await self.store.purge_tombstone(connection_id, record=record)
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
            await asyncio.wait(set(self._tasks), timeout=ATTEMPT_TIMEOUT_S)
