"""Newest-first pages and walks over a collection, by windows of ObjectId time.

Why windows: the embedded store (secantusd) fetches EVERY matching document before it sorts or
limits, so `find(q).sort(_id, -1).limit(50)` costs all of `q`'s matches (5 s at 100,000), and
`count` is a scan. What it does fast is one shape: the equality fields of an index prefix plus a
range on the index's next field, `_id`; it then reads only the entries and documents inside the
range. An `_id` is an ObjectId whose first four bytes are its creation time, so an `_id` range is
a window of creation time. A page before cursor C asks windows [C - w, C), w starting at a minute
and growing, until it holds `limit + 1` documents or reaches the lowest possible ObjectId.

Any other field in that filter (one more equality, a `$regex`, `$or`) makes the store fall back
to one clause's index, `kind` say, and read everything. So a window is an aggregate: its first
`$match` is exactly the index shape (the store lifts it into the index lookup), and a `$facet`
then applies the other filters, sorts and limits on that window's documents only, and counts
them. The count steers the next window's width so that each query reads about
`EXAMINED_PER_QUERY` documents, and a page stops after `EXAMINED_PER_PAGE`, answering what it
found with a cursor to go on from: a page may then hold fewer than `limit` documents although
more follow. A cursor is an `_id` (exclusive); ties in the time part are harmless because `_id`
order is total, and a window that filled up in the middle of a second (a burst) continues from
its last document.

Known limit: a window's cost is the number of documents in it, so a burst of many thousands of
documents inside one second (an import) is read whole by each window that touches it.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection

Document = dict[str, Any]


class InvalidCursor(ValueError):
    """A page cursor that is not the 24-hex id this module hands out."""


class InvalidFilter(ValueError):
    """A filter value that cannot be searched for (e.g. an id that is not 24-hex)."""


# One second of ObjectId time in the integer value of an id (the time is its top 32 of 96 bits).
ID_SECOND = 1 << 64
LOWEST = 0
HIGHEST = (1 << 96) - 1
FIRST_WINDOW_S = 60
# A window costs 60-150 µs a document it holds on the embedded store (connection documents,
# more when they are returned): ~0.1 s a query, well under a second a page.
EXAMINED_PER_QUERY = 1_000
EXAMINED_PER_PAGE = 5_000
# The most documents a walk takes from one query of a window (bounds the size of one answer);
# above EXAMINED_PER_QUERY so that a window is cut short only where the density jumps.
WALK_BATCH = 2_000
_LONGEST_WINDOW_S = 1 << 32  # all of ObjectId time


def id_value(object_id: ObjectId) -> int:
    return int.from_bytes(object_id.binary, "big")


def id_of(value: int) -> ObjectId:
    return ObjectId(value.to_bytes(12, "big"))


def _seconds(at: datetime) -> int:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return min(max(int(at.timestamp()), 0), (1 << 32) - 1)


def first_id(at: datetime) -> ObjectId:
    """The lowest ObjectId of the second `at` falls in (naive datetimes are UTC)."""
    return id_of(_seconds(at) * ID_SECOND)


def last_id(at: datetime) -> ObjectId:
    """The highest ObjectId of the second `at` falls in (naive datetimes are UTC)."""
    return id_of((_seconds(at) + 1) * ID_SECOND - 1)


def parse_id(value: str) -> ObjectId | None:
    """A 24-hex string as an ObjectId, else None (ObjectId() would also take 12 raw bytes)."""
    if isinstance(value, str) and len(value) == 24 and ObjectId.is_valid(value):
        return ObjectId(value)
    return None


def parse_cursor(cursor: str | None) -> ObjectId | None:
    """A cursor from a previous page; None or "" is the first page.

    Raises:
        InvalidCursor: anything else that is not a 24-hex id.
    """
    if cursor is None or cursor == "":
        return None
    parsed = parse_id(cursor)
    if parsed is None:
        raise InvalidCursor(cursor)
    return parsed


def substring_clause(text: str, fields: Iterable[str]) -> Document | None:
    """A case-insensitive match of `text` (stripped, literally) inside any of `fields`; None
    for empty text. A residual filter only: a `$regex` never rides an index."""
    text = text.strip()
    if not text:
        return None
    pattern = {"$regex": re.escape(text), "$options": "i"}
    return {"$or": [{field: pattern} for field in fields]}


def all_of(clauses: Sequence[Document]) -> Document | None:
    """The residual filter requiring every clause (None: no clause)."""
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": list(clauses)}


def window_pipeline(
    query: Mapping[str, Any],
    *,
    lo: ObjectId,
    hi: ObjectId,
    need: int,
    residual: Mapping[str, Any] | None = None,
) -> list[Document]:
    """One window's aggregate: documents with lo <= _id <= hi matching `query` (the equality
    fields of one index whose next field is `_id`) and `residual`; the newest `need` of them in
    `found`, and how many documents the window held in `examined`."""
    if "_id" in query:
        raise ValueError("the window sets _id itself")
    found: list[Document] = [{"$match": dict(residual)}] if residual else []
    found += [{"$sort": {"_id": -1}}, {"$limit": need}]
    return [
        {"$match": {**query, "_id": {"$gte": lo, "$lte": hi}}},
        {"$facet": {"found": found, "examined": [{"$count": "n"}]}},
    ]


class _Windows:
    """Windows of `_id` values from `upper` down to `floor` (both inclusive), newest first: a
    minute first, then each at most twice the last (four times after an empty one) and sized to
    hold about EXAMINED_PER_QUERY documents at the density last seen."""

    def __init__(self, *, upper: int, floor: int) -> None:
        self.hi = upper
        self._floor = floor
        self._width = FIRST_WINDOW_S

    @property
    def done(self) -> bool:
        return self.hi < self._floor

    def next(self) -> tuple[int, int]:
        """The next window (lo, hi)."""
        # Anchored at now, not at the highest id, so the first window without a cursor is the
        # last minute (plus any id from a clock ahead of ours).
        top = min(self.hi // ID_SECOND, int(time.time()) + 1)
        return max(self._floor, (top - self._width) * ID_SECOND), self.hi

    def advance(self, bound: int, examined: int) -> None:
        """Everything from `bound` up was read; the window held `examined` documents."""
        self.hi = bound - 1
        if examined == 0:
            # Nothing here to tell the density: reach back faster (~13 windows to 1970).
            wanted = self._width * 4
        else:
            wanted = min(self._width * 2, self._width * EXAMINED_PER_QUERY // examined)
        self._width = min(max(wanted, 1), _LONGEST_WINDOW_S)


class _Walk:
    """The matches of several queries (merged) window by window, newest first."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        queries: Sequence[Mapping[str, Any]],
        residual: Mapping[str, Any] | None,
        *,
        upper: int,
        floor: int,
    ) -> None:
        self._collection = collection
        self._queries = queries
        self._residual = residual
        self._windows = _Windows(upper=upper if queries else floor - 1, floor=floor)

    @property
    def done(self) -> bool:
        return self._windows.done

    @property
    def hi(self) -> int:
        return self._windows.hi

    async def step(self, need: int) -> tuple[list[Document], int]:
        """The next window's matches newest first (each query gives at most `need`) and the
        number of documents the window held."""
        lo, hi = self._windows.next()
        found: list[Document] = []
        examined = 0
        bound = lo
        for query in self._queries:
            pipeline = window_pipeline(
                query, lo=id_of(lo), hi=id_of(hi), need=need, residual=self._residual
            )
            cursor = await self._collection.aggregate(pipeline)
            for result in await cursor.to_list():
                documents = result["found"]
                examined += sum(count["n"] for count in result["examined"])
                if len(documents) == need:
                    # Full: below its last document this query's window is not read yet.
                    bound = max(bound, id_value(documents[-1]["_id"]))
                found += documents
        complete = [document for document in found if id_value(document["_id"]) >= bound]
        complete.sort(key=lambda document: id_value(document["_id"]), reverse=True)
        self._windows.advance(bound, examined)
        return complete, examined


def _queries(query: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [query] if isinstance(query, Mapping) else list(query)


def _bounds(
    before: ObjectId | None, not_before: ObjectId | None, not_after: ObjectId | None
) -> tuple[int, int]:
    upper = HIGHEST
    if before is not None:
        upper = min(upper, id_value(before) - 1)
    if not_after is not None:
        upper = min(upper, id_value(not_after))
    floor = id_value(not_before) if not_before is not None else LOWEST
    return upper, floor


async def newest_first(
    collection: AsyncCollection[Document],
    query: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    before: ObjectId | None,
    limit: int,
    not_before: ObjectId | None = None,
    not_after: ObjectId | None = None,
    residual: Mapping[str, Any] | None = None,
    max_examined: int | None = None,
) -> tuple[list[Document], ObjectId | None]:
    """Up to `limit` documents with `_id` < before, newest first, and the cursor of the next page.

    Args:
        query: the equality fields of one index whose next field is `_id`, or several such
            queries whose matches are merged (e.g. one per tenant); an empty list matches nothing.
        not_before, not_after: inclusive `_id` bounds.
        residual: further filters, applied by the store to each window's documents.
        max_examined: documents read before the page is answered with what it found so far
            (default EXAMINED_PER_PAGE).

    Returns:
        The documents and the next page's `before`, None when nothing older matches. The page
        is shorter than `limit` with a cursor when `max_examined` was reached first.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    budget = EXAMINED_PER_PAGE if max_examined is None else max_examined
    upper, floor = _bounds(before, not_before, not_after)
    walk = _Walk(collection, _queries(query), residual, upper=upper, floor=floor)
    collected: list[Document] = []
    examined = 0
    while not walk.done:
        found, read = await walk.step(limit + 1 - len(collected))
        collected += found
        examined += read
        if len(collected) > limit:
            page = collected[:limit]
            return page, page[-1]["_id"]
        if examined >= budget and not walk.done:
            return collected, id_of(walk.hi + 1)
    return collected, None


async def iterate_newest_first(
    collection: AsyncCollection[Document],
    query: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    not_before: ObjectId | None = None,
    not_after: ObjectId | None = None,
    residual: Mapping[str, Any] | None = None,
) -> AsyncIterator[Document]:
    """Every match, newest first, window by window (arguments as for `newest_first`)."""
    upper, floor = _bounds(None, not_before, not_after)
    walk = _Walk(collection, _queries(query), residual, upper=upper, floor=floor)
    while not walk.done:
        found, _ = await walk.step(WALK_BATCH)
        for document in found:
            yield document


class TooManyToCount(Exception):
    """`count_by` gave up: more documents match than it was allowed to read."""


async def count_by(
    collection: AsyncCollection[Document],
    query: Mapping[str, Any],
    field: str,
    *,
    at_most: int | None = None,
) -> dict[Any, int]:
    """How many documents match `query` (as for `newest_first`), by the value of `field`.

    Counted window by window with a `$group` in the store, so no single query reads more than
    about EXAMINED_PER_QUERY documents and nothing but the counts crosses the wire.

    Raises:
        TooManyToCount: more than `at_most` documents match (only `at_most` or so were read).
    """
    windows = _Windows(upper=HIGHEST, floor=LOWEST)
    counts: dict[Any, int] = {}
    while not windows.done:
        if at_most is not None and sum(counts.values()) > at_most:
            raise TooManyToCount
        lo, hi = windows.next()
        cursor = await collection.aggregate(
            [
                {"$match": {**query, "_id": {"$gte": id_of(lo), "$lte": id_of(hi)}}},
                {"$group": {"_id": f"${field}", "n": {"$sum": 1}}},
            ]
        )
        examined = 0
        for row in await cursor.to_list():
            counts[row["_id"]] = counts.get(row["_id"], 0) + row["n"]
            examined += row["n"]
        windows.advance(lo, examined)
    return counts
