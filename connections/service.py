"""Listing, disconnecting and deleting a person's runtime connections, with an audit line each.

Results are plain data (`ConnectionView`, `Outcome`) that the card builders turn into cards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import messages
from connections.settle import ConnectionSettler
from oauth.providers import display_name
from storage.audit import AuditLog
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


@dataclass(frozen=True)
class ConnectionsService:
    """What may be done to connections, for every surface and the operator CLI alike.

    A change, its audit event and the tokens to revoke are one database update; the event is
    recorded at once, and revocation at the provider runs after the answer (`settler`).
    """

    connections: ConnectionStore
    audit: AuditLog
    names: Callable[[str], str] = display_name
    # Records events and revokes tokens after a change (None: the periodic sweep does it).
    settler: ConnectionSettler | None = None

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
        change, previous = await self.connections.disconnect(
            connection_id=connection_id, owner=owner, actor=Actor.person(owner)
        )
        if change is Change.NOT_FOUND:
            return Outcome(Result.NOT_FOUND, messages.CONNECTION_NOT_FOUND)
        if change is Change.UNCHANGED or previous is None:
            # A retried press: say what is true, and finish anything a crash left behind.
            await self._settle(connection_id)
            current = await self.connections.get_for_owner(connection_id=connection_id, owner=owner)
            label = ConnectionView.of(current, self.names).label if current else ""
            return Outcome(Result.NO_CHANGE, messages.ALREADY_DISCONNECTED.format(label=label))
        await self._settle(connection_id)
        label = ConnectionView.of(previous, self.names).label
        return Outcome(Result.DONE, messages.DISCONNECTED.format(label=label))

    async def delete(self, owner: Owner, connection_id: str) -> Outcome:
        """Remove one of the person's connections; they sign in again the next time."""
        deleted = await self.connections.delete_for_owner(connection_id=connection_id, owner=owner)
        if deleted is None:
            if await self.connections.was_deleted_for_owner(
                connection_id=connection_id, owner=owner
            ):
                await self._settle(connection_id)
                return Outcome(Result.NO_CHANGE, messages.ALREADY_DELETED)
            return Outcome(Result.NOT_FOUND, messages.CONNECTION_NOT_FOUND)
        await self._settle(connection_id)
        return Outcome(
            Result.DONE, messages.DELETED.format(label=ConnectionView.of(deleted, self.names).label)
        )

    async def delete_as_operator(
        self, actor: Actor, connection_id: str, *, kind: ConnectionKind | None = None
    ) -> Connection | None:
        """An operator removes any connection (of `kind`, when given): revoked and audited like
        a person's own Delete. A parent's runtime connections stay stored.

        Returns:
            The removed record as it was, only to the call that removed it; None when there
            was nothing (left) to remove.
        """
        deleted = await self.connections.delete(connection_id, kind=kind, actor=actor)
        if deleted is not None:
            await self._settle(connection_id)
        return deleted

    async def _settle(self, connection_id: str) -> None:
        if self.settler is None:
            return
        await self.settler.record_events(connection_id)
        self.settler.settle_later(connection_id)
