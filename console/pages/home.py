"""The console's first page: who is signed in, what they may do, and where to go."""

from __future__ import annotations

from aiohttp import web

from console.access import access, parts_of, requires
from console.pages import render
from storage.privileges import Privilege


@requires()
async def home(request: web.Request) -> web.StreamResponse:
    me = access(request)
    counts = None
    if me.holds(Privilege.VIEW_CONNECTIONS):
        counts = await parts_of(request).search.status_counts(me.tenants)
    return await render(request, "home.html", {"counts": counts})


ROUTES = [web.get("/", home)]
