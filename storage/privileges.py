"""Who may do what in the admin console (collection `privileges`).

A grant gives privileges to one principal of one tenant: a person (their Entra object id), an
Entra group (its id, from the ID token's `groups` claim) or an app role (its value, from the
`roles` claim). What a signed-in administrator holds is the union of the grants that name them,
their groups and their roles, in their own tenant only. Each change is one update carrying its
audit event (the record's outbox, storage/outbox.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from storage.audit import AuditLog
from storage.models import Actor
from storage.outbox import push

Document = dict[str, Any]
PRIVILEGES_GRANTED = "privileges.granted"
PRIVILEGES_REVOKED = "privileges.revoked"


class Privilege(StrEnum):
    VIEW_CONNECTIONS = "view_connections"  # View runtime user connections
    EDIT_CONNECTIONS = "edit_connections"  # Edit runtime user connections (Disconnect)
    DELETE_CONNECTIONS = "delete_connections"  # Delete connections (runtime and parent)
    EDIT_RECIPES = "edit_recipes"  # Edit recipes, "Verify user access at runtime" included
    MANAGE_PRIVILEGES = "manage_privileges"  # Grant and revoke these privileges
    # See and act on every tenant's data, not only the administrator's own (granted only at the
    # command line; the privileges above still decide what may be done).
    ALL_TENANTS = "all_tenants"


# What an owner of a tenant holds (`privileges grant --all`): everything but ALL_TENANTS.
OWNER_PRIVILEGES = frozenset(Privilege) - {Privilege.ALL_TENANTS}


class PrincipalKind(StrEnum):
    USER = "user"
    GROUP = "group"
    ROLE = "role"


class Grant(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant_id: str
    kind: PrincipalKind
    principal: str
    name: str = ""
    privileges: frozenset[Privilege]

    @classmethod
    def from_document(cls, document: Document) -> Grant:
        return cls.model_validate({**document, "privileges": document.get("privileges") or []})


def grant_id(tenant_id: str, kind: PrincipalKind, principal: str) -> str:
    """The id of the grant of one principal of one tenant."""
    return f"{tenant_id}\x1f{kind.value}\x1f{principal}"


class PrivilegeStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._grants = collection

    async def ensure_indexes(self) -> None:
        await self._grants.create_index([("tenant_id", ASCENDING)], name="by_tenant")

    async def grant(
        self,
        *,
        tenant_id: str,
        kind: PrincipalKind,
        principal: str,
        privileges: Iterable[Privilege],
        actor: Actor,
        name: str = "",
    ) -> Grant:
        """Add `privileges` to the principal's grant (created when it has none)."""
        wanted = sorted({Privilege(p).value for p in privileges})
        event = AuditLog.event(
            actor=actor,
            action=PRIVILEGES_GRANTED,
            details={
                "tenant_id": tenant_id,
                "kind": kind.value,
                "principal": principal,
                "privileges": wanted,
            },
        )
        update: Document = {
            "$set": {
                "tenant_id": tenant_id,
                "kind": kind.value,
                "principal": principal,
                "changed_at": datetime.now(UTC),
            },
            "$addToSet": {"privileges": {"$each": wanted}},
            **push(event),
        }
        if name:
            update["$set"]["name"] = name
        await self._grants.update_one(
            {"_id": grant_id(tenant_id, kind, principal)}, update, upsert=True
        )
        document = await self._grants.find_one({"_id": grant_id(tenant_id, kind, principal)})
        assert document is not None
        return Grant.from_document(document)

    async def revoke(
        self,
        *,
        tenant_id: str,
        kind: PrincipalKind,
        principal: str,
        privileges: Iterable[Privilege] | None,
        actor: Actor,
    ) -> bool:
        """Take `privileges` (None: all) from the principal; False when it held none of them."""
        key = grant_id(tenant_id, kind, principal)
        current = await self._grants.find_one({"_id": key})
        if current is None:
            return False
        held = set(current.get("privileges") or [])
        removed = held if privileges is None else held & {Privilege(p).value for p in privileges}
        if not removed:
            return False
        event = AuditLog.event(
            actor=actor,
            action=PRIVILEGES_REVOKED,
            details={
                "tenant_id": tenant_id,
                "kind": kind.value,
                "principal": principal,
                "privileges": sorted(removed),
            },
        )
        # Only while they are still held: of two revocations at once, one records the change.
        result = await self._grants.update_one(
            {"_id": key, "privileges": {"$all": sorted(removed)}},
            {
                "$pullAll": {"privileges": sorted(removed)},
                "$set": {"changed_at": datetime.now(UTC)},
                **push(event),
            },
        )
        return result.modified_count == 1

    async def list(self, *, tenant_id: str | None = None) -> list[Grant]:
        """Every grant (of one tenant), principals with no privilege left included."""
        query: Document = {} if tenant_id is None else {"tenant_id": tenant_id}
        cursor = self._grants.find(query).sort([("tenant_id", ASCENDING), ("_id", ASCENDING)])
        return [Grant.from_document(document) async for document in cursor]

    async def held_by(
        self,
        *,
        tenant_id: str,
        object_id: str,
        groups: Iterable[str] = (),
        roles: Iterable[str] = (),
    ) -> frozenset[Privilege]:
        """What a signed-in administrator of `tenant_id` may do: their own grant, their
        groups' and their roles' (from their ID token), never another tenant's."""
        keys = [grant_id(tenant_id, PrincipalKind.USER, object_id)]
        keys += [grant_id(tenant_id, PrincipalKind.GROUP, group) for group in groups]
        keys += [grant_id(tenant_id, PrincipalKind.ROLE, role) for role in roles]
        held: set[Privilege] = set()
        async for document in self._grants.find({"_id": {"$in": keys}, "tenant_id": tenant_id}):
            held |= {Privilege(p) for p in document.get("privileges") or []}
        return frozenset(held)

    @property
    def collection(self) -> AsyncCollection[Document]:
        return self._grants
