"""The connection store's contract, against the real database (embedded, or MONGODB_URI)."""

from __future__ import annotations

import asyncio

import pytest
from bson import ObjectId

from storage.connections import Change, ConnectionExists, ParentNotFound
from storage.database import Database, ensure_indexes
from storage.models import (
    ConnectionKind,
    ConnectionStatus,
    EncryptedTokens,
    Owner,
    ProviderAccount,
)

JANE = Owner(tenant_id="t-contoso", aad_object_id="aad-jane", teams_user_id="29:jane", name="Jane")
JANE_ELSEWHERE = Owner(tenant_id="t-fabrikam", aad_object_id="aad-jane", name="Jane")
OMAR = Owner(tenant_id="t-contoso", aad_object_id="aad-omar", name="Omar")
ACCOUNT = ProviderAccount(id="005xx", display_name="jane@contoso.com")


async def test_one_owner_may_own_many_parents(database: Database) -> None:
    """Two parents with the same owner are both accepted (the unique index is partial)."""
    first = await database.connections.create_parent(provider="box", owner=JANE, account=ACCOUNT)
    second = await database.connections.create_parent(provider="box", owner=JANE, account=ACCOUNT)
    assert first.id != second.id
    parents = await database.connections.list_all(kind=ConnectionKind.PARENT)
    assert [p.id for p in parents] == [first.id, second.id]


async def test_one_runtime_connection_per_person_and_parent(database: Database) -> None:
    """A second runtime connection for the same person and parent is refused."""
    parent = await database.connections.create_parent(provider="box", owner=OMAR, account=None)
    await database.connections.create_runtime(parent_id=parent.id, owner=JANE, account=ACCOUNT)
    with pytest.raises(ConnectionExists):
        await database.connections.create_runtime(parent_id=parent.id, owner=JANE, account=ACCOUNT)
    # Same person under another parent, or another person: both fine.
    other_parent = await database.connections.create_parent(
        provider="box", owner=OMAR, account=None
    )
    await database.connections.create_runtime(
        parent_id=other_parent.id, owner=JANE, account=ACCOUNT
    )
    await database.connections.create_runtime(parent_id=parent.id, owner=OMAR, account=ACCOUNT)
    # The same object id in another tenant under the same parent: the parent is not theirs.
    with pytest.raises(ParentNotFound):
        await database.connections.create_runtime(
            parent_id=parent.id, owner=JANE_ELSEWHERE, account=ACCOUNT
        )
    assert len(await database.connections.list_all(kind=ConnectionKind.RUNTIME)) == 3


async def test_parents_serve_exactly_one_tenant(database: Database) -> None:
    """A parent is found only for its own tenant, and no runtime connection of another tenant
    can be written under it (created or upserted by a sign-in)."""
    store = database.connections
    contoso = await store.create_parent(provider="box", owner=OMAR, account=None, name="files")
    fabrikam = await store.create_parent(
        provider="box", owner=OMAR, account=None, name="files", tenant_id="t-fabrikam"
    )
    assert contoso.tenant_id == "t-contoso" and fabrikam.tenant_id == "t-fabrikam"
    found = await store.find_parent("files", tenant_id="t-contoso")
    assert found is not None and found.id == contoso.id
    found = await store.find_parent("files", tenant_id="t-fabrikam")
    assert found is not None and found.id == fabrikam.id
    assert await store.find_parent("files", tenant_id="t-northwind") is None
    assert await store.find_parent("files", tenant_id="") is None
    assert await store.parent_tenants("files") == {"t-contoso", "t-fabrikam"}
    # A record from before parents were tenant-bound serves nobody.
    legacy = await database.db["connections"].find_one({"_id": ObjectId(contoso.id)})
    assert legacy is not None
    legacy |= {"_id": ObjectId(), "name": "legacy"}
    del legacy["tenant_id"]
    await database.db["connections"].insert_one(legacy)
    assert await store.find_parent("legacy", tenant_id="t-contoso") is None
    with pytest.raises(ParentNotFound):
        await store.upsert_runtime(
            parent_id=contoso.id,
            owner=JANE_ELSEWHERE,
            account=ACCOUNT,
            tokens=EncryptedTokens(key_id="k", ciphertext=b"x"),
            scopes=[],
            api_base_url=None,
        )


async def test_concurrent_creates_leave_exactly_one(database: Database) -> None:
    """Ten racing creates for one person and parent store exactly one record."""
    parent = await database.connections.create_parent(provider="box", owner=OMAR, account=None)
    results = await asyncio.gather(
        *(
            database.connections.create_runtime(parent_id=parent.id, owner=JANE, account=ACCOUNT)
            for _ in range(10)
        ),
        return_exceptions=True,
    )
    assert sum(not isinstance(result, Exception) for result in results) == 1
    assert all(isinstance(r, ConnectionExists) for r in results if isinstance(r, Exception))


async def test_runtime_connection_needs_an_existing_parent(database: Database) -> None:
    """A runtime connection names a parent that exists and is a parent."""
    with pytest.raises(ParentNotFound):
        await database.connections.create_runtime(parent_id="0" * 24, owner=JANE, account=ACCOUNT)
    parent = await database.connections.create_parent(provider="box", owner=OMAR, account=None)
    child = await database.connections.create_runtime(
        parent_id=parent.id, owner=JANE, account=ACCOUNT
    )
    with pytest.raises(ParentNotFound):
        await database.connections.create_runtime(parent_id=child.id, owner=OMAR, account=ACCOUNT)
    assert child.provider == "box" and child.parent_id == parent.id


async def test_record_shape_follows_the_design(database: Database) -> None:
    """The stored document has the fields later slices build on, with aware UTC timestamps."""
    parent = await database.connections.create_parent(
        provider="salesforce",
        owner=OMAR,
        account=None,
        api_base_url="https://acme.my.salesforce.com",
    )
    child = await database.connections.create_runtime(
        parent_id=parent.id, owner=JANE, account=ACCOUNT
    )
    raw = await database.db["connections"].find_one({"kind": "runtime"})
    assert raw is not None
    assert set(raw) >= {
        "_id",
        "kind",
        "provider",
        "parent_id",
        "owner",
        "account",
        "status",
        "scopes",
        "tokens",
        "api_base_url",
        "refresh_lease_until",
        "version",
        "created_at",
        "updated_at",
        "last_used_at",
    }
    assert raw["owner"] == JANE.model_dump()
    assert raw["api_base_url"] == "https://acme.my.salesforce.com"
    assert child.created_at.tzinfo is not None
    assert child.status is ConnectionStatus.CONNECTED


async def test_queries_are_scoped_to_the_owner(database: Database) -> None:
    """Listing, reading, disconnecting and deleting only ever reach the person's own records."""
    parent = await database.connections.create_parent(provider="box", owner=OMAR, account=None)
    janes = await database.connections.create_runtime(
        parent_id=parent.id, owner=JANE, account=ACCOUNT
    )

    assert [c.id for c in await database.connections.list_for_owner(owner=JANE)] == [janes.id]
    assert await database.connections.list_for_owner(owner=JANE_ELSEWHERE) == []
    assert await database.connections.list_for_owner(owner=OMAR) == []  # parents are not listed
    assert await database.connections.get_for_owner(connection_id=janes.id, owner=OMAR) is None
    assert (
        await database.connections.disconnect_for_owner(connection_id=janes.id, owner=OMAR)
        is Change.NOT_FOUND
    )
    assert await database.connections.delete_for_owner(connection_id=janes.id, owner=OMAR) is None
    assert await database.connections.delete_for_owner(connection_id=parent.id, owner=OMAR) is None
    stored = await database.connections.get(janes.id)
    assert stored is not None and stored.status is ConnectionStatus.CONNECTED


@pytest.mark.parametrize("bad_id", ["", "xyz", "0" * 23, "g" * 24, "abcdefghijkl"])
async def test_malformed_ids_are_not_found(database: Database, bad_id: str) -> None:
    """Malformed ids read as not found, never as an error."""
    assert await database.connections.get(bad_id) is None
    assert await database.connections.get_for_owner(connection_id=bad_id, owner=JANE) is None
    assert await database.connections.delete(bad_id) is None


async def test_disconnect_and_delete_are_idempotent(database: Database) -> None:
    """Disconnect twice: changed then unchanged. Delete twice: the record, then None."""
    parent = await database.connections.create_parent(provider="box", owner=OMAR, account=None)
    janes = await database.connections.create_runtime(
        parent_id=parent.id, owner=JANE, account=ACCOUNT
    )
    store = database.connections
    assert await store.disconnect_for_owner(connection_id=janes.id, owner=JANE) is Change.CHANGED
    assert await store.disconnect_for_owner(connection_id=janes.id, owner=JANE) is Change.UNCHANGED
    disconnected = await store.get(janes.id)
    assert disconnected is not None and disconnected.version == 2 and disconnected.tokens is None
    assert (await store.delete_for_owner(connection_id=janes.id, owner=JANE)) is not None
    assert await store.delete_for_owner(connection_id=janes.id, owner=JANE) is None
    assert await store.disconnect_for_owner(connection_id=janes.id, owner=JANE) is Change.NOT_FOUND


async def test_concurrent_disconnect_and_delete_of_one_record(database: Database) -> None:
    """Racing disconnects and deletes: exactly one delete wins, at most one disconnect changes."""
    store = database.connections
    parent = await database.connections.create_parent(provider="box", owner=OMAR, account=None)
    for _ in range(10):
        janes = await store.create_runtime(parent_id=parent.id, owner=JANE, account=ACCOUNT)
        results = await asyncio.gather(
            *(store.disconnect_for_owner(connection_id=janes.id, owner=JANE) for _ in range(3)),
            *(store.delete_for_owner(connection_id=janes.id, owner=JANE) for _ in range(3)),
        )
        disconnects, deletes = results[:3], results[3:]
        assert sum(result is not None for result in deletes) == 1
        assert sum(result is Change.CHANGED for result in disconnects) <= 1
        assert await store.get(janes.id) is None


async def test_deleting_a_parent_keeps_its_children(database: Database) -> None:
    """An operator deleting a parent leaves the runtime connections under it stored."""
    parent = await database.connections.create_parent(provider="box", owner=OMAR, account=None)
    janes = await database.connections.create_runtime(
        parent_id=parent.id, owner=JANE, account=ACCOUNT
    )
    assert (await database.connections.delete(parent.id)) is not None
    assert await database.connections.get(parent.id) is None
    assert await database.connections.get(janes.id) is not None


async def test_indexes_are_created_idempotently(database: Database) -> None:
    """Creating the indexes again at the next start (or from another process) changes nothing."""
    before = await database.db["connections"].index_information()
    await ensure_indexes(database)
    await ensure_indexes(database)
    after = await database.db["connections"].index_information()
    assert before == after
    unique = after["one_runtime_connection_per_person_and_parent"]
    assert unique["unique"] is True
    assert dict(unique["partialFilterExpression"]) == {"kind": "runtime"}


async def test_audit_events_record_who_what_when(database: Database) -> None:
    """An audit event names the actor, the action, the connection and the time."""
    from storage.models import Actor

    parent = await database.connections.create_parent(provider="box", owner=OMAR, account=ACCOUNT)
    await database.audit.record(
        actor=Actor.person(JANE), action="connection.created", connection=parent
    )
    [event] = await database.audit.for_connection(parent.id)
    assert event.actor.aad_object_id == JANE.aad_object_id
    assert event.provider == "box" and event.account == "jane@contoso.com"
    assert event.at.tzinfo is not None
