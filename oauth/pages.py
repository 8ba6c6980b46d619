"""The sign-in pages: `/auth/start`, `/auth/callback`, `/auth/done` and teams-js.

`/auth/callback` never renders the verification code itself: it keeps it in a short-lived,
HttpOnly cookie scoped to `/auth/done` and redirects there, so the authorization code and state
leave the address bar and history at once. `/auth/done` calls teams-js `notifySuccess(code)`;
when that has not closed the window after a few seconds, or teams-js could not load (outside
Teams), it shows the code for the person to type in the chat.

Every `/auth/*` response carries `Referrer-Policy: no-referrer` and `Cache-Control: no-store`;
nothing here logs query strings, codes or states.
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
</div>
<noscript><p>$instructions</p><p class="code">$code</p></noscript>"""
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
        "Content-Security-Policy": (
            f"default-src 'none'; script-src {script}; style-src {style}; base-uri 'none'; "
            "form-action 'none'"
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


def sign_in_routes(service_key: web.AppKey[SignInService]) -> list[web.RouteDef]:
    """The `/auth/*` routes, reading the sign-in service from the application."""

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
        response = web.Response(status=303, headers={"Location": "/auth/done", **_headers()})
        response.set_cookie(
            RESULT_COOKIE,
            _cookie_value(result.purpose, result.code, result.app_name),
            max_age=RESULT_LIFETIME_S,
            path="/auth/done",
            httponly=True,
            samesite="Lax",
            secure=request.app[service_key].public_base_url.startswith("https://"),
        )
        return response

    async def done(request: web.Request) -> web.StreamResponse:
        result = _read_cookie(request.cookies.get(RESULT_COOKIE))
        nonce = secrets.token_urlsafe(16)
        if result is None:
            return _page(
                status=404,
                title=messages.SIGNIN_PAGE_FAILED_TITLE,
                body=f"<p>{html.escape(messages.SIGNIN_PAGE_NO_RESULT)}</p>",
                nonce=nonce,
            )
        purpose, code, app_name = result
        if purpose == "parent":
            # An operator's sign-in is accepted at the command line, not with a code in Teams.
            return _page(
                status=200,
                title=messages.SIGNIN_PAGE_TITLE.format(app=app_name),
                body=f"<p>{html.escape(messages.SIGNIN_PAGE_PARENT)}</p>",
                nonce=nonce,
            )
        body = _DONE_BODY.substitute(
            instructions=html.escape(messages.SIGNIN_PAGE_CODE), code=html.escape(code)
        )
        scripts = _DONE_SCRIPTS.substitute(
            teams_js=TEAMS_JS_FILE,
            integrity=TEAMS_JS_INTEGRITY,
            nonce=nonce,
            fallback_ms=NOTIFY_FALLBACK_MS,
        )
        return _page(
            status=200,
            title=messages.SIGNIN_PAGE_TITLE.format(app=app_name),
            body=body,
            scripts=scripts,
            nonce=nonce,
        )

    async def teams_js(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(
            STATIC_DIR / TEAMS_JS_FILE,
            headers={
                "Content-Type": "application/javascript",
                "Cache-Control": "public, max-age=31536000, immutable",
                "Referrer-Policy": "no-referrer",
                "X-Content-Type-Options": "nosniff",
            },
        )

    return [
        web.get("/auth/start", start),
        web.get("/auth/callback", callback),
        web.get("/auth/done", done),
        web.get(f"/auth/static/{TEAMS_JS_FILE}", teams_js),
    ]
