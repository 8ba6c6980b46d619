"""Who is asking, and may they: the session cookie, the privileges it carries, CSRF.

Every console handler is wrapped by `requires(privilege)` (or `signed_in`), which checks on the
server, for every request, that a live session exists (else: to the sign-in page), that its
administrator holds the privilege (else: a 403 page naming it), and for a POST that the form's
CSRF token is the session's own and that the request comes from this site.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from aiohttp import web

from console.parts import CONSOLE_KEY, ConsoleParts
from settings import Settings
from storage.admin_sessions import Administrator, AdminSession
from storage.privileges import OWNER_PRIVILEGES, Privilege

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ACCESS_KEY = web.RequestKey("console_access", "Access | None")
FORM_KEY = web.RequestKey("console_form", "web.MultiDictProxy[str]")

PRIVILEGE_NAMES = {
    Privilege.VIEW_CONNECTIONS: "View runtime user connections",
    Privilege.EDIT_CONNECTIONS: "Edit runtime user connections",
    Privilege.DELETE_CONNECTIONS: "Delete connections",
    Privilege.EDIT_RECIPES: "Edit recipes",
    Privilege.MANAGE_PRIVILEGES: "Manage privileges",
    Privilege.ALL_TENANTS: "All tenants",
}


class Forbidden(web.HTTPForbidden):
    """A signed-in administrator lacks a privilege (the 403 page names it)."""

    def __init__(self, needed: str) -> None:
        super().__init__()
        self.needed = needed


class BadCsrf(web.HTTPForbidden):
    """A POST without this session's CSRF token, or from another site: nothing was done."""


@dataclass(frozen=True)
class Access:
    """A live session and what its administrator may do, decided on the server."""

    session_id: str
    session: AdminSession
    privileges: frozenset[Privilege]

    @property
    def administrator(self) -> Administrator:
        return self.session.administrator

    @property
    def tenants(self) -> frozenset[str] | None:
        """The tenants whose data this administrator sees; None: every tenant."""
        if Privilege.ALL_TENANTS in self.privileges:
            return None
        return frozenset({self.administrator.tenant_id})

    def holds(self, privilege: Privilege) -> bool:
        return privilege in self.privileges

    def covers_every_tenant_of(self, settings: Settings) -> bool:
        """True when a deployment-wide change (a recipe's setting) touches only tenants this
        administrator may act for: every tenant, or a deployment serving only theirs."""
        if self.tenants is None:
            return True
        allowed = settings.allowed_tenant_ids
        return allowed == self.tenants


def cookie_names(settings: Settings) -> tuple[str, str]:
    """The session cookie and the sign-in binding cookie: `__Host-` prefixed over HTTPS."""
    prefix = "__Host-" if settings.console_over_https else ""
    return f"{prefix}rc_console", f"{prefix}rc_console_signin"


def set_cookie(
    response: web.StreamResponse, settings: Settings, name: str, value: str, *, max_age: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=settings.console_over_https,
    )


def clear_cookie(response: web.StreamResponse, settings: Settings, name: str) -> None:
    response.del_cookie(name, path="/", secure=settings.console_over_https, samesite="Lax")


def parts_of(request: web.Request) -> ConsoleParts:
    return request.config_dict[CONSOLE_KEY]


async def access_of(request: web.Request) -> Access | None:
    """The request's live session and privileges (looked up once per request), or None."""
    if ACCESS_KEY in request:
        return request[ACCESS_KEY]
    parts = parts_of(request)
    session_cookie, _ = cookie_names(parts.settings)
    session_id = request.cookies.get(session_cookie, "")
    access: Access | None = None
    if 20 <= len(session_id) <= 100:
        session = await parts.sessions.find(session_id)
        if session is not None:
            access = Access(session_id, session, await _privileges(parts, session.administrator))
    request[ACCESS_KEY] = access
    return access


async def _privileges(parts: ConsoleParts, administrator: Administrator) -> frozenset[Privilege]:
    if administrator.local_operator:
        # The one-time link is for whoever runs the bot's own command line on this machine,
        # which can already do everything.
        return frozenset(OWNER_PRIVILEGES | {Privilege.ALL_TENANTS})
    return await parts.privileges.held_by(
        tenant_id=administrator.tenant_id,
        object_id=administrator.object_id,
        groups=administrator.groups,
        roles=administrator.roles,
    )


def sign_in_redirect(request: web.Request) -> web.HTTPSeeOther:
    back = request.path_qs if request.method == "GET" else "/admin/"
    return web.HTTPSeeOther(f"/admin/signin?return_to={quote(back, safe='')}")


async def _check_post(request: web.Request, access: Access) -> web.MultiDictProxy[str]:
    """The form of a POST from this site carrying this session's CSRF token."""
    settings = parts_of(request).settings
    origin = request.headers.get("Origin")
    if origin is not None and origin != "null":
        own = urlsplit(str(settings.public_base_url))
        theirs = urlsplit(origin)
        same_as_public = (theirs.scheme, theirs.netloc) == (own.scheme, own.netloc)
        same_as_host = theirs.netloc == request.host
        if not (same_as_public or same_as_host):
            raise BadCsrf()
    form = await request.post()
    token = form.get("csrf")
    if not isinstance(token, str) or not hmac.compare_digest(
        token.encode(), access.session.csrf_token.encode()
    ):
        raise BadCsrf()
    return form  # type: ignore[return-value]


def requires(*any_of: Privilege) -> Callable[[Handler], Handler]:
    """Wrap a handler: signed in, holding one of `any_of` (none: any administrator), and for a
    POST a valid CSRF token. The handler finds the access and form with `access(request)` and
    `form(request)`."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            found = await access_of(request)
            if found is None:
                raise sign_in_redirect(request)
            if any_of and not any(found.holds(p) for p in any_of):
                raise Forbidden(" or ".join(PRIVILEGE_NAMES[p] for p in any_of))
            if request.method == "POST":
                request[FORM_KEY] = await _check_post(request, found)
            return await handler(request)

        return checked

    return wrap


def access(request: web.Request) -> Access:
    found = request.get(ACCESS_KEY)
    assert found is not None, "wrap the handler with requires()"
    return found


def form(request: web.Request) -> web.MultiDictProxy[str]:
    return request[FORM_KEY]


def must_hold(request: web.Request, privilege: Privilege) -> None:
    """For an action whose privilege depends on what is asked (Disconnect or Delete)."""
    if not access(request).holds(privilege):
        raise Forbidden(PRIVILEGE_NAMES[privilege])
