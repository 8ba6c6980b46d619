"""The sign-in pages: `/auth/start`, `/auth/callback`, `/auth/done` and teams-js.

`/auth/callback` never renders the verification code itself: it keeps it in a short-lived,
HttpOnly cookie scoped to `/auth/done` and redirects there, so the authorization code and state
leave the address bar and history at once. `/auth/done` calls teams-js `notifySuccess(code)`;
when that has not closed the window after a few seconds, or teams-js could not load (outside
Teams), it shows the code for the person to type in the chat.

The code is shown once. The page that shows it also expires the result cookie and sets a second
cookie, `signin_shown=1` (nothing secret; same path, lifetime and flags), so a reload says the
code was already shown instead of "nothing to finish here". The code is in that first page's
DOM, where its script reads it for `notifySuccess`: Teams' authentication window and the Agents
Playground popup load the page once, so they are unaffected. A new sign-in sets a new result
cookie, which is shown (once) whatever the marker says. An operator's page (a parent
connection, accepted at the command line) holds no code and can be shown again.

This is enforced by the browser, not the server: the cookie holds the code (HttpOnly, `Path=
/auth/done`, `SameSite=Lax`, ten minutes), so someone who copies the cookie value and sends it
again sees the code again. Only the owner's browser ever has it, and the code is worth nothing
to anyone else: it completes a sign-in only when sent by the person who started it. A
server-side once-only would keep the code sealed on the pending sign-in, put a random id in the
cookie, and mark the record shown with a conditional update on the first view.

Every `/auth/*` response, unknown paths and methods included, carries `Referrer-Policy:
no-referrer`, `Cache-Control: no-store`, `X-Frame-Options: DENY` and a CSP with
`frame-ancestors 'none'` (no page here can be framed to trick someone into reading out the
code); nothing here logs query strings, codes or states.
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import secrets
from pathlib import Path
from string import Template

from aiohttp import web

import messages
from oauth.signin import CallbackFailure, SignInError, SignInService

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
TEAMS_JS_FILE = "MicrosoftTeams-2.58.0.min.js"
RESULT_COOKIE = "signin_result"
SHOWN_COOKIE = "signin_shown"
SHOWN = "1"
DONE_PATH = "/auth/done"
RESULT_LIFETIME_S = 600
NOTIFY_FALLBACK_MS = 3000


def _teams_js_integrity() -> str:
    digest = hashlib.sha384((STATIC_DIR / TEAMS_JS_FILE).read_bytes()).digest()
    return "sha384-" + base64.b64encode(digest).decode()


TEAMS_JS_INTEGRITY = _teams_js_integrity()

_PAGE = Template(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style nonce="$nonce">
body{font-family:"Segoe UI",system-ui,sans-serif;margin:3rem auto;max-width:32rem;color:#242424;
padding:0 1rem}
h1{font-size:1.4rem}.code{font-size:2.4rem;letter-spacing:.4rem;font-weight:600;margin:1rem 0}
</style></head>
<body><main>
<h1>$title</h1>
$body
</main>
$scripts
</body></html>
"""
)

_DONE_BODY = Template(
    """<div id="fallback" hidden>
<p>$instructions</p>
<p class="code" id="code">$code</p>
<p>$private</p>
</div>
<noscript><p>$instructions</p><p class="code">$code</p><p>$private</p></noscript>"""
)

_DONE_SCRIPTS = Template(
    """<script src="/auth/static/$teams_js" integrity="$integrity" crossorigin="anonymous"
 nonce="$nonce"></script>
<script nonce="$nonce">
(function () {
  var code = document.getElementById("code").textContent;
  var shown = false;
  function showCode() {
    if (!shown) { shown = true; document.getElementById("fallback").hidden = false; }
  }
  setTimeout(showCode, $fallback_ms);
  if (!window.microsoftTeams) { showCode(); return; }
  try {
    microsoftTeams.app.initialize().then(function () {
      microsoftTeams.authentication.notifySuccess(code);
    }, showCode);
  } catch (error) { showCode(); }
})();
</script>"""
)


def _headers(nonce: str | None = None) -> dict[str, str]:
    script = f"'self' 'nonce-{nonce}'" if nonce else "'none'"
    style = f"'nonce-{nonce}'" if nonce else "'none'"
    return {
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        # Never inside a frame: frame-ancestors for current browsers, X-Frame-Options for old.
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": (
            f"default-src 'none'; script-src {script}; style-src {style}; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'"
        ),
    }


def _page(*, status: int, title: str, body: str, scripts: str = "", nonce: str) -> web.Response:
    text = _PAGE.substitute(title=html.escape(title), body=body, scripts=scripts, nonce=nonce)
    return web.Response(status=status, text=text, content_type="text/html", headers=_headers(nonce))


def failure_page(failure: CallbackFailure) -> web.Response:
    nonce = secrets.token_urlsafe(16)
    return _page(
        status=failure.status,
        title=messages.SIGNIN_PAGE_FAILED_TITLE,
        body=f"<p>{html.escape(failure.message)}</p><!-- reason: {failure.value} -->",
        nonce=nonce,
    )


def _result_page(purpose: str, code: str, app_name: str) -> web.Response:
    """The page for a sign-in result: the code to type, or for an operator, where to go."""
    title = messages.SIGNIN_PAGE_TITLE.format(app=app_name)
    if purpose == "parent":
        # An operator's sign-in is accepted at the command line, not with a code in Teams.
        return _message_page(status=200, title=title, text=messages.SIGNIN_PAGE_PARENT)
    nonce = secrets.token_urlsafe(16)
    body = _DONE_BODY.substitute(
        instructions=html.escape(messages.SIGNIN_PAGE_CODE),
        code=html.escape(code),
        private=html.escape(messages.SIGNIN_PAGE_CODE_PRIVATE),
    )
    scripts = _DONE_SCRIPTS.substitute(
        teams_js=TEAMS_JS_FILE,
        integrity=TEAMS_JS_INTEGRITY,
        nonce=nonce,
        fallback_ms=NOTIFY_FALLBACK_MS,
    )
    return _page(status=200, title=title, body=body, scripts=scripts, nonce=nonce)


def _not_shown(marker: str | None) -> web.Response:
    """No result to show: already shown on this browser (a reload), or never here at all."""
    if marker == SHOWN:
        return _message_page(
            status=410,
            title=messages.SIGNIN_PAGE_SHOWN_TITLE,
            text=messages.SIGNIN_PAGE_ALREADY_SHOWN,
        )
    return _message_page(
        status=404, title=messages.SIGNIN_PAGE_FAILED_TITLE, text=messages.SIGNIN_PAGE_NO_RESULT
    )


def _cookie_value(purpose: str, code: str, app_name: str) -> str:
    return base64.urlsafe_b64encode(f"{purpose}\n{code}\n{app_name}".encode()).decode()


def _read_cookie(value: str | None) -> tuple[str, str, str] | None:
    if not value:
        return None
    try:
        decoded = base64.urlsafe_b64decode(value.encode()).decode()
        purpose, code, app_name = decoded.split("\n", 2)
    except (ValueError, UnicodeDecodeError):
        return None
    if purpose not in ("runtime", "parent") or not (len(code) == 6 and code.isdigit()):
        return None
    return purpose, code, app_name


def _message_page(*, status: int, title: str, text: str) -> web.Response:
    return _page(
        status=status,
        title=title,
        body=f"<p>{html.escape(text)}</p>",
        nonce=secrets.token_urlsafe(16),
    )


def _done_cookie(response: web.Response, name: str, value: str | None, *, secure: bool) -> None:
    """Set (or with None, expire) one of the cookies `/auth/done` reads, always alike."""
    if value is None:
        response.del_cookie(name, path=DONE_PATH, secure=secure, httponly=True, samesite="Lax")
        return
    response.set_cookie(
        name,
        value,
        max_age=RESULT_LIFETIME_S,
        path=DONE_PATH,
        secure=secure,
        httponly=True,
        samesite="Lax",
    )


def sign_in_routes(service_key: web.AppKey[SignInService]) -> list[web.RouteDef]:
    """The `/auth/*` routes, reading the sign-in service from the application."""

    def secure(request: web.Request) -> bool:
        return request.app[service_key].public_base_url.startswith("https://")

    async def start(request: web.Request) -> web.StreamResponse:
        try:
            target = await request.app[service_key].authorize_redirect(request.query.get("state"))
        except SignInError as error:
            log.info(messages.LOG_SIGNIN_FAILED, error.failure.value)
            return failure_page(error.failure)
        return web.Response(status=302, headers={"Location": target, **_headers()})

    async def callback(request: web.Request) -> web.StreamResponse:
        query = request.query
        try:
            result = await request.app[service_key].complete_callback(
                state=query.get("state"), code=query.get("code"), error=query.get("error")
            )
        except SignInError as error:
            log.info(messages.LOG_SIGNIN_FAILED, error.failure.value)
            return failure_page(error.failure)
        response = web.Response(status=303, headers={"Location": DONE_PATH, **_headers()})
        _done_cookie(
            response,
            RESULT_COOKIE,
            _cookie_value(result.purpose, result.code, result.app_name),
            secure=secure(request),
        )
        return response

    async def done(request: web.Request) -> web.StreamResponse:
        result = _read_cookie(request.cookies.get(RESULT_COOKIE))
        if result is None:
            response = _not_shown(request.cookies.get(SHOWN_COOKIE))
        else:
            response = _result_page(*result)
            if result[0] == "parent":
                # No code on an operator's page: it can be shown again, unchanged.
                return response
            # Shown once: this page carries the code; a reload gets "already shown".
            _done_cookie(response, SHOWN_COOKIE, SHOWN, secure=secure(request))
        if RESULT_COOKIE in request.cookies:
            _done_cookie(response, RESULT_COOKIE, None, secure=secure(request))
        return response

    async def teams_js(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(
            STATIC_DIR / TEAMS_JS_FILE,
            headers={
                "Content-Type": "application/javascript",
                "Cache-Control": "public, max-age=31536000, immutable",
                "Referrer-Policy": "no-referrer",
                "X-Content-Type-Options": "nosniff",
                "X-Frame-Options": "DENY",
                "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
            },
        )

    routes = [
        web.get("/auth/start", start),
        web.get("/auth/callback", callback),
        web.get(DONE_PATH, done),
        web.get(f"/auth/static/{TEAMS_JS_FILE}", teams_js),
    ]
    known = {route.path for route in routes}

    async def elsewhere(request: web.Request) -> web.StreamResponse:
        # Anything else under /auth/ gets the same headers as the pages, not aiohttp's defaults.
        wrong_method = request.path in known
        response = _message_page(
            status=405 if wrong_method else 404,
            title=messages.SIGNIN_PAGE_FAILED_TITLE,
            text=messages.SIGNIN_PAGE_NOT_FOUND,
        )
        if wrong_method:
            response.headers["Allow"] = "GET, HEAD"
        return response

    # Last, so it only answers what the routes above do not.
    return [*routes, web.route("*", "/auth/{rest:.*}", elsewhere)]
