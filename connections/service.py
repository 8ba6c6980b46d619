"""Listing, disconnecting and deleting a person's runtime connections, with an audit line each.

Results are plain data (`ConnectionView`, `Outcome`) that the card builders turn into cards.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

import messages
from oauth.providers import display_name
from storage.audit import (
    CONNECTION_DELETED,
    CONNECTION_DISCONNECTED,
    CONNECTION_REVOKE_FAILED,
    AuditLog,
)
from storage.connections import Change, ConnectionStore
from storage.models import Actor, Connection, ConnectionKind, Owner


@dataclass(frozen=True)
class ConnectionView:
    """What a card shows of a connection: never tokens."""

    id: str
    app_name: str
    account: str
    status: str  # a ConnectionStatus value

    @property
    def label(self) -> str:
        return f"{self.app_name} ({self.account})"

    @property
    def status_label(self) -> str:
        return messages.STATUS_LABELS.get(self.status, self.status)

    @classmethod
    def of(
        cls, connection: Connection, names: Callable[[str], str] = display_name
    ) -> ConnectionView:
        return cls(
            id=connection.id,
            app_name=names(connection.provider),
            account=connection.account_label,
            status=connection.status.value,
        )


class Result(StrEnum):
    DONE = "done"
    NO_CHANGE = "no_change"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class Outcome:
    """What an action did, and the one line to tell the person."""

    result: Result
    message: str


Revoker = Callable[[Connection], Awaitable[str]]


@dataclass(frozen=True)
class ConnectionsService:
    connections: ConnectionStore
    audit: AuditLog
    names: Callable[[str], str] = display_name
    # Revokes a connection's tokens at its provider; returns what happened (see oauth.tokens).
    revoke: Revoker | None = None

    async def list_views(self, owner: Owner) -> list[ConnectionView]:
        """The person's runtime connections as card data."""
        return [
            ConnectionView.of(c, self.names)
            for c in await self.connections.list_for_owner(owner=owner)
        ]

    async def view(self, owner: Owner, connection_id: str) -> ConnectionView | None:
        """One of the person's own connections, or None when it isn't theirs or doesn't exist."""
        connection = await self.connections.get_for_owner(connection_id=connection_id, owner=owner)
        return ConnectionView.of(connection, self.names) if connection else None

    async def disconnect(self, owner: Owner, connection_id: str) -> Outcome:
        """Sign the person out of one connection, keeping the record as Disconnected."""
        connection = await self.connections.get_for_owner(connection_id=connection_id, owner=owner)
        if connection is None:
            return Outcome(Result.NOT_FOUND, messages.CONNECTION_NOT_FOUND)
        label = ConnectionView.of(connection, self.names).label
        change, previous = await self.connections.disconnect_and_take_tokens(
            connection_id=connection_id, owner=owner
        )
        if change is Change.NOT_FOUND:
            return Outcome(Result.NOT_FOUND, messages.CONNECTION_NOT_FOUND)
        if change is Change.UNCHANGED or previous is None:
            return Outcome(Result.NO_CHANGE, messages.ALREADY_DISCONNECTED.format(label=label))
        revocation = await self._revoke(Actor.person(owner), previous)
        await self.audit.record(
            actor=Actor.person(owner),
            action=CONNECTION_DISCONNECTED,
            connection=previous,
            details={"revocation": revocation},
        )
        return Outcome(Result.DONE, messages.DISCONNECTED.format(label=label))

    async def _revoke(self, actor: Actor, connection: Connection) -> str:
        """Revoke at the provider after the local change; a failure is audited, not fatal."""
        if connection.tokens is None:
            return "nothing_to_revoke"
        if self.revoke is None:
            # No way to reach the provider from here: say so rather than pretend.
            result = "failed"
        else:
            result = await self.revoke(connection)
        if result == "failed":
            await self.audit.record(
                actor=actor, action=CONNECTION_REVOKE_FAILED, connection=connection
            )
        return result

    async def delete(self, owner: Owner, connection_id: str) -> Outcome:
        """Remove one of the person's connections; they sign in again the next time."""
        deleted = await self.connections.delete_for_owner(connection_id=connection_id, owner=owner)
        if deleted is None:
            return Outcome(Result.NOT_FOUND, messages.CONNECTION_NOT_FOUND)
        revocation = await self._revoke(Actor.person(owner), deleted)
        await self.audit.record(
            actor=Actor.person(owner),
            action=CONNECTION_DELETED,
            connection=deleted,
            details={"revocation": revocation},
        )
        return Outcome(
            Result.DONE, messages.DELETED.format(label=ConnectionView.of(deleted, self.names).label)
        )

    async def delete_as_operator(
        self, actor: Actor, connection_id: str, *, kind: ConnectionKind | None = None
    ) -> Connection | None:
        """An operator removes any connection (of `kind`, when given): revoked and audited like
        a person's own Delete. A parent's runtime connections stay stored.

        Returns:
            The removed record (tokens included, already revoked), only to the call that removed
            it; None when there was nothing (left) to remove.
        """
        deleted = await self.connections.delete(connection_id, kind=kind)
        if deleted is None:
            return None
        revocation = await self._revoke(actor, deleted)
        await self.audit.record(
            actor=actor,
            action=CONNECTION_DELETED,
            connection=deleted,
            details={"revocation": revocation},
        )
        return deleted
