"""The console's web application, mounted by app.py under /admin/.

A sub-application, so that its middleware (security headers, error pages, the loopback rule of
the one-time-link mode) applies to the console alone. Pages are Jinja2 templates with
autoescaping on; the only static file is the style sheet.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from pymongo.errors import PyMongoError

import messages
from console import pages
from console.access import ACCESS_KEY, BadCsrf, Forbidden, parts_of
from console.forms import BadInput
from settings import is_loopback_host

log = logging.getLogger(__name__)
PAGE_BUDGET_S = 4.5
HERE = Path(__file__).resolve().parent

# No scripts at all; styles only from the console's own sheet; forms only to itself.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Pages show people's data: never kept by the browser or a proxy.
    "Cache-Control": "no-store",
}


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.strftime("%-d %b %Y, %H:%M UTC")


def _day(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%-d %b %Y")


async def _error_page(
    request: web.Request, status: int, title: str, detail: str
) -> web.StreamResponse:
    return await pages.render(
        request, "error.html", {"title": title, "detail": detail, "status": status}, status=status
    )


@web.middleware
async def console_middleware(request: web.Request, handler: pages.Handler) -> web.StreamResponse:
    settings = parts_of(request).settings
    if settings.console_sign_in == "link" and not is_loopback_host(settings.host):
        # A bot reachable from elsewhere with no sign-in configured (a managed identity without
        # ADMIN_CLIENT_ID): a loopback-only link would be the one lock, so the console is off.
        response = await _error_page(
            request, 403, messages.CONSOLE_TITLE_NOT_SET_UP, messages.CONSOLE_NEEDS_SIGN_IN
        )
    elif settings.console_sign_in == "link" and not is_loopback_host(request.remote):
        response = await _error_page(
            request, 403, messages.CONSOLE_TITLE_LOOPBACK_ONLY, messages.CONSOLE_LOOPBACK_ONLY
        )
    else:
        try:
            response = await _answer(request, handler)
        except web.HTTPException as redirect:  # redirects only: _answer renders the rest
            redirect.headers.update(SECURITY_HEADERS)
            raise
    response.headers.update(SECURITY_HEADERS)
    return response


async def _answer(request: web.Request, handler: pages.Handler) -> web.StreamResponse:
    try:
        if request.method == "GET" and not request.path.endswith(".csv"):
            # A page answers within its budget whatever the store does; downloads stream for
            # as long as they take, and changes are bounded by each store operation's limit.
            async with asyncio.timeout(PAGE_BUDGET_S):
                return await handler(request)
        return await handler(request)
    except Forbidden as denied:
        return await _error_page(
            request,
            403,
            messages.CONSOLE_TITLE_FORBIDDEN,
            messages.CONSOLE_FORBIDDEN.format(privilege=denied.needed),
        )
    except BadCsrf:
        return await _error_page(
            request, 403, messages.CONSOLE_TITLE_BAD_CSRF, messages.CONSOLE_BAD_CSRF
        )
    except BadInput as bad:
        return await _error_page(request, 400, messages.CONSOLE_TITLE_BAD_INPUT, str(bad))
    except web.HTTPException as http:
        if http.status < 400:
            raise
        titles = messages.CONSOLE_HTTP_TITLES
        detail = messages.CONSOLE_NOT_FOUND if http.status == 404 else http.reason
        return await _error_page(
            request,
            http.status if http.status < 500 else 503,
            titles.get(http.status, http.reason),
            detail,
        )
    except (PyMongoError, TimeoutError) as error:
        # The header's "signed in as" needs the store too: leave it out rather than wait again.
        request[ACCESS_KEY] = request.get(ACCESS_KEY)
        log.warning(messages.LOG_CONSOLE_STORE_DOWN, type(error).__name__)
        return await _error_page(
            request, 503, messages.CONSOLE_TITLE_STORE_DOWN, messages.CONSOLE_STORE_DOWN
        )


def console_app() -> web.Application:
    """The console, to mount with `app.add_subapp("/admin/", console_app())`."""
    app = web.Application(middlewares=[console_middleware])
    environment = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["when"] = _when
    environment.filters["day"] = _day
    app.router.add_routes(pages.routes())
    app.router.add_static("/static/", HERE / "static")
    return app
