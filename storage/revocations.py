"""Grants waiting to be revoked at their provider, kept on the record that gave them up.

When a record drops its tokens (a Disconnect, a Delete, a voided sign-in), the same update sets
its `revocation`: the sealed tokens, kept for that one purpose, with the attempt count, when the
next attempt is due and a short lease so one process at a time attempts it. Because it is written
in the change itself, a crash before the provider is called only delays the revocation: whoever
sweeps next finds it due. Ending it drops the tokens and records the audit event in one update.

Functions (over any collection whose records may carry a `revocation`):
    pending(tokens, provider, actor, now) -> the `revocation` sub-document
    due_filter(now) -> query part matching records with an attempt due
    take(collection, id, holder=, until=, now=) -> the record, or None
    finish(collection, id, holder=, event=, also=) -> bool
    postpone(collection, id, holder=, next_at=)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from storage.models import Actor
from storage.outbox import push

Document = dict[str, Any]
REVOCATION = "revocation"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def pending(tokens: Document, provider: str, actor: Actor, now: datetime) -> Document:
    """A revocation to attempt now, holding the sealed `tokens` of `provider`."""
    return {
        "tokens": tokens,
        "provider": provider,
        "actor": actor.model_dump(),
        "attempts": 0,
        "next_at": now,
        "lease_until": None,
    }


def due_filter(now: datetime) -> Document:
    """The query part for records whose next attempt is due."""
    # Bounded on both sides: the embedded store reads a one-sided range on a nested field
    # record by record, a two-sided one through its index (see `ensure_revocation_index`).
    return {f"{REVOCATION}.next_at": {"$gte": EPOCH, "$lte": now}}


async def ensure_revocation_index(collection: AsyncCollection[Document]) -> None:
    """The index that finds due revocations without reading the other records."""
    await collection.create_index([(f"{REVOCATION}.next_at", ASCENDING)], name="revocations_due")


async def take(
    collection: AsyncCollection[Document],
    document_id: Any,
    *,
    holder: str,
    until: datetime,
    now: datetime,
) -> Document | None:
    """Take a due revocation for one attempt (one process at a time); returns the record."""
    take = {"$set": {f"{REVOCATION}.lease_until": until, f"{REVOCATION}.holder": holder}}
    # Two conditional updates on the id rather than one `$or`, which the embedded store
    # answers by reading every record: free, then run out.
    for free in ({f"{REVOCATION}.lease_until": None}, {f"{REVOCATION}.lease_until": {"$lte": now}}):
        result = await collection.update_one({"_id": document_id, **due_filter(now), **free}, take)
        if result.modified_count == 1:
            break
    else:
        return None
    document = await collection.find_one({"_id": document_id})
    return document if document is not None and document.get(REVOCATION) else None


async def finish(
    collection: AsyncCollection[Document], document_id: Any, *, holder: str, event: Document
) -> bool:
    """The revocation is over (done, or given up): drop it, recording its audit event."""
    result = await collection.update_one(
        {"_id": document_id, f"{REVOCATION}.holder": holder},
        {"$unset": {REVOCATION: ""}, **push(event)},
    )
    return result.modified_count == 1


async def postpone(
    collection: AsyncCollection[Document], document_id: Any, *, holder: str, next_at: datetime
) -> None:
    """A failed attempt: count it and try again at `next_at`."""
    await collection.update_one(
        {"_id": document_id, f"{REVOCATION}.holder": holder},
        {
            "$set": {f"{REVOCATION}.next_at": next_at, f"{REVOCATION}.lease_until": None},
            "$inc": {f"{REVOCATION}.attempts": 1},
        },
    )
