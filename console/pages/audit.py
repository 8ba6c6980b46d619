"""The audit log: newest first, filterable by person, connection, action, administrator and
date, in cursor pages, and as CSV."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from aiohttp import web

import messages
from console import forms
from console.access import access, parts_of, requires
from console.csv_export import stream_csv
from console.pages import render
from storage.audit_search import AuditFilter, InvalidCursor
from storage.models import AuditEvent
from storage.privileges import Privilege

PAGE_SIZE = 50
FILTER_FIELDS = ("person", "connection", "action", "administrator", "since", "until")


@dataclass(frozen=True)
class AuditFilters:
    person: str
    connection: str
    action: str
    administrator: str
    since: datetime | None
    until: datetime | None

    @classmethod
    def read(cls, values: Mapping[str, str], actions: list[str]) -> AuditFilters:
        return cls(
            person=forms.text(values, "person", limit=100),
            connection=forms.object_id(values, "connection"),
            action=forms.choice(
                values, "action", {a: a for a in actions}, messages.CONSOLE_BAD_AUDIT_ACTION
            ),
            administrator=forms.text(values, "administrator", limit=100),
            since=forms.date(values, "since"),
            until=forms.date(values, "until"),
        )

    def query(self, tenants: frozenset[str] | None) -> AuditFilter:
        return AuditFilter(
            tenant_ids=tenants,
            person=self.person,
            connection_id=self.connection,
            action=self.action,
            administrator=self.administrator,
            since=self.since,
            # A date means the whole of that day.
            until=self.until + timedelta(days=1) if self.until else None,
        )

    def as_query(self) -> dict[str, str]:
        query: dict[str, str] = {}
        for name in FILTER_FIELDS:
            value = getattr(self, name)
            if isinstance(value, datetime):
                query[name] = value.strftime("%Y-%m-%d")
            elif value:
                query[name] = value
        return query

    def url(self, path: str, **extra: str) -> str:
        query = {**self.as_query(), **extra}
        return f"{path}?{urlencode(query)}" if query else path


def describe(event: AuditEvent, app_name: Callable[[str], str]) -> dict[str, str]:
    """What a line of the audit page (and the CSV) shows of an event."""
    actor = event.actor
    who = actor.name or actor.aad_object_id or actor.kind
    owner = event.owner
    details = ", ".join(
        f"{key}={value}" for key, value in sorted(event.details.items()) if key != "tenant_id"
    )
    return {
        "id": event.id,
        "at": event.at.isoformat(),
        "action": event.action,
        "actor_kind": actor.kind,
        "actor": who,
        "actor_id": actor.aad_object_id,
        "person": (owner.name or owner.aad_object_id) if owner else "",
        "person_id": owner.aad_object_id if owner else "",
        "tenant_id": event.tenant_id,
        "connection_id": event.connection_id or "",
        "app": app_name(event.provider) if event.provider else "",
        "account": event.account or "",
        "details": details,
    }


def _filters(request: web.Request) -> AuditFilters:
    return AuditFilters.read(request.query, parts_of(request).audit_search.actions())


@requires(Privilege.VIEW_CONNECTIONS)
async def list_page(request: web.Request) -> web.StreamResponse:
    parts = parts_of(request)
    filters = _filters(request)
    before = forms.text(request.query, "before", limit=40)
    try:
        page = await parts.audit_search.page(
            filters.query(access(request).tenants), before=before or None, limit=PAGE_SIZE
        )
    except InvalidCursor:
        raise forms.BadInput(
            messages.CONSOLE_BAD_FIELD.format(field="before", problem=messages.CONSOLE_BAD_CURSOR)
        ) from None
    return await render(
        request,
        "audit.html",
        {
            "events": [(event, describe(event, parts.app_name)) for event in page.events],
            "filters": filters,
            "actions": parts.audit_search.actions(),
            "first_page": not before,
            "older_url": filters.url("/admin/audit", before=page.next_cursor)
            if page.next_cursor
            else None,
            "newest_url": filters.url("/admin/audit"),
            "csv_url": filters.url("/admin/audit.csv"),
        },
    )


CSV_COLUMNS = (
    "at",
    "action",
    "actor_kind",
    "actor",
    "actor_id",
    "person",
    "person_id",
    "tenant_id",
    "connection_id",
    "app",
    "account",
    "details",
    "id",
)


@requires(Privilege.VIEW_CONNECTIONS)
async def csv_export(request: web.Request) -> web.StreamResponse:
    filters = _filters(request)
    parts = parts_of(request)
    events = parts.audit_search.iterate(filters.query(access(request).tenants))

    async def rows() -> AsyncIterator[list[str]]:
        async for event in events:
            line = describe(event, parts.app_name)
            yield [line[column] for column in CSV_COLUMNS]

    return await stream_csv(request, "audit-log.csv", CSV_COLUMNS, rows())


ROUTES = [
    web.get("/audit", list_page),
    web.get("/audit.csv", csv_export),
]
