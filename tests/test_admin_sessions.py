"""Admin console sessions: only a hash of the id is stored, idle and absolute expiry hold
whatever the browser does, and signing out ends one session or all of an administrator's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage.admin_sessions import Administrator, hash_session_id
from storage.database import Database

ADA = Administrator(tenant_id="t1", object_id="oid-ada", name="Ada", groups=("g1",))
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


async def test_only_a_hash_of_the_id_is_stored(database: Database) -> None:
    session_id, session = await database.admin_sessions.start(ADA, now=START)
    [stored] = [d async for d in database.admin_sessions.collection.find({})]
    assert stored["_id"] == hash_session_id(session_id) != session_id
    assert session_id not in str(stored)
    found = await database.admin_sessions.find(session_id, now=START + timedelta(minutes=1))
    assert found is not None and found.administrator == ADA
    assert found.csrf_token == session.csrf_token and found.csrf_token != session_id
    assert await database.admin_sessions.find("not-" + session_id, now=START) is None


async def test_idle_expiry_is_renewed_by_use_but_absolute_expiry_is_not(
    database: Database,
) -> None:
    store = database.admin_sessions
    session_id, _ = await store.start(
        ADA, now=START, idle=timedelta(minutes=10), absolute=timedelta(minutes=25)
    )
    # Unused for longer than the idle time: gone.
    assert await store.find(session_id, now=START + timedelta(minutes=11)) is None
    other_id, _ = await store.start(
        ADA, now=START, idle=timedelta(minutes=10), absolute=timedelta(minutes=25)
    )
    # Used every 8 minutes it lives on, until the absolute expiry ends it.
    for minutes in (8, 16, 24):
        assert await store.find(other_id, now=START + timedelta(minutes=minutes)) is not None
    assert await store.find(other_id, now=START + timedelta(minutes=25, seconds=1)) is None


async def test_sign_out_ends_one_and_sign_out_everywhere_ends_all(database: Database) -> None:
    store = database.admin_sessions
    first, _ = await store.start(ADA, now=START)
    second, _ = await store.start(ADA, now=START)
    someone_else, _ = await store.start(
        Administrator(tenant_id="t1", object_id="oid-omar"), now=START
    )
    assert await store.end(first)
    assert not await store.end(first)
    assert await store.find(first, now=START) is None
    assert await store.find(second, now=START) is not None
    assert await store.end_all(tenant_id="t1", object_id="oid-ada") == 1
    assert await store.find(second, now=START) is None
    assert await store.find(someone_else, now=START) is not None
