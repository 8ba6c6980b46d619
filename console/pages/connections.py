"""Runtime user connections: the list (filters in the URL, cursor pages, counts, CSV) and the
Disconnect / Delete actions, each behind a confirmation page that says what will happen."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import urlencode

from aiohttp import web

import messages
from connections.service import ChangeResult, tenant_of
from console import forms
from console.access import access, form, must_hold, parts_of, requires
from console.csv_export import stream_csv
from console.pages import redirect, render
from console.parts import ConsoleParts
from storage.connection_search import ConnectionFilter, InvalidCursor
from storage.models import Actor, Connection, ConnectionKind, ConnectionStatus
from storage.privileges import Privilege

PAGE_SIZE = 50
# One confirmation changes at most this many connections (a person's offboarding is far
# fewer); a larger filtered set is done in several rounds.
MOST_AT_ONCE = 500
STATUS_CHOICES = {status.value: messages.STATUS_LABELS[status.value] for status in ConnectionStatus}
ACTIONS = {"disconnect": Privilege.EDIT_CONNECTIONS, "delete": Privilege.DELETE_CONNECTIONS}
FILTER_FIELDS = ("status", "app", "parent", "person", "unused_days")


@dataclass(frozen=True)
class Row:
    """One line of the list: never tokens."""

    id: str
    person: str
    person_id: str
    tenant_id: str
    # Where the person signed in: "Teams" or "Slack".
    surface: str
    app: str
    parent: str
    account: str
    status: str
    status_label: str
    # The last error in plain words ("" when none), its code and when: kept after a new
    # sign-in, so that the row tells what last went wrong.
    last_error: str
    last_error_code: str
    last_error_at: datetime | None
    connected_at: datetime
    last_used_at: datetime | None
    last_refreshed_at: datetime | None


@dataclass(frozen=True)
class Filters:
    status: str
    app: str
    parent: str
    person: str
    unused_days: int | None

    @classmethod
    def read(cls, values: Mapping[str, str]) -> Filters:
        return cls(
            status=forms.choice(values, "status", STATUS_CHOICES, messages.CONSOLE_BAD_STATUS),
            app=forms.app_key(values, "app"),
            parent=forms.object_id(values, "parent"),
            person=forms.text(values, "person", limit=100),
            unused_days=forms.number(values, "unused_days", low=1, high=3650),
        )

    def query(self, tenants: frozenset[str] | None) -> ConnectionFilter:
        return ConnectionFilter(
            tenant_ids=tenants,
            status=ConnectionStatus(self.status) if self.status else None,
            provider=self.app or None,
            parent_id=self.parent or None,
            person=self.person,
            unused_days=self.unused_days,
        )

    def as_query(self) -> dict[str, str]:
        values = {name: getattr(self, name) for name in FILTER_FIELDS}
        return {name: str(value) for name, value in values.items() if value not in ("", None)}

    def url(self, path: str, **extra: str) -> str:
        query = {**self.as_query(), **extra}
        return f"{path}?{urlencode(query)}" if query else path

    @property
    def active(self) -> bool:
        return bool(self.as_query())


async def parent_names(parts: ConsoleParts, tenants: frozenset[str] | None) -> dict[str, str]:
    """Parent ids to "Name (Box)" for the administrator's tenants."""
    names: dict[str, str] = {}
    for parent in await parts.connections.list_all(kind=ConnectionKind.PARENT):
        if tenants is None or tenant_of(parent) in tenants:
            app = parts.app_name(parent.provider)
            names[parent.id] = f"{parent.name or parent.account_label} ({app})"
    return names


def error_words(code: str) -> str:
    """A last error's code in plain words where it is known, else the code itself."""
    words = messages.LAST_ERROR_WORDS.get(code)
    if words is None:
        return messages.LAST_ERROR_UNKNOWN.format(code=code[:64])
    return messages.LAST_ERROR_KNOWN.format(words=words, code=code)


def surface_of(tenant_id: str) -> str:
    """The chat a connection's person uses: Slack people's tenants are `slack:<id>`."""
    return messages.SURFACE_SLACK if tenant_id.startswith("slack:") else messages.SURFACE_TEAMS


def row_of(connection: Connection, parts: ConsoleParts, parents: Mapping[str, str]) -> Row:
    error = connection.last_error
    return Row(
        id=connection.id,
        person=connection.owner.name or connection.owner.aad_object_id,
        person_id=connection.owner.aad_object_id,
        tenant_id=connection.owner.tenant_id,
        surface=surface_of(connection.owner.tenant_id),
        app=parts.app_name(connection.provider),
        parent=parents.get(connection.parent_id or "", messages.CONSOLE_PARENT_GONE),
        account=connection.account_label,
        status=connection.status.value,
        status_label=messages.STATUS_LABELS.get(connection.status.value, connection.status.value),
        last_error=error_words(error.code) if error else "",
        last_error_code=error.code if error else "",
        last_error_at=error.at if error else None,
        connected_at=connection.created_at,
        last_used_at=connection.last_used_at,
        last_refreshed_at=connection.last_refreshed_at,
    )


@requires(Privilege.VIEW_CONNECTIONS)
async def list_page(request: web.Request) -> web.StreamResponse:
    parts = parts_of(request)
    me = access(request)
    filters = Filters.read(request.query)
    before = forms.text(request.query, "before", limit=40)
    try:
        page = await parts.search.page(
            filters.query(me.tenants), before=before or None, limit=PAGE_SIZE
        )
    except InvalidCursor:
        raise forms.BadInput(
            messages.CONSOLE_BAD_FIELD.format(field="before", problem=messages.CONSOLE_BAD_CURSOR)
        ) from None
    parents = await parent_names(parts, me.tenants)
    counts = await parts.search.status_counts(me.tenants)
    return await render(
        request,
        "connections.html",
        {
            "rows": [row_of(c, parts, parents) for c in page.connections],
            "filters": filters,
            "statuses": STATUS_CHOICES,
            "apps": {key: parts.app_name(key) for key in parts.app_keys},
            "parents": parents,
            "counts": counts,
            "first_page": not before,
            "older_url": filters.url("/admin/connections", before=page.next_cursor)
            if page.next_cursor
            else None,
            "newest_url": filters.url("/admin/connections"),
            "csv_url": filters.url("/admin/connections.csv"),
            "status_urls": {
                status: replace(filters, status=status).url("/admin/connections")
                for status in STATUS_CHOICES
            },
            "can_disconnect": me.holds(Privilege.EDIT_CONNECTIONS),
            "can_delete": me.holds(Privilege.DELETE_CONNECTIONS),
        },
    )


CSV_COLUMNS = (
    "id",
    "person",
    "person_id",
    "tenant_id",
    "surface",
    "app",
    "parent",
    "account",
    "status",
    "last_error",
    "last_error_code",
    "last_error_at",
    "connected_at",
    "last_used_at",
    "last_refreshed_at",
)


@requires(Privilege.VIEW_CONNECTIONS)
async def csv_export(request: web.Request) -> web.StreamResponse:
    parts = parts_of(request)
    me = access(request)
    filters = Filters.read(request.query)
    parents = await parent_names(parts, me.tenants)

    async def rows() -> AsyncIterator[list[object]]:
        async for connection in parts.search.iterate(filters.query(me.tenants)):
            row = row_of(connection, parts, parents)
            yield [getattr(row, column) for column in CSV_COLUMNS]

    return await stream_csv(request, "runtime-user-connections.csv", CSV_COLUMNS, rows())


async def _targets(request: web.Request, values: Mapping[str, str]) -> list[Connection]:
    """The connections a bulk form names: chosen ones, or every one matching its filters."""
    parts = parts_of(request)
    me = access(request)
    posted = form(request)
    if posted.get("scope") == "filtered":
        filters = Filters.read(values)
        chosen: list[Connection] = []
        async for connection in parts.search.iterate(filters.query(me.tenants)):
            if len(chosen) == MOST_AT_ONCE:
                raise forms.BadInput(messages.CONSOLE_TOO_MANY.format(limit=MOST_AT_ONCE))
            chosen.append(connection)
        return chosen
    ids = forms.ids(posted.getall("id", []), "id", limit=MOST_AT_ONCE)
    found: list[Connection] = []
    for connection_id in ids:
        connection = await parts.connections.find_for_administrator(
            connection_id, tenants=me.tenants, kind=ConnectionKind.RUNTIME
        )
        if connection is not None:
            found.append(connection)
    return found


def _action(values: Mapping[str, str]) -> str:
    action = forms.text(values, "action")
    if action not in ACTIONS:
        raise forms.BadInput(
            messages.CONSOLE_BAD_FIELD.format(field="action", problem=messages.CONSOLE_BAD_ACTION)
        )
    return action


@requires(Privilege.EDIT_CONNECTIONS, Privilege.DELETE_CONNECTIONS)
async def confirm(request: web.Request) -> web.StreamResponse:
    parts = parts_of(request)
    posted = form(request)
    action = _action(posted)
    must_hold(request, ACTIONS[action])
    targets = await _targets(request, posted)
    if not targets:
        raise forms.BadInput(messages.CONSOLE_NOTHING_CHOSEN)
    parents = await parent_names(parts, access(request).tenants)
    template = (
        messages.CONSOLE_WILL_DISCONNECT if action == "disconnect" else messages.CONSOLE_WILL_DELETE
    )
    lines = [
        (c.id, template.format(person=row.person, app=row.app, account=row.account))
        for c in targets
        for row in [row_of(c, parts, parents)]
    ]
    return await render(
        request,
        "confirm.html",
        {
            "action": action,
            "lines": lines,
            "back": forms.console_path(posted, "back", default="/admin/connections"),
        },
    )


@requires(Privilege.EDIT_CONNECTIONS, Privilege.DELETE_CONNECTIONS)
async def apply(request: web.Request) -> web.StreamResponse:
    parts = parts_of(request)
    me = access(request)
    posted = form(request)
    action = _action(posted)
    must_hold(request, ACTIONS[action])
    ids = forms.ids(posted.getall("id", []), "id", limit=MOST_AT_ONCE)
    if not ids:
        raise forms.BadInput(messages.CONSOLE_NOTHING_CHOSEN)
    actor = Actor.administrator(
        tenant_id=me.administrator.tenant_id,
        object_id=me.administrator.object_id,
        name=me.administrator.name,
    )
    parents = await parent_names(parts, me.tenants)
    outcomes: list[str] = []
    for connection_id in ids:
        if action == "disconnect":
            result, connection = await parts.connections.disconnect_as_administrator(
                actor, connection_id, tenants=me.tenants
            )
        else:
            result, connection = await parts.connections.delete_as_administrator(
                actor, connection_id, tenants=me.tenants
            )
        outcomes.append(_outcome(action, result, connection, parts, parents))
    return await render(
        request, "done.html", {"action": action, "outcomes": outcomes, "back": "/admin/connections"}
    )


def _outcome(
    action: str,
    result: ChangeResult,
    connection: Connection | None,
    parts: ConsoleParts,
    parents: Mapping[str, str],
) -> str:
    if connection is None or result is ChangeResult.NOT_FOUND:
        return messages.CONSOLE_ALREADY_GONE
    row = row_of(connection, parts, parents)
    label = messages.CONNECTION_LABEL.format(app=row.app, account=row.account)
    if result is ChangeResult.NO_CHANGE:
        return messages.CONSOLE_NO_CHANGE.format(person=row.person, label=label)
    done = messages.CONSOLE_DISCONNECTED if action == "disconnect" else messages.CONSOLE_DELETED
    return done.format(person=row.person, label=label)


async def _to_list(request: web.Request) -> web.StreamResponse:
    return redirect("/admin/connections")


ROUTES = [
    web.get("/connections", list_page),
    web.get("/connections.csv", csv_export),
    web.post("/connections/confirm", confirm),
    web.post("/connections/apply", apply),
    web.get("/connections/confirm", _to_list),
    web.get("/connections/apply", _to_list),
]
