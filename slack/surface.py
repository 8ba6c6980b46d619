"""The Slack surface: Bolt for Python over the same services, store and sign-in as Teams.

`SlackSurface` holds a Bolt `AsyncApp` (HTTP mode: Bolt verifies every request's signature and
timestamp and answers 401 to a bad one before anything runs), mounted in the bot's own aiohttp
application at `/slack/events`, `/slack/install` and `/slack/oauth_redirect`. Installations and
OAuth states live in MongoDB (slack/installations.py), tokens encrypted like every other token.

What people do here, and the service each one uses:

- In a DM: `connections` / `personal_connections` (the list, Block Kit), `help` (with a
  Personal accounts button), a recipe's phrase (the recipe runner), and the 6-digit code shown
  after a sign-in (the sign-in service; only the person who started the sign-in can finish it).
- `@bot connections` (or `help`) in a channel: the list goes to the person's DM and only a short
  notice, visible to them alone (ephemeral), stays in the channel.
- Buttons on the list: Disconnect and Delete (each behind Slack's confirm dialog), Reconnect,
  Previous/Next. Each updates the message in place; the services make them idempotent and
  scope them to the person who pressed.
- App Home: a "Your connections" tab, published when it is opened.
- `app_uninstalled` and `tokens_revoked` delete what they must from the installation store.

Slack retries an event it thinks was not received (`X-Slack-Retry-Num`); each event is acted on
once, whichever process gets it, by recording its `event_id` first (collection `slack_events`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

import messages
from connections.notices import Told
from connections.service import ChangeReport, ChangeResult, ConnectionsService, Reconnect
from connections.views import BreakNotice, ConnectionView
from oauth.signin import SignInService, Verification, looks_like_code
from recipes.matching import Match, MatchProblem, match
from recipes.model import RecipeBook
from recipes.results import Outcome, RunResult
from recipes.resume import RunResumer
from recipes.runner import RecipeRunner, RunLeftToSweeper, RunRequest
from settings import Settings
from slack import blocks
from slack.identity import slack_owner, user_id_of
from slack.installations import MongoInstallationStore, MongoOAuthStateStore
from storage.crypto import TokenCipher
from storage.database import Database
from storage.models import Connection, Owner

log = logging.getLogger(__name__)

SURFACE = "slack"
EVENTS_PATH = "/slack/events"
INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
# (method, path) of every request Slack sends the bot; app.py routes them to the surface.
SLACK_ROUTES = (("POST", EVENTS_PATH), ("GET", INSTALL_PATH), ("GET", REDIRECT_PATH))
# What the bot asks for when a workspace installs it (the manifest lists the same).
DEFAULT_SCOPES = ("app_mentions:read", "chat:write", "im:history", "im:write", "users:read")
# Events the app subscribes to (the manifest lists the same).
EVENTS = ("app_home_opened", "app_mention", "app_uninstalled", "message.im", "tokens_revoked")
SEEN_EVENTS_KEPT = timedelta(days=1)
# A recipe that takes longer than this is acknowledged with "Working on …" first.
ACKNOWLEDGE_AFTER_S = 2.0
SLACK_CALL_TIMEOUT_S = 5.0

_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
_LIST_COMMANDS = frozenset({"connections", "personal_connections"})


@dataclass(frozen=True)
class SlackPlace:
    """Where a Slack request came from: the workspace (or enterprise), the person, the
    conversation; `reference()` is what runs and sign-ins keep to answer there later."""

    enterprise_id: str | None
    team_id: str | None
    user_id: str
    channel: str

    @property
    def owner(self) -> Owner:
        return slack_owner(
            enterprise_id=self.enterprise_id, team_id=self.team_id, user_id=self.user_id
        )

    def reference(self, channel: str | None = None) -> dict[str, Any]:
        return {
            "surface": SURFACE,
            "enterprise_id": self.enterprise_id,
            "team_id": self.team_id,
            "user": self.user_id,
            "channel": channel or self.channel,
        }


def _place(context: Any, body: dict[str, Any], event: dict[str, Any] | None = None) -> SlackPlace:
    user = (event or {}).get("user") or (body.get("user") or {}).get("id") or context.user_id
    channel = (event or {}).get("channel") or (body.get("channel") or {}).get("id") or ""
    return SlackPlace(
        enterprise_id=context.enterprise_id,
        team_id=context.team_id,
        user_id=str(user or ""),
        channel=str(channel),
    )


def command_of(text: str) -> str:
    """A message's text as a command: mentions removed, spaces trimmed, lower case."""
    return " ".join(_MENTION.sub(" ", text or "").split()).strip()


@dataclass(frozen=True)
class _Listed:
    """The list as one press left it: the message's text and blocks, and what App Home needs
    to show the same (so a press there reads the list once)."""

    text: str
    blocks: list[dict[str, Any]]
    views: tuple[ConnectionView, ...]
    page: int
    result: str | None
    problem: str | None


@dataclass
class SlackSurface:
    signing_secret: str
    client_id: str
    client_secret: str
    scopes: tuple[str, ...]
    api_url: str
    public_base_url: str
    connections: ConnectionsService
    signin: SignInService
    book: RecipeBook
    runner: RecipeRunner
    installations: MongoInstallationStore
    states: MongoOAuthStateStore
    seen_events: AsyncCollection[dict[str, Any]]
    recipes_help: tuple[tuple[str, str], ...] = ()
    resumer: RunResumer | None = None

    def __post_init__(self) -> None:
        self.client = AsyncWebClient(base_url=self.api_url, timeout=int(SLACK_CALL_TIMEOUT_S))
        self.verifier = SignatureVerifier(self.signing_secret)
        self.app = AsyncApp(
            signing_secret=self.signing_secret,
            client=self.client,
            installation_store=self.installations,
            oauth_settings=AsyncOAuthSettings(
                client_id=self.client_id,
                client_secret=self.client_secret,
                scopes=list(self.scopes),
                installation_store=self.installations,
                state_store=self.states,
                install_path=INSTALL_PATH,
                redirect_uri_path=REDIRECT_PATH,
                redirect_uri=f"{self.public_base_url}{REDIRECT_PATH}",
            ),
            # Events are acknowledged at once and handled after: Slack waits 3 s at most.
            process_before_response=False,
            raise_error_for_unhandled_request=False,
        )
        self._register()

    async def ensure_indexes(self) -> None:
        await self.installations.ensure_indexes()
        await self.states.ensure_indexes()
        await self.seen_events.create_index(
            "seen_at", expireAfterSeconds=int(SEEN_EVENTS_KEPT.total_seconds())
        )

    # --- HTTP ------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        try:
            bolt_request = await to_bolt_request(request)
            flow = self.app.oauth_flow
            if request.method == "GET" and flow is not None:
                if request.path == INSTALL_PATH:
                    return await to_aiohttp_response(await flow.handle_installation(bolt_request))
                if request.path == REDIRECT_PATH:
                    return await to_aiohttp_response(await flow.handle_callback(bolt_request))
            return await to_aiohttp_response(await self.app.async_dispatch(bolt_request))
        except (ValueError, AttributeError, TypeError, KeyError):
            # Bolt reads the body before it checks the signature, and trusts its shape: one it
            # cannot read is answered as its signature deserves, never with a 500. (Listeners
            # run after the answer, so nothing of ours is caught here.)
            body = await request.text()
            if not self.verifier.is_valid_request(body, dict(request.headers)):
                return web.json_response({"error": "invalid request"}, status=401)
            log.info(messages.LOG_SLACK_UNREADABLE)
            return web.json_response({"error": messages.SLACK_UNREADABLE}, status=400)

    # --- listeners -------------------------------------------------------------------------

    def _register(self) -> None:
        app = self.app
        app.event("message")(self._on_message)
        app.event("app_mention")(self._on_mention)
        app.event("app_home_opened")(self._on_home_opened)
        app.event("app_uninstalled")(self._on_uninstalled)
        app.event("tokens_revoked")(self._on_tokens_revoked)
        for action_id, handler in (
            (blocks.SHOW_CONNECTIONS, self._on_show),
            (blocks.PAGE, self._on_page),
            (blocks.DISCONNECT, self._on_disconnect),
            (blocks.DELETE, self._on_delete),
            (blocks.RECONNECT, self._on_reconnect),
            (blocks.SIGNIN_OPEN, self._on_signin_open),
        ):
            app.action(action_id)(handler)

    async def _first_time(self, body: dict[str, Any]) -> bool:
        """True for the first delivery of an event (Slack retries; several processes)."""
        event_id = body.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            return True
        try:
            await self.seen_events.insert_one({"_id": event_id, "seen_at": datetime.now(UTC)})
        except DuplicateKeyError:
            return False
        return True

    async def _on_message(
        self, event: dict[str, Any], body: dict[str, Any], context: Any, client: AsyncWebClient
    ) -> None:
        if event.get("channel_type") != "im" or event.get("subtype") or event.get("bot_id"):
            return
        if not await self._first_time(body):
            return
        place = _place(context, body, event)
        text = command_of(str(event.get("text") or ""))
        event_key = str(body.get("event_id") or event.get("client_msg_id") or event.get("ts"))
        await self._answer_dm(client, place, text, event_key)

    async def _answer_dm(
        self, client: AsyncWebClient, place: SlackPlace, text: str, event_key: str
    ) -> None:
        command = text.lower()
        if command in _LIST_COMMANDS:
            listed = await self._list(place.owner)
            await self._post(client, place.channel, listed.text, listed.blocks)
        elif command == "help":
            await self._post(client, place.channel, *self._help())
        elif looks_like_code(text):
            await self._verify(client, place, text)
        elif not await self._recipe(client, place, text, event_key):
            await self._post(client, place.channel, messages.SLACK_DID_NOT_UNDERSTAND)

    async def _on_mention(
        self, event: dict[str, Any], body: dict[str, Any], context: Any, client: AsyncWebClient
    ) -> None:
        if not await self._first_time(body):
            return
        place = _place(context, body, event)
        text = command_of(str(event.get("text") or ""))
        command = text.lower()
        if command in _LIST_COMMANDS or command == "help":
            if command == "help":
                text, shown = self._help()
            else:
                listed = await self._list(place.owner)
                text, shown = listed.text, listed.blocks
            sent = await self._post_in_dm(client, place, text, shown)
            notice = messages.SLACK_SENT_TO_DM if sent else messages.SLACK_DM_UNAVAILABLE
            await self._ephemeral(client, place, notice)
            return
        event_key = str(body.get("event_id") or event.get("ts"))
        if not await self._recipe(client, place, text, event_key):
            await self._ephemeral(client, place, messages.SLACK_DID_NOT_UNDERSTAND)

    async def _on_home_opened(
        self, event: dict[str, Any], body: dict[str, Any], context: Any, client: AsyncWebClient
    ) -> None:
        if event.get("tab") not in (None, "home"):
            return
        place = _place(context, body, event)
        await self._publish_home(client, place)

    async def _publish_home(self, client: AsyncWebClient, place: SlackPlace) -> None:
        views = await self.connections.list_views(place.owner)
        await client.views_publish(user_id=place.user_id, view=blocks.home_view(views))

    async def _on_uninstalled(self, context: Any) -> None:
        await self.installations.async_delete_all(
            enterprise_id=context.enterprise_id, team_id=context.team_id
        )

    async def _on_tokens_revoked(self, event: dict[str, Any], context: Any) -> None:
        tokens = event.get("tokens") or {}
        for user_id in tokens.get("oauth") or []:
            await self.installations.async_delete_installation(
                enterprise_id=context.enterprise_id, team_id=context.team_id, user_id=user_id
            )
        if tokens.get("bot"):
            await self.installations.async_delete_bot(
                enterprise_id=context.enterprise_id, team_id=context.team_id
            )

    # --- the list and its buttons ----------------------------------------------------------

    async def _list(
        self,
        owner: Owner,
        *,
        page: int = 0,
        result: str | None = None,
        problem: str | None = None,
        views: tuple[ConnectionView, ...] | list[ConnectionView] | None = None,
    ) -> _Listed:
        if views is None:
            views = await self.connections.list_views(owner)
        shown = blocks.connections_blocks(list(views), page=page, result=result, problem=problem)
        return _Listed(
            text=result or problem or messages.CONNECTIONS_TITLE,
            blocks=shown,
            views=tuple(views),
            page=page,
            result=result,
            problem=problem,
        )

    def _help(self) -> tuple[str, list[dict[str, Any]]]:
        return messages.HELP_TITLE, blocks.help_blocks(self.recipes_help)

    async def _on_show(self, ack: Any, body: dict[str, Any], context: Any, client: Any) -> None:
        await ack()
        await self._replace(client, body, context, await self._list(_place(context, body).owner))

    async def _on_page(self, ack: Any, body: dict[str, Any], context: Any, client: Any) -> None:
        await ack()
        page = _page_of(body)
        owner = _place(context, body).owner
        await self._replace(client, body, context, await self._list(owner, page=page))

    async def _on_disconnect(
        self, ack: Any, body: dict[str, Any], context: Any, client: Any
    ) -> None:
        await ack()
        await self._change(client, body, context, self.connections.disconnect)

    async def _on_delete(self, ack: Any, body: dict[str, Any], context: Any, client: Any) -> None:
        await ack()
        await self._change(client, body, context, self.connections.delete)

    async def _change(
        self,
        client: AsyncWebClient,
        body: dict[str, Any],
        context: Any,
        action: Callable[[Owner, str], Awaitable[ChangeReport]],
    ) -> None:
        owner = _place(context, body).owner
        chosen = _value_of(body)
        page = _page_of(body)
        if not chosen:
            content = await self._list(owner, page=page, problem=messages.CHOOSE_A_CONNECTION)
            await self._replace(client, body, context, content)
            return
        report = await action(owner, chosen)
        if report.result is ChangeResult.NOT_FOUND:
            content = await self._list(owner, page=page, problem=report.message, views=report.views)
        else:
            content = await self._list(owner, page=page, result=report.message, views=report.views)
        await self._replace(client, body, context, content)

    async def _on_reconnect(
        self, ack: Any, body: dict[str, Any], context: Any, client: Any
    ) -> None:
        await ack()
        place = _place(context, body)
        owner = place.owner
        chosen = _value_of(body)
        plan = await self.connections.reconnect(
            owner,
            chosen,
            can_sign_in=lambda parent: self.signin.provider_for(parent) is not None,
        )
        if plan.outcome is Reconnect.READY and plan.parent is not None:
            await self._send_login(client, place, plan.parent)
            content = await self._list(
                owner, result=messages.SLACK_RECONNECT_SENT.format(app=plan.app_name)
            )
        elif plan.outcome is Reconnect.NOT_NEEDED:
            content = await self._list(
                owner, result=messages.RECONNECT_NOT_NEEDED.format(label=plan.label)
            )
        elif plan.outcome is Reconnect.APP_NOT_CONFIGURED:
            problem = messages.RECONNECT_APP_NOT_CONFIGURED.format(
                label=plan.label, app=plan.app_name
            )
            content = await self._list(owner, problem=problem)
        elif plan.outcome is Reconnect.NOT_FOUND:
            content = await self._list(owner, problem=messages.CONNECTION_NOT_FOUND)
        else:
            problem = messages.RECONNECT_NOT_POSSIBLE.format(label=plan.label)
            content = await self._list(owner, problem=problem)
        await self._replace(client, body, context, content)

    async def _on_signin_open(self, ack: Any) -> None:
        await ack()  # a URL button: the browser does the rest

    # --- sign-in ---------------------------------------------------------------------------

    async def _send_login(
        self,
        client: AsyncWebClient,
        place: SlackPlace,
        parent: Connection,
        run_id: str | None = None,
    ) -> bool:
        """The Login message in the person's DM, bound to them (and to a waiting run)."""
        channel = await self._dm_channel(client, place.user_id)
        if channel is None:
            return False
        url = await self.signin.start(
            owner=place.owner, parent=parent, conversation=place.reference(channel), run_id=run_id
        )
        app_name = self.connections.names(parent.provider)
        text = messages.LOGIN_CARD_TEXT.format(app=app_name)
        return await self._post(client, channel, text, blocks.login_blocks(app_name, url))

    async def _verify(self, client: AsyncWebClient, place: SlackPlace, code: str) -> None:
        result = await self.signin.verify(owner=place.owner, code=code)
        if result.outcome is Verification.CONNECTED and result.connection is not None:
            text = messages.SIGNIN_CONNECTED.format(
                app=result.app_name, account=result.connection.account_label
            )
            await self._post(client, place.channel, text)
            if self.resumer is not None and result.connection.parent_id is not None:
                await self.resumer.after_sign_in(place.owner, result.connection.parent_id)
        elif result.outcome is Verification.ALREADY_USED and result.login is not None:
            account = result.login.account.display_name if result.login.account else ""
            text = messages.SIGNIN_ALREADY_USED.format(app=result.app_name, account=account)
            await self._post(client, place.channel, text)
        elif result.outcome in (Verification.WRONG_CODE, Verification.CANCELLED):
            wrong = result.outcome is Verification.WRONG_CODE
            text = messages.SIGNIN_WRONG_CODE if wrong else messages.SIGNIN_CANCELLED
            await self._post(client, place.channel, _slack_text(text))
            if self.resumer is not None:
                await self.resumer.abandon(place.owner)
        else:
            await self._post(client, place.channel, messages.SLACK_DID_NOT_UNDERSTAND)

    # --- recipes ---------------------------------------------------------------------------

    async def _recipe(
        self, client: AsyncWebClient, place: SlackPlace, text: str, event_key: str
    ) -> bool:
        found = match(self.book, text)
        if found is None:
            return False
        if isinstance(found, MatchProblem):
            await self._post(client, place.channel, _slack_text(found.message))
            return True
        assert isinstance(found, Match)
        request = RunRequest(
            recipe=found.recipe,
            arguments=found.arguments,
            invoker=place.owner,
            activity_key=f"{SURFACE}|{event_key}",
            conversation=place.reference(),
        )
        # Slack has been answered already (the event was acknowledged): run to the end, saying
        # so first when it takes more than a moment.
        run = asyncio.ensure_future(self.runner.run(request))
        done, _ = await asyncio.wait({run}, timeout=ACKNOWLEDGE_AFTER_S)
        if not done:
            working = messages.RECIPE_WORKING.format(recipe=found.recipe.name)
            await self._post(client, place.channel, working)
        try:
            result = await run
        except RunLeftToSweeper:
            return True  # the sweeper ends the run and tells the person, once
        await self._report_result(client, place, result)
        return True

    async def _report_result(
        self, client: AsyncWebClient, place: SlackPlace, result: RunResult
    ) -> None:
        if result.outcome is Outcome.DUPLICATE:
            return
        text, shown = blocks.result_text(result) or "", blocks.result_blocks(result)
        if text or shown:
            await self._post(client, place.channel, text, shown)
        if result.outcome is Outcome.SIGN_IN_NEEDED and result.sign_in_parent is not None:
            sent = await self._send_login(
                client, place, result.sign_in_parent, run_id=result.run_id
            )
            if place.channel != await self._dm_channel(client, place.user_id):
                notice = messages.SLACK_LOGIN_SENT_TO_DM if sent else messages.SLACK_DM_UNAVAILABLE
                await self._ephemeral(client, place, notice)

    async def report(self, conversation: dict[str, Any], outcome: RunResult | str) -> None:
        """The Slack side of `RunResumer.report`: a resumed or ended run's result, posted in
        the conversation the run came from."""
        client = await self._client_for(conversation)
        channel = str(conversation.get("channel") or "")
        if client is None or not channel:
            return
        if isinstance(outcome, str):
            await self._post(client, channel, _slack_text(outcome))
            return
        text, shown = blocks.result_text(outcome) or "", blocks.result_blocks(outcome)
        if text or shown:
            await self._post(client, channel, text, shown)

    async def tell(self, owner: Owner, reach: dict[str, Any], notice: BreakNotice) -> Told:
        """A break notice in the Slack owner's DM."""
        client = await self._client_for(reach)
        if client is None:
            return Told.NO_CHAT
        channel = await self._dm_channel(client, user_id_of(owner))
        if channel is None:
            return Told.REFUSED
        text = messages.NOTICE_TITLE.format(app=notice.app_name)
        posted = await self._post(client, channel, text, blocks.notice_blocks(notice))
        return Told.TOLD if posted else Told.REFUSED

    async def _client_for(self, conversation: dict[str, Any]) -> AsyncWebClient | None:
        """A Web API client with the bot token of the conversation's workspace."""
        bot = await self.installations.async_find_bot(
            enterprise_id=conversation.get("enterprise_id"),
            team_id=conversation.get("team_id"),
            is_enterprise_install=bool(conversation.get("enterprise_id"))
            and not conversation.get("team_id"),
        )
        if bot is None or not bot.bot_token:
            return None
        return AsyncWebClient(
            token=bot.bot_token, base_url=self.api_url, timeout=int(SLACK_CALL_TIMEOUT_S)
        )

    # --- posting -----------------------------------------------------------------------------

    async def _dm_channel(self, client: AsyncWebClient, user_id: str) -> str | None:
        try:
            opened = await client.conversations_open(users=user_id)
        except SlackApiError as error:
            log.info(messages.LOG_SLACK_CALL_FAILED, "conversations.open", _error(error))
            return None
        channel = (opened.get("channel") or {}).get("id")
        return str(channel) if channel else None

    async def _post(
        self,
        client: AsyncWebClient,
        channel: str,
        text: str,
        shown: list[dict[str, Any]] | None = None,
    ) -> bool:
        try:
            await client.chat_postMessage(channel=channel, text=text, blocks=shown)
        except SlackApiError as error:
            log.info(messages.LOG_SLACK_CALL_FAILED, "chat.postMessage", _error(error))
            return False
        return True

    async def _post_in_dm(
        self, client: AsyncWebClient, place: SlackPlace, text: str, shown: list[dict[str, Any]]
    ) -> bool:
        channel = await self._dm_channel(client, place.user_id)
        return channel is not None and await self._post(client, channel, text, shown)

    async def _ephemeral(self, client: AsyncWebClient, place: SlackPlace, text: str) -> None:
        try:
            await client.chat_postEphemeral(channel=place.channel, user=place.user_id, text=text)
        except SlackApiError as error:
            log.info(messages.LOG_SLACK_CALL_FAILED, "chat.postEphemeral", _error(error))

    async def _replace(
        self, client: AsyncWebClient, body: dict[str, Any], context: Any, listed: _Listed
    ) -> None:
        """Update the pressed message in place (or the App Home tab it was pressed in)."""
        container = body.get("container") or {}
        if container.get("type") == "view" or body.get("view"):
            home = blocks.home_view(
                listed.views, page=listed.page, result=listed.result, problem=listed.problem
            )
            try:
                await client.views_publish(user_id=_place(context, body).user_id, view=home)
            except SlackApiError as error:
                log.info(messages.LOG_SLACK_CALL_FAILED, "views.publish", _error(error))
            return
        text, shown = listed.text, listed.blocks
        channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
        ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
        try:
            if channel and ts:
                await client.chat_update(channel=channel, ts=ts, text=text, blocks=shown)
            elif channel:
                await client.chat_postMessage(channel=channel, text=text, blocks=shown)
        except SlackApiError as error:
            log.info(messages.LOG_SLACK_CALL_FAILED, "chat.update", _error(error))

    async def close(self) -> None:
        """Nothing of its own runs in the background: each listener ends with its event."""


def _value_of(body: dict[str, Any]) -> str:
    actions = body.get("actions") or [{}]
    value = actions[0].get("value")
    return value.strip() if isinstance(value, str) else ""


def _page_of(body: dict[str, Any]) -> int:
    """The page to show after a press: Previous/Next carry it as their value, the other
    buttons in their block id (slack/blocks.py)."""
    actions = body.get("actions") or [{}]
    if actions[0].get("action_id") == blocks.PAGE:
        value = actions[0].get("value")
        return int(value) if isinstance(value, str) and value.isdigit() and len(value) < 6 else 0
    block_id = actions[0].get("block_id")
    return blocks.page_of(block_id) if isinstance(block_id, str) else 0


def _error(error: SlackApiError) -> str:
    response = getattr(error, "response", None)
    return str(response.get("error") if response is not None else "no answer")


def _slack_text(text: str) -> str:
    """A sentence written for Teams' markdown (**bold**) in Slack's (*bold*)."""
    return text.replace("**", "*")


def slack_surface(
    settings: Settings,
    *,
    database: Database,
    cipher: TokenCipher,
    connections: ConnectionsService,
    signin: SignInService,
    book: RecipeBook,
    runner: RecipeRunner,
    resumer: RunResumer | None,
    recipes_help: tuple[tuple[str, str], ...],
) -> SlackSurface:
    """The Slack surface for these settings (`settings.slack_enabled`)."""
    assert settings.slack_signing_secret is not None and settings.slack_client_secret is not None
    client_id = settings.slack_client_id or ""
    return SlackSurface(
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        client_id=client_id,
        client_secret=settings.slack_client_secret.get_secret_value(),
        scopes=settings.slack_scopes or DEFAULT_SCOPES,
        api_url=str(settings.slack_api_url),
        public_base_url=str(settings.public_base_url).rstrip("/"),
        connections=connections,
        signin=signin,
        book=book,
        runner=runner,
        resumer=resumer,
        recipes_help=recipes_help,
        installations=MongoInstallationStore(
            installations=database.db["slack_installations"],
            bots=database.db["slack_bots"],
            cipher=cipher,
            client_id=client_id,
        ),
        states=MongoOAuthStateStore(states=database.db["slack_oauth_states"]),
        seen_events=database.db["slack_events"],
    )
