"""End-to-end harness: the Microsoft 365 Agents Playground driven by headless Chromium.

`Playground` runs the Playground's node server on loopback; `TeamsPage` wraps a Playwright page
on its web UI with the few gestures the tests need (send, @mention, pick a choice, click a card
action, switch to a channel). Everything must run inside a private network namespace; see
`require_private_network`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import urlsplit

import aiohttp
from playwright.async_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    Playwright,
    Route,
    WebSocket,
    expect,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS_ROOT = REPO_ROOT / "test-artifacts" / "e2e"
PLAYGROUND_BIN = REPO_ROOT / "node_modules" / ".bin" / "agentsplayground"
CHROMIUM_PATH = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")

# Chromium must never leave loopback, even for the Playground's web fonts on a CDN.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
]
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

# Identities of the Playground's default configuration (0.2.28); ids are opaque strings.
BOT_NAME = "Test Bot"
BOT_ID = "00000000-0000-0000-0000-00000000000011"
TENANT_ID = "00000000-0000-0000-0000-0000000000001"
USER_ID = "user-id-0"
USER_AAD_OBJECT_ID = "00000000-0000-0000-0000-0000000000020"
USER_NAME = "Alex Wilber"

DEFAULT_TIMEOUT_S = 20.0
_LISTENING = re.compile(r"Listening on (\d+)")
_WS_CONVERSATION_PATH = "/_ws_conversation/v1/conversations/stream"


def _exactly(text: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*{re.escape(text)}\s*$")


class NotInPrivateNetworkError(RuntimeError):
    """Raised when the harness would run on a real network."""


class PlaygroundError(RuntimeError):
    """The Playground process did not start or died."""


def network_interfaces() -> list[str]:
    """Interfaces of this process's network namespace.

    Asks the kernel (netlink through if_nameindex), not /sys/class/net: sysfs shows the
    namespace it was mounted in, so after `unshare -n` it still lists eth0.
    """
    return sorted(name for _, name in socket.if_nameindex())


def in_private_network() -> bool:
    """True inside a network namespace whose only interface is `lo`."""
    return network_interfaces() == ["lo"]


def require_private_network() -> None:
    """Refuse to run anything that listens on all interfaces or might call out."""
    if not in_private_network():
        raise NotInPrivateNetworkError(
            "end-to-end tests must run in a private network namespace (only `lo`), found "
            f"interfaces {network_interfaces()}. Run them as: "
            "unshare -n sh -c 'ip link set lo up && exec python -m pytest tests/e2e'"
        )


def free_port() -> int:
    """A free TCP port on loopback (the Playground falls back to a random one if taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def slug(text: str) -> str:
    """A file-name-safe form of a test or screenshot name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:120] or "unnamed"


class Playground:
    """The Agents Playground's node server, started on loopback for one bot endpoint."""

    def __init__(
        self,
        bot_endpoint: str,
        *,
        port: int | None = None,
        conversation_id: str | None = None,
        log_dir: Path = ARTIFACTS_ROOT,
        startup_timeout: float = 60.0,
    ) -> None:
        self.bot_endpoint = bot_endpoint
        self.requested_port = port
        self.conversation_id = conversation_id
        self.log_dir = log_dir
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.log_path: Path | None = None
        self.recording_path: Path | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """Base URL of the web UI and of every API."""
        if self.port is None:
            raise PlaygroundError("the Playground is not running")
        return f"http://localhost:{self.port}"

    @property
    def service_url(self) -> str:
        """The Bot Framework connector the bot replies to (activity.serviceUrl)."""
        return f"{self.url}/_connector"

    async def start(self) -> None:
        require_private_network()
        if not PLAYGROUND_BIN.exists():
            raise PlaygroundError(f"{PLAYGROUND_BIN} is missing: run `npm ci` in {REPO_ROOT}")
        port = self.requested_port or free_port()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"playground-{port}.log"
        self.recording_path = self.log_dir / f"playground-{port}-events.log"
        self.recording_path.unlink(missing_ok=True)
        args = [
            str(PLAYGROUND_BIN),
            "-e",
            self.bot_endpoint,
            "-c",
            "msteams",
            "-p",
            str(port),
            "--disable-telemetry",
            "--enable-events-recording",
        ]
        if self.conversation_id:
            args += ["--conversation-id", self.conversation_id]
        env = {
            **os.environ,
            # Without these it tries to reach Azure telemetry hosts and to open a browser.
            "APPLICATION_INSIGHTS_NO_STATSBEAT": "true",
            "TEAMSAPPTESTER_BROWSER": "none",
            # Every request both ways, as JSON documents separated by "---" lines.
            "M365_AGENTS_PLAYGROUND_RECORDING_FILE": str(self.recording_path),
        }
        self._proc = await asyncio.create_subprocess_exec(
            *args,
            cwd=REPO_ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # Its own process group, so stop() reaches node's children too.
            start_new_session=True,
        )
        try:
            self.port = await asyncio.wait_for(self._read_until_listening(), self.startup_timeout)
            self._drain = asyncio.create_task(self._drain_output())
            await self._check_http()
        except BaseException:
            await self.stop()
            raise

    async def _read_until_listening(self) -> int:
        # The port actually bound is printed: it differs from -p when that one was taken.
        assert self._proc is not None and self._proc.stdout is not None
        assert self.log_path is not None
        with self.log_path.open("ab") as log:
            while True:
                line = await self._proc.stdout.readline()
                if not line:
                    code = await self._proc.wait()
                    raise PlaygroundError(
                        f"the Playground exited with {code} before listening; see {self.log_path}"
                    )
                log.write(line)
                match = _LISTENING.search(line.decode(errors="replace"))
                if match:
                    return int(match.group(1))

    async def _drain_output(self) -> None:
        # Keep reading so a full pipe never blocks the server; keep it for post-mortems.
        assert self._proc is not None and self._proc.stdout is not None
        assert self.log_path is not None
        with self.log_path.open("ab") as log:
            async for line in self._proc.stdout:
                log.write(line)
                log.flush()

    async def _check_http(self) -> None:
        # /_internal/v1/config would block up to 15 s waiting for the bot, the UI shell does not.
        async with aiohttp.ClientSession() as http, http.get(self.url + "/") as resp:
            if resp.status != 200:
                raise PlaygroundError(f"GET {self.url}/ answered {resp.status}")

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if self._drain is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._drain, 5)
            self._drain = None
        self.port = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- the programmatic API its own UI uses (handy for setup and for other users) ---

    async def fetch_config(self) -> dict[str, Any]:
        """Users, personal chat id (random per start unless conversation_id), group chat, team."""
        return await self._request("GET", "/_internal/v1/testConfig")

    async def personal_chat_id(self) -> str:
        return str((await self.fetch_config())["config"]["personalChat"]["id"])

    async def post_message(self, conversation_id: str, text: str) -> dict[str, Any]:
        """Send a message as the current user (the server overrides any other `from`)."""
        body = {"from": {"id": USER_ID}, "text": text, "textFormat": "plain"}
        return await self._request(
            "POST", f"/_conversation/v1/conversations/{conversation_id}/messages", body
        )

    async def send_custom_activity(self, activity: dict[str, Any]) -> None:
        """Deliver any activity to the bot verbatim (any `from`, invokes too).

        Fire and forget: it answers 200 before the bot does, and drops the bot's response.
        """
        await self._request("POST", "/_internal/v1/customActivities", activity)

    def recorded_events(self) -> list[dict[str, Any]]:
        """Every request the Playground exchanged with the bot, oldest first."""
        if self.recording_path is None or not self.recording_path.exists():
            return []
        chunks = self.recording_path.read_text().split("\n---\n")
        return [json.loads(chunk) for chunk in chunks if chunk.strip()]

    async def _request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.url + path, json=body) as resp,
        ):
            text = await resp.text()
            if resp.status >= 400:
                raise PlaygroundError(f"{method} {path} answered {resp.status}: {text}")
            data: dict[str, Any] = json.loads(text) if text else {}
            return data


async def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless, with no way off loopback."""
    require_private_network()
    return await playwright.chromium.launch(
        executable_path=CHROMIUM_PATH, headless=True, args=CHROMIUM_ARGS
    )


async def new_loopback_context(browser: Browser) -> BrowserContext:
    """A browser context that aborts every request to a host other than loopback."""
    context = await browser.new_context(viewport={"width": 1400, "height": 900})

    async def guard(route: Route) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlsplit(url).hostname in LOOPBACK_HOSTS:
            await route.continue_()
        else:
            # The UI asks a CDN for fonts and an animation worklet; failing fast is harmless.
            await route.abort("blockedbyclient")

    await context.route("**/*", guard)
    return context


@dataclass
class WsFrame:
    """One message the Playground pushed to the UI on its conversation WebSocket."""

    action: str  # createMessage | updateMessage | ...
    conversation_id: str
    message: dict[str, Any]


@dataclass
class _WsLog:
    frames: list[WsFrame] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


Mode = Literal["chat", "channel"]


class TeamsPage:
    """The Playground's web UI as seen by its one user, Alex Wilber (`user-id-0`)."""

    def __init__(self, page: Page, playground: Playground, artifacts_dir: Path) -> None:
        self.page = page
        self.playground = playground
        self.artifacts_dir = artifacts_dir
        self.mode: Mode = "chat"
        self._shots = 0
        self._ws = _WsLog()
        page.on("websocket", self._on_websocket)

    async def open(self, within_s: float = DEFAULT_TIMEOUT_S) -> None:
        """Load the UI on the personal chat. Each load sends the bot installationUpdate and
        conversationUpdate (membersAdded) again, and starts with an empty history."""
        await self.page.goto(self.playground.url + "/")
        await self.composer.wait_for(timeout=within_s * 1000)
        self.mode = "chat"

    # --- where things are ---

    @property
    def composer(self) -> Locator:
        """The chat box, or the "Start a new post" box in a channel (each post below it has its
        own reply box, hence `first`)."""
        return self.page.get_by_role("textbox").first

    @property
    def cards(self) -> Locator:
        """Every Adaptive Card on screen, in chats and channels alike."""
        return self.page.locator(".ac-adaptiveCard")

    def latest_card(self) -> Locator:
        return self.cards.last

    def card_with_text(self, text: str) -> Locator:
        return self.cards.filter(has_text=text).last

    def bot_text(self, text: str) -> Locator:
        """Bot text is rendered in <p> (markdown); the user's own messages, the chat list
        preview and the screen-reader announcer use span/div, so they never match."""
        return self.page.locator("p").filter(has_text=text).last

    # --- gestures ---

    async def send(self, text: str) -> None:
        """Type and send a message (in a channel: start a new post)."""
        await self.composer.click()
        await self.page.keyboard.type(text)
        await self._submit()

    async def mention_bot_and_send(self, text: str, *, bot_name: str = BOT_NAME) -> None:
        """Send `@<bot> text` in the current chat or channel. In channels and group chats the
        Playground only delivers messages that @mention the bot (like Teams)."""
        await self.composer.click()
        await self._mention(bot_name)
        await self.page.keyboard.type(" " + text)
        await self._submit()

    async def reply_in_thread(self, text: str, *, mention: bool = True) -> None:
        """Reply under the latest channel post (delivered to the bot only with a mention)."""
        box = self.page.get_by_role("textbox").last
        await box.click()
        if mention:
            await self._mention(BOT_NAME, box)
            await self.page.keyboard.type(" ")
        await self.page.keyboard.type(text)
        await self.page.keyboard.press("Enter")
        await expect(box).to_have_text("")

    async def _mention(self, name: str, box: Locator | None = None) -> None:
        editor = box if box is not None else self.composer
        await self.page.keyboard.type("@")
        # An item's accessible name includes its avatar's label: match the visible text.
        item = self.page.locator("#typeahead-menu [role=menuitem]").filter(has_text=_exactly(name))
        await item.first.click()
        # Type on only once the mention chip is in the editor, or keystrokes can get lost.
        await editor.locator(".mention").filter(has_text=name).last.wait_for()

    async def _submit(self) -> None:
        if self.mode == "channel":
            await self.page.get_by_role("button", name="Post", exact=True).click()
        else:
            await self.page.keyboard.press("Enter")
        # Sent once the editor is cleared; avoids typing into a box that is still sending.
        await expect(self.composer).to_have_text("")

    async def switch_to_channel(self, channel: str = "General", team: str = "My Team") -> None:
        await self.page.get_by_role("treeitem", name=f"{team} - {channel}", exact=True).click()
        await self.page.get_by_role("button", name="Post", exact=True).wait_for()
        self.mode = "channel"

    async def switch_to_group_chat(self, name: str = "Group Chat") -> None:
        await self.page.get_by_role("treeitem", name=name, exact=True).click()
        await self.composer.wait_for()
        self.mode = "chat"

    async def switch_to_personal_chat(self) -> None:
        """Back to the 1:1 chat; messages that arrived meanwhile (proactive ones) are there."""
        await self.page.get_by_role("treeitem", name="Personal Chat", exact=True).click()
        await self.composer.wait_for()
        self.mode = "chat"

    async def choose(
        self, option_text: str, *, card: Locator | None = None, label: str | None = None
    ) -> None:
        """Pick an option of a compact Input.ChoiceSet (a Fluent combobox)."""
        scope = card if card is not None else self.latest_card()
        combo = (
            scope.get_by_role("combobox", name=label)
            if label
            else scope.get_by_role("combobox").first
        )
        await combo.click()
        # The listbox is a popup portal outside the card.
        await self.page.get_by_role("option", name=option_text, exact=True).click()
        await expect(combo).to_have_value(option_text)

    async def click_action(
        self, title: str, *, card: Locator | None = None, within_s: float = DEFAULT_TIMEOUT_S
    ) -> dict[str, Any] | None:
        """Click a card button. For Action.Execute, waits for the invoke round trip and returns
        the bot's answer ({type, value: card}) once the UI has it; Action.Submit returns None
        (the bot's reply arrives as a new message)."""
        scope = card if card is not None else self.latest_card()
        button = scope.get_by_role("button", name=title, exact=True)
        await button.wait_for(timeout=within_s * 1000)
        async with self.page.expect_response(
            re.compile(r"/_conversation/v1/(invoke|submit)$"), timeout=within_s * 1000
        ) as info:
            await button.click()
        response = await info.value
        if response.status >= 400:
            raise AssertionError(f"{response.url} answered {response.status}")
        if response.url.endswith("/invoke"):
            body = await response.text()
            return json.loads(body) if body else {}
        return None

    async def click_action_and_wait_replaced(
        self, title: str, new_text: str, *, card: Locator | None = None
    ) -> Locator:
        """Click an Action.Execute and wait until the card is replaced by one showing
        `new_text` (the UI also adds "Your response was sent to the app" under it)."""
        scope = card if card is not None else self.latest_card()
        await self.click_action(title, card=scope)
        replaced = self.card_with_text(new_text)
        await replaced.wait_for()
        await expect(replaced.get_by_role("button", name=title, exact=True)).to_have_count(0)
        return replaced

    async def click_sign_in(self, title: str = "Sign in") -> Page:
        """Click a hero/sign-in card's `signin` button; returns the popup it opens."""
        async with self.page.context.expect_page() as popup_info:
            # Its accessible name is "<title> This is a card action with a link".
            await self.page.get_by_role("button").filter(has_text=_exactly(title)).last.click()
        popup = await popup_info.value
        await popup.wait_for_load_state()
        return popup

    # --- waiting ---

    async def wait_for_text(self, text: str, within_s: float = DEFAULT_TIMEOUT_S) -> Locator:
        """Wait for a bot text reply (or card text) containing `text`."""
        loc = self.bot_text(text)
        await loc.wait_for(timeout=within_s * 1000)
        return loc

    async def wait_for_card_text(self, text: str, within_s: float = DEFAULT_TIMEOUT_S) -> Locator:
        """Wait for an Adaptive Card containing `text`; returns that card."""
        card = self.card_with_text(text)
        await card.wait_for(timeout=within_s * 1000)
        return card

    async def wait_for_ws(
        self, predicate: Callable[[WsFrame], bool], within_s: float = DEFAULT_TIMEOUT_S
    ) -> WsFrame:
        """Wait for a message the Playground pushed to the UI (bot message created/updated),
        including ones for conversations not on screen. Sees frames since open()."""

        async def wait() -> WsFrame:
            seen = 0
            while True:
                for frame in self._ws.frames[seen:]:
                    if predicate(frame):
                        return frame
                seen = len(self._ws.frames)
                self._ws.changed.clear()
                await self._ws.changed.wait()

        return await asyncio.wait_for(wait(), within_s)

    @property
    def ws_frames(self) -> list[WsFrame]:
        return list(self._ws.frames)

    def _on_websocket(self, ws: WebSocket) -> None:
        if _WS_CONVERSATION_PATH in ws.url:
            ws.on("framereceived", self._on_frame)

    def _on_frame(self, payload: str | bytes) -> None:
        try:
            data = json.loads(payload)
        except ValueError:
            return
        if isinstance(data, dict) and "action" in data:
            self._ws.frames.append(
                WsFrame(
                    action=str(data["action"]),
                    conversation_id=str(data.get("actionConversationId", "")),
                    message=data.get("message") or {},
                )
            )
            self._ws.changed.set()

    # --- evidence ---

    async def screenshot(self, name: str) -> Path:
        """Save test-artifacts/e2e/<test>/NN-<name>.png and return its path."""
        self._shots += 1
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        path = self.artifacts_dir / f"{self._shots:02d}-{slug(name)}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path
