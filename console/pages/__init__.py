"""The console's pages, one module each; `routes()` is the console's whole route table."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp_jinja2
from aiohttp import web

import messages
from console.access import PRIVILEGE_NAMES, access_of
from storage.privileges import Privilege

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def render(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    every_page = await page_context(request)
    return aiohttp_jinja2.render_template(
        template, request, {**every_page, **context}, status=status
    )


async def page_context(request: web.Request) -> dict[str, Any]:
    """What every page may use: the signed-in administrator (for the header and the forms'
    CSRF token), the privilege names and the status labels."""
    return {
        "request": request,
        "me": await access_of(request),
        "privilege_names": PRIVILEGE_NAMES,
        "P": Privilege,
        "status_labels": messages.STATUS_LABELS,
    }


def redirect(location: str, *, status: int = 303) -> web.Response:
    """A redirect as a plain response (so that it can carry cookies)."""
    return web.Response(status=status, headers={"Location": location})


def routes() -> list[web.AbstractRouteDef]:
    from console.pages import audit, connections, home, parents, privileges, recipes, session

    table: list[web.AbstractRouteDef] = []
    for module in (session, home, connections, parents, recipes, audit, privileges):
        table += module.ROUTES
    return table
