"""Audit events that travel with the change they record (an outbox on the changed record).

A change and its audit event are written in **one** document update: the event is pushed onto
the record's `outbox` array in the same `update_one` that makes the change. Moving it into
`audit_events` is a second step that may be repeated safely: the event keeps the id it was
given, so inserting it twice is a duplicate-key no-op, and it leaves the outbox only after it
is stored. A crash between the two steps therefore never loses an event and never writes it
twice; the reconciler (`connections/settle.py`) finishes whatever a crash left behind.

Functions:
    push(event) -> update document part: `{"$push": {"outbox": event}}`
    drain(collection, document_id, audit) -> int: move one record's events into the audit log
    record_events(record, audit) -> the `$pull` that empties what was recorded, or None
    records_with_events(collection, limit=) -> list of ids
"""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from storage.audit import AuditLog

Document = dict[str, Any]
OUTBOX = "outbox"
# Records whose outbox holds an event (every event id is an ObjectId): a range on the indexed
# event ids, which the embedded store reads through the index, unlike `$exists`, which it
# answers by reading every record.
HAS_EVENTS: Document = {f"{OUTBOX}._id": {"$gte": ObjectId("0" * 24)}}


def push(*events: Document) -> Document:
    """The `$push` part of an update that records `events` with the change."""
    return {"$push": {OUTBOX: {"$each": list(events)}}}


async def drain(collection: AsyncCollection[Document], document_id: Any, audit: AuditLog) -> int:
    """Move one record's pending events into the audit log, oldest first; returns how many
    were written now (events another process wrote first are not counted)."""
    record = await collection.find_one({"_id": document_id}, projection={OUTBOX: 1})
    written = 0
    for event in (record or {}).get(OUTBOX) or []:
        written += await audit.insert_event(event)
        await collection.update_one(
            {"_id": document_id}, {"$pull": {OUTBOX: {"_id": event["_id"]}}}
        )
    return written


async def record_events(record: Document, audit: AuditLog) -> Document | None:
    """Store a record's pending events (as read) in the audit log; returns the update that
    takes them off its outbox, for the caller to apply (maybe with another change), or None."""
    events = record.get(OUTBOX) or []
    for event in events:
        await audit.insert_event(event)
    if not events:
        return None
    return {"$pull": {OUTBOX: {"_id": {"$in": [event["_id"] for event in events]}}}}


async def records_with_events(
    collection: AsyncCollection[Document], *, limit: int = 200
) -> list[Any]:
    """Ids of records whose outbox still holds events."""
    cursor = collection.find(HAS_EVENTS, projection={"_id": 1}).limit(limit)
    return [document["_id"] async for document in cursor]


async def ensure_outbox_index(collection: AsyncCollection[Document]) -> None:
    """The index that finds records with events without reading the others."""
    await collection.create_index([(f"{OUTBOX}._id", ASCENDING)], name="with_events")


async def drain_all(collections: list[AsyncCollection[Document]], audit: AuditLog) -> int:
    """Record every pending event of these collections (the reconciler's round); returns how
    many were written now."""
    written = 0
    for collection in collections:
        for document_id in await records_with_events(collection):
            written += await drain(collection, document_id, audit)
    return written
