"""Admin console sessions (collection `admin_sessions`), kept on the server.

The browser holds only a random session id; the store keeps its SHA-256 hash, who signed in
(tenant, object id, name, and the groups and roles their ID token named), a CSRF token, and two
expiries: idle (renewed on use, at most once a minute) and absolute (never renewed). Signing
out ends one session; "sign out everywhere" ends every session of that administrator. A TTL
index removes ended and expired sessions later; every read checks both expiries itself.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

Document = dict[str, Any]
IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=8)
RENEW_EVERY = timedelta(minutes=1)


class Administrator(BaseModel):
    """Who is signed in, as their validated ID token says."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    object_id: str
    name: str = ""
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    # Signed in with a one-time link on this machine (link mode): every privilege, every tenant.
    local_operator: bool = False


class AdminSession(BaseModel):
    model_config = ConfigDict(frozen=True)

    administrator: Administrator
    csrf_token: str
    created_at: datetime
    idle_until: datetime
    absolute_until: datetime


def hash_session_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class AdminSessionStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._sessions = collection

    async def ensure_indexes(self) -> None:
        await self._sessions.create_index(
            [("absolute_until", ASCENDING)], name="cleanup", expireAfterSeconds=3600
        )
        await self._sessions.create_index(
            [("administrator.tenant_id", ASCENDING), ("administrator.object_id", ASCENDING)],
            name="by_administrator",
        )

    async def start(
        self,
        administrator: Administrator,
        *,
        now: datetime | None = None,
        idle: timedelta = IDLE,
        absolute: timedelta = ABSOLUTE,
    ) -> tuple[str, AdminSession]:
        """A new session; returns the id for the browser's cookie (never stored) and the
        session."""
        moment = now or datetime.now(UTC)
        session_id = secrets.token_urlsafe(32)
        session = AdminSession(
            administrator=administrator,
            csrf_token=secrets.token_urlsafe(32),
            created_at=moment,
            idle_until=min(moment + idle, moment + absolute),
            absolute_until=moment + absolute,
        )
        await self._sessions.insert_one(
            {
                "_id": hash_session_id(session_id),
                **session.model_dump(),
                "idle_s": int(idle.total_seconds()),
            }
        )
        return session_id, session

    async def find(self, session_id: str, *, now: datetime | None = None) -> AdminSession | None:
        """The live session for a browser's id (its idle expiry renewed), or None."""
        moment = now or datetime.now(UTC)
        key = hash_session_id(session_id)
        document = await self._sessions.find_one(
            {"_id": key, "idle_until": {"$gt": moment}, "absolute_until": {"$gt": moment}}
        )
        if document is None:
            return None
        session = AdminSession.model_validate(document)
        idle = timedelta(seconds=int(document.get("idle_s") or IDLE.total_seconds()))
        renewed = min(moment + idle, session.absolute_until)
        if renewed - session.idle_until >= RENEW_EVERY:
            await self._sessions.update_one({"_id": key}, {"$set": {"idle_until": renewed}})
            session = session.model_copy(update={"idle_until": renewed})
        return session

    async def end(self, session_id: str) -> bool:
        """Sign out this browser; True when a session was ended."""
        result = await self._sessions.delete_one({"_id": hash_session_id(session_id)})
        return result.deleted_count == 1

    async def end_all(self, *, tenant_id: str, object_id: str) -> int:
        """Sign an administrator out everywhere; returns how many sessions ended."""
        result = await self._sessions.delete_many(
            {"administrator.tenant_id": tenant_id, "administrator.object_id": object_id}
        )
        return result.deleted_count

    @property
    def collection(self) -> AsyncCollection[Document]:
        return self._sessions
