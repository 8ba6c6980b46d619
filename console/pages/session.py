"""Signing in and out: msal's authorization code flow (or the one-time link), the session
cookie, sign-out and sign-out everywhere."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

import messages
from console.access import (
    access,
    access_of,
    clear_cookie,
    cookie_names,
    parts_of,
    requires,
    set_cookie,
)
from console.pages import redirect, render
from console.parts import ConsoleParts
from console.signin import SignInFailed
from storage.admin_sessions import ABSOLUTE, Administrator

SIGNIN_COOKIE_AGE = 600


async def signin_page(request: web.Request) -> web.StreamResponse:
    parts = parts_of(request)
    return_to = request.query.get("return_to", "/admin/")
    if await access_of(request) is not None and "signed_out" not in request.query:
        raise web.HTTPSeeOther("/admin/")
    return await render(
        request,
        "signin.html",
        {
            "mode": parts.settings.console_sign_in,
            "start_url": f"/admin/signin/start?return_to={quote(return_to, safe='')}",
            "signed_out": "signed_out" in request.query,
        },
    )


async def start(request: web.Request) -> web.StreamResponse:
    parts = parts_of(request)
    if parts.settings.console_sign_in == "link":
        raise web.HTTPSeeOther("/admin/signin")
    try:
        begun = await parts.signin.start(return_to=request.query.get("return_to", "/admin/"))
    except SignInFailed as failed:
        return await _failed(request, failed)
    response = redirect(begun.url, status=302)
    _, binding_cookie = cookie_names(parts.settings)
    set_cookie(response, parts.settings, binding_cookie, begun.binding, max_age=SIGNIN_COOKIE_AGE)
    return response


async def callback(request: web.Request) -> web.StreamResponse:
    parts = parts_of(request)
    _, binding_cookie = cookie_names(parts.settings)
    try:
        administrator, return_to = await parts.signin.finish(
            query=dict(request.query), binding=request.cookies.get(binding_cookie)
        )
    except SignInFailed as failed:
        response = await _failed(request, failed)
        clear_cookie(response, parts.settings, binding_cookie)
        return response
    response = await _signed_in(request, administrator, return_to)
    clear_cookie(response, parts.settings, binding_cookie)
    return response


async def link(request: web.Request) -> web.StreamResponse:
    parts = parts_of(request)
    token = request.query.get("token", "")
    try:
        administrator = await parts.signin.redeem_link(token[:200])
    except SignInFailed as failed:
        return await _failed(request, failed)
    return await _signed_in(request, administrator, "/admin/")


async def _signed_in(
    request: web.Request, administrator: Administrator, return_to: str
) -> web.StreamResponse:
    parts = parts_of(request)
    session_id, _ = await parts.sessions.start(administrator)
    response = redirect(return_to)
    session_cookie, _ = cookie_names(parts.settings)
    set_cookie(
        response, parts.settings, session_cookie, session_id, max_age=int(ABSOLUTE.total_seconds())
    )
    return response


async def _failed(request: web.Request, failed: SignInFailed) -> web.StreamResponse:
    return await render(
        request,
        "error.html",
        {
            "status": 400,
            "title": messages.CONSOLE_TITLE_SIGNIN_FAILED,
            "detail": messages.CONSOLE_SIGNIN_FAILED.format(reason=failed.sentence),
            "retry": "/admin/signin",
        },
        status=400,
    )


@requires()
async def signout(request: web.Request) -> web.StreamResponse:
    parts = parts_of(request)
    await parts.sessions.end(access(request).session_id)
    return _signed_out(parts)


@requires()
async def signout_everywhere(request: web.Request) -> web.StreamResponse:
    parts = parts_of(request)
    administrator = access(request).administrator
    await parts.sessions.end_all(
        tenant_id=administrator.tenant_id, object_id=administrator.object_id
    )
    return _signed_out(parts)


def _signed_out(parts: ConsoleParts) -> web.StreamResponse:
    response = redirect("/admin/signin?signed_out=1")
    session_cookie, _ = cookie_names(parts.settings)
    clear_cookie(response, parts.settings, session_cookie)
    return response


ROUTES = [
    web.get("/signin", signin_page),
    web.get("/signin/start", start),
    web.get("/callback", callback),
    web.get("/link", link),
    web.post("/signout", signout),
    web.post("/signout-everywhere", signout_everywhere),
]
