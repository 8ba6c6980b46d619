"""Break notices waiting to be told to a connection's owner, kept on the record that broke.

When a connection breaks (the provider refused its refresh token, a token that survived a
refresh was refused, an administrator disconnected or deleted it), the same update that records
the break sets the record's `notice`. Because it is written with the change, a crash only delays
the notice, and because only the update that makes the change writes it, one break leaves one
notice. Telling it is at most once: a notice is claimed (state `sending`) before it is posted and
finished after; one whose sender died in between ends as `unknown` and is never sent again.
Finishing records its audit event on the record's outbox in the same update.

Functions (over the connections collection):
    is_pending(record) -> whether a record (as read) has a notice waiting to be told
    pending(reason, now, by=) -> the `notice` sub-document
    due(collection, now=, limit=) -> ids of records with a notice to tell or to close
    claim(collection, id, holder=, until=, now=) -> the record, or None
    finish(collection, id, holder=, outcome=, event=) -> bool
    close_stale(collection, id, now=, event=) -> bool
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from storage.outbox import push
from storage.revocations import EPOCH

Document = dict[str, Any]
NOTICE = "notice"
STATE = f"{NOTICE}.state"
DUE_AT = f"{NOTICE}.due_at"

# Why a connection broke (a notice's `reason`); the refusal codes are those `last_error` keeps.
REFRESH_REFUSED = "invalid_grant"
TOKEN_REFUSED = "unauthorized"  # noqa: S105 (a reason code, not a secret)
DISCONNECTED_BY_ADMINISTRATOR = "disconnected_by_administrator"
DELETED_BY_ADMINISTRATOR = "deleted_by_administrator"

PENDING = "pending"
SENDING = "sending"
# States a tombstone may not be purged in: the notice still needs the record.
UNFINISHED = (PENDING, SENDING)


def pending(reason: str, now: datetime, *, by: str = "") -> Document:
    """A notice to tell now: why the connection broke, when, and who did it (administrators)."""
    return {
        "_id": ObjectId(),
        "reason": reason,
        "at": now,
        "by": by,
        "state": PENDING,
        "due_at": now,
    }


def is_pending(record: Document) -> bool:
    """Whether a record (as read) holds a notice waiting to be told."""
    return ((record.get(NOTICE) or {}).get("state")) == PENDING


def _due(now: datetime) -> Document:
    # Bounded on both sides, so the embedded store reads it through the index.
    return {DUE_AT: {"$gte": EPOCH, "$lte": now}}


async def ensure_notice_index(collection: AsyncCollection[Document]) -> None:
    """The index that finds notices to tell without reading the other records."""
    await collection.create_index([(DUE_AT, ASCENDING)], name="notices_due")


async def due(
    collection: AsyncCollection[Document], *, now: datetime, limit: int = 200
) -> list[ObjectId]:
    """Records whose notice is waiting to be told, or whose sender stopped mid-way."""
    cursor = collection.find(_due(now), projection={"_id": 1}).limit(limit)
    return [document["_id"] async for document in cursor]


async def claim(
    collection: AsyncCollection[Document],
    document_id: Any,
    *,
    holder: str,
    until: datetime,
    now: datetime,
) -> Document | None:
    """Take a pending notice to tell it (one process, once); returns the record as claimed."""
    result = await collection.update_one(
        {"_id": document_id, STATE: PENDING, **_due(now)},
        # Due again when the claim runs out: then the sweep closes it as `unknown`.
        {"$set": {STATE: SENDING, f"{NOTICE}.holder": holder, DUE_AT: until}},
    )
    if result.modified_count != 1:
        return None
    return await collection.find_one({"_id": document_id})


async def finish(
    collection: AsyncCollection[Document],
    document_id: Any,
    *,
    holder: str,
    outcome: str,
    event: Document,
) -> bool:
    """The claimed notice is over: keep its outcome, record its audit event, in one update."""
    result = await collection.update_one(
        {"_id": document_id, STATE: SENDING, f"{NOTICE}.holder": holder},
        {"$set": {STATE: outcome}, "$unset": {DUE_AT: ""}, **push(event)},
    )
    return result.modified_count == 1


async def close_stale(
    collection: AsyncCollection[Document], document_id: Any, *, now: datetime, event: Document
) -> bool:
    """A notice whose sender stopped between claiming and finishing it: it may have been told,
    so it is never told again; it ends as `unknown`, audited."""
    result = await collection.update_one(
        {"_id": document_id, STATE: SENDING, **_due(now)},
        {"$set": {STATE: "unknown"}, "$unset": {DUE_AT: ""}, **push(event)},
    )
    return result.modified_count == 1
