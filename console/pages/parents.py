"""Parent connections: each with its app, account, tenant, status, runtime connections and the
recipes that use it; Delete behind a confirmation naming the recipes that will stop."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

import messages
from connections.service import ChangeResult, tenant_of
from console import forms
from console.access import access, form, parts_of, requires
from console.pages import render
from console.parts import ConsoleParts
from storage.models import Actor, Connection, ConnectionKind
from storage.privileges import Privilege


@dataclass(frozen=True)
class ParentRow:
    id: str
    name: str
    app: str
    account: str
    tenant_id: str
    status_label: str
    authorized: bool
    runtime_connections: int | None
    recipes: list[str]


def recipes_using(parts: ConsoleParts, parent: Connection) -> list[str]:
    return sorted(recipe.name for recipe in parts.book if recipe.parent == parent.name)


async def _rows(parts: ConsoleParts, tenants: frozenset[str] | None) -> list[ParentRow]:
    parents = [
        parent
        for parent in await parts.connections.list_all(kind=ConnectionKind.PARENT)
        if tenants is None or tenant_of(parent) in tenants
    ]
    counts = await parts.search.runtime_counts_by_parent([parent.id for parent in parents])
    return [
        ParentRow(
            id=parent.id,
            name=parent.name or "",
            app=parts.app_name(parent.provider),
            account=parent.account_label,
            tenant_id=tenant_of(parent),
            status_label=messages.STATUS_LABELS.get(parent.status.value, parent.status.value),
            authorized=parent.tokens is not None,
            runtime_connections=None if counts is None else counts.get(parent.id, 0),
            recipes=recipes_using(parts, parent),
        )
        for parent in parents
    ]


@requires(Privilege.VIEW_CONNECTIONS)
async def list_page(request: web.Request) -> web.StreamResponse:
    parts = parts_of(request)
    me = access(request)
    return await render(
        request,
        "parents.html",
        {
            "rows": await _rows(parts, me.tenants),
            "can_delete": me.holds(Privilege.DELETE_CONNECTIONS),
        },
    )


async def _parent(request: web.Request) -> Connection:
    parts = parts_of(request)
    parent_id = forms.object_id(form(request), "id")
    parent = await parts.connections.find_for_administrator(
        parent_id, tenants=access(request).tenants, kind=ConnectionKind.PARENT
    )
    if parent is None:
        raise web.HTTPNotFound()
    return parent


@requires(Privilege.DELETE_CONNECTIONS)
async def confirm(request: web.Request) -> web.StreamResponse:
    parts = parts_of(request)
    parent = await _parent(request)
    counts = await parts.search.runtime_counts_by_parent([parent.id])
    children = None if counts is None else counts.get(parent.id, 0)
    return await render(
        request,
        "parent_confirm.html",
        {
            "parent": parent,
            "app": parts.app_name(parent.provider),
            "recipes": recipes_using(parts, parent),
            "children": children,
        },
    )


@requires(Privilege.DELETE_CONNECTIONS)
async def delete(request: web.Request) -> web.StreamResponse:
    parts = parts_of(request)
    me = access(request)
    parent_id = forms.object_id(form(request), "id")
    if not parent_id:
        raise web.HTTPNotFound()
    actor = Actor.administrator(
        tenant_id=me.administrator.tenant_id,
        object_id=me.administrator.object_id,
        name=me.administrator.name,
    )
    result, parent = await parts.connections.delete_as_administrator(
        actor, parent_id, tenants=me.tenants, kind=ConnectionKind.PARENT
    )
    if result is ChangeResult.DONE and parent is not None:
        outcome = messages.CONSOLE_PARENT_DELETED.format(
            name=parent.name or parent.account_label,
            recipes=", ".join(recipes_using(parts, parent)) or messages.CONSOLE_NO_RECIPES,
        )
    else:
        outcome = messages.CONSOLE_ALREADY_GONE
    return await render(
        request, "done.html", {"action": "delete", "outcomes": [outcome], "back": "/admin/parents"}
    )


ROUTES = [
    web.get("/parents", list_page),
    web.post("/parents/confirm", confirm),
    web.post("/parents/delete", delete),
]
