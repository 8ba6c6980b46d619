"""Searching runtime connections for the admin console: filtered newest-first pages, a walk of
every match (CSV export, bulk actions), and counts by status and by parent.

Only runtime connections are searched (never parents, never deleted tombstones). Pages and walks
go by windows of `_id` time (storage/windowed.py says why). Counting costs every counted
document on the embedded store, and so does `estimated_document_count`: up to LIVE_COUNT_LIMIT
stored connections the counts are live; above it they come from a summary (collection
`connection_counts`, one document per tenant, per parent, and for all tenants, each with its
`as_of`) that a background task of this process recounts, window by window, when it is missing
or older than SUMMARY_FRESH. While a summary is missing the count is None (being counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

import background
from storage.models import Connection, ConnectionKind, ConnectionStatus
from storage.windowed import (
    InvalidCursor,
    InvalidFilter,
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
# Stored connections (all kinds) up to which counts are counted live at each call.
LIVE_COUNT_LIMIT = 20_000
SUMMARY_FRESH = timedelta(seconds=60)
# How long a measured collection size is trusted before it is measured again (in the background).
SIZE_FRESH_S = 60.0
# A connection's `_id` is made within moments of its `created_at`; this margin keeps the
# "unused" search's upper `_id` bound safely above any creation before the cutoff.
CREATION_MARGIN = timedelta(days=1)
RUNTIME = ConnectionKind.RUNTIME.value
ALL_TENANTS = "all"
# Of several equality filters, the one that rides the index: a parent serves one app and an app
# has several parents, so the first present is the narrowest. The others filter each window.
INDEXED_FIELDS = ("parent_id", "provider", "status")


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


class ConnectionSearch:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._connections = collection
        self._summaries: AsyncCollection[Document] = collection.database[COUNTS_COLLECTION]
        # One recount per summary document (and one size measurement) at a time per process.
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self._size: tuple[int, float] | None = None  # (estimated count, time.monotonic())

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
        plan = self._plan(filter, now)
        async for document in iterate_newest_first(
            self._connections, plan.queries, not_after=plan.not_after, residual=plan.residual
        ):
            yield Connection.from_document(document)

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
            Live counts (as_of None) while the collection is small, else the stored summary
            (however old; a recount starts when it is older than SUMMARY_FRESH), or None while
            there is none yet.
        """
        if tenant_ids is not None and not tenant_ids:
            return StatusCounts(counts=_zeros(), total=0, as_of=None)
        if not await self._large():
            return await self._live_status_counts(tenant_ids)
        units = (
            [ALL_TENANTS]
            if tenant_ids is None
            else [_tenant_unit(tenant_id) for tenant_id in sorted(tenant_ids)]
        )
        summaries = await self._summaries_of(units)
        if summaries is None:
            return None
        counts = _zeros()
        for summary in summaries.values():
            for status, number in summary["counts"].items():
                counts[status] = counts.get(status, 0) + number
        return StatusCounts(
            counts=counts,
            total=sum(summary["total"] for summary in summaries.values()),
            as_of=min(summary["as_of"] for summary in summaries.values()),
        )

    async def runtime_counts_by_parent(self, parent_ids: list[str]) -> dict[str, int] | None:
        """The number of runtime connections under each parent (every asked id is a key).

        Returns:
            Live counts while the collection is small, else the stored summaries, or None while
            one of them is still missing (being counted).

        Raises:
            InvalidFilter: an id is not 24-hex.
        """
        parents: dict[str, ObjectId] = {}
        for parent_id in parent_ids:
            parsed = parse_id(parent_id)
            if parsed is None:
                raise InvalidFilter(parent_id)
            parents[str(parsed)] = parsed
        if not parents:
            return {}
        if not await self._large():
            # One aggregate: `$in` of exact keys rides (kind, parent_id, _id), and a small
            # collection holds at most LIVE_COUNT_LIMIT documents to count.
            counts = dict.fromkeys(parents, 0)
            cursor = await self._connections.aggregate(
                [
                    {"$match": {"kind": RUNTIME, "parent_id": {"$in": list(parents.values())}}},
                    {"$group": {"_id": "$parent_id", "n": {"$sum": 1}}},
                ]
            )
            for row in await cursor.to_list():
                counts[str(row["_id"])] = row["n"]
            return counts
        units = {_parent_unit(parsed): key for key, parsed in parents.items()}
        summaries = await self._summaries_of(list(units))
        if summaries is None:
            return None
        return {units[unit]: summary["total"] for unit, summary in summaries.items()}

    async def _live_status_counts(self, tenant_ids: frozenset[str] | None) -> StatusCounts:
        scopes: list[Document] = (
            [{"kind": RUNTIME}]
            if tenant_ids is None
            else [{"kind": RUNTIME, "owner.tenant_id": tenant_id} for tenant_id in tenant_ids]
        )
        counts = _zeros()
        total = 0
        # By windows, like the recount: one aggregate over 20,000 documents comes near the
        # client's 3 s limit on a busy machine.
        for scope in scopes:
            for status, number in (await count_by(self._connections, scope, "status")).items():
                total += number
                if status in counts:
                    counts[status] += number
        return StatusCounts(counts=counts, total=total, as_of=None)

    async def _large(self) -> bool:
        """Whether the collection holds more than LIVE_COUNT_LIMIT documents.

        `estimated_document_count` scans the collection on the embedded store (~0.3 s at
        20,000), so it is measured once per process and then again in the background.
        """
        if self._size is None:
            await self._measure_size()
        elif time.monotonic() - self._size[1] > SIZE_FRESH_S:
            self._start("size", self._measure_size)
        assert self._size is not None
        return self._size[0] > LIVE_COUNT_LIMIT

    async def _measure_size(self) -> None:
        self._size = (await self._connections.estimated_document_count(), time.monotonic())

    async def _summaries_of(self, units: list[str]) -> dict[str, Document] | None:
        """The stored summaries of `units`, recounting the missing and stale ones in the
        background; None while one is missing."""
        cursor = self._summaries.find({"_id": {"$in": units}})
        summaries = {document["_id"]: document async for document in cursor}
        stale_before = datetime.now(UTC) - SUMMARY_FRESH
        for unit in units:
            summary = summaries.get(unit)
            if summary is None or summary["as_of"] < stale_before:
                self._start(unit, functools.partial(self._recount, unit))
        if len(summaries) < len(units):
            return None
        return summaries

    def _start(self, key: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        running = self._refreshing.get(key)
        if running is not None and not running.done():
            return
        task = asyncio.get_running_loop().create_task(work())
        self._refreshing[key] = task

        def finished(done: asyncio.Task[None]) -> None:
            if self._refreshing.get(key) is done:
                del self._refreshing[key]
            # A failed recount is tried again by the next call that finds the summary stale.
            if not done.cancelled():
                with contextlib.suppress(Exception):
                    done.exception()

        task.add_done_callback(finished)

    async def _recount(self, unit: str) -> None:
        as_of = datetime.now(UTC)  # everything created before now is in the count
        kind, _, value = unit.partition(":")
        scope: Document = {"kind": RUNTIME}
        if kind == "tenant":
            scope["owner.tenant_id"] = value
        elif kind == "parent":
            scope["parent_id"] = ObjectId(value)
        by_status = await count_by(self._connections, scope, "status")
        counts = _zeros()
        for status, number in by_status.items():
            if status in counts:
                counts[status] = number
        await self._summaries.replace_one(
            {"_id": unit},
            {"counts": counts, "total": sum(by_status.values()), "as_of": as_of},
            upsert=True,
        )

    async def close(self) -> None:
        """Stop the background recounts."""
        await background.stop(*self._refreshing.values())
