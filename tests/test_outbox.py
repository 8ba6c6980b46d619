"""No change without its audit event: the event is written with the change (the record's
outbox) and recorded exactly once, whoever finishes it and however often."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bson import ObjectId

from connections.service import ConnectionsService
from connections.settle import ConnectionSettler
from oauth.tokens import GrantRevoker
from storage import revocations
from storage.database import Database
from storage.models import Actor
from storage.outbox import HAS_EVENTS, drain_all
from tests.support.activities import JANE
from tests.support.data import owner, runtime
from tests.support.waiting import audited


def settler(database: Database, revoke: GrantRevoker | None = None) -> ConnectionSettler:
    return ConnectionSettler(store=database.connections, audit=database.audit, revoke_grant=revoke)


async def test_a_change_carries_its_event_until_recorded(database: Database) -> None:
    """A crash right after the change (the store update done, nothing else): the event is on
    the record; the next sweep, from any process, records it exactly once, even when two
    sweeps race."""
    connection = await runtime(database, JANE, "box", "jane@box.example")
    change, _ = await database.connections.disconnect(
        connection_id=connection.id, owner=owner(JANE), actor=Actor.person(owner(JANE))
    )
    assert change.value == "changed"
    assert await database.audit.for_connection(connection.id) == []  # "crashed" here
    raw = await database.db["connections"].find_one({"_id": ObjectId(connection.id)})
    assert raw is not None and [e["action"] for e in raw["outbox"]] == ["connection.disconnected"]

    await asyncio.gather(settler(database).sweep(), settler(database).sweep())
    await settler(database).sweep()
    events = await database.audit.for_connection(connection.id)
    assert [e.action for e in events] == ["connection.disconnected"]
    raw = await database.db["connections"].find_one({"_id": ObjectId(connection.id)})
    assert raw is not None and not raw.get("outbox")


async def test_concurrent_deletes_record_one_event(database: Database) -> None:
    """Thirty concurrent Deletes of one connection: one succeeds, one event is recorded."""
    connection = await runtime(database, JANE, "box", "jane@box.example")
    service = ConnectionsService(
        store=database.connections, audit=database.audit, settler=settler(database)
    )
    outcomes = await asyncio.gather(
        *(service.delete(owner(JANE), connection.id) for _ in range(30))
    )
    assert sum(o.result.value == "done" for o in outcomes) == 1
    assert {o.result.value for o in outcomes} == {"done", "no_change"}
    await audited(database)  # the event reaches the log just after the answer
    assert [e.action for e in await database.audit.for_connection(connection.id)] == [
        "connection.deleted"
    ]


async def test_tombstone_is_purged_once_teams_cannot_retry(database: Database) -> None:
    """A deleted connection's tombstone is removed by the sweep once nothing is left to do and
    the retry window has passed; before that a retried Delete is told it was deleted."""
    connection = await runtime(database, JANE, "box", "jane@box.example")
    service = ConnectionsService(
        store=database.connections, audit=database.audit, settler=settler(database)
    )
    assert (await service.delete(owner(JANE), connection.id)).result.value == "done"
    assert (await service.delete(owner(JANE), connection.id)).result.value == "no_change"
    await settler(database).sweep()
    assert await database.db["connections"].count_documents({"_id": ObjectId(connection.id)}) == 1
    # The tombstone does not block the person's next sign-in under the same parent.
    assert connection.parent_id is not None
    again = await database.connections.create_runtime(
        parent_id=connection.parent_id, owner=owner(JANE), account=None
    )
    assert again.id != connection.id
    await database.db["connections"].update_one(
        {"_id": ObjectId(connection.id)},
        {"$set": {"deleted_at": datetime.now(UTC) - timedelta(minutes=11)}},
    )
    await settler(database).sweep()
    assert await database.db["connections"].count_documents({"_id": ObjectId(connection.id)}) == 0
    assert (await service.delete(owner(JANE), connection.id)).result.value == "not_found"


async def test_run_and_setting_events_are_recorded_once(database: Database) -> None:
    """A run's end and a setting change carry their events; the reconciler's round records each
    exactly once, however many rounds run at once."""
    run_id = await database.recipe_runs.start(
        recipe="r",
        activity_key="k",
        invoker=owner(JANE),
        inputs={},
        conversation={},
        verify_user_access=False,
    )
    assert run_id is not None
    actor = Actor.person(owner(JANE))
    ran = database.audit.event(actor=actor, action="recipe.ran", details={"run_id": run_id})
    assert await database.recipe_runs.finish(
        run_id, status="succeeded", acted_as=None, result={}, event=ran
    )
    assert not await database.recipe_runs.finish(  # ends once
        run_id, status="failed", acted_as=None, result={}, event=ran
    )
    changed = database.audit.event(actor=Actor.operator("ops"), action="recipe.setting_changed")
    await database.recipe_settings.set_verify_user_access(
        "r", True, changed_by="ops", event=changed
    )
    collections = [database.recipe_runs.collection, database.recipe_settings.collection]
    await asyncio.gather(*(drain_all(collections, database.audit) for _ in range(3)))
    actions = sorted(e.action for e in await database.audit.recent())
    assert actions == ["recipe.ran", "recipe.setting_changed"]


async def test_the_sweeps_queries_ride_indexes(database: Database) -> None:
    """Pending events, due revocations and tombstones are found through indexes, never by
    reading every record (the embedded store answers `$exists` and one-sided ranges on nested
    fields that way: seconds at 100,000 connections, on every sweep)."""
    collection = database.connections.collection
    now = datetime.now(UTC)
    for query in (
        HAS_EVENTS,
        revocations.due_filter(now),
        {"kind": "deleted", "deleted_at": {"$gte": revocations.EPOCH, "$lte": now}},
    ):
        plan = (await collection.find(query).explain())["queryPlanner"]["winningPlan"]
        stages = str(plan)
        assert "IXSCAN" in stages and "COLLSCAN" not in stages, (query, plan)


async def test_a_revocation_ended_twice_is_recorded_once(database: Database) -> None:
    """A process that stored a revocation's closing event and died before dropping the
    revocation: the next attempt (after the lease runs out) ends it again, and the audit log
    still holds one event for it, under the id the revocation was given when it was written."""
    connection = await runtime(database, JANE, "box", "jane@box.example")
    connections = database.db["connections"]
    sealed = {"key_id": "k1", "ciphertext": b"sealed", "expires_at": None}
    await connections.update_one({"_id": ObjectId(connection.id)}, {"$set": {"tokens": sealed}})
    revoked: list[str] = []

    async def revoke(provider: str, _sealed: object) -> str:
        revoked.append(provider)
        return "revoked"

    change, _ = await database.connections.disconnect(
        connection_id=connection.id, owner=owner(JANE), actor=Actor.person(owner(JANE))
    )
    assert change.value == "changed"
    raw = await connections.find_one({"_id": ObjectId(connection.id)})
    assert raw is not None
    pending = raw["revocation"]
    await settler(database, revoke).settle(ObjectId(connection.id))
    # As if that process had died between storing the event and dropping the revocation.
    await connections.update_one(
        {"_id": ObjectId(connection.id)},
        {"$set": {"revocation": pending | {"lease_until": datetime.now(UTC)}}},
    )

    await settler(database, revoke).sweep()
    raw = await connections.find_one({"_id": ObjectId(connection.id)})
    assert raw is not None and "revocation" not in raw and not raw.get("outbox")
    assert revoked == ["box", "box"]
    events = await database.audit.for_connection(connection.id)
    assert [e.action for e in events] == ["connection.disconnected", "connection.revoked"]
    assert events[1].id == str(pending["event_id"])


async def test_a_revocation_stored_without_an_event_id_gets_one_when_taken(
    database: Database,
) -> None:
    """A revocation written before revocations carried their event id: the attempt that takes
    it gives it one (in the lease's write), and ends it with exactly one event."""
    connection = await runtime(database, JANE, "box", "jane@box.example")
    connections = database.db["connections"]
    sealed = {"key_id": "k1", "ciphertext": b"sealed", "expires_at": None}
    await connections.update_one({"_id": ObjectId(connection.id)}, {"$set": {"tokens": sealed}})
    await database.connections.disconnect(
        connection_id=connection.id, owner=owner(JANE), actor=Actor.person(owner(JANE))
    )
    await connections.update_one(
        {"_id": ObjectId(connection.id)}, {"$unset": {"revocation.event_id": ""}}
    )

    async def revoke(_provider: str, _sealed: object) -> str:
        return "revoked"

    await settler(database, revoke).settle(ObjectId(connection.id))
    raw = await connections.find_one({"_id": ObjectId(connection.id)})
    assert raw is not None and "revocation" not in raw and not raw.get("outbox")
    events = await database.audit.for_connection(connection.id)
    assert [e.action for e in events] == ["connection.disconnected", "connection.revoked"]
