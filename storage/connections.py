"""Parent and runtime connections (collection `connections`).

A runtime connection belongs to one person (tenant id + Entra object id) and one parent; a
partial unique index keeps it to one per (parent, person) while one owner may own many parents.
Every query that acts for a person is scoped by their tenant and object id, so a forged id
never reaches someone else's record. Not-found returns None; deletes are idempotent.

Every change is written in one update together with its audit event (the record's outbox, see
storage/outbox.py) and, when tokens are dropped, with a `revocation` to do at the provider, so a
crash can lose neither. A deleted record becomes a tombstone (kind `deleted`: invisible to every
query here) until its revocation and events are finished, then it is purged
(connections/settle.py).

Its methods are listed, with what each does, in `storage.protocols.ConnectionRecords`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, OperationFailure

from storage import notices, revocations
from storage.audit import (
    CONNECTION_ACCOUNT_CHANGED,
    CONNECTION_CREATED,
    CONNECTION_DELETED,
    CONNECTION_DISCONNECTED,
    CONNECTION_RECONNECTED,
    AuditLog,
)
from storage.models import (
    LIVE_KINDS,
    Actor,
    Connection,
    ConnectionKind,
    ConnectionStatus,
    EncryptedTokens,
    Owner,
    ProviderAccount,
)
from storage.notices import NOTICE
from storage.outbox import HAS_EVENTS, OUTBOX, ensure_outbox_index, push
from storage.revocations import REVOCATION
from storage.search_terms import SEARCH_TERMS, terms_of

Document = dict[str, Any]


class ConnectionExists(ValueError):
    """The person already has a runtime connection for that parent."""


class ParentNotFound(ValueError):
    """A runtime connection must name an existing parent connection of the person's tenant."""


class ConcurrentChange(RuntimeError):
    """The record kept changing under a conditional update (try again in a moment)."""


_CAS_ATTEMPTS = 5
# How long a deleted record stays as a tombstone (longer than Teams retries an action).
TOMBSTONE_KEPT = timedelta(minutes=10)


class Change(StrEnum):
    """What a conditional update did."""

    CHANGED = "changed"
    UNCHANGED = "unchanged"  # the record was already in the wanted state
    NOT_FOUND = "not_found"  # no such record for this person


@dataclass(frozen=True)
class ListedChange:
    """What a person's Disconnect or Delete did, with their list as it stands after it.

    Read and written in two commands: one `find` of the person's records, one conditional
    `update_one` (none when there is nothing to change).
    """

    change: Change
    # The record as it was (tokens included), only to the call that changed it.
    previous: Connection | None = None
    # The person's runtime connections after the change, in list order.
    connections: list[Connection] = field(default_factory=list)
    # Audit events on the record's outbox: the one written with the change, or, when nothing
    # changed, those a crash left to record.
    events: list[Document] = field(default_factory=list)

    def listed(self, connection_id: str) -> Connection | None:
        """The listed connection with that id (after the change), or None."""
        return next((c for c in self.connections if c.id == connection_id), None)


def _object_id(connection_id: str) -> ObjectId | None:
    # A 24-hex string only: ObjectId() would also accept 12 arbitrary bytes.
    if (
        isinstance(connection_id, str)
        and len(connection_id) == 24
        and ObjectId.is_valid(connection_id)
    ):
        return ObjectId(connection_id)
    return None


def _owner_filter(owner: Owner) -> Document:
    return {"owner.tenant_id": owner.tenant_id, "owner.aad_object_id": owner.aad_object_id}


def serves(parent: Connection | None, person: Owner) -> bool:
    """True when `parent` is a parent connection of the person's own tenant."""
    return (
        parent is not None
        and parent.kind is ConnectionKind.PARENT
        and bool(parent.tenant_id)
        and parent.tenant_id == person.tenant_id
    )


class ConnectionStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._connections = collection

    async def ensure_indexes(self) -> None:
        await self._connections.create_index(
            [
                ("parent_id", ASCENDING),
                ("owner.tenant_id", ASCENDING),
                ("owner.aad_object_id", ASCENDING),
            ],
            name="one_runtime_connection_per_person_and_parent",
            unique=True,
            partialFilterExpression={"kind": ConnectionKind.RUNTIME.value},
        )
        await self._connections.create_index(
            [
                ("owner.tenant_id", ASCENDING),
                ("owner.aad_object_id", ASCENDING),
                ("kind", ASCENDING),
            ],
            name="by_owner",
        )
        # Every write pays for every index (the embedded store most of all), so none is kept
        # that another one's prefix already serves: `kind` alone leads several below.
        with contextlib.suppress(OperationFailure):
            await self._connections.drop_index("by_kind")
        await self._connections.create_index(
            [("kind", ASCENDING), ("deleted_at", ASCENDING)], name="tombstones"
        )
        await ensure_outbox_index(self._connections)
        await revocations.ensure_revocation_index(self._connections)
        await notices.ensure_notice_index(self._connections)
        await self._connections.create_index(
            [("provider", ASCENDING), ("status", ASCENDING), ("tokens_issued_at", ASCENDING)],
            name="refresh_tokens_by_age",
        )
        await self._connections.create_index(
            [("status", ASCENDING), ("tokens.expires_at", ASCENDING)],
            name="access_tokens_by_expiry",
        )
        await self._connections.create_index(
            [("kind", ASCENDING), ("name", ASCENDING), ("tenant_id", ASCENDING)],
            name="parents_by_name_and_tenant",
        )

    async def create_parent(
        self,
        *,
        provider: str,
        owner: Owner,
        account: ProviderAccount | None,
        scopes: list[str] | None = None,
        api_base_url: str | None = None,
        tokens: EncryptedTokens | None = None,
        status: ConnectionStatus = ConnectionStatus.CONNECTED,
        name: str | None = None,
        tenant_id: str | None = None,
        actor: Actor | None = None,
    ) -> Connection:
        """Store a parent connection: a recipe's default account, authorized by an admin.

        Args:
            tenant_id: the tenant whose people the parent serves (default: the owner's tenant).
                A parent is never used for anyone of another tenant.
        """
        document = self._new_document(
            kind=ConnectionKind.PARENT,
            provider=provider,
            parent_id=None,
            owner=owner,
            account=account,
            scopes=scopes,
            api_base_url=api_base_url,
            tokens=tokens,
            status=status,
        )
        if name is not None:
            document["name"] = name
        document["tenant_id"] = owner.tenant_id if tenant_id is None else tenant_id
        created = Connection.from_document(document)
        if actor is not None:
            document[OUTBOX] = [
                AuditLog.event(actor=actor, action=CONNECTION_CREATED, connection=created)
            ]
        await self._connections.insert_one(document)
        return created

    async def find_parent(self, name: str, *, tenant_id: str) -> Connection | None:
        """The parent stored under a configured name that serves `tenant_id` (newest first).

        A parent of another tenant is never returned, whatever its name.
        """
        if not isinstance(tenant_id, str) or not tenant_id:
            return None
        cursor = (
            self._connections.find(
                {"kind": ConnectionKind.PARENT.value, "name": name, "tenant_id": tenant_id}
            )
            .sort([("created_at", -1)])
            .limit(1)
        )
        documents = [document async for document in cursor]
        return Connection.from_document(documents[0]) if documents else None

    async def parent_tenants(self, name: str) -> set[str]:
        """The tenants that have a parent stored under a configured name."""
        cursor = self._connections.find(
            {"kind": ConnectionKind.PARENT.value, "name": name}, projection={"tenant_id": 1}
        )
        return {str(document.get("tenant_id") or "") async for document in cursor}

    async def replace_parent_credentials(
        self,
        *,
        connection_id: str,
        account: ProviderAccount,
        tokens: EncryptedTokens,
        scopes: list[str],
        api_base_url: str | None,
        actor: Actor,
    ) -> Connection | None:
        """An operator authorized an existing parent again: new account and tokens, same id."""
        document = await self._connections.find_one(
            {"_id": ObjectId(connection_id), "kind": ConnectionKind.PARENT.value}
        )
        if document is None:
            return None
        updated = Connection.from_document(document).model_copy(update={"account": account})
        event = AuditLog.event(actor=actor, action=CONNECTION_RECONNECTED, connection=updated)
        # The replaced grant is revoked at the provider, not just forgotten.
        replaced = _revocation(document, actor, datetime.now(UTC))
        await self._connections.update_one(
            {"_id": ObjectId(connection_id), "kind": ConnectionKind.PARENT.value},
            {
                **push(event),
                "$set": {
                    "account": account.model_dump(),
                    "tokens": tokens.model_dump(),
                    "scopes": scopes,
                    "api_base_url": api_base_url,
                    "status": ConnectionStatus.CONNECTED.value,
                    "refresh_lease_until": None,
                    "updated_at": datetime.now(UTC),
                    "tokens_issued_at": datetime.now(UTC),
                    **replaced,
                },
                "$inc": {"version": 1},
            },
        )
        return await self.get(connection_id)

    async def find_runtime(self, *, parent_id: str, owner: Owner) -> Connection | None:
        """The person's runtime connection under a parent, if any."""
        document = await self._connections.find_one(
            {
                "parent_id": ObjectId(parent_id),
                "kind": ConnectionKind.RUNTIME.value,
                **_owner_filter(owner),
            }
        )
        return Connection.from_document(document) if document else None

    async def create_runtime(
        self,
        *,
        parent_id: str,
        owner: Owner,
        account: ProviderAccount | None,
        scopes: list[str] | None = None,
        api_base_url: str | None = None,
        tokens: EncryptedTokens | None = None,
        status: ConnectionStatus = ConnectionStatus.CONNECTED,
        actor: Actor | None = None,
        reach: Document | None = None,
    ) -> Connection:
        """Store one person's runtime connection under an existing parent.

        Raises:
            ParentNotFound: no parent connection has that id.
            ConnectionExists: the person already has one for that parent.
        """
        parent = await self.get(parent_id)
        if not serves(parent, owner):
            raise ParentNotFound(parent_id)
        assert parent is not None
        document = self._new_document(
            kind=ConnectionKind.RUNTIME,
            provider=parent.provider,
            parent_id=ObjectId(parent.id),
            owner=owner,
            account=account,
            scopes=scopes if scopes is not None else list(parent.scopes),
            api_base_url=api_base_url or parent.api_base_url,
            tokens=tokens,
            status=status,
            reach=reach,
        )
        created = Connection.from_document(document)
        if actor is not None:
            document[OUTBOX] = [
                AuditLog.event(actor=actor, action=CONNECTION_CREATED, connection=created)
            ]
        try:
            await self._connections.insert_one(document)
        except DuplicateKeyError:
            raise ConnectionExists(parent_id) from None
        return created

    @staticmethod
    def _new_document(
        *,
        kind: ConnectionKind,
        provider: str,
        parent_id: ObjectId | None,
        owner: Owner,
        account: ProviderAccount | None,
        scopes: list[str] | None,
        api_base_url: str | None,
        tokens: EncryptedTokens | None,
        status: ConnectionStatus,
        reach: Document | None = None,
    ) -> Document:
        now = datetime.now(UTC)
        document: Document = {
            "_id": ObjectId(),
            "kind": kind.value,
            "provider": provider,
            "owner": owner.model_dump(),
            "account": account.model_dump() if account else None,
            "status": status.value,
            "scopes": list(scopes or []),
            "tokens": tokens.model_dump() if tokens else None,
            "api_base_url": api_base_url,
            "refresh_lease_until": None,
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "last_used_at": None,
            "tokens_issued_at": now if tokens else None,
            "reach": reach,
            SEARCH_TERMS: terms_of(owner.model_dump(), account.model_dump() if account else None),
        }
        if parent_id is not None:
            document["parent_id"] = parent_id
        return document

    async def upsert_runtime(
        self,
        *,
        parent_id: str,
        owner: Owner,
        account: ProviderAccount,
        tokens: EncryptedTokens,
        scopes: list[str],
        api_base_url: str | None,
        actor: Actor | None = None,
        reach: Document | None = None,
    ) -> tuple[Connection, Connection | None]:
        """Write a verified sign-in: update the person's connection for that parent, or create it,
        with its audit events (created; or reconnected, and account changed) in the same write.

        Returns:
            The stored connection, and the record as it was before (None when created).
        """
        parent = await self.get(parent_id)
        if not serves(parent, owner):
            raise ParentNotFound(parent_id)
        assert parent is not None
        who = actor or Actor.person(owner)
        scope = {
            "parent_id": ObjectId(parent_id),
            "kind": ConnectionKind.RUNTIME.value,
            **_owner_filter(owner),
        }
        changes = {
            "account": account.model_dump(),
            "tokens": tokens.model_dump(),
            "scopes": scopes,
            "api_base_url": api_base_url or parent.api_base_url,
            "status": ConnectionStatus.CONNECTED.value,
            "refresh_lease_until": None,
            "owner.name": owner.name,
            "owner.teams_user_id": owner.teams_user_id,
            "updated_at": datetime.now(UTC),
            "tokens_issued_at": datetime.now(UTC),
            SEARCH_TERMS: terms_of(owner.model_dump(), account.model_dump()),
        }
        if reach is not None:
            changes["reach"] = reach
        # Two attempts: a concurrent create for the same person and parent loses to the unique
        # index, and then the update finds the winner's record.
        for _ in range(2):
            previous = await self._connections.find_one(scope)
            if previous is not None:
                before = Connection.from_document(previous)
                after = before.model_copy(update={"account": account})
                events = [
                    AuditLog.event(actor=who, action=CONNECTION_RECONNECTED, connection=after)
                ]
                if before.account and before.account.id != account.id:
                    events.append(
                        AuditLog.event(
                            actor=who,
                            action=CONNECTION_ACCOUNT_CHANGED,
                            connection=after,
                            details={
                                "from": before.account.display_name,
                                "to": account.display_name,
                            },
                        )
                    )
                updated = await self._connections.update_one(
                    {"_id": previous["_id"], "kind": ConnectionKind.RUNTIME.value},
                    {"$set": changes, "$inc": {"version": 1}, **push(*events)},
                )
                if updated.modified_count != 1:
                    continue  # deleted meanwhile: create it afresh
                current = await self._connections.find_one(
                    {"_id": previous["_id"], "kind": ConnectionKind.RUNTIME.value}
                )
                if current is not None:
                    return Connection.from_document(current), before
                continue  # deleted meanwhile: create it afresh
            try:
                created = await self.create_runtime(
                    parent_id=parent_id,
                    owner=owner,
                    account=account,
                    scopes=scopes,
                    api_base_url=api_base_url,
                    tokens=tokens,
                    actor=who,
                    reach=reach,
                )
            except ConnectionExists:
                continue
            return created, None
        raise ConnectionExists(parent_id)

    async def take_refresh_lease(
        self, *, connection_id: str, holder: str, until: datetime, now: datetime
    ) -> bool:
        """Take the connection's refresh lease unless someone holds a live one (all processes)."""
        take = {"$set": {"refresh_lease_until": until, "refresh_lease_holder": holder}}
        # Two conditional updates on the id rather than one `$or`, which the embedded store
        # answers by reading every record: free (the usual case), then run out.
        for free in ({"refresh_lease_until": None}, {"refresh_lease_until": {"$lte": now}}):
            result = await self._connections.update_one(
                {"_id": ObjectId(connection_id), **free}, take
            )
            if result.modified_count == 1:
                return True
        return False

    async def release_refresh_lease(self, *, connection_id: str, holder: str) -> None:
        await self._connections.update_one(
            {"_id": ObjectId(connection_id), "refresh_lease_holder": holder},
            {"$set": {"refresh_lease_until": None, "refresh_lease_holder": None}},
        )

    async def store_refreshed_tokens(
        self, *, connection_id: str, holder: str, tokens: EncryptedTokens
    ) -> bool:
        """Save refreshed tokens, only while still holding the lease."""
        now = datetime.now(UTC)
        result = await self._connections.update_one(
            {
                "_id": ObjectId(connection_id),
                "refresh_lease_holder": holder,
                "status": ConnectionStatus.CONNECTED.value,
            },
            {
                "$set": {
                    "tokens": tokens.model_dump(),
                    "updated_at": now,
                    # Not `last_used_at`: a refresh ahead of need is no use (runs record uses).
                    "last_refreshed_at": now,
                    "tokens_issued_at": now,
                },
                "$inc": {"version": 1},
            },
        )
        return result.modified_count == 1

    async def mark_needs_reauth(
        self, *, connection_id: str, error_code: str = "invalid_grant"
    ) -> bool:
        """The provider refused the refresh token (or a token that survived a refresh): the
        person must sign in again. The record keeps why (a code and a time, never the
        provider's own words) and, in the same update, a notice to tell its owner once.

        Returns:
            True only to the call that made the change (so one break is told once).
        """
        object_id = _object_id(connection_id)
        if object_id is None:
            return False
        now = datetime.now(UTC)
        result = await self._connections.update_one(
            {"_id": object_id, "status": ConnectionStatus.CONNECTED.value},
            {
                "$set": {
                    "status": ConnectionStatus.NEEDS_REAUTH.value,
                    "tokens": None,
                    "updated_at": now,
                    "last_error": {"code": error_code, "at": now},
                    NOTICE: notices.pending(error_code, now),
                },
                "$inc": {"version": 1},
            },
        )
        return result.modified_count == 1

    async def touch_used(self, *, connection_id: str, now: datetime) -> bool:
        """Record that a recipe used the connection at `now`: `last_used_at` only ever moves
        forward, so a late write never undoes a newer one.

        Bookkeeping, not a change of the connection: no `version`, no `updated_at` (which
        dates a status), no audit event.

        Returns:
            True when `last_used_at` moved.
        """
        object_id = _object_id(connection_id)
        if object_id is None:
            return False
        # A read, then one compare-and-set on what was read: cheaper for the embedded store
        # than conditional updates that find nothing (an `$or` or `$in` would read every
        # record). Lost to a concurrent use, it reads again: that one may have been earlier.
        for _ in range(3):
            document = await self._connections.find_one(
                {"_id": object_id}, projection={"kind": 1, "last_used_at": 1}
            )
            if document is None or document.get("kind") not in LIVE_KINDS:
                return False
            last_used_at = document.get("last_used_at")
            if last_used_at is not None and last_used_at >= now:
                return False
            result = await self._connections.update_one(
                {"_id": object_id, "kind": document["kind"], "last_used_at": last_used_at},
                {"$set": {"last_used_at": now}},
            )
            if result.modified_count == 1:
                return True
        return False

    # --- keeping connections alive (connections/keep_alive.py) ------------------------------

    async def refresh_tokens_issued_before(
        self, *, provider: str, before: datetime, limit: int
    ) -> list[str]:
        """Connected records of app `provider` whose refresh token was issued before `before`,
        oldest first; records that do not say when (stored before the time was kept) first of
        all. Both are read through the `refresh_tokens_by_age` index: an equality on null, then
        a range bounded on both sides (the embedded store reads a one-sided range, or an
        `$exists`, record by record)."""
        base = {"provider": provider, "status": ConnectionStatus.CONNECTED.value}
        found: list[str] = []
        for issued in (
            # Records without tokens (a parent never authorized) have no issue time either.
            {"tokens_issued_at": None, "tokens": {"$ne": None}},
            {"tokens_issued_at": {"$gte": revocations.EPOCH, "$lt": before}},
        ):
            cursor = (
                self._connections.find({**base, **issued}, projection={"kind": 1})
                .sort([("tokens_issued_at", ASCENDING)])
                .limit(limit - len(found))
            )
            found += [
                str(document["_id"])
                async for document in cursor
                if document.get("kind") in LIVE_KINDS
            ]
            if len(found) >= limit:
                break
        return found

    async def access_tokens_expiring(
        self, *, before: datetime, providers: list[str], parents: bool, limit: int
    ) -> list[tuple[str, str]]:
        """Connected records whose access token expires before `before`: parents (when
        `parents`), and every record of the apps `providers`; soonest first, as (id, app)."""
        query = {
            "status": ConnectionStatus.CONNECTED.value,
            "tokens.expires_at": {"$gte": revocations.EPOCH, "$lt": before},
        }
        scope: list[Document] = []
        if parents:
            scope.append({"kind": ConnectionKind.PARENT.value})
        if providers:
            scope.append({"kind": {"$in": list(LIVE_KINDS)}, "provider": {"$in": providers}})
        found: dict[str, str] = {}
        for part in scope:
            cursor = (
                self._connections.find({**query, **part}, projection={"_id": 1, "provider": 1})
                .sort([("tokens.expires_at", ASCENDING)])
                .limit(limit)
            )
            async for document in cursor:
                found[str(document["_id"])] = str(document["provider"])
        return list(found.items())[:limit]

    async def get(self, connection_id: str) -> Connection | None:
        object_id = _object_id(connection_id)
        if object_id is None:
            return None
        # The kind is checked here: an `$in` next to the id costs the embedded store a scan.
        document = await self._connections.find_one({"_id": object_id})
        if document is None or document.get("kind") not in LIVE_KINDS:
            return None
        return Connection.from_document(document)

    async def get_for_owner(self, *, connection_id: str, owner: Owner) -> Connection | None:
        """The person's own runtime connection with that id, or None."""
        object_id = _object_id(connection_id)
        if object_id is None:
            return None
        document = await self._connections.find_one(
            {"_id": object_id, "kind": ConnectionKind.RUNTIME.value, **_owner_filter(owner)}
        )
        return Connection.from_document(document) if document else None

    async def list_for_owner(self, *, owner: Owner) -> list[Connection]:
        """The person's runtime connections, by app then account then age."""
        # One batch, read whole: cheaper than iterating the cursor document by document.
        documents = await self._connections.find(
            {"kind": ConnectionKind.RUNTIME.value, **_owner_filter(owner)}
        ).to_list()
        return _in_list_order([Connection.from_document(document) for document in documents])

    async def list_all(self, *, kind: ConnectionKind | None = None) -> list[Connection]:
        query: Document = {"kind": kind.value} if kind else {"kind": {"$in": list(LIVE_KINDS)}}
        cursor = self._connections.find(query).sort([("created_at", ASCENDING), ("_id", ASCENDING)])
        return [Connection.from_document(document) async for document in cursor]

    async def disconnect_for_owner(self, *, connection_id: str, owner: Owner) -> Change:
        """Mark the person's connection Disconnected and drop its tokens, keeping the record.

        Only the call that actually changes the record gets CHANGED, so a double click or a
        retried request is audited once.
        """
        change, _ = await self.disconnect(
            connection_id=connection_id, owner=owner, actor=Actor.person(owner)
        )
        return change

    async def disconnect(
        self, *, connection_id: str, owner: Owner, actor: Actor
    ) -> tuple[Change, Connection | None]:
        """Disconnect the person's connection: in one update the status, the tokens moved to a
        pending revocation, and the audit event. Returns the record as it was (tokens
        included) to the one call that changed it."""
        object_id = _object_id(connection_id)
        if object_id is None:
            return Change.NOT_FOUND, None
        scope = {"_id": object_id, "kind": ConnectionKind.RUNTIME.value, **_owner_filter(owner)}
        for _ in range(_CAS_ATTEMPTS):
            document = await self._connections.find_one(scope)
            if document is None:
                return Change.NOT_FOUND, None
            if document["status"] == ConnectionStatus.DISCONNECTED.value:
                return Change.UNCHANGED, None
            changes, _ = _disconnecting(document, actor, datetime.now(UTC))
            result = await self._connections.update_one(
                {**scope, "version": document.get("version", 1), "status": document["status"]},
                changes,
            )
            if result.modified_count == 1:
                return Change.CHANGED, Connection.from_document(document)
        raise ConcurrentChange(connection_id)

    async def disconnect_listed(
        self, *, connection_id: str, owner: Owner, actor: Actor
    ) -> ListedChange:
        """`disconnect` for the person's own list: their records read once (the list, the
        ownership check and the record as it was, in one `find`), then one conditional update
        (status, tokens moved to a pending revocation, the audit event). A retry is UNCHANGED.
        """
        return await self._change_listed(
            connection_id,
            owner,
            actor,
            done=lambda document: document["status"] == ConnectionStatus.DISCONNECTED.value,
            change=_disconnecting,
        )

    async def delete_listed(
        self, *, connection_id: str, owner: Owner, actor: Actor
    ) -> ListedChange:
        """`delete_for_owner` for the person's own list, read once with their tombstones (so a
        retried Delete is UNCHANGED, not NOT_FOUND), then one conditional update that makes the
        record a tombstone with its audit event and pending revocation."""
        return await self._change_listed(
            connection_id,
            owner,
            actor,
            done=lambda document: document["kind"] == ConnectionKind.DELETED.value,
            change=_tombstoning,
            with_tombstones=True,
        )

    async def _change_listed(
        self,
        connection_id: str,
        owner: Owner,
        actor: Actor,
        *,
        done: Callable[[Document], bool],
        change: Callable[[Document, Actor, datetime], tuple[Document, Document]],
        with_tombstones: bool = False,
    ) -> ListedChange:
        """Read the person's records (one `find` on the `by_owner` index), then change the
        chosen one with one `update_one` conditional on its owner and on its version, so a
        concurrent change makes it read again and only one caller gets CHANGED."""
        object_id = _object_id(connection_id)
        kinds = [ConnectionKind.RUNTIME.value]
        if with_tombstones:
            kinds.append(ConnectionKind.DELETED.value)
        for _ in range(_CAS_ATTEMPTS):
            documents = await self._connections.find(
                {"kind": {"$in": kinds}, **_owner_filter(owner)}
            ).to_list()
            connections = _in_list_order(
                [
                    Connection.from_document(document)
                    for document in documents
                    if document["kind"] == ConnectionKind.RUNTIME.value
                ]
            )
            chosen = next((d for d in documents if d["_id"] == object_id), None)
            if object_id is None or chosen is None:
                return ListedChange(Change.NOT_FOUND, connections=connections)
            if done(chosen):
                return ListedChange(
                    Change.UNCHANGED, connections=connections, events=chosen.get(OUTBOX) or []
                )
            changes, event = change(chosen, actor, datetime.now(UTC))
            result = await self._connections.update_one(
                {
                    "_id": object_id,
                    "kind": chosen["kind"],
                    **_owner_filter(owner),
                    "version": chosen.get("version", 1),
                },
                changes,
            )
            if result.modified_count != 1:
                continue  # changed meanwhile: read again
            previous = Connection.from_document(chosen)
            others = [c for c in connections if c.id != previous.id]
            after = _applied(chosen, changes)
            return ListedChange(
                Change.CHANGED,
                previous=previous,
                connections=_in_list_order(others if after is None else [*others, after]),
                events=[event],
            )
        raise ConcurrentChange(connection_id)

    async def delete_for_owner(
        self, *, connection_id: str, owner: Owner, actor: Actor | None = None
    ) -> Connection | None:
        """Remove the person's runtime connection; returns it only to the call that removed it."""
        object_id = _object_id(connection_id)
        if object_id is None:
            return None
        scope = {"_id": object_id, "kind": ConnectionKind.RUNTIME.value, **_owner_filter(owner)}
        return await self._tombstone(scope, actor or Actor.person(owner))

    async def delete(
        self,
        connection_id: str,
        *,
        kind: ConnectionKind | None = None,
        actor: Actor | None = None,
    ) -> Connection | None:
        """Remove any connection (operators), only of `kind` when given. A parent's runtime
        children stay stored."""
        object_id = _object_id(connection_id)
        if object_id is None:
            return None
        scope: Document = {"_id": object_id, "kind": {"$in": list(LIVE_KINDS)}}
        if kind is not None:
            scope["kind"] = kind.value
        return await self._tombstone(scope, actor or Actor.operator("unknown"))

    async def _tombstone(self, scope: Document, actor: Actor) -> Connection | None:
        # One conditional update: invisible at once, tokens kept only for their revocation,
        # the audit event on the record. Only the caller that made the change gets the record.
        for _ in range(_CAS_ATTEMPTS):
            document = await self._connections.find_one(scope)
            if document is None:
                return None
            changes, _ = _tombstoning(document, actor, datetime.now(UTC))
            result = await self._connections.update_one(
                {
                    "_id": document["_id"],
                    "kind": document["kind"],
                    "version": document.get("version", 1),
                },
                changes,
            )
            if result.modified_count == 1:
                return Connection.from_document(document)
        raise ConcurrentChange(str(scope.get("_id")))

    # --- settling: revocations, events and tombstones (connections/settle.py) -------------

    async def needing_settlement(self, *, now: datetime, limit: int = 200) -> list[ObjectId]:
        """Records with events to record, a revocation due, or a tombstone to purge.

        Three indexed queries rather than one `$or`, which the embedded store would answer by
        reading every record (seconds at 100,000 connections, on every sweep).
        """
        found: dict[ObjectId, None] = {}
        for query in (
            HAS_EVENTS,
            revocations.due_filter(now),
            {
                "kind": ConnectionKind.DELETED.value,
                "deleted_at": {"$gte": revocations.EPOCH, "$lte": now - TOMBSTONE_KEPT},
            },
        ):
            cursor = self._connections.find(query, projection={"_id": 1}).limit(limit)
            async for document in cursor:
                found[document["_id"]] = None
        return list(found)[:limit]

    async def purge_tombstone(
        self, connection_id: ObjectId, *, record: Document | None = None
    ) -> bool:
        """Remove a deleted record once nothing about it is left to do and Teams can no longer
        retry the Delete (so a retried press is told "deleted", not "not found").

        `record` is the record as read a moment ago, if the caller has it: one that was not yet
        an old enough tombstone then is not one now, and costs no write."""
        if record is not None and not _old_tombstone(record, datetime.now(UTC)):
            return False
        result = await self._connections.delete_one(
            {
                "_id": connection_id,
                "kind": ConnectionKind.DELETED.value,
                "deleted_at": {"$lte": datetime.now(UTC) - TOMBSTONE_KEPT},
                f"{OUTBOX}.0": {"$exists": False},
                REVOCATION: {"$exists": False},
                notices.STATE: {"$nin": list(notices.UNFINISHED)},
            }
        )
        return result.deleted_count == 1

    @property
    def collection(self) -> AsyncCollection[Document]:
        return self._connections


def _disconnecting(document: Document, actor: Actor, now: datetime) -> tuple[Document, Document]:
    """The update that disconnects a record (status, tokens moved to a pending revocation, its
    audit event on the outbox), and that event."""
    event = AuditLog.event(
        actor=actor, action=CONNECTION_DISCONNECTED, connection=Connection.from_document(document)
    )
    changes = {
        "$set": {
            "status": ConnectionStatus.DISCONNECTED.value,
            "tokens": None,
            "refresh_lease_until": None,
            "updated_at": now,
            **_revocation(document, actor, now),
            **_notice_unless_own(document, actor, notices.DISCONNECTED_BY_ADMINISTRATOR, now),
        },
        "$inc": {"version": 1},
        **push(event),
    }
    return changes, event


def _tombstoning(document: Document, actor: Actor, now: datetime) -> tuple[Document, Document]:
    """The update that makes a record a tombstone (invisible at once, tokens kept only for
    their revocation, its audit event on the outbox), and that event."""
    event = AuditLog.event(
        actor=actor, action=CONNECTION_DELETED, connection=Connection.from_document(document)
    )
    changes = {
        "$set": {
            "kind": ConnectionKind.DELETED.value,
            "deleted_kind": document["kind"],
            "deleted_at": now,
            "tokens": None,
            "refresh_lease_until": None,
            **_revocation(document, actor, now),
            **_notice_unless_own(document, actor, notices.DELETED_BY_ADMINISTRATOR, now),
        },
        "$inc": {"version": 1},
        **push(event),
    }
    return changes, event


def _in_list_order(connections: list[Connection]) -> list[Connection]:
    """A person's connections as their list shows them: by app, then account, then age."""
    return sorted(
        connections, key=lambda c: (c.provider, c.account_label.casefold(), c.created_at, c.id)
    )


def _applied(document: Document, changes: Document) -> Connection | None:
    """The runtime connection as `changes` (a `$set` and `$inc`) leave it; None when they make
    it something else (a tombstone)."""
    after = {**document, **changes.get("$set", {})}
    for name, step in changes.get("$inc", {}).items():
        after[name] = after.get(name, 0) + step
    if after["kind"] != ConnectionKind.RUNTIME.value:
        return None
    after.pop(OUTBOX, None)
    after.pop(REVOCATION, None)
    after.pop(NOTICE, None)
    return Connection.from_document(after)


def _old_tombstone(record: Document, now: datetime) -> bool:
    """Whether a record (as read) is a tombstone kept past Teams' retry window."""
    deleted_at = record.get("deleted_at")
    if record.get("kind") != ConnectionKind.DELETED.value or not isinstance(deleted_at, datetime):
        return False
    return deleted_at <= now - TOMBSTONE_KEPT


def _notice_unless_own(document: Document, actor: Actor, reason: str, now: datetime) -> Document:
    """The `$set` part that leaves a notice for the owner of a runtime connection that someone
    else (an administrator, an operator) disconnected or deleted; none for their own change."""
    if document.get("kind") != ConnectionKind.RUNTIME.value:
        return {}
    if actor.is_owner(Owner.model_validate(document["owner"])):
        return {}
    return {NOTICE: notices.pending(reason, now, by=actor.name)}


def _revocation(document: Document, actor: Actor, now: datetime) -> Document:
    """The `$set` part that keeps a record's tokens for one purpose: revoking them."""
    if not document.get("tokens"):
        return {}
    return {REVOCATION: revocations.pending(document["tokens"], document["provider"], actor, now)}
