"""Listing, reconnecting, disconnecting and deleting connections, with an audit line each.

The one way every surface (the Teams handlers, the operator CLI) reads or changes connections.
Results are plain data (`ConnectionView`, `ChangeReport`, `ReconnectPlan`) that the surfaces turn
into cards or lines; `view_of` makes a card's view of a stored record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bson import ObjectId

import messages
from connections.settle import ConnectionSettler
from connections.views import RECONNECTABLE, ConnectionView, blocked
from oauth.providers import ProviderRegistry, display_name
from storage.audit import AuditLog
from storage.connections import Change, ConnectionStore, serves
from storage.models import (
    Actor,
    Connection,
    ConnectionKind,
    ConnectionStatus,
    EncryptedTokens,
    Owner,
    ProviderAccount,
)
from storage.outbox import drain


def view_of(connection: Connection, names: Callable[[str], str] = display_name) -> ConnectionView:
    """What a card shows of a stored connection (`names`: an app key to the name people see).

    A signed-out connection carries since when: for Needs sign-in the time its refresh was
    refused (`last_error.at`), else its last change of status (`updated_at`). A connected one
    carries none: the list stays short. Never the error's code or a provider's words.
    """
    since = None
    if connection.status is ConnectionStatus.NEEDS_REAUTH:
        error = connection.last_error
        since = error.at if error is not None else connection.updated_at
    elif connection.status is ConnectionStatus.DISCONNECTED:
        since = connection.updated_at
    return ConnectionView(
        id=connection.id,
        app_name=names(connection.provider),
        account=connection.account_label,
        status=connection.status.value,
        since=since,
    )


def tenant_of(connection: Connection) -> str:
    """The tenant whose data a connection is: a parent's served tenant, else its owner's."""
    if connection.kind is ConnectionKind.PARENT and connection.tenant_id:
        return connection.tenant_id
    return connection.owner.tenant_id


class ChangeResult(StrEnum):
    DONE = "done"
    NO_CHANGE = "no_change"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class ChangeReport:
    """What an action did, and the one line to tell the person."""

    result: ChangeResult
    message: str
    # The person's connections after the action, when it read them (the answer's list).
    views: tuple[ConnectionView, ...] | None = None


class Reconnect(StrEnum):
    NOT_FOUND = "not_found"  # not one of the person's connections
    NOT_NEEDED = "not_needed"  # connected: nothing to sign in again
    NOT_POSSIBLE = "not_possible"  # no parent (left) that serves the person and can sign in
    APP_NOT_CONFIGURED = "app_not_configured"  # its app is not in APPS_FILE any more
    READY = "ready"  # send a Login card for `parent`


@dataclass(frozen=True)
class ReconnectPlan:
    """Whether a connection can be signed in again, and what the answer names."""

    outcome: Reconnect
    label: str = ""  # "Box (jane@contoso.com)"; empty when NOT_FOUND
    app_name: str = ""
    parent: Connection | None = None  # only when READY: the parent to sign in with


@dataclass(frozen=True)
class ConnectionsService:
    """What may be done to connections, for every surface and the operator CLI alike.

    A change, its audit event and the tokens to revoke are one database update; the event is
    recorded at once, and revocation at the provider runs after the answer (`settler`).
    """

    store: ConnectionStore
    audit: AuditLog
    names: Callable[[str], str] = display_name
    # Records events and revokes tokens after a change (None: the periodic sweep does it).
    settler: ConnectionSettler | None = None
    # The configured apps (APPS_FILE), to tell whether a connection's app is still set up.
    # None: every app counts as set up.
    providers: ProviderRegistry | None = None

    def app_configured(self, provider: str) -> bool:
        """Whether an app key is set up in this bot (unknown registry: assumed so)."""
        return self.providers is None or self.providers.get(provider) is not None

    async def list_views(self, owner: Owner) -> list[ConnectionView]:
        """The person's runtime connections as card data."""
        return await self._views(await self.store.list_for_owner(owner=owner), owner)

    async def view(self, owner: Owner, connection_id: str) -> ConnectionView | None:
        """One of the person's own connections, or None when it isn't theirs or doesn't exist."""
        connection = await self.store.get_for_owner(connection_id=connection_id, owner=owner)
        return view_of(connection, self.names) if connection else None

    async def _views(self, connections: Iterable[Connection], owner: Owner) -> list[ConnectionView]:
        """Card data for the person's connections, each marked when Reconnect cannot work for
        it (its app not set up any more, or no parent left that serves the person). Parents
        are read only for signed-out connections of configured apps, each parent once."""
        listed = list(connections)
        views = [view_of(c, self.names) for c in listed]
        wanted = {
            c.parent_id
            for c, v in zip(listed, views, strict=True)
            if v.status in RECONNECTABLE and c.parent_id and self.app_configured(c.provider)
        }
        ids = sorted(pid for pid in wanted if pid)
        found = await asyncio.gather(*(self.store.get(pid) for pid in ids))
        serving = {pid for pid, parent in zip(ids, found, strict=True) if serves(parent, owner)}
        return [
            blocked(view)
            if view.status in RECONNECTABLE
            and (not self.app_configured(c.provider) or c.parent_id not in serving)
            else view
            for c, view in zip(listed, views, strict=True)
        ]

    async def reconnect(
        self, owner: Owner, connection_id: str, *, can_sign_in: Callable[[Connection], bool]
    ) -> ReconnectPlan:
        """Whether the person's connection can be signed in again, and with which parent.

        Args:
            can_sign_in: True when a sign-in can start for a parent (its app is configured).
        """
        connection = await self.store.get_for_owner(connection_id=connection_id, owner=owner)
        if connection is None:
            return ReconnectPlan(Reconnect.NOT_FOUND)
        # The answer names the app by `display_name`, as the Reconnect answer always has.
        view = view_of(connection)
        if connection.status.value not in RECONNECTABLE:
            return ReconnectPlan(Reconnect.NOT_NEEDED, view.label, view.app_name)
        if not self.app_configured(connection.provider):
            return ReconnectPlan(Reconnect.APP_NOT_CONFIGURED, view.label, view.app_name)
        parent = await self.store.get(connection.parent_id) if connection.parent_id else None
        if parent is None or not serves(parent, owner):
            return ReconnectPlan(Reconnect.NOT_POSSIBLE, view.label, view.app_name)
        if not can_sign_in(parent):
            return ReconnectPlan(Reconnect.APP_NOT_CONFIGURED, view.label, view.app_name)
        return ReconnectPlan(Reconnect.READY, view.label, view.app_name, parent)

    async def disconnect(self, owner: Owner, connection_id: str) -> ChangeReport:
        """Sign the person out of one connection, keeping the record as Disconnected.

        The store reads the person's list once and changes the record once, with its audit
        event in the same update; the event reaches the audit log, and the tokens are revoked,
        just after the answer. The report carries the list as it is after the change, so the
        answer needs no other read of it (only the parents of signed-out connections are read,
        to tell whether Reconnect can work for them).
        """
        done = await self.store.disconnect_listed(
            connection_id=connection_id, owner=owner, actor=Actor.person(owner)
        )
        views = tuple(await self._views(done.connections, owner))
        if done.change is Change.NOT_FOUND:
            return ChangeReport(ChangeResult.NOT_FOUND, messages.CONNECTION_NOT_FOUND, views)
        if done.change is Change.UNCHANGED or done.previous is None:
            # A retried press changes nothing and starts nothing: what a crash may have left
            # (an event, a revocation) is finished by the sweep.
            current = done.listed(connection_id)
            label = view_of(current, self.names).label if current else ""
            return ChangeReport(
                ChangeResult.NO_CHANGE, messages.ALREADY_DISCONNECTED.format(label=label), views
            )
        await self._settle(connection_id, done.events)
        label = view_of(done.previous, self.names).label
        return ChangeReport(ChangeResult.DONE, messages.DISCONNECTED.format(label=label), views)

    async def delete(self, owner: Owner, connection_id: str) -> ChangeReport:
        """Remove one of the person's connections; they sign in again the next time.

        Read and changed like `disconnect`; a retried Delete (the record still a tombstone) is
        told it was deleted.
        """
        done = await self.store.delete_listed(
            connection_id=connection_id, owner=owner, actor=Actor.person(owner)
        )
        views = tuple(await self._views(done.connections, owner))
        if done.change is Change.NOT_FOUND:
            return ChangeReport(ChangeResult.NOT_FOUND, messages.CONNECTION_NOT_FOUND, views)
        if done.change is Change.UNCHANGED or done.previous is None:
            return ChangeReport(ChangeResult.NO_CHANGE, messages.ALREADY_DELETED, views)
        await self._settle(connection_id, done.events)
        label = view_of(done.previous, self.names).label
        return ChangeReport(ChangeResult.DONE, messages.DELETED.format(label=label), views)

    # --- The operator's command line -----------------------------------------------------------

    async def list_all(self, *, kind: ConnectionKind | None = None) -> list[Connection]:
        """Every stored connection (only of `kind`, when given), oldest first."""
        return await self.store.list_all(kind=kind)

    async def create_parent(
        self,
        *,
        provider: str,
        owner: Owner,
        account: ProviderAccount,
        tenant_id: str,
        actor: Actor,
        api_base_url: str | None = None,
    ) -> Connection:
        """An operator stores a parent connection without tokens (development); audited."""
        created = await self.store.create_parent(
            provider=provider,
            owner=owner,
            account=account,
            api_base_url=api_base_url,
            tenant_id=tenant_id,
            actor=actor,
        )
        await drain(self.store.collection, ObjectId(created.id), self.audit)
        return created

    async def create_runtime(
        self,
        *,
        parent_id: str,
        owner: Owner,
        account: ProviderAccount,
        status: ConnectionStatus,
        actor: Actor,
    ) -> Connection:
        """An operator stores a person's runtime connection without tokens (development);
        audited.

        Raises:
            ParentNotFound: no parent connection with that id serves the person's tenant.
            ConnectionExists: the person already has one for that parent.
        """
        created = await self.store.create_runtime(
            parent_id=parent_id, owner=owner, account=account, status=status, actor=actor
        )
        await drain(self.store.collection, ObjectId(created.id), self.audit)
        return created

    async def store_parent(
        self,
        *,
        name: str,
        provider: str,
        tenant_id: str,
        owner: Owner,
        account: ProviderAccount,
        tokens: EncryptedTokens,
        scopes: list[str],
        api_base_url: str | None,
        actor: Actor,
    ) -> Connection:
        """Store the account an operator authorized as the configured parent `name` of
        `tenant_id`: the existing parent gets the new account and tokens (same id, the replaced
        grant due for revocation), else a new parent. Call `settle_now` after it."""
        existing = await self.store.find_parent(name, tenant_id=tenant_id)
        if existing is not None:
            parent = await self.store.replace_parent_credentials(
                connection_id=existing.id,
                account=account,
                tokens=tokens,
                scopes=scopes,
                api_base_url=api_base_url,
                actor=actor,
            )
            assert parent is not None
            return parent
        return await self.store.create_parent(
            provider=provider,
            owner=owner,
            account=account,
            scopes=scopes,
            api_base_url=api_base_url,
            tokens=tokens,
            name=name,
            tenant_id=tenant_id,
            actor=actor,
        )

    async def settle_now(self, connection_id: str) -> None:
        """Finish, before returning, what a change left for one connection: record its audit
        events and revoke a replaced or removed grant (without a settler: the events only)."""
        if self.settler is None:
            await drain(self.store.collection, ObjectId(connection_id), self.audit)
            return
        await self.settler.settle(ObjectId(connection_id))

    async def delete_as_operator(
        self, actor: Actor, connection_id: str, *, kind: ConnectionKind | None = None
    ) -> Connection | None:
        """An operator removes any connection (of `kind`, when given): revoked and audited like
        a person's own Delete. A parent's runtime connections stay stored.

        Returns:
            The removed record as it was, only to the call that removed it; None when there
            was nothing (left) to remove.
        """
        deleted = await self.store.delete(connection_id, kind=kind, actor=actor)
        if deleted is not None:
            await self._settle(connection_id)
        return deleted

    # --- The admin console ------------------------------------------------------------------

    async def find_for_administrator(
        self, connection_id: str, *, tenants: frozenset[str] | None, kind: ConnectionKind
    ) -> Connection | None:
        """A connection of `kind` that an administrator may see (`tenants` None: every
        tenant), or None."""
        connection = await self.store.get(connection_id)
        if connection is None or connection.kind is not kind:
            return None
        if tenants is not None and tenant_of(connection) not in tenants:
            return None
        return connection

    async def disconnect_as_administrator(
        self, actor: Actor, connection_id: str, *, tenants: frozenset[str] | None
    ) -> tuple[ChangeResult, Connection | None]:
        """An administrator signs a person out of one runtime connection (record kept, tokens
        revoked, audited as the administrator). Returns what happened and the record as it
        was (None when not found or outside the administrator's tenants)."""
        connection = await self.find_for_administrator(
            connection_id, tenants=tenants, kind=ConnectionKind.RUNTIME
        )
        if connection is None:
            return ChangeResult.NOT_FOUND, None
        change, _ = await self.store.disconnect(
            connection_id=connection_id, owner=connection.owner, actor=actor
        )
        await self._settle(connection_id)
        if change is Change.NOT_FOUND:
            return ChangeResult.NOT_FOUND, None
        result = ChangeResult.DONE if change is Change.CHANGED else ChangeResult.NO_CHANGE
        return result, connection

    async def delete_as_administrator(
        self,
        actor: Actor,
        connection_id: str,
        *,
        tenants: frozenset[str] | None,
        kind: ConnectionKind = ConnectionKind.RUNTIME,
    ) -> tuple[ChangeResult, Connection | None]:
        """An administrator removes a runtime connection (the person signs in again next
        time) or a parent (its recipes stop; its runtime connections stay stored); revoked and
        audited as the administrator. Idempotent: a repeat is NO_CHANGE once it is gone."""
        connection = await self.find_for_administrator(connection_id, tenants=tenants, kind=kind)
        if connection is None:
            return ChangeResult.NOT_FOUND, None
        deleted = await self.store.delete(connection_id, kind=kind, actor=actor)
        if deleted is None:
            return ChangeResult.NO_CHANGE, connection
        await self._settle(connection_id)
        return ChangeResult.DONE, deleted

    async def _settle(self, connection_id: str, events: Sequence[Any] | None = None) -> None:
        """Leave writing the change's audit events to the audit log, revocation, emptying the
        outbox and purging a tombstone to after the answer.

        A change given with its `events` (a person's own, in a chat turn) is answered before
        its events reach the audit log: they are already stored with the change, in the same
        update, so nothing is lost if the process dies now, and the turn costs one database
        round trip less. Other changes write their events before answering."""
        if self.settler is None:
            return
        if events is None:
            await self.settler.record_events(connection_id)
        # A person's own change (given with its events) leaves no break notice to tell.
        self.settler.settle_later(connection_id, notice=events is None)
