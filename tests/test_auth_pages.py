"""The sign-in pages over real HTTP: never framed, and the verification code shown only once.

The bot runs as the real application on loopback with the sandbox provider; a browser is an
aiohttp session with a cookie jar that keeps cookies for 127.0.0.1, as browsers do.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

import messages
from cards import verbs
from oauth.pages import RESULT_COOKIE, SHOWN_COOKIE, TEAMS_JS_FILE
from storage.models import ConnectionStatus, ProviderAccount
from tests.conftest import RunningBot, StartBot
from tests.support import activities
from tests.support.activities import JANE
from tests.support.data import ADMIN, owner
from tests.support.sandbox import RunningSandbox, authorize

CODE = re.compile(r'id="code">(\d{6})<')


@dataclass
class World:
    bot: RunningBot
    session: aiohttp.ClientSession
    base_url: str

    async def login_card_url(self) -> str:
        """Reconnect Jane's disconnected connection; the Login card's button URL."""
        self.bot.connector.clear()
        [connection] = await self.bot.database.connections.list_for_owner(owner=owner(JANE))
        status, _ = await self.bot.post(
            activities.card_action(
                JANE, self.bot.service_url, verbs.RECONNECT, {"connection_id": connection.id}
            )
        )
        assert status == 200
        [sent] = [s for s in self.bot.connector.sent if s.activity.get("attachments")]
        return str(sent.activity["attachments"][0]["content"]["buttons"][0]["value"])

    async def through_callback(self) -> tuple[aiohttp.ClientResponse, aiohttp.ClientResponse]:
        """Login card → /auth/start → consent → /auth/callback; both bot responses."""
        async with self.session.get(await self.login_card_url(), allow_redirects=False) as start:
            await start.read()
        callback_url = await authorize(self.session, start.headers["Location"], user="jane")
        async with self.session.get(callback_url, allow_redirects=False) as callback:
            await callback.read()
        assert callback.status == 303, callback.status
        return start, callback

    async def done(self, *, cookies: dict[str, str] | None = None) -> tuple[int, str, dict]:
        """GET /auth/done with the browser's cookie jar, or with exactly `cookies` when given."""
        url = f"{self.base_url}/auth/done"
        if cookies is None:
            async with self.session.get(url) as response:
                return response.status, await response.text(), _set_cookies(response)
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}
        async with (
            aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as other,
            other.get(url, headers=headers) as response,
        ):
            return response.status, await response.text(), _set_cookies(response)

    def jar_cookie(self, name: str) -> str | None:
        jar = self.session.cookie_jar
        found = jar.filter_cookies(URL(f"{self.base_url}/auth/done")).get(name)
        return found.value if found is not None else None


def _set_cookies(response: aiohttp.ClientResponse) -> dict:
    parsed: SimpleCookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):
        parsed.load(header)
    return {name: parsed[name] for name in parsed}


@pytest.fixture
async def world(
    start_bot: StartBot, sandbox: RunningSandbox, apps_file: Path, bot_port: int
) -> AsyncIterator[World]:
    base_url = f"http://127.0.0.1:{bot_port}"
    bot = await start_bot(port=bot_port, apps_file=str(apps_file), public_base_url=base_url)
    parent = await bot.database.connections.create_parent(
        provider="sandbox",
        owner=ADMIN,
        account=ProviderAccount(id="user-omar", display_name="omar@sandbox.example"),
    )
    await bot.database.connections.create_runtime(
        parent_id=parent.id,
        owner=owner(JANE),
        account=ProviderAccount(id="old", display_name="old@sandbox.example"),
        status=ConnectionStatus.DISCONNECTED,
    )
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield World(bot, session, base_url)


def _assert_never_framed(response: aiohttp.ClientResponse, where: str) -> None:
    assert response.headers.get("X-Frame-Options") == "DENY", where
    policy = response.headers.get("Content-Security-Policy", "")
    directives = [directive.strip() for directive in policy.split(";")]
    assert "frame-ancestors 'none'" in directives, (where, policy)


async def test_no_auth_response_can_be_framed(world: World) -> None:
    """Every /auth/* response (start, callback, the done page in each state, failure pages,
    teams-js, unknown paths and methods) forbids framing: `X-Frame-Options: DENY` and a CSP with
    `frame-ancestors 'none'`, next to the no-referrer and no-store headers."""
    start, callback = await world.through_callback()
    _assert_never_framed(start, "start (302)")
    _assert_never_framed(callback, "callback (303)")
    checked = 2
    for expected in (200, 410):  # the code, then "already shown"
        async with world.session.get(f"{world.base_url}/auth/done") as response:
            assert response.status == expected
            _assert_never_framed(response, f"done ({expected})")
            assert response.headers["Referrer-Policy"] == "no-referrer"
            assert response.headers["Cache-Control"] == "no-store"
            checked += 1
    elsewhere = [
        ("GET", "/auth/start?state=forged", 400),
        ("GET", "/auth/start", 400),
        ("GET", "/auth/callback?state=forged&code=x", 400),
        ("GET", "/auth/callback?error=access_denied", 400),
        ("GET", f"/auth/static/{TEAMS_JS_FILE}", 200),
        ("GET", "/auth/nothing-here", 404),
        ("POST", "/auth/done", 405),
        ("GET", "/auth/", 404),
    ]
    async with aiohttp.ClientSession() as stranger:
        async with stranger.get(f"{world.base_url}/auth/done") as response:
            assert response.status == 404
            _assert_never_framed(response, "done without a sign-in (404)")
        for method, path, status in elsewhere:
            async with stranger.request(
                method, f"{world.base_url}{path}", allow_redirects=False
            ) as response:
                assert response.status == status, (path, response.status)
                _assert_never_framed(response, f"{method} {path}")
                assert response.headers["Referrer-Policy"] == "no-referrer"
                checked += 1
    assert checked == 4 + len(elsewhere)


async def test_done_page_shows_the_code_once(world: World) -> None:
    """The first view of /auth/done shows the code and expires the result cookie (same path);
    a reload says the code was already shown, where to look and how to start again, and shows
    no code; without any sign-in the page still says there is nothing to finish."""
    await world.through_callback()
    assert world.jar_cookie(RESULT_COOKIE) is not None

    status, page, set_cookies = await world.done()
    assert status == 200
    code = CODE.search(page)
    assert code is not None, page
    cleared = set_cookies[RESULT_COOKIE]
    assert cleared.value == "" and cleared["max-age"] == "0" and cleared["path"] == "/auth/done"
    marker = set_cookies[SHOWN_COOKIE]
    assert marker.value == "1" and marker["path"] == "/auth/done" and marker["httponly"]
    assert world.jar_cookie(RESULT_COOKIE) is None

    status, page, _ = await world.done()
    assert status == 410
    assert html.escape(messages.SIGNIN_PAGE_ALREADY_SHOWN) in page
    assert code[1] not in page and CODE.search(page) is None
    assert "notifySuccess" not in page

    status, page, _ = await world.done(cookies={})
    assert status == 404
    assert html.escape(messages.SIGNIN_PAGE_NO_RESULT) in page


async def test_the_shown_code_still_completes_the_sign_in(world: World) -> None:
    """Clearing the cookie on the first view changes nothing for the code on that page: the
    page still hands it to teams-js `notifySuccess`, and sent back it connects the account."""
    await world.through_callback()
    _, page, _ = await world.done()
    code = CODE.search(page)
    assert code is not None
    assert "microsoftTeams.authentication.notifySuccess(code)" in page
    assert world.jar_cookie(RESULT_COOKIE) is None

    world.bot.connector.clear()
    status, _ = await world.bot.post(
        activities.invoke(JANE, world.bot.service_url, "signin/verifyState", {"state": code[1]})
    )
    assert status == 200
    assert [s.text for s in world.bot.connector.sent] == [
        "Your Sandbox account jane@sandbox.example is connected."
    ]


async def test_a_new_sign_in_shows_its_new_code(world: World) -> None:
    """The "already shown" marker never hides a newer result: a second sign-in in the same
    browser shows its own code, once."""
    await world.through_callback()
    _, first, _ = await world.done()
    await world.through_callback()
    status, second, _ = await world.done()
    assert status == 200
    first_code, second_code = CODE.search(first), CODE.search(second)
    assert first_code is not None and second_code is not None
    status, _, _ = await world.done()
    assert status == 410


async def test_replayed_result_cookie_is_the_owners_copy(world: World) -> None:
    """Once-only is kept by the browser: a copy of the HttpOnly result cookie sent again by hand
    shows the code again (only its owner has it, and the code completes a sign-in only for the
    person who started it), and that response expires the cookie again and forbids framing."""
    await world.through_callback()
    original = world.jar_cookie(RESULT_COOKIE)
    assert original is not None
    _, page, _ = await world.done()
    code = CODE.search(page)
    assert code is not None

    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as other,
        other.get(
            f"{world.base_url}/auth/done", headers={"Cookie": f"{RESULT_COOKIE}={original}"}
        ) as response,
    ):
        replayed = await response.text()
        _assert_never_framed(response, "replayed done")
        set_cookies = _set_cookies(response)
    assert code[0] in replayed
    assert set_cookies[RESULT_COOKIE]["max-age"] == "0"
    assert set_cookies[SHOWN_COOKIE].value == "1"


async def test_code_page_says_where_to_type_it_and_never_to_share_it(world: World) -> None:
    """Next to the code, the page says to type it only in the person's own chat with the bot and
    never to give it to anyone; the same words show when scripts are off."""
    await world.through_callback()
    _, page, _ = await world.done()
    private = html.escape(messages.SIGNIN_PAGE_CODE_PRIVATE)
    assert "only in your own chat with the bot" in messages.SIGNIN_PAGE_CODE_PRIVATE
    assert "never give it to anyone" in messages.SIGNIN_PAGE_CODE_PRIVATE
    fallback = page.split('<div id="fallback" hidden>', 1)[1].split("</div>", 1)[0]
    noscript = page.split("<noscript>", 1)[1].split("</noscript>", 1)[0]
    for part in (fallback, noscript):
        assert private in part
        assert html.escape(messages.SIGNIN_PAGE_CODE) in part
