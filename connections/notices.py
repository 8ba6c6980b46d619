"""Telling a person, once, that one of their connections broke.

A break (the provider refused the connection, or an administrator disconnected or deleted it)
leaves a notice on the record in the same update (storage/notices.py). `BreakNotices` tells it:
it claims the notice, makes a `BreakNotice` (plain data: which account, why in plain words,
whether Reconnect can work, whom to ask) and hands it to the surface that reaches the owner
(`tell`: Teams posts a card in their 1:1 chat). The outcome — told, no chat known, refused by
the chat service, no longer true (reconnected or removed meanwhile), or unknown after a crash —
is kept on the notice and audited as `connection.break_notified` in the same update.

A notice is told right after the break in the process that saw it (`tell_soon`), and the
periodic sweep (`sweep`) tells what a crash or a failed attempt left.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from bson import ObjectId

import messages
from connections.views import BreakNotice
from oauth.providers import ProviderRegistry
from storage import notices
from storage.audit import CONNECTION_BREAK_NOTIFIED, AuditLog
from storage.connections import ConnectionStore
from storage.models import Actor, Connection, ConnectionKind, ConnectionStatus, Owner
from storage.outbox import drain

log = logging.getLogger(__name__)

# How long a claimed notice may take to be told before it counts as stopped mid-way.
CLAIM = timedelta(seconds=30)
TELL_TIMEOUT_S = 20.0


class Told(StrEnum):
    """How telling a notice ended (kept as the notice's final state)."""

    TOLD = "told"
    NO_CHAT = "no_chat"  # nothing says where the owner can be reached
    REFUSED = "refused"  # the chat service refused or did not answer (app not installed, …)
    OUTDATED = "outdated"  # reconnected or removed since: nothing to tell any more
    UNKNOWN = "unknown"  # the sender stopped mid-way: maybe told, never told again


# Tells the owner (reached through the connection's `reach`); returns how it went.
Tell = Callable[[Owner, dict[str, Any], BreakNotice], Awaitable[Told]]

# Whether the notice still describes the record as it is now.
_STILL_TRUE: dict[str, Callable[[dict[str, Any]], bool]] = {
    notices.DELETED_BY_ADMINISTRATOR: lambda d: d["kind"] == ConnectionKind.DELETED.value,
    notices.DISCONNECTED_BY_ADMINISTRATOR: lambda d: (
        d["kind"] == ConnectionKind.RUNTIME.value
        and d["status"] == ConnectionStatus.DISCONNECTED.value
    ),
}


def _still_true(document: dict[str, Any], reason: str) -> bool:
    check = _STILL_TRUE.get(reason)
    if check is not None:
        return check(document)
    # A refusal: true while the record is kept and still needs sign-in.
    return (
        document["kind"] != ConnectionKind.DELETED.value
        and document["status"] == ConnectionStatus.NEEDS_REAUTH.value
    )


def _as_it_was(document: dict[str, Any]) -> Connection:
    """The connection a record holds, a tombstone read as the record it was."""
    return Connection.from_document(
        {**document, "kind": document.get("deleted_kind", document["kind"])}
    )


def why(reason: str, by: str) -> str:
    """A break's reason in plain words."""
    if reason == notices.DELETED_BY_ADMINISTRATOR:
        return messages.NOTICE_WHY_DELETED.format(by=by or messages.NOTICE_AN_ADMINISTRATOR)
    if reason == notices.DISCONNECTED_BY_ADMINISTRATOR:
        return messages.NOTICE_WHY_DISCONNECTED.format(by=by or messages.NOTICE_AN_ADMINISTRATOR)
    if reason == notices.TOKEN_REFUSED:
        return messages.NOTICE_WHY_TOKEN_REFUSED
    return messages.NOTICE_WHY_REFRESH_REFUSED


@dataclass
class BreakNotices:
    store: ConnectionStore
    audit: AuditLog
    providers: ProviderRegistry
    # The surface that reaches people (None: notices wait, untold, for one that can).
    tell: Tell | None = None
    holder: str = field(default_factory=lambda: uuid.uuid4().hex)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def tell_soon(self, connection_id: str) -> None:
        """Tell the connection's notice in the background (after the current answer)."""
        task = asyncio.create_task(self._tell_quietly(ObjectId(connection_id)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tell_quietly(self, connection_id: ObjectId) -> None:
        try:
            await self.tell_one(connection_id)
        except Exception as error:  # the notice stays due; the sweep tells it
            log.warning(messages.LOG_NOTICE_FAILED, type(error).__name__)

    async def sweep(self) -> int:
        """Tell every notice that is due, and close those whose sender stopped mid-way."""
        now = datetime.now(UTC)
        handled = 0
        for connection_id in await notices.due(self.store.collection, now=now):
            handled += await self.tell_one(connection_id, close_stale=True) is not None
        return handled

    async def tell_one(self, connection_id: ObjectId, *, close_stale: bool = False) -> Told | None:
        """Tell one record's notice if it is due; None when there was nothing for this call
        (with `close_stale`, a notice whose sender stopped mid-way is closed as unknown)."""
        if self.tell is None:
            return None
        collection = self.store.collection
        now = datetime.now(UTC)
        document = await notices.claim(
            collection, connection_id, holder=self.holder, until=now + CLAIM, now=now
        )
        if document is None:
            return await self._close_stale(connection_id, now) if close_stale else None
        notice = document[notices.NOTICE]
        told = await self._tell(document, notice)
        event = self._event(document, notice, told)
        await notices.finish(
            collection, connection_id, holder=self.holder, outcome=told.value, event=event
        )
        await drain(collection, connection_id, self.audit)
        return told

    async def _tell(self, document: dict[str, Any], notice: dict[str, Any]) -> Told:
        if not _still_true(document, notice["reason"]):
            return Told.OUTDATED
        reach = document.get("reach")
        if not isinstance(reach, dict) or not reach:
            return Told.NO_CHAT
        assert self.tell is not None
        owner = Owner.model_validate(document["owner"])
        try:
            async with asyncio.timeout(TELL_TIMEOUT_S):
                return await self.tell(owner, reach, await self.notice_of(document, notice))
        except TimeoutError:
            # Maybe posted: never again (at most one message per break).
            return Told.UNKNOWN

    async def notice_of(self, document: dict[str, Any], notice: dict[str, Any]) -> BreakNotice:
        """What the notice says about the record."""
        connection = _as_it_was(document)
        reason = str(notice["reason"])
        provider = self.providers.get(connection.provider)
        removed = reason == notices.DELETED_BY_ADMINISTRATOR
        return BreakNotice(
            connection_id=connection.id,
            app_name=self.providers.display_name(connection.provider),
            account=connection.account_label,
            reason=reason,
            why=why(reason, str(notice.get("by") or "")),
            since=notice["at"],
            can_reconnect=not removed and provider is not None,
            contact=await self._contact(connection) if removed else "",
        )

    async def _contact(self, connection: Connection) -> str:
        """Whom to ask about a removed connection: its parent's configured contact."""
        parent = await self.store.get(connection.parent_id) if connection.parent_id else None
        configured = self.providers.parents.get(parent.name or "") if parent else None
        return configured.contact if configured else messages.RECIPE_CONTACT_UNKNOWN

    def _event(self, document: dict[str, Any], notice: dict[str, Any], told: Told) -> Any:
        connection = _as_it_was(document)
        return AuditLog.event(
            actor=Actor.bot(),
            action=CONNECTION_BREAK_NOTIFIED,
            connection=connection,
            details={"reason": notice["reason"], "outcome": told.value},
        )

    async def _close_stale(self, connection_id: ObjectId, now: datetime) -> Told | None:
        document = await self.store.collection.find_one({"_id": connection_id})
        notice = (document or {}).get(notices.NOTICE) or {}
        if document is None or notice.get("state") != notices.SENDING:
            return None
        event = self._event(document, notice, Told.UNKNOWN)
        if not await notices.close_stale(
            self.store.collection, connection_id, now=now, event=event
        ):
            return None
        await drain(self.store.collection, connection_id, self.audit)
        return Told.UNKNOWN

    async def close(self) -> None:
        """Let notices being told finish (bounded) at shutdown; the sweep covers the rest."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=TELL_TIMEOUT_S)
