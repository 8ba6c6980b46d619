"""The admin console's audit search (storage/audit_search.py), against the real database: every
filter and every page walk compared with a brute-force computation over the same events, tenant
isolation, and `explain` showing that each window query reads only its window."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection

from storage import windowed
from storage.audit import (
    CONNECTION_CREATED,
    CONNECTION_DELETED,
    CONNECTION_DISCONNECTED,
    CONNECTION_REVOKED,
    SIGNIN_VOIDED,
)
from storage.audit_search import AuditFilter, AuditSearch, InvalidCursor, InvalidFilter
from storage.database import Database, make_client
from storage.models import Actor, Owner, ProviderAccount
from storage.privileges import PRIVILEGES_GRANTED, PRIVILEGES_REVOKED
from tests.test_connection_search import Recorder, explained_windows, id_at, insert

Document = dict[str, Any]

NOW = datetime.now(UTC).replace(microsecond=0)
TENANTS = ("t-contoso", "t-fabrikam", "t-northwind")
CONNECTIONS = tuple(ObjectId() for _ in range(4))
ACTIONS = (CONNECTION_CREATED, CONNECTION_DISCONNECTED, CONNECTION_REVOKED, SIGNIN_VOIDED)
PEOPLE = ("Ada Lovelace", "Grace Hopper", "Adam Smith", "Linus")
ADMINISTRATORS = ("Adam Admin", "Olga Ops", "Max Manager")
BURST_AT = NOW - timedelta(days=2, hours=3)


def event_document(
    rnd: random.Random, number: int, at: datetime, *, tenant_id: str | None
) -> Document:
    """The shape AuditLog.event writes (storage/audit.py); `tenant_id` None: an older event."""
    kind = rnd.choice(("person", "person", "administrator", "operator"))
    tenant = tenant_id or rnd.choice(TENANTS)
    name = rnd.choice(PEOPLE if kind == "person" else ADMINISTRATORS)
    document: Document = {
        "_id": id_at(at, rnd),
        "at": at,
        "actor": {
            "kind": kind,
            "tenant_id": "" if kind == "operator" else tenant,
            "aad_object_id": "" if kind == "operator" else f"aad-{kind[:3]}-{number:05d}",
            "name": f"{name} {number}",
        },
        "action": rnd.choice(ACTIONS),
        "details": {},
    }
    if tenant_id is not None:
        document["tenant_id"] = tenant_id
    if rnd.random() < 0.7:
        document |= {
            "connection_id": rnd.choice(CONNECTIONS),
            "provider": "box",
            "account": f"user{number}@mail.example",
            "owner": {
                "tenant_id": tenant,
                "aad_object_id": f"aad-own-{number:05d}",
                "teams_user_id": "",
                "name": f"{rnd.choice(PEOPLE)} {number}",
            },
        }
    return document


def make_events(count: int, *, span: timedelta, seed: int = 1) -> list[Document]:
    """Events of three tenants over `span`, 40 older ones without `tenant_id`, and a burst of
    100 in one second."""
    rnd = random.Random(seed)  # noqa: S311 - reproducible test data, not a secret
    events = []
    for number in range(count):
        at = NOW - timedelta(seconds=rnd.uniform(0, span.total_seconds()))
        tenant = None if number < 40 else rnd.choice(TENANTS)
        events.append(event_document(rnd, number, at, tenant_id=tenant))
    for number in range(count, count + 100):
        events.append(event_document(rnd, number, BURST_AT, tenant_id=TENANTS[number % 3]))
    return events


def seconds(object_id: ObjectId) -> int:
    return int.from_bytes(object_id.binary[:4], "big")


def matches(event: Document, search: AuditFilter) -> bool:
    """The brute-force meaning of a filter."""
    if search.tenant_ids is not None and event.get("tenant_id") not in search.tenant_ids:
        return False
    if search.connection_id and str(event.get("connection_id")) != search.connection_id:
        return False
    if search.action and event["action"] != search.action:
        return False
    actor = event["actor"]
    person = search.person.strip().lower()
    if person:
        owner = event.get("owner") or {}
        own = any(person in owner.get(key, "").lower() for key in ("name", "aad_object_id"))
        acted = actor["kind"] == "person" and any(
            person in actor[key].lower() for key in ("name", "aad_object_id")
        )
        if not (own or acted):
            return False
    administrator = search.administrator.strip().lower()
    if administrator and not (
        actor["kind"] in ("administrator", "operator")
        and any(administrator in actor[key].lower() for key in ("name", "aad_object_id"))
    ):
        return False
    # To the second: since inclusive, until exclusive.
    if search.since is not None and seconds(event["_id"]) < int(search.since.timestamp()):
        return False
    until = search.until
    return until is None or seconds(event["_id"]) < int(-(-until.timestamp() // 1))


def expected(events: list[Document], search: AuditFilter) -> list[str]:
    chosen = [e["_id"] for e in events if matches(e, search)]
    return [str(i) for i in sorted(chosen, key=lambda i: i.binary, reverse=True)]


async def walk_pages(searching: AuditSearch, query: AuditFilter, *, limit: int) -> list[list[str]]:
    pages: list[list[str]] = []
    before: str | None = None
    while True:
        page = await searching.page(query, before=before, limit=limit)
        assert len(page.events) <= limit
        pages.append([event.id for event in page.events])
        if page.next_cursor is None:
            return pages
        assert page.next_cursor != before, "a cursor must move on"
        before = page.next_cursor


FILTERS: dict[str, AuditFilter] = {
    "one tenant": AuditFilter(tenant_ids=frozenset({TENANTS[0]})),
    "every tenant, older events too": AuditFilter(tenant_ids=None),
    "two tenants": AuditFilter(tenant_ids=frozenset(TENANTS[1:])),
    "no tenant": AuditFilter(tenant_ids=frozenset()),
    "one action": AuditFilter(tenant_ids=None, action=CONNECTION_REVOKED),
    "tenant and action": AuditFilter(tenant_ids=frozenset({TENANTS[2]}), action=SIGNIN_VOIDED),
    "one connection": AuditFilter(tenant_ids=None, connection_id=str(CONNECTIONS[1])),
    "tenants, connection and action": AuditFilter(
        tenant_ids=frozenset(TENANTS[:2]),
        connection_id=str(CONNECTIONS[0]),
        action=CONNECTION_CREATED,
    ),
    "person, any case": AuditFilter(tenant_ids=None, person=" ADA "),
    "person by object id": AuditFilter(tenant_ids=frozenset(TENANTS), person="aad-per-001"),
    "administrator": AuditFilter(tenant_ids=None, administrator="adam"),
    "operator": AuditFilter(tenant_ids=frozenset({TENANTS[1]}), administrator="OLGA"),
    "since": AuditFilter(tenant_ids=None, since=NOW - timedelta(days=30)),
    "since and until, a day": AuditFilter(
        tenant_ids=None, since=BURST_AT - timedelta(hours=12), until=BURST_AT + timedelta(hours=12)
    ),
    "until the burst's second": AuditFilter(tenant_ids=None, until=BURST_AT),
    "until inside the burst's second": AuditFilter(
        tenant_ids=None, until=BURST_AT + timedelta(milliseconds=300)
    ),
    "since after until": AuditFilter(tenant_ids=None, since=NOW, until=NOW - timedelta(days=1)),
    "everything at once": AuditFilter(
        tenant_ids=frozenset(TENANTS),
        person="a",
        action=CONNECTION_DISCONNECTED,
        administrator="m",
        since=NOW - timedelta(days=200),
        until=NOW - timedelta(days=1),
    ),
}


@pytest.fixture(scope="module")
async def corpus(
    mongodb_uri: str,
) -> AsyncIterator[tuple[AsyncCollection[Document], list[Document]]]:
    """One database of events, with the production indexes, for the tests that only read."""
    client = make_client(mongodb_uri, timeoutMS=60_000)
    name = f"test_{uuid.uuid4().hex[:16]}"
    collection = client[name]["audit_events"]
    await AuditSearch(collection).ensure_indexes()
    events = make_events(500, span=timedelta(days=400))
    await insert(collection, events)
    try:
        yield collection, events
    finally:
        await client.drop_database(name)
        await client.close()


@pytest.fixture
def searching(corpus: tuple[AsyncCollection[Document], list[Document]]) -> AuditSearch:
    return AuditSearch(corpus[0])


@pytest.fixture
def stored(corpus: tuple[AsyncCollection[Document], list[Document]]) -> list[Document]:
    return corpus[1]


@pytest.mark.parametrize("name", list(FILTERS))
async def test_pages_walk_every_match_once_newest_first(
    searching: AuditSearch, stored: list[Document], name: str
) -> None:
    """Every filter, in pages of 6 (the burst spans many pages) and 50: the pages together are
    exactly the matches, newest first, each once; only the last page is short."""
    query = FILTERS[name]
    wanted = expected(stored, query)
    assert wanted or name in {"no tenant", "since after until"}
    for limit in (6, 50):
        pages = await walk_pages(searching, query, limit=limit)
        assert [i for page in pages for i in page] == wanted
        assert all(len(page) == limit for page in pages[:-1])


@pytest.mark.parametrize("name", list(FILTERS))
async def test_iterate_yields_every_match_newest_first(
    searching: AuditSearch, stored: list[Document], name: str
) -> None:
    query = FILTERS[name]
    assert [e.id async for e in searching.iterate(query)] == expected(stored, query)


async def test_tight_budgets_still_walk_every_match_once(
    searching: AuditSearch, stored: list[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(windowed, "EXAMINED_PER_QUERY", 3)
    monkeypatch.setattr(windowed, "EXAMINED_PER_PAGE", 5)
    monkeypatch.setattr(windowed, "WALK_BATCH", 4)
    query = AuditFilter(tenant_ids=frozenset(TENANTS[:2]), person="a")
    wanted = expected(stored, query)
    pages = await walk_pages(searching, query, limit=6)
    assert [i for page in pages for i in page] == wanted
    assert any(len(page) < 6 for page in pages[:-1]), "the page budget never stopped a page"
    assert [e.id async for e in searching.iterate(query)] == wanted


async def test_tenants_never_see_each_other(searching: AuditSearch, stored: list[Document]) -> None:
    """A tenant sees only events about it (never the older events without a tenant); None sees
    every event."""
    for tenant in TENANTS:
        events = [e async for e in searching.iterate(AuditFilter(tenant_ids=frozenset({tenant})))]
        assert events
        assert {e.tenant_id for e in events} == {tenant}
    everything = [e async for e in searching.iterate(AuditFilter(tenant_ids=None))]
    assert len(everything) == len(stored)
    assert {e.tenant_id for e in everything} == {*TENANTS, ""}


async def test_events_written_by_the_audit_log_are_found(database: Database) -> None:
    """Events as the product writes them: found by tenant, connection, action and person."""
    searching = AuditSearch(database.db["audit_events"])
    await searching.ensure_indexes()
    admin = Owner(tenant_id="t-contoso", aad_object_id="aad-admin", name="Ada Admin")
    jane = Owner(tenant_id="t-contoso", aad_object_id="aad-jane", name="Jane Doe")
    account = ProviderAccount(id="acc", display_name="jane@mail.example")
    parent = await database.connections.create_parent(provider="box", owner=admin, account=account)
    connection = await database.connections.create_runtime(
        parent_id=parent.id, owner=jane, account=account
    )
    created = await database.audit.record(
        actor=Actor.person(jane), action=CONNECTION_CREATED, connection=connection
    )
    deleted = await database.audit.record(
        actor=Actor.administrator(tenant_id="t-contoso", object_id="aad-boss", name="Bo Boss"),
        action=CONNECTION_DELETED,
        connection=connection,
    )
    elsewhere = await database.audit.record(
        actor=Actor.operator("ops"), action=SIGNIN_VOIDED, details={"tenant_id": "t-fabrikam"}
    )
    contoso = frozenset({"t-contoso"})
    page = await searching.page(AuditFilter(tenant_ids=contoso), before=None)
    assert [e.id for e in page.events] == [deleted, created]
    assert page.next_cursor is None
    by_connection = AuditFilter(tenant_ids=contoso, connection_id=connection.id)
    assert [e.id async for e in searching.iterate(by_connection)] == [deleted, created]
    by_person = AuditFilter(tenant_ids=None, person="jane d")
    assert [e.id async for e in searching.iterate(by_person)] == [deleted, created]
    by_boss = AuditFilter(tenant_ids=None, administrator="boss")
    assert [e.id async for e in searching.iterate(by_boss)] == [deleted]
    by_action = AuditFilter(tenant_ids=None, action=SIGNIN_VOIDED)
    assert [e.id async for e in searching.iterate(by_action)] == [elsewhere]
    event = (await searching.page(by_boss, before=None)).events[0]
    assert (event.connection_id, event.owner, event.tenant_id) == (connection.id, jane, "t-contoso")


@pytest.mark.parametrize("cursor", ["nope", "zz" * 12, "abcdefghijkl", "6" * 23])
async def test_a_malformed_cursor_is_refused(searching: AuditSearch, cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        await searching.page(AuditFilter(tenant_ids=None), before=cursor)


@pytest.mark.parametrize("connection_id", ["nope", "abcdefghijkl", "6" * 25])
async def test_a_malformed_connection_id_is_refused(
    searching: AuditSearch, connection_id: str
) -> None:
    with pytest.raises(InvalidFilter):
        await searching.page(AuditFilter(tenant_ids=None, connection_id=connection_id), before=None)
    with pytest.raises(InvalidFilter):
        async for _ in searching.iterate(AuditFilter(tenant_ids=None, connection_id=connection_id)):
            pass


def test_actions_are_the_names_events_are_written_with(searching: AuditSearch) -> None:
    actions = searching.actions()
    assert actions == sorted(actions)
    for action in (*ACTIONS, CONNECTION_DELETED, PRIVILEGES_GRANTED, PRIVILEGES_REVOKED):
        assert action in actions
    assert {"recipe.ran", "recipe.setting_changed"} <= set(actions)


@pytest.fixture
async def recorded(mongodb_uri: str, database: Database) -> AsyncIterator[tuple[Recorder, Any]]:
    """A second client on the test's database whose aggregates are recorded; it drops the
    test's many documents itself, with time to spare."""
    recorder = Recorder()
    client = make_client(mongodb_uri, event_listeners=[recorder], timeoutMS=60_000)
    try:
        yield recorder, client[database.db.name]
    finally:
        await client.drop_database(database.db.name)
        await client.close()


WINDOW_SHAPES = [
    (AuditFilter(tenant_ids=frozenset({TENANTS[0]})), "audit_window_tenant"),
    (AuditFilter(tenant_ids=None), "audit_window"),
    (AuditFilter(tenant_ids=None, person="a", since=NOW - timedelta(days=300)), "audit_window"),
    (
        AuditFilter(tenant_ids=frozenset(TENANTS[:2]), action=CONNECTION_REVOKED),
        "audit_window_tenant_action",
    ),
    (
        AuditFilter(tenant_ids=None, connection_id=str(CONNECTIONS[2]), action=CONNECTION_CREATED),
        "audit_window_connection_id",
    ),
]


async def test_each_window_reads_only_its_documents(recorded: tuple[Recorder, Any]) -> None:
    """3,000 events over a year: every query two pages send is an index scan of exactly the
    events in its window, and the pages read a small part of the collection."""
    recorder, db = recorded
    events = make_events(3000, span=timedelta(days=365), seed=3)
    await insert(db["audit_events"], events)
    searching = AuditSearch(db["audit_events"])
    await searching.ensure_indexes()
    for query, index in WINDOW_SHAPES:
        recorder.pipelines.clear()
        page = await searching.page(query, before=None, limit=50)
        assert len(page.events) == 50
        second = await searching.page(query, before=page.next_cursor, limit=50)
        assert second.events
        windows = await explained_windows(db, recorder, events)
        assert windows
        for used, examined, window in windows:
            assert used == index
            assert examined == window
        assert sum(examined for _, examined, _ in windows) < 3000 / 3
