"""The sandbox OAuth2 provider served on loopback for tests, and consent without a browser.

    with run_sandbox(sandbox_config()) as sandbox:
        location = await authorize(session, sandbox.authorize_url(...), user="jane")

The server runs in a daemon thread (werkzeug, threaded), so it works from async tests on the
session event loop; counters and controls are read and set on the app object directly.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import aiohttp
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from oauth.client import TokenSet, authorization_url, exchange_code, new_code_verifier
from oauth.providers import load_registry
from sandbox import SandboxClient, SandboxConfig, SandboxState, create_app, sandbox_state

CLIENT_ID = "sandbox-client"
CLIENT_SECRET = "sandbox-secret"
REDIRECT_URI = "http://localhost:3978/auth/callback"


def sandbox_config(**overrides: Any) -> SandboxConfig:
    """One client_secret_post client (`CLIENT_ID` / `CLIENT_SECRET` / `REDIRECT_URI`)."""
    clients = overrides.pop(
        "clients",
        (SandboxClient(CLIENT_ID, CLIENT_SECRET, redirect_uris=(REDIRECT_URI,)),),
    )
    return SandboxConfig(clients=clients, **overrides)


@dataclass
class RunningSandbox:
    app: Flask
    server: BaseWSGIServer
    thread: threading.Thread
    base_url: str

    @property
    def state(self) -> SandboxState:
        return sandbox_state(self.app)

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/oauth/token"

    @property
    def revoke_url(self) -> str:
        return f"{self.base_url}/oauth/revoke"

    @property
    def userinfo_url(self) -> str:
        return f"{self.base_url}/oauth/userinfo"

    def stats(self) -> dict[str, int]:
        """Calls per endpoint and grant type so far (every call counts, failures too)."""
        return self.state.stats()

    def control(self, **changes: Any) -> dict[str, Any]:
        """Same keys as `POST /_control` (down, fail_refresh_with, reset, …)."""
        return self.state.control(**changes)

    def authorize_url(
        self,
        *,
        client_id: str = CLIENT_ID,
        redirect_uri: str | None = REDIRECT_URI,
        scope: str | None = "profile email",
        state: str | None = "xyz",
        code_challenge: str | None = None,
        code_challenge_method: str | None = "S256",
        **extra: str,
    ) -> str:
        """An authorize URL; parameters given as None are left out."""
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "code_challenge": code_challenge,
            "code_challenge_method": code_challenge_method,
            **extra,
        }
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return f"{self.base_url}/oauth/authorize?{query}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@contextmanager
def run_sandbox(
    config: SandboxConfig | None = None, *, tls: ssl.SSLContext | None = None
) -> Iterator[RunningSandbox]:
    """Serve a fresh sandbox on 127.0.0.1 (a free port) for the duration of the block, over
    HTTPS when given a server TLS context (tests/support/tls.py)."""
    app = create_app(config or sandbox_config())
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=tls)
    # A short poll interval keeps shutdown() (which waits for the loop) quick.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    scheme = "https" if tls is not None else "http"
    running = RunningSandbox(app, server, thread, f"{scheme}://127.0.0.1:{server.server_port}")
    try:
        yield running
    finally:
        running.close()


def pkce_pair() -> tuple[str, str]:
    """A fresh (code_verifier, S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class ConsentForm(HTMLParser):
    """The consent page's form: where it posts, which users and decisions it offers."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.method: str | None = None
        self.users: list[str] = []
        self.decisions: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form":
            self.action = attributes.get("action")
            self.method = (attributes.get("method") or "get").lower()
        elif tag == "input" and attributes.get("name") == "user":
            self.users.append(attributes.get("value") or "")
        elif tag == "button" and attributes.get("name") == "decision":
            self.decisions.append(attributes.get("value") or "")


class ConsentError(AssertionError):
    """The authorize endpoint answered with something other than a consent page."""


async def authorize(
    session: aiohttp.ClientSession,
    authorize_url: str,
    *,
    user: str = "alex",
    decision: str = "allow",
) -> str:
    """Open the consent page, choose `user` and press `decision`; return the redirect Location.

    When the authorize request itself is refused with a redirect (e.g. missing PKCE), that
    Location is returned without showing a page. Redirects are never followed.
    """
    async with session.get(authorize_url, allow_redirects=False) as response:
        if response.status in (301, 302, 303, 307):
            return response.headers["Location"]
        page = await response.text()
        if response.status != 200:
            raise ConsentError(f"authorize answered {response.status}: {page[:500]}")
    form = ConsentForm()
    form.feed(page)
    if form.action is None or form.method != "post":
        raise ConsentError("the consent page has no POST form")
    if decision not in form.decisions:
        raise ConsentError(f"no {decision!r} button on the consent page ({form.decisions})")
    data = {"decision": decision}
    if decision == "allow":
        if user not in form.users:
            raise ConsentError(f"user {user!r} is not offered ({form.users})")
        data["user"] = user
    target = urljoin(str(response.url), form.action)
    async with session.post(target, data=data, allow_redirects=False) as response:
        if response.status not in (302, 303):
            raise ConsentError(f"consent POST answered {response.status}: {await response.text()}")
        return response.headers["Location"]


def sandbox_for_bot(port: int) -> SandboxConfig:
    """A sandbox whose one client redirects to a bot listening on 127.0.0.1:`port`."""
    redirect = f"http://127.0.0.1:{port}/auth/callback"
    return sandbox_config(
        clients=(SandboxClient(CLIENT_ID, CLIENT_SECRET, redirect_uris=(redirect,)),)
    )


SECRET_VARIABLE = "SANDBOX_CLIENT_SECRET"


def write_apps_file(path: Path, sandbox: RunningSandbox, *, contact: str | None = None) -> Path:
    """An APPS_FILE with the sandbox as app `sandbox` and a parent `sandbox_team` of it."""
    text = (
        "[apps.sandbox]\n"
        'preset = "sandbox"\n'
        f'base_url = "{sandbox.base_url}"\n'
        f'client_id = "{CLIENT_ID}"\n'
        f'client_secret_env = "{SECRET_VARIABLE}"\n'
        "[parents.sandbox_team]\n"
        'app = "sandbox"\n'
    )
    if contact:
        text += f'contact = "{contact}"\n'
    path.write_text(text)
    return path


async def issue_tokens(apps_file: Path, redirect_uri: str, *, user: str) -> TokenSet:
    """Real tokens for a sandbox user, through consent and the code exchange (no browser)."""
    provider = load_registry(apps_file, {SECRET_VARIABLE: CLIENT_SECRET}).get("sandbox")
    assert provider is not None
    verifier = new_code_verifier()
    url = authorization_url(provider, redirect_uri=redirect_uri, state="s", code_verifier=verifier)
    async with aiohttp.ClientSession() as session:
        location = await authorize(session, url, user=user)
    code = parse_qs(urlsplit(location).query)["code"][0]
    return await exchange_code(
        provider, code=code, redirect_uri=redirect_uri, code_verifier=verifier
    )
