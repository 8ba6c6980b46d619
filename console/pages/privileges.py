"""Privileges: who in the administrator's tenant may view, edit, delete, edit recipes and
manage privileges; grant and revoke (all tenants can be granted only at the command line)."""

from __future__ import annotations

from aiohttp import web

import messages
from console import forms
from console.access import PRIVILEGE_NAMES, access, form, parts_of, requires
from console.forms import BadInput
from console.pages import redirect, render
from storage.models import Actor
from storage.outbox import drain
from storage.privileges import OWNER_PRIVILEGES, PrincipalKind, Privilege, grant_id

KINDS = {kind.value: kind.value for kind in PrincipalKind}
GRANTABLE = [p for p in Privilege if p in OWNER_PRIVILEGES]


def _tenant(request: web.Request) -> str:
    """The tenant whose grants are shown and changed: the administrator's own (an operator on
    this machine, who belongs to none, names one)."""
    administrator = access(request).administrator
    if not administrator.local_operator:
        return administrator.tenant_id
    values = form(request) if request.method == "POST" else request.query
    return forms.text(values, "tenant", limit=100)


@requires(Privilege.MANAGE_PRIVILEGES)
async def list_page(request: web.Request) -> web.StreamResponse:
    parts = parts_of(request)
    tenant = _tenant(request)
    grants = await parts.privileges.list(tenant_id=tenant) if tenant else []
    return await render(
        request,
        "privileges.html",
        {
            "tenant": tenant,
            "choose_tenant": access(request).administrator.local_operator,
            "grants": grants,
            "grantable": GRANTABLE,
            "kinds": KINDS,
        },
    )


def _actor(request: web.Request) -> Actor:
    administrator = access(request).administrator
    return Actor.administrator(
        tenant_id=administrator.tenant_id,
        object_id=administrator.object_id,
        name=administrator.name,
    )


def _principal(request: web.Request) -> tuple[str, PrincipalKind, str]:
    posted = form(request)
    tenant = _tenant(request)
    kind = forms.choice(posted, "kind", KINDS, messages.CONSOLE_BAD_PRINCIPAL_KIND)
    principal = forms.text(posted, "principal", limit=200)
    if not tenant or not kind or not principal:
        raise BadInput(messages.CONSOLE_PRINCIPAL_REQUIRED)
    return tenant, PrincipalKind(kind), principal


def _chosen(request: web.Request) -> list[Privilege]:
    chosen: list[Privilege] = []
    for value in form(request).getall("privilege", []):
        try:
            privilege = Privilege(value)
        except ValueError:
            raise BadInput(messages.CONSOLE_BAD_PRIVILEGE) from None
        if privilege not in GRANTABLE:
            raise BadInput(messages.CONSOLE_BAD_PRIVILEGE)
        chosen.append(privilege)
    return chosen


def _back(tenant: str, request: web.Request) -> str:
    if access(request).administrator.local_operator:
        return f"/admin/privileges?tenant={tenant}"
    return "/admin/privileges"


@requires(Privilege.MANAGE_PRIVILEGES)
async def grant(request: web.Request) -> web.StreamResponse:
    parts = parts_of(request)
    tenant, kind, principal = _principal(request)
    chosen = _chosen(request)
    if not chosen:
        raise BadInput(messages.CONSOLE_PRIVILEGE_NONE_CHOSEN)
    await parts.privileges.grant(
        tenant_id=tenant,
        kind=kind,
        principal=principal,
        privileges=chosen,
        actor=_actor(request),
        name=forms.text(form(request), "name", limit=200),
    )
    await drain(parts.privileges.collection, grant_id(tenant, kind, principal), parts.audit)
    return redirect(_back(tenant, request))


@requires(Privilege.MANAGE_PRIVILEGES)
async def revoke(request: web.Request) -> web.StreamResponse:
    parts = parts_of(request)
    tenant, kind, principal = _principal(request)
    chosen = _chosen(request)
    await parts.privileges.revoke(
        tenant_id=tenant,
        kind=kind,
        principal=principal,
        privileges=chosen or None,
        actor=_actor(request),
    )
    await drain(parts.privileges.collection, grant_id(tenant, kind, principal), parts.audit)
    return redirect(_back(tenant, request))


ROUTES = [
    web.get("/privileges", list_page),
    web.post("/privileges/grant", grant),
    web.post("/privileges/revoke", revoke),
]

__all__ = ["PRIVILEGE_NAMES", "ROUTES"]
