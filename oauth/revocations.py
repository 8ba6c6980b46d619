"""Attempting a revocation that a record holds (storage/revocations.py), one at a time.

`Revocations.attempt_due(collection, id, event_for)` takes the record's due revocation under a
short lease, calls the provider once (bounded), and either ends it, recording the audit event
`event_for` builds (once, under the revocation's own event id), or counts the attempt and sets
the next one after a growing pause (10 s, 40 s, 160 s, 640 s). After `ATTEMPTS` tries, or a
result that cannot change, it ends as failed. Connections (connections/settle.py) and voided
sign-ins (oauth/signin.py) both use it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

import messages
from oauth.tokens import GrantRevoker
from storage import revocations
from storage.audit import AuditLog
from storage.models import EncryptedTokens

log = logging.getLogger(__name__)

Document = dict[str, Any]
# Builds the audit event that ends a revocation: (record, result, attempts) -> event.
EventFor = Callable[[Document, str, int], Document]

ATTEMPTS = 5
ATTEMPT_TIMEOUT_S = 10.0
FIRST_PAUSE = timedelta(seconds=10)
LEASE = timedelta(seconds=30)
# Results after which there is nothing left to try: done, and failed for good.
SETTLED = ("revoked", "not_supported", "nothing_to_revoke")
HOPELESS = ("impossible",)


def pause_after(attempts: int) -> timedelta:
    """The wait before the next attempt: 10 s, 40 s, 160 s, 640 s."""
    return FIRST_PAUSE * (4 ** max(attempts - 1, 0))


def succeeded(result: str) -> bool:
    """True when the grant is gone (or there was none to revoke)."""
    return result in SETTLED


@dataclass
class Revocations:
    revoke_grant: GrantRevoker | None
    audit: AuditLog
    holder: str = field(default_factory=lambda: uuid.uuid4().hex)

    async def attempt_due(
        self,
        collection: AsyncCollection[Document],
        document_id: Any,
        event_for: EventFor,
        *,
        record: Document | None = None,
        also: Document | None = None,
    ) -> str | None:
        """One attempt at the record's revocation if it is due and free; returns the result
        when the revocation ended now, None otherwise. `record` is the record as just read, if
        the caller has it; `also` an update to apply to it in any case (in the lease's write
        when there is one: see `revocations.take`)."""
        now = datetime.now(UTC)
        document = await revocations.take(
            collection,
            document_id,
            holder=self.holder,
            until=now + LEASE,
            now=now,
            record=record,
            also=also,
        )
        if document is None:
            return None
        revocation: Document = document[revocations.REVOCATION]
        result = await self._attempt(revocation)
        attempts = int(revocation.get("attempts", 0)) + 1
        if result in SETTLED or result in HOPELESS or attempts >= ATTEMPTS:
            event = event_for(document, result, attempts) | {"_id": revocation["event_id"]}
            await revocations.finish(
                collection, document_id, holder=self.holder, event=event, audit=self.audit
            )
            return result
        log.info(messages.LOG_REVOKE_RETRY, revocation.get("provider"), attempts)
        await revocations.postpone(
            collection,
            document_id,
            holder=self.holder,
            next_at=datetime.now(UTC) + pause_after(attempts),
        )
        return None

    async def _attempt(self, revocation: Document) -> str:
        if self.revoke_grant is None:
            return "failed"
        try:
            async with asyncio.timeout(ATTEMPT_TIMEOUT_S):
                return str(
                    await self.revoke_grant(
                        str(revocation["provider"]), EncryptedTokens(**revocation["tokens"])
                    )
                )
        except TimeoutError:
            return "failed"
