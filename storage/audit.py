"""The audit trail (collection `audit_events`): who did what to which connection, and when.

Events are usually not written here directly: a change and its event are written in one update
of the changed record (its `outbox`, see storage/outbox.py) and moved here exactly once, so a
crash between the two can never lose the event. `event()` builds the document both ways use.

Its methods are listed, with what each does, in `storage.protocols.AuditRecords`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from storage.models import Actor, AuditEvent, Connection

Document = dict[str, Any]

CONNECTION_CREATED = "connection.created"
CONNECTION_DISCONNECTED = "connection.disconnected"
CONNECTION_DELETED = "connection.deleted"
CONNECTION_RECONNECTED = "connection.reconnected"
CONNECTION_ACCOUNT_CHANGED = "connection.account_changed"
CONNECTION_REVOKE_FAILED = "connection.revoke_failed"
# A pending sign-in was voided (wrong code, cancelled, replaced, expired, rejected); its details
# say why and what revoking the grant it had obtained did.
SIGNIN_VOIDED = "signin.voided"
# What revoking a disconnected or deleted connection's tokens at the provider came to (the
# revocation runs after the person's answer; see connections/settle.py).
CONNECTION_REVOKED = "connection.revoked"
# The owner was told (once) that their connection broke; details: why, and how telling went.
CONNECTION_BREAK_NOTIFIED = "connection.break_notified"


class AuditLog:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._events = collection

    async def ensure_indexes(self) -> None:
        await self._events.create_index(
            [("connection_id", ASCENDING), ("at", ASCENDING)], name="by_connection"
        )
        await self._events.create_index(
            [("actor.tenant_id", ASCENDING), ("actor.aad_object_id", ASCENDING), ("at", ASCENDING)],
            name="by_actor",
        )
        await self._events.create_index([("at", DESCENDING)], name="by_time")

    @staticmethod
    def event(
        *,
        actor: Actor,
        action: str,
        connection: Connection | None = None,
        details: dict[str, Any] | None = None,
    ) -> Document:
        """An event document with its own id. Never pass tokens or codes in `details`.

        `tenant_id` is the tenant whose data the event is about (the connection's, else the
        one its details name, else the actor's): the admin console shows an administrator only
        their own tenant's events. `owner` is whose connection it was.
        """
        document: Document = {
            "_id": ObjectId(),
            "at": datetime.now(UTC),
            "actor": actor.model_dump(),
            "action": action,
            "details": details or {},
            "tenant_id": str((details or {}).get("tenant_id") or actor.tenant_id or ""),
        }
        if connection is not None:
            document |= {
                "connection_id": ObjectId(connection.id),
                "provider": connection.provider,
                "account": connection.account_label,
                "owner": connection.owner.model_dump(),
                "tenant_id": connection.tenant_id or connection.owner.tenant_id,
            }
        return document

    async def record(
        self,
        *,
        actor: Actor,
        action: str,
        connection: Connection | None = None,
        details: dict[str, Any] | None = None,
    ) -> str:
        """Append one event and return its id. Never pass tokens or codes in `details`."""
        document = self.event(actor=actor, action=action, connection=connection, details=details)
        await self._events.insert_one(document)
        return str(document["_id"])

    async def insert_event(self, document: Document) -> bool:
        """Append a prepared event (from an outbox) once: its id makes a repeat a no-op."""
        try:
            await self._events.insert_one(document)
        except DuplicateKeyError:
            return False
        return True

    async def for_connection(self, connection_id: str) -> list[AuditEvent]:
        if not ObjectId.is_valid(connection_id):
            return []
        cursor = self._events.find({"connection_id": ObjectId(connection_id)}).sort(
            [("at", ASCENDING), ("_id", ASCENDING)]
        )
        return [AuditEvent.from_document(document) async for document in cursor]

    async def recent(self, *, limit: int = 50) -> list[AuditEvent]:
        cursor = self._events.find({}).sort([("at", DESCENDING)]).limit(limit)
        return [AuditEvent.from_document(document) async for document in cursor]

    @property
    def collection(self) -> AsyncCollection[Document]:
        return self._events
