"""The admin console's connection search (storage/connection_search.py, storage/windowed.py),
against the real database: every filter and every page walk compared with a brute-force
computation over the same documents, tenant isolation, counts (live and from the summary), and
`explain` showing that each window query reads only its window."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo import monitoring
from pymongo.asynchronous.collection import AsyncCollection

from storage import connection_search, windowed
from storage.connection_search import (
    COUNTS_COLLECTION,
    ConnectionFilter,
    ConnectionSearch,
    InvalidCursor,
    InvalidFilter,
)
from storage.connections import ConnectionStore
from storage.database import Database, make_client
from storage.models import ConnectionStatus, Owner, ProviderAccount
from tests.support.waiting import eventually

Document = dict[str, Any]

NOW = datetime.now(UTC)
TENANTS = ("t-contoso", "t-fabrikam", "t-northwind")
PARENTS = tuple(ObjectId() for _ in range(3))
PROVIDERS = ("box", "github")
STATUSES = [ConnectionStatus.CONNECTED.value] * 4 + [
    ConnectionStatus.DISCONNECTED.value,
    ConnectionStatus.NEEDS_REAUTH.value,
]
BURST_AT = NOW - timedelta(days=3, minutes=7)
NAMES = ("Ada Lovelace", "Grace Hopper", "O'Brien (Ops)", "Linus", "Margaret Hamilton")


def id_at(at: datetime, rnd: random.Random) -> ObjectId:
    """An ObjectId made at `at` (its time) with a random rest, as another process makes them."""
    return ObjectId(ObjectId.from_datetime(at).binary[:4] + rnd.randbytes(8))


def runtime_document(
    rnd: random.Random,
    number: int,
    at: datetime,
    *,
    tenant_id: str,
    kind: str = "runtime",
    last_used_at: datetime | None = None,
) -> Document:
    """The shape ConnectionStore.create_runtime writes (storage/connections.py)."""
    name = f"{rnd.choice(NAMES)} {number}"
    document: Document = {
        "_id": id_at(at, rnd),
        "kind": kind,
        "provider": rnd.choice(PROVIDERS),
        "owner": {
            "tenant_id": tenant_id,
            "aad_object_id": f"aad-{number:05d}",
            "teams_user_id": f"29:{number}",
            "name": name,
        },
        "account": {"id": f"acc-{number}", "display_name": f"user{number}@mail.example"},
        "status": rnd.choice(STATUSES),
        "scopes": ["read"],
        "tokens": {"key_id": "k1", "ciphertext": rnd.randbytes(40)},
        "api_base_url": None,
        "refresh_lease_until": None,
        "version": 1,
        "created_at": at,
        "updated_at": at,
        "last_used_at": last_used_at,
        "parent_id": rnd.choice(PARENTS),
    }
    if kind == "deleted":
        document["deleted_kind"] = "runtime"
    return document


def make_documents(count: int, *, span: timedelta, seed: int = 1) -> list[Document]:
    """Runtime connections of three tenants spread over `span`, a burst of 120 in one second
    (two tenants), one from before 2015, one from a clock a day ahead, tombstones and parents."""
    rnd = random.Random(seed)  # noqa: S311 - reproducible test data, not a secret
    documents = []
    for number in range(count):
        at = NOW - timedelta(seconds=rnd.uniform(0, span.total_seconds()))
        used = at + timedelta(days=rnd.uniform(0, 60)) if rnd.random() < 0.6 else None
        documents.append(
            runtime_document(
                rnd,
                number,
                at,
                tenant_id=rnd.choice(TENANTS),
                last_used_at=min(used, NOW) if used else None,
            )
        )
    for number in range(count, count + 120):
        documents.append(runtime_document(rnd, number, BURST_AT, tenant_id=TENANTS[number % 2]))
    documents.append(
        runtime_document(rnd, 90001, datetime(2012, 3, 1, tzinfo=UTC), tenant_id=TENANTS[0])
    )
    documents.append(runtime_document(rnd, 90002, NOW + timedelta(days=1), tenant_id=TENANTS[0]))
    for number in range(90010, 90040):
        at = NOW - timedelta(seconds=rnd.uniform(0, span.total_seconds()))
        kind = "deleted" if number % 2 else "parent"
        documents.append(
            runtime_document(rnd, number, at, tenant_id=rnd.choice(TENANTS), kind=kind)
        )
    return documents


async def insert(collection: AsyncCollection[Document], documents: list[Document]) -> None:
    # Small batches: each write stays well inside the client's 3 s limit on a busy machine.
    for start in range(0, len(documents), 100):
        await collection.insert_many(documents[start : start + 100])


def matches(document: Document, search: ConnectionFilter, now: datetime) -> bool:
    """The brute-force meaning of a filter."""
    if document["kind"] != "runtime":
        return False
    if search.tenant_ids is not None and document["owner"]["tenant_id"] not in search.tenant_ids:
        return False
    if search.status is not None and document["status"] != search.status.value:
        return False
    if search.provider and document["provider"] != search.provider:
        return False
    if search.parent_id and str(document["parent_id"]) != search.parent_id:
        return False
    needle = search.person.strip().lower()
    if needle:
        haystacks = (
            document["owner"]["name"],
            document["owner"]["aad_object_id"],
            (document.get("account") or {}).get("display_name", ""),
        )
        if not any(needle in haystack.lower() for haystack in haystacks):
            return False
    if search.unused_days is not None:
        cutoff = now - timedelta(days=search.unused_days)
        used = document.get("last_used_at")
        if used is not None and used >= cutoff:
            return False
        if used is None and document["created_at"] >= cutoff:
            return False
    return True


def expected(documents: list[Document], search: ConnectionFilter, now: datetime) -> list[str]:
    chosen = [d["_id"] for d in documents if matches(d, search, now)]
    return [str(i) for i in sorted(chosen, key=lambda i: i.binary, reverse=True)]


async def walk_pages(
    search: ConnectionSearch, query: ConnectionFilter, *, limit: int, now: datetime
) -> list[list[str]]:
    pages: list[list[str]] = []
    before: str | None = None
    while True:
        page = await search.page(query, before=before, limit=limit, now=now)
        assert len(page.connections) <= limit
        pages.append([connection.id for connection in page.connections])
        if page.next_cursor is None:
            return pages
        assert page.next_cursor != before, "a cursor must move on"
        before = page.next_cursor


FILTERS: dict[str, ConnectionFilter] = {
    "one tenant": ConnectionFilter(tenant_ids=frozenset({TENANTS[0]})),
    "every tenant": ConnectionFilter(tenant_ids=None),
    "two tenants": ConnectionFilter(tenant_ids=frozenset(TENANTS[:2])),
    "no tenant": ConnectionFilter(tenant_ids=frozenset()),
    "tenant and status": ConnectionFilter(
        tenant_ids=frozenset({TENANTS[1]}), status=ConnectionStatus.NEEDS_REAUTH
    ),
    "every tenant, one app": ConnectionFilter(tenant_ids=None, provider="github"),
    "tenant and parent": ConnectionFilter(
        tenant_ids=frozenset({TENANTS[0]}), parent_id=str(PARENTS[1])
    ),
    "status, app and parent": ConnectionFilter(
        tenant_ids=frozenset(TENANTS[1:]),
        status=ConnectionStatus.CONNECTED,
        provider="box",
        parent_id=str(PARENTS[0]),
    ),
    "person by name, any case": ConnectionFilter(tenant_ids=None, person="  ada LOVE "),
    "person by object id": ConnectionFilter(tenant_ids=frozenset(TENANTS), person="aad-0001"),
    "person by account": ConnectionFilter(tenant_ids=None, person="USER12"),
    "person with regex characters": ConnectionFilter(tenant_ids=None, person="o'brien (ops"),
    "person matching nobody": ConnectionFilter(tenant_ids=None, person="nobody at all"),
    "unused for 30 days": ConnectionFilter(tenant_ids=frozenset({TENANTS[2]}), unused_days=30),
    "everything at once": ConnectionFilter(
        tenant_ids=frozenset(TENANTS[:2]),
        status=ConnectionStatus.CONNECTED,
        provider="github",
        person="a",
        unused_days=10,
    ),
}


@pytest.fixture(scope="module")
async def corpus(
    mongodb_uri: str,
) -> AsyncIterator[tuple[AsyncCollection[Document], list[Document]]]:
    """One database of connections, with the production indexes, for the tests that only read."""
    client = make_client(mongodb_uri, timeoutMS=60_000)
    name = f"test_{uuid.uuid4().hex[:16]}"
    collection = client[name]["connections"]
    await ConnectionStore(collection).ensure_indexes()
    await ConnectionSearch(collection).ensure_indexes()
    documents = make_documents(500, span=timedelta(days=730))
    await insert(collection, documents)
    try:
        yield collection, documents
    finally:
        await client.drop_database(name)
        await client.close()


@pytest.fixture
async def search(
    corpus: tuple[AsyncCollection[Document], list[Document]],
) -> AsyncIterator[ConnectionSearch]:
    searching = ConnectionSearch(corpus[0])
    yield searching
    await searching.close()


@pytest.fixture
def stored(corpus: tuple[AsyncCollection[Document], list[Document]]) -> list[Document]:
    return corpus[1]


@pytest.fixture
async def fresh(database: Database) -> AsyncIterator[ConnectionSearch]:
    """A search over the test's own (empty) database, for the tests that write."""
    searching = ConnectionSearch(database.connections.collection)
    await searching.ensure_indexes()
    yield searching
    await searching.close()


@pytest.fixture
async def fresh_stored(database: Database) -> list[Document]:
    documents = make_documents(200, span=timedelta(days=730), seed=2)
    await insert(database.connections.collection, documents)
    return documents


@pytest.fixture
def tight(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny windows, page budgets and walk batches, so that every path of the pager runs."""
    monkeypatch.setattr(windowed, "EXAMINED_PER_QUERY", 3)
    monkeypatch.setattr(windowed, "EXAMINED_PER_PAGE", 5)
    monkeypatch.setattr(windowed, "WALK_BATCH", 5)


@pytest.mark.parametrize("name", list(FILTERS))
async def test_pages_walk_every_match_once_newest_first(
    search: ConnectionSearch, stored: list[Document], name: str
) -> None:
    """Every filter, in pages of 7 (bursts of one second span many pages) and 50: the pages
    together are exactly the matches, newest first, each once; only the last page is short."""
    query = FILTERS[name]
    wanted = expected(stored, query, NOW)
    assert wanted or name in {"no tenant", "person matching nobody"}
    for limit in (7, 50):
        pages = await walk_pages(search, query, limit=limit, now=NOW)
        assert [i for page in pages for i in page] == wanted
        assert all(len(page) == limit for page in pages[:-1])


@pytest.mark.parametrize(
    "name", ["one tenant", "two tenants", "every tenant", "everything at once"]
)
async def test_tight_budgets_still_walk_every_match_once(
    search: ConnectionSearch, stored: list[Document], tight: None, name: str
) -> None:
    """With windows cut short and pages answered early, pages may be short but the walk is
    still complete, ordered and without repeats; so is `iterate`."""
    query = FILTERS[name]
    wanted = expected(stored, query, NOW)
    pages = await walk_pages(search, query, limit=7, now=NOW)
    assert [i for page in pages for i in page] == wanted
    assert any(len(page) < 7 for page in pages[:-1]), "the page budget never stopped a page"
    assert [c.id async for c in search.iterate(query, now=NOW)] == wanted


@pytest.mark.parametrize("name", list(FILTERS))
async def test_iterate_yields_every_match_newest_first(
    search: ConnectionSearch, stored: list[Document], name: str
) -> None:
    query = FILTERS[name]
    assert [c.id async for c in search.iterate(query, now=NOW)] == expected(stored, query, NOW)


async def test_tenants_never_see_each_other(
    search: ConnectionSearch, stored: list[Document]
) -> None:
    """A tenant's pages hold only its own connections; None sees every tenant's."""
    for tenant in TENANTS:
        query = ConnectionFilter(tenant_ids=frozenset({tenant}), person="a")
        connections = [c async for c in search.iterate(query, now=NOW)]
        assert connections
        assert {c.owner.tenant_id for c in connections} == {tenant}
    everyone = [c async for c in search.iterate(ConnectionFilter(tenant_ids=None), now=NOW)]
    assert {c.owner.tenant_id for c in everyone} == set(TENANTS)


async def test_parents_and_tombstones_are_never_listed(
    database: Database, fresh: ConnectionSearch
) -> None:
    """Written through the real store: a parent and a deleted connection never appear."""
    admin = Owner(tenant_id="t-contoso", aad_object_id="aad-admin", name="Ada Admin")
    jane = Owner(tenant_id="t-contoso", aad_object_id="aad-jane", name="Jane")
    omar = Owner(tenant_id="t-contoso", aad_object_id="aad-omar", name="Omar")
    account = ProviderAccount(id="acc", display_name="person@mail.example")
    store = database.connections
    parent = await store.create_parent(provider="box", owner=admin, account=account)
    kept = await store.create_runtime(parent_id=parent.id, owner=jane, account=account)
    gone = await store.create_runtime(parent_id=parent.id, owner=omar, account=account)
    assert await store.delete_for_owner(connection_id=gone.id, owner=omar) is not None
    page = await fresh.page(ConnectionFilter(tenant_ids=frozenset({"t-contoso"})), before=None)
    assert [c.id for c in page.connections] == [kept.id]
    assert (page.connections[0].owner, page.connections[0].account) == (jane, account)
    assert page.next_cursor is None
    by_parent = ConnectionFilter(tenant_ids=None, parent_id=parent.id)
    assert [c.id async for c in fresh.iterate(by_parent)] == [kept.id]
    counts = await eventually(lambda: fresh.status_counts(None))
    assert counts.total == 1
    assert await eventually(lambda: fresh.runtime_counts_by_parent([parent.id])) == {parent.id: 1}


@pytest.mark.parametrize(
    "cursor", ["nope", "12345", "zz" * 12, "abcdefghijkl", "6" * 25, " " + "6" * 23]
)
async def test_a_malformed_cursor_is_refused(search: ConnectionSearch, cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        await search.page(ConnectionFilter(tenant_ids=None), before=cursor)


async def test_malformed_filters_are_refused(search: ConnectionSearch) -> None:
    with pytest.raises(InvalidFilter):
        await search.page(ConnectionFilter(tenant_ids=None, parent_id="not-an-id"), before=None)
    with pytest.raises(InvalidFilter):
        await search.page(ConnectionFilter(tenant_ids=None, unused_days=-1), before=None)
    with pytest.raises(InvalidFilter):
        await search.runtime_counts_by_parent(["abcdefghijkl"])


def brute_counts(
    documents: list[Document], tenants: frozenset[str] | set[str] | None
) -> dict[str, int]:
    counts = {status.value: 0 for status in ConnectionStatus}
    for document in documents:
        if document["kind"] == "runtime" and (
            tenants is None or document["owner"]["tenant_id"] in tenants
        ):
            counts[document["status"]] += 1
    return counts


def brute_parents(documents: list[Document]) -> dict[str, int]:
    counts = {str(parent): 0 for parent in PARENTS}
    for document in documents:
        if document["kind"] == "runtime":
            counts[str(document["parent_id"])] += 1
    return counts


@pytest.mark.parametrize(
    "tenants", [None, frozenset({TENANTS[0]}), frozenset(TENANTS[1:]), frozenset()]
)
async def test_status_counts(
    search: ConnectionSearch, stored: list[Document], tenants: frozenset[str] | None
) -> None:
    """Being counted (None) until a first count is stored, then counted live at each call (a
    few hundred connections are well within LIVE_COUNT_LIMIT)."""
    counts = await eventually(lambda: search.status_counts(tenants))
    assert counts.as_of is None
    assert counts.counts == brute_counts(stored, tenants)
    assert list(counts.counts) == [status.value for status in ConnectionStatus]
    assert counts.total == sum(counts.counts.values())


async def test_runtime_counts_by_parent(search: ConnectionSearch, stored: list[Document]) -> None:
    nobody = str(ObjectId())
    asked = [*map(str, PARENTS), nobody]
    counts = await eventually(lambda: search.runtime_counts_by_parent(asked))
    assert counts == {**brute_parents(stored), nobody: 0}
    assert await search.runtime_counts_by_parent([]) == {}


async def test_small_sets_are_counted_live_and_large_ones_from_their_summary(
    database: Database,
    fresh: ConnectionSearch,
    fresh_stored: list[Document],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While their stored totals fit in LIVE_COUNT_LIMIT the smallest sets are counted at each
    call (a new connection shows at once); a larger one answers its summary until recounted."""
    small, large = sorted(TENANTS[:2], key=lambda t: sum(brute_counts(fresh_stored, {t}).values()))
    both = frozenset({small, large})
    await eventually(lambda: fresh.status_counts(both))
    monkeypatch.setattr(
        connection_search, "LIVE_COUNT_LIMIT", sum(brute_counts(fresh_stored, {small}).values())
    )
    counts = await fresh.status_counts(both)
    assert counts is not None
    assert counts.as_of is not None  # the large tenant's summary
    assert counts.counts == brute_counts(fresh_stored, both)
    rnd = random.Random(9)  # noqa: S311 - reproducible test data, not a secret
    more = [runtime_document(rnd, 70000 + n, NOW, tenant_id=t) for n, t in enumerate(both)]
    await insert(database.connections.collection, more)
    small_now = await fresh.status_counts(frozenset({small}))
    assert small_now is not None
    assert small_now.as_of is None
    assert small_now.counts == brute_counts(fresh_stored + more, {small})
    large_now = await fresh.status_counts(frozenset({large}))
    assert large_now is not None
    assert large_now.as_of == counts.as_of
    assert large_now.counts == brute_counts(fresh_stored, {large})


@dataclass
class Gate:
    """Holds every recount until opened, counting how many started."""

    started: list[str] = field(default_factory=list)
    open: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Gate:
    held = Gate()
    count_by = windowed.count_by

    async def gated(collection: Any, query: Document, by: str, **options: Any) -> dict[Any, int]:
        held.started.append(str(query))
        await held.open.wait()
        return await count_by(collection, query, by, **options)

    monkeypatch.setattr(connection_search, "count_by", gated)
    return held


async def test_summary_counts_above_the_live_limit(
    database: Database,
    fresh: ConnectionSearch,
    fresh_stored: list[Document],
    gate: Gate,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Above LIVE_COUNT_LIMIT: None while one recount runs (one, however often asked), then the
    stored summary; it is recounted only once it is older than SUMMARY_FRESH."""
    monkeypatch.setattr(connection_search, "LIVE_COUNT_LIMIT", 0)
    monkeypatch.setattr(connection_search, "FIRST_COUNT_WAIT_S", 0)
    tenants = frozenset(TENANTS[:2])
    asked = await asyncio.gather(*(fresh.status_counts(tenants) for _ in range(5)))
    assert asked == [None] * 5
    assert await fresh.status_counts(tenants) is None
    assert len(gate.started) == 2  # one per tenant, not one per call
    gate.open.set()
    counts = await eventually(lambda: fresh.status_counts(tenants))
    assert counts.counts == brute_counts(fresh_stored, tenants)
    assert counts.total == sum(counts.counts.values())
    assert counts.as_of is not None and counts.as_of <= datetime.now(UTC)

    # A fresh summary is answered as it is, however the connections change meanwhile.
    rnd = random.Random(5)  # noqa: S311 - reproducible test data, not a secret
    more = [runtime_document(rnd, 80000 + n, NOW, tenant_id=TENANTS[0]) for n in range(4)]
    await insert(database.connections.collection, more)
    started = len(gate.started)
    assert await fresh.status_counts(tenants) == counts
    assert len(gate.started) == started

    # Once stale, the old summary is still answered while one recount brings the new one.
    summaries = database.db[COUNTS_COLLECTION]
    old = datetime.now(UTC) - timedelta(minutes=2)
    await summaries.update_many({}, {"$set": {"as_of": old}})
    stale = await fresh.status_counts(tenants)
    assert stale is not None
    assert stale.counts == counts.counts
    await eventually(lambda: len(gate.started) == started + 2)

    async def recounted() -> bool:
        now_counts = await fresh.status_counts(tenants)
        return now_counts is not None and now_counts.as_of is not None and now_counts.as_of > old

    await eventually(recounted)
    recounted_counts = await fresh.status_counts(tenants)
    assert recounted_counts is not None
    assert recounted_counts.counts == brute_counts(fresh_stored + more, tenants)


async def test_summary_of_every_tenant_and_of_parents(
    fresh: ConnectionSearch, fresh_stored: list[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection_search, "LIVE_COUNT_LIMIT", 0)
    monkeypatch.setattr(connection_search, "FIRST_COUNT_WAIT_S", 0)
    assert await fresh.status_counts(None) is None
    counts = await eventually(lambda: fresh.status_counts(None))
    assert counts.counts == brute_counts(fresh_stored, None)
    parents = [str(parent) for parent in PARENTS]
    assert await fresh.runtime_counts_by_parent(parents) is None
    by_parent = await eventually(lambda: fresh.runtime_counts_by_parent(parents))
    assert by_parent == brute_parents(fresh_stored)


async def test_a_small_sets_first_count_is_waited_for(
    fresh: ConnectionSearch, fresh_stored: list[Document]
) -> None:
    """No stored count yet, and a set that is quick to count: the first page gets numbers,
    not "counting"."""
    counts = await fresh.status_counts(None)
    assert counts is not None and counts.counts == brute_counts(fresh_stored, None)


async def test_close_stops_a_running_recount(
    fresh: ConnectionSearch,
    fresh_stored: list[Document],
    gate: Gate,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(connection_search, "LIVE_COUNT_LIMIT", 0)
    monkeypatch.setattr(connection_search, "FIRST_COUNT_WAIT_S", 0)
    assert await fresh.status_counts(None) is None
    await eventually(lambda: gate.started)
    await asyncio.wait_for(fresh.close(), timeout=5)
    gate.open.set()  # too late: the stopped recount writes nothing
    assert await fresh.status_counts(None) is None


# --- every window query rides its index ---------------------------------------------------


class Recorder(monitoring.CommandListener):
    """The aggregate pipelines a client sends."""

    def __init__(self) -> None:
        self.pipelines: list[tuple[str, list[Document]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "aggregate":
            command = event.command
            self.pipelines.append((command["aggregate"], list(command["pipeline"])))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
async def recorded(mongodb_uri: str, database: Database) -> AsyncIterator[tuple[Recorder, Any]]:
    """A second client on the test's database whose aggregates are recorded; it removes the
    test's many documents itself, with time to spare, before the database is dropped."""
    recorder = Recorder()
    client = make_client(mongodb_uri, event_listeners=[recorder], timeoutMS=60_000)
    db = client[database.db.name]
    try:
        yield recorder, db
    finally:
        await client.drop_database(database.db.name)
        await client.close()


def in_window(stage: Document) -> Callable[[Document], bool]:
    """The brute-force meaning of a window's first `$match` (equality fields and `_id` range)."""

    def value(document: Document, path: str) -> Any:
        for part in path.split("."):
            document = document.get(part) if isinstance(document, dict) else None
        return document

    def test(document: Document) -> bool:
        for path, wanted in stage.items():
            if path == "_id":
                if not wanted["$gte"].binary <= document["_id"].binary <= wanted["$lte"].binary:
                    return False
            elif value(document, path) != wanted:
                return False
        return True

    return test


async def explained_windows(
    db: Any, recorder: Recorder, documents: list[Document]
) -> list[tuple[str, int, int]]:
    """For each recorded window query: (index used, documents examined, documents in window)."""
    found = []
    for collection, pipeline in recorder.pipelines:
        explain = await db.command(
            "explain",
            {"aggregate": collection, "pipeline": pipeline, "cursor": {}},
            verbosity="executionStats",
        )
        cursor = explain["stages"][0]["$cursor"]
        plan = cursor["queryPlanner"]["winningPlan"]
        assert plan["stage"] == "FETCH", plan
        assert plan["inputStage"]["stage"] == "IXSCAN", plan
        window = sum(1 for d in documents if in_window(pipeline[0]["$match"])(d))
        found.append(
            (
                plan["inputStage"]["indexName"],
                cursor["executionStats"]["totalDocsExamined"],
                window,
            )
        )
    return found


WINDOW_SHAPES = [
    (
        ConnectionFilter(tenant_ids=frozenset({TENANTS[0]}), status=ConnectionStatus.CONNECTED),
        "runtime_window_tenant_status",
    ),
    (ConnectionFilter(tenant_ids=None), "runtime_window"),
    (
        ConnectionFilter(tenant_ids=frozenset(TENANTS[:2]), provider="box", person="a"),
        "runtime_window_tenant_provider",
    ),
    (
        ConnectionFilter(
            tenant_ids=None,
            parent_id=str(PARENTS[2]),
            status=ConnectionStatus.CONNECTED,
            unused_days=20,
        ),
        "runtime_window_parent_id",
    ),
]


async def test_each_window_reads_only_its_documents(recorded: tuple[Recorder, Any]) -> None:
    """3,000 connections over a year: every query two pages send is an index scan of exactly
    the documents in its window, and the pages read a small part of the collection."""
    recorder, db = recorded
    documents = make_documents(3000, span=timedelta(days=365), seed=3)
    await insert(db["connections"], documents)
    search = ConnectionSearch(db["connections"])
    await search.ensure_indexes()
    for query, index in WINDOW_SHAPES:
        recorder.pipelines.clear()
        page = await search.page(query, before=None, limit=50, now=NOW)
        assert len(page.connections) == 50
        second = await search.page(query, before=page.next_cursor, limit=50, now=NOW)
        assert second.connections
        windows = await explained_windows(db, recorder, documents)
        assert windows
        for used, examined, window in windows:
            assert used == index
            assert examined == window
        assert sum(examined for _, examined, _ in windows) < 3000 / 3


async def test_a_person_is_found_by_the_beginning_of_any_word_through_the_terms_index(
    database: Any,
) -> None:
    """Connections written by the store carry search terms; once every record has them the
    person search looks the first word up in the terms index (no window scan) and checks the
    rest of the text as a substring; a record stored before terms existed gets them from the
    backfill."""

    store = database.connections
    search = ConnectionSearch(store.collection)
    await search.ensure_indexes()
    parent = await store.create_parent(
        provider="box",
        owner=Owner(tenant_id="t1", aad_object_id="ops"),
        account=ProviderAccount(id="team", display_name="team@box.example"),
        tenant_id="t1",
        name="team",
    )
    people = {
        "jane": ("Jane Doe", "jane.doe@contoso.example"),
        "omar": ("Omar Ali", "omar@contoso.example"),
        "janet": ("Janet Smith", "js@fabrikam.example"),
    }
    ids = {}
    for object_id, (name, account) in people.items():
        created = await store.create_runtime(
            parent_id=parent.id,
            owner=Owner(tenant_id="t1", aad_object_id=object_id, name=name),
            account=ProviderAccount(id=object_id, display_name=account),
        )
        ids[object_id] = created.id
    # One record from before search terms: the backfill gives it its terms.
    await store.collection.update_one(
        {"_id": ObjectId(ids["omar"])}, {"$unset": {"search_terms": ""}}
    )
    assert await search.backfill_terms() == 1
    scope = frozenset({"t1"})

    async def found(text: str) -> set[str]:
        page = await search.page(ConnectionFilter(tenant_ids=scope, person=text), before=None)
        return {connection.owner.aad_object_id for connection in page.connections}

    assert await found("jan") == {"jane", "janet"}
    assert await found("DOE") == {"jane"}
    assert await found("jane.doe@contoso") == {"jane"}
    assert await found("ali") == {"omar"}, "the backfilled record is found"
    assert await found("fabrikam") == {"janet"}
    assert await found("jane doe") == {"jane"}
    assert await found("  Jane   D ") == {"jane"}, "spaces and case do not matter"
    assert await found("ane") == set(), "found at the beginning of a word, not inside one"
    assert await found("zed") == set()
    assert await found("t1") == set(), "the tenant is not a term"
    other = await search.page(
        ConnectionFilter(tenant_ids=frozenset({"t2"}), person="jan"), before=None
    )
    assert other.connections == []
    # Pages through the terms: two at a time, each once, newest first.
    first = await search.page(ConnectionFilter(tenant_ids=scope, person="j"), before=None, limit=1)
    assert len(first.connections) == 1 and first.next_cursor is not None
    second = await search.page(
        ConnectionFilter(tenant_ids=scope, person="j"), before=first.next_cursor, limit=1
    )
    assert second.connections and second.next_cursor is None
    assert {first.connections[0].id, second.connections[0].id} == {ids["jane"], ids["janet"]}


async def test_a_set_that_outgrew_its_stored_total_is_not_counted_live(
    fresh: ConnectionSearch,
    fresh_stored: list[Document],
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stored total said "small" but the set has grown (an import): the page does not try
    to count it all (that would outlast the store's time limit on every page); it shows the
    stored counts with their time and recounts in the background."""
    monkeypatch.setattr(connection_search, "LIVE_COUNT_LIMIT", 50)
    monkeypatch.setattr(connection_search, "ONE_QUERY_COUNT", 100)
    stale_time = datetime.now(UTC) - timedelta(hours=1)
    await database.db[connection_search.COUNTS_COLLECTION].replace_one(
        {"_id": connection_search.ALL_TENANTS},
        {
            "counts": {"connected": 5, "disconnected": 0, "needs_reauth": 0},
            "total": 5,
            "as_of": stale_time,
        },
        upsert=True,
    )
    shown = await fresh.status_counts(None)
    assert shown is not None and shown.total == 5 and shown.as_of is not None
    real = brute_counts(fresh_stored, None)

    async def recounted() -> bool:
        counts = await fresh.status_counts(None)
        return counts is not None and counts.counts == real

    assert await eventually(recounted)
