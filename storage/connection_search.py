"""Searching runtime connections for the admin console: filtered newest-first pages, a walk of
every match (CSV export, bulk actions), and counts by status and by parent.

Only runtime connections are searched (never parents, never deleted tombstones). Pages and walks
go by windows of `_id` time (storage/windowed.py says why).

Counting reads every counted document on the embedded store (60-130 µs each), and so does
`estimated_document_count` (1.6 s at 100,000, holding the store's lock, and past the client's
3 s limit when the machine is busy), so the collection's size cannot decide how to count. Each
counted set (a tenant, every tenant, a parent) has a summary in collection `connection_counts`
with its `as_of`; a set whose stored total is small (the smallest, while together within
LIVE_COUNT_LIMIT) is counted live at each call and its summary rewritten, a larger one answers
its summary and is recounted window by window by a background task of this process (one per
set) when the summary is older than SUMMARY_FRESH. A set with no summary yet is being counted:
the answer is None.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

import background
from storage.models import Connection, ConnectionKind, ConnectionStatus
from storage.search_terms import (
    MOST_TERM_MATCHES,
    SEARCH_TERMS,
    lookup_text,
    prefix_range,
    terms_of,
)
from storage.windowed import (
    InvalidCursor,
    InvalidFilter,
    TooManyToCount,
    all_of,
    count_by,
    iterate_newest_first,
    last_id,
    newest_first,
    parse_cursor,
    parse_id,
    substring_clause,
)

__all__ = [
    "LIVE_COUNT_LIMIT",
    "ConnectionFilter",
    "ConnectionPage",
    "ConnectionSearch",
    "InvalidCursor",
    "InvalidFilter",
    "StatusCounts",
]

Document = dict[str, Any]

COUNTS_COLLECTION = "connection_counts"
# Connections one call counts live at most (by the stored totals): ~0.5 s on the embedded store.
LIVE_COUNT_LIMIT = 5_000
SUMMARY_FRESH = timedelta(seconds=60)
# A large set's recount waits this many times as long as the last one took (15 s of store work
# for 100,000 connections: recounted every 5 minutes, not every minute).
RECOUNT_SHARE = 20
# A set whose stored total is at most half this is counted live in one query (a few ms).
ONE_QUERY_COUNT = 1_000
# How long a page waits for a set's very first count before saying "counting".
FIRST_COUNT_WAIT_S = 0.5
# A connection's `_id` is made within moments of its `created_at`; this margin keeps the
# "unused" search's upper `_id` bound safely above any creation before the cutoff.
CREATION_MARGIN = timedelta(days=1)
RUNTIME = ConnectionKind.RUNTIME.value
ALL_TENANTS = "all"
# Of several equality filters, the one that rides the index: a parent serves one app and an app
# has several parents, so the first present is the narrowest. The others filter each window.
INDEXED_FIELDS = ("parent_id", "provider", "status")
# The equality fields that lead the search terms' index.
TERM_SCOPE = ("kind", "owner.tenant_id")
# The marker (in the counts collection) that every connection has its search terms.
TERMS_BACKFILLED = "search_terms_backfilled"


@dataclass(frozen=True)
class ConnectionFilter:
    """Which runtime connections to show; unset fields do not filter.

    Attributes:
        tenant_ids: None for every tenant, otherwise only these tenants' (by `owner.tenant_id`).
        person: a case-insensitive part of the owner's name or object id or the account's name.
        unused_days: not used for that many days (never used: created before then).
    """

    tenant_ids: frozenset[str] | None
    status: ConnectionStatus | None = None
    provider: str | None = None
    parent_id: str | None = None
    person: str = ""
    unused_days: int | None = None


@dataclass(frozen=True)
class ConnectionPage:
    connections: list[Connection]
    next_cursor: str | None  # the `before` of the next (older) page; None: no more


@dataclass(frozen=True)
class StatusCounts:
    counts: dict[str, int]  # by ConnectionStatus value, every status present
    total: int
    as_of: datetime | None  # None: counted live now


@dataclass(frozen=True)
class _Plan:
    queries: list[Document]
    residual: Document | None
    not_after: ObjectId | None


def _zeros() -> dict[str, int]:
    return {status.value: 0 for status in ConnectionStatus}


def _tenant_unit(tenant_id: str) -> str:
    return f"tenant:{tenant_id}"


def _parent_unit(parent_id: ObjectId) -> str:
    return f"parent:{parent_id}"


def _scope(unit: str) -> Document:
    """The equality query of a counted set (an index prefix, see ensure_indexes)."""
    kind, _, value = unit.partition(":")
    scope: Document = {"kind": RUNTIME}
    if kind == "tenant":
        scope["owner.tenant_id"] = value
    elif kind == "parent":
        scope["parent_id"] = ObjectId(value)
    return scope


class ConnectionSearch:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._connections = collection
        self._summaries: AsyncCollection[Document] = collection.database[COUNTS_COLLECTION]
        # One background recount per summary document at a time in this process.
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self._terms_backfilled = False

    async def ensure_indexes(self) -> None:
        # The window shape (storage/windowed.py): equality fields, then `_id`; one index per
        # filter that can lead a window, per tenant and for all tenants.
        for tenant in ([], [("owner.tenant_id", ASCENDING)]):
            for field in (None, *INDEXED_FIELDS):
                keys = [("kind", ASCENDING), *tenant]
                keys += [(field, ASCENDING)] if field else []
                name = "runtime_window" + ("_tenant" if tenant else "")
                name += f"_{field}" if field else ""
                await self._connections.create_index([*keys, ("_id", ASCENDING)], name=name)
            # The person search: terms that begin with a word (storage/search_terms.py).
            await self._connections.create_index(
                [("kind", ASCENDING), *tenant, (SEARCH_TERMS, ASCENDING)],
                name="runtime_terms" + ("_tenant" if tenant else ""),
            )

    # --- pages and walks ------------------------------------------------------------------

    async def page(
        self,
        filter: ConnectionFilter,
        *,
        before: str | None,
        limit: int = 50,
        now: datetime | None = None,
    ) -> ConnectionPage:
        """Up to `limit` matching connections created before the `before` cursor, newest first.

        A page may hold fewer than `limit` while `next_cursor` is set: it stopped after reading
        its share of documents (storage/windowed.py); the next page goes on from there.

        Raises:
            InvalidCursor: `before` is not a cursor of a previous page.
            InvalidFilter: `parent_id` is not a 24-hex id, or `unused_days` is negative.
        """
        cursor = parse_cursor(before)
        found = await self._by_terms(filter, now, before=cursor, limit=limit)
        if found is not None:
            documents, next_id = found
            return ConnectionPage(
                connections=[Connection.from_document(document) for document in documents],
                next_cursor=str(next_id) if next_id is not None else None,
            )
        plan = self._plan(filter, now)
        documents, next_id = await newest_first(
            self._connections,
            plan.queries,
            before=cursor,
            limit=limit,
            not_after=plan.not_after,
            residual=plan.residual,
        )
        return ConnectionPage(
            connections=[Connection.from_document(document) for document in documents],
            next_cursor=str(next_id) if next_id is not None else None,
        )

    async def iterate(
        self, filter: ConnectionFilter, *, now: datetime | None = None
    ) -> AsyncIterator[Connection]:
        """Every matching connection, newest first."""
        found = await self._by_terms(filter, now, before=None, limit=None)
        if found is not None:
            for document in found[0]:
                yield Connection.from_document(document)
            return
        plan = self._plan(filter, now)
        async for document in iterate_newest_first(
            self._connections, plan.queries, not_after=plan.not_after, residual=plan.residual
        ):
            yield Connection.from_document(document)

    async def _by_terms(
        self,
        filter: ConnectionFilter,
        now: datetime | None,
        *,
        before: ObjectId | None,
        limit: int | None,
    ) -> tuple[list[Document], ObjectId | None] | None:
        """A person search through the search terms' index: every connection with a term that
        begins with the text typed, then the other filters, newest first. None when there is
        nothing to look up, the terms are not all given yet, or the text is too common to read
        at once (the windows then do it, with the text as a substring)."""
        word = lookup_text(filter.person) if filter.person else None
        if word is None or not await self._terms_ready():
            return None
        plan = self._plan(replace(filter, person=""), now)  # the terms are the person filter
        residual = [plan.residual] if plan.residual else []
        for query in plan.queries:  # the plan's equality lead goes to the residual here
            residual += [{key: value} for key, value in query.items() if key not in TERM_SCOPE]
        if before is not None:
            residual.append({"_id": {"$lt": before}})
        if plan.not_after is not None:
            residual.append({"_id": {"$lte": plan.not_after}})
        later = all_of(residual)
        matches: list[Document] = []
        for scope in {tuple((k, v) for k, v in q.items() if k in TERM_SCOPE) for q in plan.queries}:
            pipeline: list[Document] = [
                {"$match": {**dict(scope), SEARCH_TERMS: prefix_range(word)}},
                {"$limit": MOST_TERM_MATCHES + 1},
                {
                    "$facet": {
                        "examined": [{"$count": "n"}],
                        "found": [
                            {"$match": later or {}},
                            {"$sort": {"_id": -1}},
                            *([{"$limit": limit + 1}] if limit is not None else []),
                        ],
                    }
                },
            ]
            answer = await (await self._connections.aggregate(pipeline)).to_list()
            facets = answer[0] if answer else {"examined": [], "found": []}
            examined = facets["examined"][0]["n"] if facets["examined"] else 0
            if examined > MOST_TERM_MATCHES:
                return None
            matches += facets["found"]
        matches.sort(key=lambda document: document["_id"], reverse=True)
        if limit is None or len(matches) <= limit:
            return matches, None
        return matches[:limit], matches[limit - 1]["_id"]

    async def _terms_ready(self) -> bool:
        """True once every connection has its search terms (older records get theirs from
        `backfill_terms`; until then the person search reads windows)."""
        if not self._terms_backfilled:
            marker = await self._summaries.find_one({"_id": TERMS_BACKFILLED})
            self._terms_backfilled = marker is not None
        return self._terms_backfilled

    def start_backfill(self) -> None:
        """Run `backfill_terms` in the background (stopped by `close`)."""
        self._start(TERMS_BACKFILLED, self._backfill_in_background)

    async def _backfill_in_background(self) -> None:
        if not await self._terms_ready():
            await self.backfill_terms()

    async def backfill_terms(self) -> int:
        """Give search terms to connections stored before they existed (safe to run in every
        process, any number of times); returns how many were given terms."""
        if self._terms_backfilled:
            return 0
        given = 0
        async for document in iterate_newest_first(
            self._connections,
            [{"kind": kind} for kind in (RUNTIME, ConnectionKind.PARENT.value)],
            residual={SEARCH_TERMS: {"$exists": False}},
        ):
            terms = terms_of(document.get("owner") or {}, document.get("account"))
            result = await self._connections.update_one(
                {"_id": document["_id"], SEARCH_TERMS: {"$exists": False}},
                {"$set": {SEARCH_TERMS: terms}},
            )
            given += result.modified_count
        await self._summaries.replace_one(
            {"_id": TERMS_BACKFILLED}, {"at": datetime.now(UTC)}, upsert=True
        )
        self._terms_backfilled = True
        return given

    def _plan(self, filter: ConnectionFilter, now: datetime | None) -> _Plan:
        equal: dict[str, Any] = {}
        if filter.parent_id:
            parent_id = parse_id(filter.parent_id)
            if parent_id is None:
                raise InvalidFilter(filter.parent_id)
            equal["parent_id"] = parent_id
        if filter.provider:
            equal["provider"] = filter.provider
        if filter.status is not None:
            equal["status"] = ConnectionStatus(filter.status).value
        indexed = next((field for field in INDEXED_FIELDS if field in equal), None)
        lead = {indexed: equal[indexed]} if indexed else {}
        clauses = [{field: value} for field, value in equal.items() if field != indexed]
        person = substring_clause(
            filter.person, ("owner.name", "owner.aad_object_id", "account.display_name")
        )
        if person is not None:
            clauses.append(person)
        not_after = None
        if filter.unused_days is not None:
            if filter.unused_days < 0:
                raise InvalidFilter(str(filter.unused_days))
            cutoff = (now or datetime.now(UTC)) - timedelta(days=filter.unused_days)
            clauses.append(
                {
                    "$or": [
                        {"last_used_at": {"$lt": cutoff}},
                        {"last_used_at": None, "created_at": {"$lt": cutoff}},
                    ]
                }
            )
            # Used or not, a match was created before the cutoff: newer windows hold none.
            not_after = last_id(cutoff + CREATION_MARGIN)
        if filter.tenant_ids is None:
            queries = [{"kind": RUNTIME, **lead}]
        else:
            queries = [
                {"kind": RUNTIME, "owner.tenant_id": tenant_id, **lead}
                for tenant_id in sorted(filter.tenant_ids)
            ]
        return _Plan(queries=queries, residual=all_of(clauses), not_after=not_after)

    # --- counts ---------------------------------------------------------------------------

    async def status_counts(self, tenant_ids: frozenset[str] | None) -> StatusCounts | None:
        """Runtime connections by status, of these tenants (None: every tenant).

        Returns:
            The counts: as_of None when all were counted live, else the oldest stored summary's
            time; None while a tenant has no summary yet (being counted).
        """
        if tenant_ids is not None and not tenant_ids:
            return StatusCounts(counts=_zeros(), total=0, as_of=None)
        units = (
            [ALL_TENANTS]
            if tenant_ids is None
            else [_tenant_unit(tenant_id) for tenant_id in sorted(tenant_ids)]
        )
        current = await self._current(units)
        if current is None:
            return None
        summaries, as_of = current
        counts = _zeros()
        for summary in summaries.values():
            for status, number in summary["counts"].items():
                counts[status] = counts.get(status, 0) + number
        return StatusCounts(
            counts=counts,
            total=sum(summary["total"] for summary in summaries.values()),
            as_of=as_of,
        )

    async def runtime_counts_by_parent(self, parent_ids: list[str]) -> dict[str, int] | None:
        """The number of runtime connections under each parent (every asked id is a key), live
        or from the stored summaries as for `status_counts`; None while one is being counted.

        Raises:
            InvalidFilter: an id is not 24-hex.
        """
        units: dict[str, str] = {}
        for parent_id in parent_ids:
            parsed = parse_id(parent_id)
            if parsed is None:
                raise InvalidFilter(parent_id)
            units[_parent_unit(parsed)] = str(parsed)
        if not units:
            return {}
        current = await self._current(list(units))
        if current is None:
            return None
        summaries, _ = current
        return {units[unit]: summary["total"] for unit, summary in summaries.items()}

    async def _current(
        self, units: list[str]
    ) -> tuple[dict[str, Document], datetime | None] | None:
        """Each unit's summary, counted live for the smallest units while their stored totals
        fit in LIVE_COUNT_LIMIT together, and the oldest `as_of` of those not counted live.
        None while a unit has no summary yet (its recount has started)."""
        cursor = self._summaries.find({"_id": {"$in": units}})
        stored = {document["_id"]: document async for document in cursor}
        missing = [unit for unit in units if unit not in stored]
        for unit in missing:
            self._start(unit, functools.partial(self._recount, unit))
        if missing:
            # A first count of a small set takes milliseconds: wait for it a little rather
            # than saying "counting" on a small deployment's first page.
            counting = [self._refreshing[unit] for unit in missing if unit in self._refreshing]
            if counting:
                await asyncio.wait(counting, timeout=FIRST_COUNT_WAIT_S)
            cursor = self._summaries.find({"_id": {"$in": missing}})
            stored |= {document["_id"]: document async for document in cursor}
            if any(unit not in stored for unit in units):
                return None
        stale_before = datetime.now(UTC) - SUMMARY_FRESH
        room = LIVE_COUNT_LIMIT
        current: dict[str, Document] = {}
        as_of: datetime | None = None
        for unit in sorted(units, key=lambda unit: stored[unit]["total"]):
            summary = stored[unit]
            if summary["total"] <= room:
                try:
                    # A set stored as small is counted in one query; a larger one window by
                    # window, reading at most twice the limit (it may have grown since).
                    small = summary["total"] <= ONE_QUERY_COUNT // 2
                    current[unit] = await self._count(
                        unit, live=True, at_most=ONE_QUERY_COUNT if small else 2 * LIVE_COUNT_LIMIT
                    )
                except (TooManyToCount, PyMongoError):
                    # Grown past what a page may count (an import, say): the stored total is
                    # stale; recount in the background and show the summary until then.
                    self._start(unit, functools.partial(self._recount, unit))
                else:
                    room -= current[unit]["total"]
                    continue
            # A recount costs the store about its own duration: at most one in RECOUNT_SHARE.
            took = timedelta(seconds=float(summary.get("took_s") or 0) * RECOUNT_SHARE)
            if summary["as_of"] < stale_before - max(timedelta(0), took - SUMMARY_FRESH):
                self._start(unit, functools.partial(self._recount, unit))
            current[unit] = summary
            as_of = summary["as_of"] if as_of is None else min(as_of, summary["as_of"])
        return current, as_of

    def _start(self, key: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        running = self._refreshing.get(key)
        if running is not None and not running.done():
            return
        task = asyncio.get_running_loop().create_task(work())
        self._refreshing[key] = task

        def finished(done: asyncio.Task[None]) -> None:
            if self._refreshing.get(key) is done:
                del self._refreshing[key]
            # A failed recount is tried again by the next call that finds the summary missing
            # or stale.
            if not done.cancelled():
                with contextlib.suppress(Exception):
                    done.exception()

        task.add_done_callback(finished)

    async def _recount(self, unit: str) -> None:
        await self._count(unit, live=False)

    async def _count(self, unit: str, *, live: bool, at_most: int | None = None) -> Document:
        """Count a unit by status, window by window (no query reads more than about
        EXAMINED_PER_QUERY documents, so the store serves others in between), and store it as
        its summary.

        Raises:
            TooManyToCount: live, and more than `at_most` match (nothing is stored then).
        """
        as_of = datetime.now(UTC)  # everything created before now is in the count
        started = time.monotonic()
        scope = _scope(unit)
        if live and at_most is not None and at_most <= ONE_QUERY_COUNT:
            cursor = await self._connections.aggregate(
                [{"$match": scope}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
            )
            by_status = {row["_id"]: row["n"] for row in await cursor.to_list()}
            if sum(by_status.values()) > at_most:
                raise TooManyToCount
        else:
            by_status = await count_by(
                self._connections, scope, "status", at_most=at_most if live else None
            )
        counts = _zeros()
        for status, number in by_status.items():
            if status in counts:
                counts[status] = number
        summary = {
            "counts": counts,
            "total": sum(by_status.values()),
            "as_of": as_of,
            "took_s": round(time.monotonic() - started, 3),
        }
        await self._summaries.replace_one({"_id": unit}, summary, upsert=True)
        return summary

    async def close(self) -> None:
        """Stop the background recounts."""
        await background.stop(*self._refreshing.values())
