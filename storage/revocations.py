"""Grants waiting to be revoked at their provider, kept on the record that gave them up.

When a record drops its tokens (a Disconnect, a Delete, a voided sign-in), the same update sets
its `revocation`: the sealed tokens, kept for that one purpose, with the attempt count, when the
next attempt is due and a short lease so one process at a time attempts it. Because it is written
in the change itself, a crash before the provider is called only delays the revocation: whoever
sweeps next finds it due. Ending it records the audit event (under an id fixed when the
revocation was written, so it is stored once however often the end is repeated), then drops
the tokens.

Functions (over any collection whose records may carry a `revocation`):
    pending(tokens, provider, actor, now) -> the `revocation` sub-document
    due_filter(now) -> query part matching records with an attempt due
    take(collection, id, holder=, until=, now=, record=, also=) -> the record, or None
    is_due_and_free(revocation, now) -> bool
    finish(collection, id, holder=, event=, audit=) -> bool
    postpone(collection, id, holder=, next_at=)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from storage.audit import AuditLog
from storage.models import Actor

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
        # The id of the audit event that will end it, fixed now: a repeat after a crash
        # stores that event once (see `finish`).
        "event_id": ObjectId(),
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
    record: Document | None = None,
    also: Document | None = None,
) -> Document | None:
    """Take a due revocation for one attempt (one process at a time); returns the record.

    `record` is the record as just read, if the caller has it. The lease is taken by one
    compare-and-set on what was read (its due time, attempts and lease), so a revocation that
    is not due, or is held by another process, costs no write at all: a sweep passing over
    work another process is doing only reads. `also` is an update (a `$pull`) to apply to the
    record in any case: with the lease, in the same write, or alone when there is none to take.
    """
    if record is None:
        record = await collection.find_one({"_id": document_id})
    revocation = (record or {}).get(REVOCATION)
    if record is None or not is_due_and_free(revocation, now):
        if also:
            await collection.update_one({"_id": document_id}, also)
        return None
    assert revocation is not None
    lease: Document = {f"{REVOCATION}.lease_until": until, f"{REVOCATION}.holder": holder}
    if not revocation.get("event_id"):  # pending before revocations carried one
        revocation = revocation | {"event_id": ObjectId()}
        lease[f"{REVOCATION}.event_id"] = revocation["event_id"]
    result = await collection.update_one(
        {
            "_id": document_id,
            f"{REVOCATION}.next_at": revocation["next_at"],
            f"{REVOCATION}.attempts": revocation.get("attempts"),
            f"{REVOCATION}.lease_until": revocation.get("lease_until"),
        },
        {"$set": lease, **(also or {})},
    )
    if result.modified_count != 1:
        if also:
            await collection.update_one({"_id": document_id}, also)
        return None
    return record | {REVOCATION: revocation}


def is_due_and_free(revocation: Document | None, now: datetime) -> bool:
    """Whether a `revocation` sub-document (as read, so with aware times: see
    `storage.database.make_client`) has an attempt due that nobody holds."""
    if not revocation:
        return False
    next_at = revocation.get("next_at")
    if not isinstance(next_at, datetime) or next_at > now:
        return False
    lease_until = revocation.get("lease_until")
    return lease_until is None or lease_until <= now


async def finish(
    collection: AsyncCollection[Document],
    document_id: Any,
    *,
    holder: str,
    event: Document,
    audit: AuditLog,
) -> bool:
    """The revocation is over (done, or given up): record its audit event, then drop it.

    The event carries the revocation's own `event_id`, so a process that dies between the two
    writes leaves a revocation that the next attempt ends again, storing nothing twice."""
    await audit.insert_event(event)
    result = await collection.update_one(
        {"_id": document_id, f"{REVOCATION}.holder": holder}, {"$unset": {REVOCATION: ""}}
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
