"""Searching the audit trail (collection `audit_events`) for the admin console: filtered
newest-first pages, a walk of every match (CSV export), and the known action names.

Pages and walks go by windows of `_id` time (storage/windowed.py says why). A tenant-scoped
search matches the event's `tenant_id` (the tenant the event is about); events from before that
field existed are seen only by an all-tenant search. Times are to the second (an ObjectId's).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from storage.audit import (
    CONNECTION_ACCOUNT_CHANGED,
    CONNECTION_BREAK_NOTIFIED,
    CONNECTION_CREATED,
    CONNECTION_DELETED,
    CONNECTION_DISCONNECTED,
    CONNECTION_RECONNECTED,
    CONNECTION_REVOKE_FAILED,
    CONNECTION_REVOKED,
    SIGNIN_VOIDED,
)
from storage.models import AuditEvent
from storage.privileges import PRIVILEGES_GRANTED, PRIVILEGES_REVOKED
from storage.windowed import (
    InvalidCursor,
    InvalidFilter,
    all_of,
    first_id,
    iterate_newest_first,
    last_id,
    newest_first,
    parse_cursor,
    parse_id,
    substring_clause,
)

__all__ = ["ACTIONS", "AuditFilter", "AuditPage", "AuditSearch", "InvalidCursor", "InvalidFilter"]

Document = dict[str, Any]

# Every action an event is written with. Two are written outside storage (which may not import
# those rooms): recipes/runner.py RECIPE_RAN and admin/cli.py's recipe setting change.
ACTIONS = tuple(
    sorted(
        {
            CONNECTION_CREATED,
            CONNECTION_DISCONNECTED,
            CONNECTION_DELETED,
            CONNECTION_RECONNECTED,
            CONNECTION_ACCOUNT_CHANGED,
            CONNECTION_REVOKE_FAILED,
            CONNECTION_REVOKED,
            CONNECTION_BREAK_NOTIFIED,
            SIGNIN_VOIDED,
            PRIVILEGES_GRANTED,
            PRIVILEGES_REVOKED,
            "recipe.ran",
            "recipe.setting_changed",
        }
    )
)
ADMINISTRATOR_KINDS = ("administrator", "operator")
ACTOR_FIELDS = ("actor.name", "actor.aad_object_id")


@dataclass(frozen=True)
class AuditFilter:
    """Which events to show; unset fields do not filter.

    Attributes:
        tenant_ids: None for every tenant, otherwise only events about these tenants.
        person: a case-insensitive part of the name or object id of whose connection it was,
            or of the person (actor kind "person") who acted.
        connection_id: the 24-hex id of one connection.
        action: one action name exactly (see ACTIONS).
        administrator: a case-insensitive part of the name or object id of the administrator or
            operator who acted.
        since: events from then on (inclusive); until: events before then (exclusive).
    """

    tenant_ids: frozenset[str] | None
    person: str = ""
    connection_id: str = ""
    action: str = ""
    administrator: str = ""
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class AuditPage:
    events: list[AuditEvent]
    next_cursor: str | None  # the `before` of the next (older) page; None: no more


@dataclass(frozen=True)
class _Plan:
    queries: list[Document]
    residual: Document | None
    not_before: ObjectId | None
    not_after: ObjectId | None


class AuditSearch:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._events = collection

    async def ensure_indexes(self) -> None:
        # The window shape (storage/windowed.py): equality fields, then `_id`.
        for tenant in ([], [("tenant_id", ASCENDING)]):
            for field in ("connection_id", "action"):
                name = "audit_window" + ("_tenant" if tenant else "") + f"_{field}"
                await self._events.create_index(
                    [*tenant, (field, ASCENDING), ("_id", ASCENDING)], name=name
                )
        await self._events.create_index(
            [("tenant_id", ASCENDING), ("_id", ASCENDING)], name="audit_window_tenant"
        )
        # With no equality field at all, the embedded store serves an `_id` range only from a
        # secondary index that starts with `_id` (the built-in `_id_` index is not used).
        await self._events.create_index(
            [("_id", ASCENDING), ("at", ASCENDING)], name="audit_window"
        )

    def actions(self) -> list[str]:
        """The action names events are written with, sorted."""
        return list(ACTIONS)

    async def page(self, filter: AuditFilter, *, before: str | None, limit: int = 50) -> AuditPage:
        """Up to `limit` matching events older than the `before` cursor, newest first.

        A page may hold fewer than `limit` while `next_cursor` is set: it stopped after reading
        its share of documents (storage/windowed.py); the next page goes on from there.

        Raises:
            InvalidCursor: `before` is not a cursor of a previous page.
            InvalidFilter: `connection_id` is set and not a 24-hex id.
        """
        cursor = parse_cursor(before)
        plan = self._plan(filter)
        documents, next_id = await newest_first(
            self._events,
            plan.queries,
            before=cursor,
            limit=limit,
            not_before=plan.not_before,
            not_after=plan.not_after,
            residual=plan.residual,
        )
        return AuditPage(
            events=[AuditEvent.from_document(document) for document in documents],
            next_cursor=str(next_id) if next_id is not None else None,
        )

    async def iterate(self, filter: AuditFilter) -> AsyncIterator[AuditEvent]:
        """Every matching event, newest first."""
        plan = self._plan(filter)
        async for document in iterate_newest_first(
            self._events,
            plan.queries,
            not_before=plan.not_before,
            not_after=plan.not_after,
            residual=plan.residual,
        ):
            yield AuditEvent.from_document(document)

    def _plan(self, filter: AuditFilter) -> _Plan:
        lead: Document = {}
        clauses: list[Document] = []
        if filter.connection_id:
            connection_id = parse_id(filter.connection_id)
            if connection_id is None:
                raise InvalidFilter(filter.connection_id)
            lead["connection_id"] = connection_id
        # One connection's events are fewer than one action's: the connection leads the window.
        if filter.action and lead:
            clauses.append({"action": filter.action})
        elif filter.action:
            lead["action"] = filter.action
        person = substring_clause(filter.person, ("owner.name", "owner.aad_object_id"))
        acting = substring_clause(filter.person, ACTOR_FIELDS)
        if person is not None and acting is not None:
            clauses.append({"$or": [person, {"actor.kind": "person", **acting}]})
        administrator = substring_clause(filter.administrator, ACTOR_FIELDS)
        if administrator is not None:
            clauses.append({"actor.kind": {"$in": list(ADMINISTRATOR_KINDS)}, **administrator})
        queries = (
            [lead]
            if filter.tenant_ids is None
            else [{"tenant_id": tenant_id, **lead} for tenant_id in sorted(filter.tenant_ids)]
        )
        return _Plan(
            queries=queries,
            residual=all_of(clauses),
            not_before=first_id(filter.since) if filter.since is not None else None,
            # Exclusive, to the second: up to the last id of the second just before `until`.
            not_after=(
                last_id(filter.until - timedelta(microseconds=1))
                if filter.until is not None
                else None
            ),
        )
