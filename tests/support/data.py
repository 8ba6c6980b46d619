"""Stored connections for tests, written through the real store API."""

from __future__ import annotations

from storage.database import Database
from storage.models import Connection, Owner, ProviderAccount
from tests.support.activities import Person

ADMIN = Owner(tenant_id="tenant-contoso", aad_object_id="aad-admin", name="Ada Admin")


def owner(person: Person) -> Owner:
    return Owner(
        tenant_id=person.tenant_id,
        aad_object_id=person.aad_object_id,
        teams_user_id=person.teams_id,
        name=person.name,
    )


async def parent(database: Database, provider: str, *, tenant_id: str | None = None) -> Connection:
    return await database.connections.create_parent(
        provider=provider,
        owner=ADMIN,
        account=ProviderAccount(id=f"{provider}-admin", display_name=f"admin@{provider}.example"),
        tenant_id=tenant_id,
    )


async def runtime(
    database: Database, person: Person, provider: str, account: str, *, parent_id: str | None = None
) -> Connection:
    if parent_id is None:
        parent_id = (await parent(database, provider, tenant_id=person.tenant_id)).id
    return await database.connections.create_runtime(
        parent_id=parent_id,
        owner=owner(person),
        account=ProviderAccount(id=account, display_name=account),
    )
