"""The Slack surface over real HTTP: signed requests to the bot's own /slack/* routes, Bolt for
Python in the bot, and a loopback Slack Web API speaking Slack's wire format
(tests/support/slack_api.py). The same store, services, sign-in and sandbox provider as Teams.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import html
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
from bson import ObjectId

from app import WIRING_KEY
from slack import blocks
from slack.identity import slack_owner, slack_tenant
from slack.surface import DEFAULT_SCOPES, EVENTS, EVENTS_PATH, INSTALL_PATH, REDIRECT_PATH
from storage.crypto import TokenCipher
from storage.models import Connection, ConnectionStatus, ProviderAccount
from tests.conftest import TEST_TOKEN_KEY, RunningBot, StartBot
from tests.support.data import ADMIN
from tests.support.sandbox import RunningSandbox, authorize, issue_tokens
from tests.support.slack_api import Installed, SlackApi

REPO = Path(__file__).resolve().parents[1]
SIGNING_SECRET = "test-signing-secret"
TEAM = "T0FAKE001"
JANE = "U0JANE0001"
OMAR = "U0OMAR0001"
CHANNEL = "C0GENERAL1"
RECIPES = """
[recipes.sandbox_opportunity]
name = "Sandbox opportunity"
phrase = "sandbox opportunity {name} {amount:number}"
parent = "sandbox_team"
verify_user_access = true
description = "Create an opportunity in the sandbox app"
[recipes.sandbox_opportunity.action]
method = "POST"
url = "{connection.api_base_url}/api/opportunities"
body = { name = "{name}", amount = "{amount}" }
[recipes.sandbox_opportunity.result]
verb = "Created"
fields = { Id = "id", "Created by" = "created_by.email" }
"""


def signature(body: str, timestamp: str, secret: str = SIGNING_SECRET) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass
class SlackWorld:
    bot: RunningBot
    slack: SlackApi
    sandbox: RunningSandbox
    installed: Installed
    parent: Connection
    cipher: TokenCipher
    base_url: str
    _events: int = 0

    @property
    def database(self) -> Any:
        return self.bot.database

    async def send(
        self,
        body: str,
        *,
        content_type: str,
        timestamp: str | None = None,
        secret: str = SIGNING_SECRET,
        headers: dict[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        stamp = timestamp or str(int(time.time()))
        sent = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": signature(body, stamp, secret),
            **(headers or {}),
        }
        response = await self.bot.client.post(EVENTS_PATH, data=body.encode(), headers=sent)
        await response.read()
        return response

    def event_body(self, event: dict[str, Any], *, event_id: str | None = None) -> str:
        self._events += 1
        return json.dumps(
            {
                "token": "unused",
                "team_id": TEAM,
                "api_app_id": self.slack.app_id,
                "type": "event_callback",
                "event_id": event_id or f"Ev{self._events:08d}",
                "event_time": int(time.time()),
                "event": event,
                "authorizations": [
                    {
                        "enterprise_id": None,
                        "team_id": TEAM,
                        "user_id": self.installed.bot_user_id,
                        "is_bot": True,
                        "is_enterprise_install": False,
                    }
                ],
            }
        )

    async def event(
        self, event: dict[str, Any], *, event_id: str | None = None, **options: Any
    ) -> aiohttp.ClientResponse:
        body = self.event_body(event, event_id=event_id)
        return await self.send(body, content_type="application/json", **options)

    async def dm(self, user: str, text: str, **options: Any) -> aiohttp.ClientResponse:
        channel = self.slack.dm_channel(user)
        event = {
            "type": "message",
            "channel_type": "im",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": f"{time.time():.6f}",
            "team": TEAM,
        }
        return await self.event(event, **options)

    async def mention(self, user: str, text: str) -> aiohttp.ClientResponse:
        event = {
            "type": "app_mention",
            "channel": CHANNEL,
            "user": user,
            "text": f"<@{self.installed.bot_user_id}> {text}",
            "ts": f"{time.time():.6f}",
            "team": TEAM,
        }
        return await self.event(event)

    async def press(
        self, user: str, message: Any, action_id: str, value: str | None = None
    ) -> aiohttp.ClientResponse:
        """Press a button of a message the bot posted (as Slack sends a block_actions)."""
        where = {
            "container": {
                "type": "message",
                "message_ts": message.ts,
                "channel_id": message.channel,
                "is_ephemeral": False,
            },
            "channel": {"id": message.channel, "name": "directmessage"},
            "message": {"ts": message.ts, "text": message.text, "blocks": message.blocks},
        }
        return await self._block_actions(user, message.blocks, action_id, value, where)

    async def press_in_home(
        self, user: str, home: dict[str, Any], action_id: str, value: str | None = None
    ) -> aiohttp.ClientResponse:
        """Press a button of the App Home tab the bot published for `user`."""
        where = {
            "container": {"type": "view", "view_id": "VHOME"},
            "view": {"id": "VHOME", "type": "home", "blocks": home["blocks"]},
        }
        return await self._block_actions(user, home["blocks"], action_id, value, where)

    async def _block_actions(
        self,
        user: str,
        shown: list[dict[str, Any]],
        action_id: str,
        value: str | None,
        where: dict[str, Any],
    ) -> aiohttp.ClientResponse:
        element, block_id = find_button(shown, action_id, value)
        payload = {
            "type": "block_actions",
            "user": {"id": user, "team_id": TEAM, "name": user.lower()},
            "api_app_id": self.slack.app_id,
            "token": "unused",
            "team": {"id": TEAM, "domain": "fake"},
            "enterprise": None,
            "is_enterprise_install": False,
            **where,
            "trigger_id": "1.2.3",
            "response_url": "http://127.0.0.1:9/never-used",
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": block_id,
                    "type": "button",
                    "value": element.get("value"),
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        body = urlencode({"payload": json.dumps(payload)})
        return await self.send(body, content_type="application/x-www-form-urlencoded")

    async def next_post(self, channel: str, seen: int) -> Any:
        """The first message posted to `channel` after `seen` of them (bounded wait)."""
        await self.slack.wait_for(
            lambda call: (
                call.method == "chat.postMessage" and len(self.slack.posted_to(channel)) > seen
            )
        )
        return self.slack.posted_to(channel)[seen]

    async def updated(self, message: Any, edits: int) -> Any:
        await self.slack.wait_for(
            lambda call: call.method == "chat.update" and current(self.slack, message).edits > edits
        )
        return current(self.slack, message)

    async def connection_for(self, user: str, account: str, **options: Any) -> Connection:
        tokens = await issue_tokens(
            self.bot.settings.apps_file, f"{self.base_url}/auth/callback", user="jane"
        )
        options.setdefault("parent_id", self.parent.id)
        return await self.database.connections.create_runtime(
            owner=slack_owner(enterprise_id=None, team_id=TEAM, user_id=user),
            account=ProviderAccount(id=f"user-{account}", display_name=account),
            tokens=self.cipher.seal(tokens.as_record()),
            **options,
        )


def current(slack: SlackApi, message: Any) -> Any:
    return next(m for m in slack.messages if m.channel == message.channel and m.ts == message.ts)


def find_button(
    shown: list[dict[str, Any]], action_id: str, value: str | None
) -> tuple[dict[str, Any], str]:
    for block in shown:
        for element in [*(block.get("elements") or []), block.get("accessory") or {}]:
            if element.get("action_id") == action_id and (
                value is None or element.get("value") == value
            ):
                return element, str(block.get("block_id") or "")
    raise AssertionError(f"no {action_id} button with value {value!r}")


def texts(shown: list[dict[str, Any]]) -> str:
    return json.dumps(shown, ensure_ascii=False)


@pytest.fixture
async def slack_api() -> AsyncIterator[SlackApi]:
    fake = SlackApi()
    await fake.start()
    yield fake
    await fake.close()


async def start_slack_bot(
    start_bot: StartBot, slack_api: SlackApi, apps_file: Path, bot_port: int, tmp_path: Path
) -> RunningBot:
    recipes = tmp_path / "recipes.toml"
    recipes.write_text(RECIPES)
    return await start_bot(
        port=bot_port,
        apps_file=str(apps_file),
        recipes_file=str(recipes),
        public_base_url=f"http://127.0.0.1:{bot_port}",
        slack_signing_secret=SIGNING_SECRET,
        slack_client_id=slack_api.client_id,
        slack_client_secret=slack_api.client_secret,
        slack_api_url=slack_api.base_url,
    )


async def install_state(bot: RunningBot) -> tuple[str, dict[str, str]]:
    """The state in the Add to Slack link of /slack/install (Bolt's install page), and the
    browser's cookie that goes with it (Bolt marks it Secure: a browser on the https address
    sends it back; this client on loopback http is told to)."""
    response = await bot.client.get(INSTALL_PATH, allow_redirects=False)
    page = await response.text()
    assert response.status == 200, page
    link = re.search(r'href="([^"]*state=[^"]*)"', page)
    assert link is not None, page
    query = parse_qs(urlsplit(html.unescape(link.group(1))).query)
    assert query["client_id"] == [bot.settings.slack_client_id]
    cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in response.cookies.items())
    return query["state"][0], {"Cookie": cookie}


async def install_through_oauth(bot: RunningBot, slack_api: SlackApi) -> Installed:
    """The real OAuth v2 install: /slack/install, Slack's consent (the fake's code), then
    /slack/oauth_redirect, where Bolt checks the state and stores the installation."""
    state, cookie = await install_state(bot)
    code = slack_api.issue_code(team_id=TEAM, user_id=JANE)
    response = await bot.client.get(
        REDIRECT_PATH,
        params={"code": code, "state": state},
        headers=cookie,
        allow_redirects=False,
    )
    assert response.status == 200, await response.text()
    [exchange] = slack_api.of("oauth.v2.access")
    assert exchange.ok
    token = exchange.answer["access_token"]
    bot_user = exchange.answer["bot_user_id"]
    return Installed(
        team_id=TEAM,
        team_name="Fake Workspace",
        enterprise_id=None,
        enterprise_name=None,
        is_enterprise_install=False,
        bot_token=token,
        bot_user_id=bot_user,
        bot_id="",
        bot_scope=exchange.answer.get("scope", ""),
        user_id=JANE,
    )


@pytest.fixture
async def world(
    start_bot: StartBot,
    slack_api: SlackApi,
    sandbox: RunningSandbox,
    apps_file: Path,
    bot_port: int,
    tmp_path: Path,
) -> SlackWorld:
    bot = await start_slack_bot(start_bot, slack_api, apps_file, bot_port, tmp_path)
    installed = await install_through_oauth(bot, slack_api)
    base_url = f"http://127.0.0.1:{bot_port}"
    cipher = TokenCipher([TEST_TOKEN_KEY])
    tokens = await issue_tokens(bot.settings.apps_file, f"{base_url}/auth/callback", user="omar")
    parent = await bot.database.connections.create_parent(
        provider="sandbox",
        owner=ADMIN,
        account=ProviderAccount(id="user-omar", display_name="omar@sandbox.example"),
        tokens=cipher.seal(tokens.as_record()),
        api_base_url=sandbox.base_url,
        name="sandbox_team",
        tenant_id=slack_tenant(enterprise_id=None, team_id=TEAM),
    )
    slack_api.clear()
    return SlackWorld(bot, slack_api, sandbox, installed, parent, cipher, base_url)


# --- requests Slack did not sign ----------------------------------------------------------------


async def test_unsigned_forged_or_stale_requests_are_refused(world: SlackWorld) -> None:
    body = world.event_body(
        {"type": "message", "channel_type": "im", "channel": "D1", "user": JANE, "text": "help"}
    )
    wrong = await world.send(body, content_type="application/json", secret="not-the-secret")
    stale = await world.send(
        body, content_type="application/json", timestamp=str(int(time.time()) - 3600)
    )
    bare = await world.bot.client.post(
        EVENTS_PATH, data=body, headers={"Content-Type": "application/json"}
    )
    assert (wrong.status, stale.status, bare.status) == (401, 401, 401)
    # A signed one goes through, so the three above were refused for their signature alone.
    assert (await world.dm(JANE, "help")).status == 200
    await world.next_post(world.slack.dm_channel(JANE), 0)
    assert world.slack.calls["chat.postMessage"] == 1


async def test_without_slack_settings_nothing_slack_is_served(start_bot: StartBot) -> None:
    bot = await start_bot()
    response = await bot.client.post(EVENTS_PATH, data="{}")
    assert response.status == 404
    assert bot.client.server.app[WIRING_KEY].slack is None


# --- installation -------------------------------------------------------------------------------


async def test_install_stores_the_workspace_with_its_token_encrypted(world: SlackWorld) -> None:
    stores = world.bot.client.server.app[WIRING_KEY].slack.installations
    bot = await stores.async_find_bot(enterprise_id=None, team_id=TEAM)
    assert bot is not None and bot.bot_token == world.installed.bot_token
    raw = [d async for d in world.database.db["slack_bots"].find({})]
    raw += [d async for d in world.database.db["slack_installations"].find({})]
    assert raw and world.installed.bot_token not in repr(raw)


async def test_an_install_state_is_single_use(
    start_bot: StartBot,
    slack_api: SlackApi,
    apps_file: Path,
    bot_port: int,
    tmp_path: Path,
) -> None:
    bot = await start_slack_bot(start_bot, slack_api, apps_file, bot_port, tmp_path)
    state, cookie = await install_state(bot)
    first = slack_api.issue_code(team_id=TEAM, user_id=JANE)
    ok = await bot.client.get(REDIRECT_PATH, params={"code": first, "state": state}, headers=cookie)
    assert ok.status == 200
    again = slack_api.issue_code(team_id="T0OTHER001", user_id=OMAR)
    replay = await bot.client.get(
        REDIRECT_PATH, params={"code": again, "state": state}, headers=cookie
    )
    assert replay.status >= 400
    assert len(slack_api.of("oauth.v2.access")) == 1  # the replayed code was never exchanged


async def test_uninstall_deletes_the_installation(world: SlackWorld) -> None:
    assert (await world.event({"type": "app_uninstalled"})).status == 200
    stores = world.bot.client.server.app[WIRING_KEY].slack.installations

    async def gone() -> bool:
        return await stores.async_find_bot(enterprise_id=None, team_id=TEAM) is None

    from tests.support.waiting import eventually

    await eventually(gone)
    assert await world.database.db["slack_bots"].count_documents({}) == 0


# --- commands -------------------------------------------------------------------------------------


async def test_connections_in_a_dm_lists_only_the_persons_own(world: SlackWorld) -> None:
    await world.connection_for(JANE, "jane@sandbox.example")
    await world.connection_for(OMAR, "omar-own@sandbox.example")
    channel = world.slack.dm_channel(JANE)
    for command in ("connections", "  Personal_Connections "):
        seen = len(world.slack.posted_to(channel))
        await world.dm(JANE, command)
        listed = await world.next_post(channel, seen)
        shown = texts(listed.blocks)
        assert "jane@sandbox.example" in shown and "omar-own" not in shown
        assert blocks.DISCONNECT in listed.action_ids() and blocks.DELETE in listed.action_ids()


async def test_help_offers_personal_accounts_which_opens_the_list(world: SlackWorld) -> None:
    await world.connection_for(JANE, "jane@sandbox.example")
    channel = world.slack.dm_channel(JANE)
    await world.dm(JANE, "help")
    shown = await world.next_post(channel, 0)
    assert blocks.SHOW_CONNECTIONS in shown.action_ids()
    assert "sandbox opportunity" in texts(shown.blocks)
    await world.press(JANE, shown, blocks.SHOW_CONNECTIONS)
    listed = await world.updated(shown, 0)
    assert "jane@sandbox.example" in texts(listed.blocks)


async def test_a_mention_in_a_channel_answers_only_that_person(world: SlackWorld) -> None:
    await world.connection_for(JANE, "jane@sandbox.example")
    await world.mention(JANE, "connections")
    listed = await world.next_post(world.slack.dm_channel(JANE), 0)
    assert "jane@sandbox.example" in texts(listed.blocks)
    await world.slack.wait_for(lambda call: call.method == "chat.postEphemeral")
    [notice] = world.slack.ephemeral_to(JANE, CHANNEL)
    assert "direct message" in notice.text
    # Nothing anyone else can see or press was posted in the channel.
    assert [m for m in world.slack.posted_to(CHANNEL) if not m.ephemeral] == []


async def test_a_retried_event_is_answered_once(world: SlackWorld) -> None:
    channel = world.slack.dm_channel(JANE)
    await world.dm(JANE, "help", event_id="EvRETRY0001")
    await world.next_post(channel, 0)
    retried = await world.dm(
        JANE, "help", event_id="EvRETRY0001", headers={"X-Slack-Retry-Num": "1"}
    )
    assert retried.status == 200
    await world.dm(JANE, "connections")  # a later event, answered after the retry
    await world.next_post(channel, 1)
    assert len(world.slack.posted_to(channel)) == 2


# --- the list's buttons ---------------------------------------------------------------------------


async def test_disconnect_then_delete_update_the_message_and_are_audited_once(
    world: SlackWorld,
) -> None:
    connection = await world.connection_for(JANE, "jane@sandbox.example")
    channel = world.slack.dm_channel(JANE)
    await world.dm(JANE, "connections")
    listed = await world.next_post(channel, 0)

    pressed = copy.deepcopy(listed)  # the message as the person saw it when pressing
    await world.press(JANE, listed, blocks.DISCONNECT, connection.id)
    after = copy.deepcopy(await world.updated(listed, 0))
    assert "Disconnected" in texts(after.blocks)
    stored = await world.database.connections.get(connection.id)
    assert stored is not None and stored.status is ConnectionStatus.DISCONNECTED
    # A double click (Slack retries, a second press) changes nothing more.
    await world.press(JANE, pressed, blocks.DISCONNECT, connection.id)
    await world.updated(listed, 1)

    await world.press(JANE, after, blocks.DELETE, connection.id)
    await world.updated(listed, 2)
    assert await world.database.connections.get(connection.id) is None

    from tests.support.waiting import audited

    await audited(world.database)
    actions = [e.action for e in await world.database.audit.for_connection(connection.id)]
    assert actions.count("connection.disconnected") == 1
    assert actions.count("connection.deleted") == 1
    event = next(
        e
        for e in await world.database.audit.for_connection(connection.id)
        if e.action == "connection.disconnected"
    )
    assert event.actor.aad_object_id == f"slack:{JANE}"


async def test_a_button_pressed_by_someone_else_never_touches_the_owners_connection(
    world: SlackWorld,
) -> None:
    """Omar presses Disconnect on a message listing Jane's connection (forwarded, or a forged
    payload): the service only ever acts on the presser's own records."""
    connection = await world.connection_for(JANE, "jane@sandbox.example")
    channel = world.slack.dm_channel(JANE)
    await world.dm(JANE, "connections")
    listed = await world.next_post(channel, 0)
    await world.press(OMAR, listed, blocks.DISCONNECT, connection.id)
    await world.updated(listed, 0)
    stored = await world.database.connections.get(connection.id)
    assert stored is not None and stored.status is ConnectionStatus.CONNECTED


async def test_app_home_shows_the_persons_connections(world: SlackWorld) -> None:
    await world.connection_for(JANE, "jane@sandbox.example")
    await world.event({"type": "app_home_opened", "user": JANE, "tab": "home", "channel": "D1"})
    await world.slack.wait_for(lambda call: call.method == "views.publish")
    home = world.slack.home_of(JANE)
    assert home is not None and home["type"] == "home"
    assert "jane@sandbox.example" in json.dumps(home)


async def test_a_press_in_app_home_changes_the_tab_and_says_what_it_did(
    world: SlackWorld,
) -> None:
    """Disconnect pressed in the App Home tab: the tab is published again with the change and
    its result line, and the press posts no message anywhere."""
    connection = await world.connection_for(JANE, "jane@sandbox.example")
    await world.event({"type": "app_home_opened", "user": JANE, "tab": "home", "channel": "D1"})
    await world.slack.wait_for(lambda call: call.method == "views.publish")
    home = world.slack.home_of(JANE)
    assert home is not None
    published = len(world.slack.of("views.publish"))
    response = await world.press_in_home(JANE, home, blocks.DISCONNECT, connection.id)
    assert response.status == 200
    await world.slack.wait_for(
        lambda call: (
            call.method == "views.publish" and len(world.slack.of("views.publish")) > published
        )
    )
    after = json.dumps(world.slack.home_of(JANE))
    assert re.search(r"Disconnected [^\"]*\(jane@sandbox\.example\)\.", after), after
    stored = await world.database.connections.get(connection.id)
    assert stored is not None and stored.status is ConnectionStatus.DISCONNECTED
    assert world.slack.of("chat.postMessage") == world.slack.of("chat.update") == []


# --- sign-in during a recipe run -----------------------------------------------------------


async def test_a_recipe_asks_for_sign_in_then_resumes_once_as_the_person(
    world: SlackWorld,
) -> None:
    channel = world.slack.dm_channel(JANE)
    await world.dm(JANE, 'sandbox opportunity "Slack deal" 42')
    await world.slack.wait_for(
        lambda call: call.method == "chat.postMessage" and "signin_open" in json.dumps(call.params)
    )
    login = next(m for m in world.slack.posted_to(channel) if blocks.SIGNIN_OPEN in m.action_ids())
    button, _ = find_button(login.blocks, blocks.SIGNIN_OPEN, None)
    url = button["url"]
    assert url.startswith(f"{world.base_url}/auth/start?state=")
    assert world.sandbox.state.opportunities == []

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(url, allow_redirects=False) as response:
            provider_url = response.headers["Location"]
        callback = await authorize(browser, provider_url, user="jane")
        async with browser.get(callback, allow_redirects=False) as response:
            assert response.status == 303
        async with browser.get(f"{world.base_url}/auth/done") as response:
            page = await response.text()
    code = re.search(r'id="code">(\d{6})<', page).group(1)  # type: ignore[union-attr]

    # Someone else typing the code binds nothing (a forwarded link).
    seen_omar = len(world.slack.posted_to(world.slack.dm_channel(OMAR)))
    await world.dm(OMAR, code)
    await world.next_post(world.slack.dm_channel(OMAR), seen_omar)
    assert (
        await world.database.connections.list_for_owner(
            owner=slack_owner(enterprise_id=None, team_id=TEAM, user_id=OMAR)
        )
        == []
    )

    seen = len(world.slack.posted_to(channel))
    await world.dm(JANE, code)
    connected = await world.next_post(channel, seen)
    assert "is connected" in connected.text

    async def created() -> bool:
        return any(o["name"] == "Slack deal" for o in world.sandbox.state.opportunities)

    from tests.support.waiting import eventually

    await eventually(created)
    made = [o for o in world.sandbox.state.opportunities if o["name"] == "Slack deal"]
    assert [o["created_by"]["email"] for o in made] == ["jane@sandbox.example"]
    # The result is posted where the run was asked for, once.
    result = await world.next_post(channel, seen + 1)
    assert "Created" in result.text + texts(result.blocks)
    assert "jane@sandbox.example" in texts(result.blocks)
    [connection] = await world.database.connections.list_for_owner(
        owner=slack_owner(enterprise_id=None, team_id=TEAM, user_id=JANE)
    )
    assert connection.parent_id == world.parent.id
    assert connection.reach is not None and connection.reach["surface"] == "slack"
    runs = await world.database.recipe_runs.for_recipe("sandbox_opportunity")
    assert len(runs) == 1
    results = [m for m in world.slack.posted_to(channel) if "Created" in m.text]
    assert len(results) == 1


async def test_a_slack_person_is_never_a_teams_owner(world: SlackWorld) -> None:
    connection = await world.connection_for(JANE, "jane@sandbox.example")
    document = await world.database.db["connections"].find_one({"_id": ObjectId(connection.id)})
    assert document is not None
    assert document["owner"]["tenant_id"] == f"slack:{TEAM}"
    assert document["owner"]["aad_object_id"] == f"slack:{JANE}"


# --- the manifest ---------------------------------------------------------------------------------


def test_the_slack_manifest_matches_what_the_code_registers() -> None:
    manifest = json.loads((REPO / "manifest" / "slack-app.json").read_text())
    assert tuple(manifest["oauth_config"]["scopes"]["bot"]) == DEFAULT_SCOPES
    settings = manifest["settings"]
    assert tuple(sorted(settings["event_subscriptions"]["bot_events"])) == tuple(sorted(EVENTS))
    events_url = urlsplit(settings["event_subscriptions"]["request_url"]).path
    assert events_url == EVENTS_PATH
    assert urlsplit(settings["interactivity"]["request_url"]).path == EVENTS_PATH
    [redirect] = manifest["oauth_config"]["redirect_urls"]
    assert urlsplit(redirect).path == REDIRECT_PATH
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True


# --- breaks, revoked tokens, the console ------------------------------------------------------


async def test_a_broken_slack_connection_is_told_once_in_the_dm(world: SlackWorld) -> None:
    reach = {"surface": "slack", "enterprise_id": None, "team_id": TEAM, "user": JANE}
    connection = await world.connection_for(JANE, "jane@sandbox.example", reach=reach)
    tokens = world.bot.client.server.app[WIRING_KEY].tokens
    assert await tokens.mark_broken(connection.id, "invalid_grant")
    assert not await tokens.mark_broken(connection.id, "invalid_grant")  # the same break
    notice = await world.next_post(world.slack.dm_channel(JANE), 0)
    shown = texts(notice.blocks)
    assert "jane@sandbox.example" in shown and "no longer accepts" in shown
    assert blocks.RECONNECT in notice.action_ids()
    await world.press(JANE, notice, blocks.RECONNECT, connection.id)
    await world.slack.wait_for(
        lambda call: call.method == "chat.postMessage" and "signin_open" in json.dumps(call.params)
    )
    notices = [
        m for m in world.slack.posted_to(world.slack.dm_channel(JANE)) if "attention" in m.text
    ]
    assert len(notices) == 1


async def test_revoked_tokens_remove_what_they_must(world: SlackWorld) -> None:
    event = {"type": "tokens_revoked", "tokens": {"oauth": [JANE], "bot": ["UBOT"]}}
    assert (await world.event(event)).status == 200
    stores = world.bot.client.server.app[WIRING_KEY].slack.installations

    async def gone() -> bool:
        return await stores.async_find_bot(enterprise_id=None, team_id=TEAM) is None

    from tests.support.waiting import eventually

    await eventually(gone)


def test_the_console_names_each_connections_surface() -> None:
    from console.pages.connections import surface_of

    assert surface_of(slack_tenant(enterprise_id=None, team_id=TEAM)) == "Slack"
    assert surface_of(slack_tenant(enterprise_id="E0ORG", team_id=TEAM)) == "Slack"
    assert surface_of("72f988bf-86f1-41af-91ab-2d7cd011db47") == "Teams"


async def test_paging_and_reconnect_from_the_list(world: SlackWorld) -> None:
    """Twelve connections: Next shows the second page in place; Reconnect on a signed-out one
    sends the Login message in the DM and says so on the list."""
    connections = []
    for i in range(12):
        parent = await world.database.connections.create_parent(
            provider="sandbox",
            owner=ADMIN,
            account=ProviderAccount(id=f"team-{i}", display_name=f"team{i}@sandbox.example"),
            tenant_id=slack_tenant(enterprise_id=None, team_id=TEAM),
        )
        connections.append(
            await world.connection_for(JANE, f"jane{i:02d}@sandbox.example", parent_id=parent.id)
        )
    signed_out = connections[-1]
    await world.database.connections.disconnect_for_owner(
        connection_id=signed_out.id,
        owner=slack_owner(enterprise_id=None, team_id=TEAM, user_id=JANE),
    )
    channel = world.slack.dm_channel(JANE)
    await world.dm(JANE, "connections")
    first = copy.deepcopy(await world.next_post(channel, 0))
    assert "jane00@" in texts(first.blocks) and "jane11@" not in texts(first.blocks)
    await world.press(JANE, first, blocks.PAGE, "1")
    second = copy.deepcopy(await world.updated(first, 0))
    assert "jane11@" in texts(second.blocks) and "jane00@" not in texts(second.blocks)
    await world.press(JANE, second, blocks.RECONNECT, signed_out.id)
    await world.slack.wait_for(
        lambda call: call.method == "chat.postMessage" and "signin_open" in json.dumps(call.params)
    )
    told = await world.updated(first, 1)
    assert "sign-in message for Sandbox" in told.text + texts(told.blocks)


async def test_a_recipe_asked_in_a_channel_signs_in_privately(world: SlackWorld) -> None:
    await world.mention(JANE, 'sandbox opportunity "Channel deal" 5')
    await world.slack.wait_for(
        lambda call: call.method == "chat.postMessage" and "signin_open" in json.dumps(call.params)
    )
    await world.slack.wait_for(lambda call: call.method == "chat.postEphemeral")
    [login] = [
        m
        for m in world.slack.posted_to(world.slack.dm_channel(JANE))
        if blocks.SIGNIN_OPEN in m.action_ids()
    ]
    assert login.channel == world.slack.dm_channel(JANE)
    # In the channel: the run's message for everyone, no button anyone could press.
    for message in world.slack.posted_to(CHANNEL):
        assert blocks.SIGNIN_OPEN not in message.action_ids()
    [notice] = world.slack.ephemeral_to(JANE, CHANNEL)
    assert "DM" in notice.text
    assert world.sandbox.state.opportunities == []


async def test_rotated_bot_tokens_are_renewed_and_stored_encrypted(
    start_bot: StartBot,
    slack_api: SlackApi,
    apps_file: Path,
    bot_port: int,
    tmp_path: Path,
) -> None:
    """With Slack's token rotation on, a bot token close to expiry is exchanged for a new one
    (oauth.v2.access, grant_type=refresh_token) before the bot answers, and the new pair is
    what the store keeps."""
    slack_api.token_rotation = True
    bot = await start_slack_bot(start_bot, slack_api, apps_file, bot_port, tmp_path)
    installed = await install_through_oauth(bot, slack_api)
    bots = bot.database.db["slack_bots"]
    # As if eleven and a half of its twelve hours had passed.
    soon = datetime.now(UTC) + timedelta(minutes=30)
    await bots.update_many({}, {"$set": {"bot_token_expires_at": soon}})
    await bot.database.db["slack_installations"].update_many(
        {}, {"$set": {"bot_token_expires_at": soon}}
    )
    world = SlackWorld(bot, slack_api, None, installed, None, None, "")  # type: ignore[arg-type]
    await world.dm(JANE, "help")
    channel = slack_api.dm_channel(JANE)
    await world.next_post(channel, 0)
    rotations = [
        call
        for call in slack_api.of("oauth.v2.access")
        if call.params.get("grant_type") == "refresh_token"
    ]
    assert len(rotations) == 1 and rotations[0].ok
    renewed = rotations[0].answer["access_token"]
    assert renewed != installed.bot_token
    [posted] = [c for c in slack_api.of("chat.postMessage") if c.ok]
    assert posted.token == renewed
    stores = bot.client.server.app[WIRING_KEY].slack.installations
    stored = await stores.async_find_bot(enterprise_id=None, team_id=TEAM)
    assert stored is not None and stored.bot_token == renewed
    raw = [document async for document in bots.find({})]
    assert renewed not in repr(raw)


async def test_malformed_but_signed_requests_get_a_clear_answer(world: SlackWorld) -> None:
    """Signed garbage, an action without actions, a callback without code or state: a 4xx or
    an acknowledgement, never a 500, and nothing is changed."""
    connection = await world.connection_for(JANE, "jane@sandbox.example")
    garbage = await world.send("{not json", content_type="application/json")
    assert garbage.status == 400
    forged = await world.send("{not json", content_type="application/json", secret="wrong")
    assert forged.status == 401
    empty = json.dumps({"type": "block_actions", "user": {"id": JANE}, "team": {"id": TEAM}})
    no_actions = await world.send(
        urlencode({"payload": empty}), content_type="application/x-www-form-urlencoded"
    )
    assert no_actions.status < 500
    not_a_payload = await world.send(
        urlencode({"payload": "[]"}), content_type="application/x-www-form-urlencoded"
    )
    assert not_a_payload.status < 500
    callback = await world.bot.client.get(REDIRECT_PATH)
    assert 400 <= callback.status < 500
    assert "Traceback" not in await callback.text()
    stored = await world.database.connections.get(connection.id)
    assert stored is not None and stored.status is ConnectionStatus.CONNECTED
