"""Slack's Web API on loopback, speaking Slack's wire format, for the Slack surface's tests.

Point `slack_sdk.web.async_client.AsyncWebClient(base_url=api.base_url)` (or Bolt's client) at
it. Every method answers the way slack.com does: HTTP 200 with `{"ok": true, ...}` or
`{"ok": false, "error": "<code>"}`, the token in `Authorization: Bearer`, form-encoded, query or
JSON bodies as slack_sdk sends them (`blocks`/`view` as JSON text in a form body, as structures
in a JSON one). Methods:

- `oauth.v2.access`: a code from `issue_code(...)` (what a person's "Allow" on slack.com's
  install page hands the redirect URL) installs the app in the workspace, Enterprise Grid org
  and for the installer chosen there, and answers Slack's OAuth v2 payload; the client id and
  secret are checked (HTTP Basic or form fields, as Slack accepts both); an unknown or used
  code is `invalid_code`. With `token_rotation`, tokens expire (`refresh_token`,
  `expires_in`) and `grant_type=refresh_token` swaps a refresh token for a new pair.
- `auth.test`: who the token is (team, user, bot, enterprise), with `x-oauth-scopes`.
- `chat.postMessage`, `chat.postEphemeral`, `chat.update`: recorded as `Message`s (posting to a
  user id lands in the DM with them, as on Slack); blocks are checked against Slack's limits
  with slack_sdk's models (`invalid_blocks`, with `errors`, as Slack answers).
- `conversations.open`: a DM channel "D…" per user (a group DM "G…" for several).
- `views.publish`: a person's App Home tab, kept per user (`home_of`), with `hash` checked.
- `users.info`: a person from `add_user`, or one made up for any user id (`auto_users`).

A call without a token is `not_authed`, with an unknown one `invalid_auth`; `expire(token)` and
`revoke(token)` make it `token_expired` / `token_revoked`; `fail_next(method, error)` makes the
next call of a method fail (`ratelimited` with HTTP 429 and `Retry-After`). Every request is
recorded (`requests`, `calls` per method); `wait_for` waits for one on an event, never sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import json
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

# Fields that slack_sdk sends as JSON text in a form body (and as structures in a JSON body).
JSON_FIELDS = ("blocks", "attachments", "view", "metadata")
BOT_SCOPES = "chat:write,commands,im:history,im:write,users:read"
# Slack's limits on what these methods accept.
MESSAGE_BLOCKS_MAX = 50
HOME_BLOCKS_MAX = 100
TEXT_MAX = 40_000
MPIM_USERS_MAX = 8
# A rotating token lives 12 hours on Slack.
ROTATION_EXPIRES_IN = 43_200
# Where message timestamps start: Slack's "ts" is seconds.micro, unique per channel.
FIRST_TS = 1_760_000_000


@dataclass
class Call:
    """One request that reached the fake, answered or refused."""

    method: str
    # Query, form and JSON fields together; JSON-encoded fields (`blocks`, `view`) parsed.
    params: dict[str, Any]
    # The Bearer token (or a `token` field), "" when none.
    token: str
    http_method: str = "POST"
    # The raw Authorization header (HTTP Basic for oauth.v2.access).
    authorization: str = ""
    answer: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.answer.get("ok"))

    @property
    def error(self) -> str:
        return str(self.answer.get("error") or "")


@dataclass
class Message:
    """A message as it stands in a channel (after any chat.update)."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    token: str
    # The one person who sees it, for an ephemeral message.
    user: str = ""
    ephemeral: bool = False
    thread_ts: str = ""
    # How many times chat.update changed it; a lenient update of a message this fake never saw
    # is recorded with edits=1 and no post of its own.
    edits: int = 0

    def action_ids(self) -> list[str]:
        return [
            element.get("action_id", "")
            for block in self.blocks
            for element in [*(block.get("elements") or []), block.get("accessory") or {}]
            if isinstance(element, dict) and element.get("type") == "button"
        ]


@dataclass(frozen=True)
class Installed:
    """What one installation gave: the tokens and who they act for."""

    team_id: str | None
    team_name: str | None
    enterprise_id: str | None
    enterprise_name: str | None
    is_enterprise_install: bool
    bot_token: str
    bot_user_id: str
    bot_id: str
    bot_scope: str
    # The person who installed it (Slack's `authed_user`).
    user_id: str
    user_token: str | None = None
    user_scope: str = ""
    bot_refresh_token: str | None = None
    user_refresh_token: str | None = None


@dataclass(frozen=True)
class _Plan:
    """What a code installs, chosen by the test when it issues the code."""

    team_id: str | None
    team_name: str | None
    enterprise_id: str | None
    enterprise_name: str | None
    is_enterprise_install: bool
    user_id: str
    scope: str
    user_scope: str
    redirect_uri: str | None


@dataclass
class _Grant:
    kind: str  # "bot" or "user"
    installed: Installed
    state: str = "active"  # "active", "expired", "revoked"


class _Refused(Exception):
    """A method's `{"ok": false}` answer."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


@dataclass
class SlackApi:
    client_id: str = "1111.2222"
    client_secret: str = "fake-client-secret"
    app_id: str = "A0FAKEAPP1"
    # Tokens expire and come with refresh tokens (the app's "token rotation" setting).
    token_rotation: bool = False
    # users.info makes up a person for any user id nobody added (False: user_not_found).
    auto_users: bool = True
    # chat.update of a message this fake never saw is message_not_found (False: recorded).
    strict_updates: bool = False

    calls: Counter[str] = field(default_factory=Counter)
    requests: list[Call] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The App Home view last published for each user id (as views.publish answered it).
    home_views: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Errors the next calls of a method answer with, in order.
    faults: dict[str, list[str]] = field(default_factory=dict)

    _codes: dict[str, _Plan] = field(default_factory=dict)
    _grants: dict[str, _Grant] = field(default_factory=dict)
    _refresh: dict[str, _Grant] = field(default_factory=dict)
    # (enterprise id, team id) -> (bot user id, bot id): one bot user per workspace or org.
    _bots: dict[tuple[str | None, str | None], tuple[str, str]] = field(default_factory=dict)
    _dms: dict[str, str] = field(default_factory=dict)
    _mpims: dict[tuple[str, ...], str] = field(default_factory=dict)
    _opened: set[str] = field(default_factory=set)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _server: TestServer | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    # --- Lifecycle ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The Web API's base, as slack_sdk wants it (`…/api/`)."""
        assert self._server is not None, "start() it first"
        return str(self._server.make_url("/api/"))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()

    # --- What a test sets up --------------------------------------------------------------------

    def issue_code(
        self,
        *,
        team_id: str | None = "T0FAKE001",
        team_name: str | None = "Fake Workspace",
        enterprise_id: str | None = None,
        enterprise_name: str | None = None,
        is_enterprise_install: bool = False,
        user_id: str = "U0INSTALL1",
        scope: str = BOT_SCOPES,
        user_scope: str = "",
        redirect_uri: str | None = None,
    ) -> str:
        """A one-time code that oauth.v2.access exchanges for this installation: what Slack
        hands the app's redirect URL after `user_id` allowed it. `user_scope` also gives the
        installer a user token; `is_enterprise_install` installs org-wide (no team); a
        `redirect_uri` must then be sent again with the code, as Slack checks."""
        if is_enterprise_install:
            assert enterprise_id, "an org-wide install needs an enterprise id"
            team_id = team_name = None
        code = f"{next(self._ids)}.{secrets.token_hex(8)}"
        self._codes[code] = _Plan(
            team_id,
            team_name,
            enterprise_id,
            enterprise_name if enterprise_id else None,
            is_enterprise_install,
            user_id,
            scope,
            user_scope,
            redirect_uri,
        )
        return code

    def install(self, **plan: Any) -> Installed:
        """Installs the app without the OAuth round trip (the same choices as `issue_code`):
        for a test that only needs a working bot token."""
        return self._install(self._codes.pop(self.issue_code(**plan)))

    def add_user(
        self,
        user_id: str,
        real_name: str,
        *,
        team_id: str = "T0FAKE001",
        display_name: str = "",
        email: str | None = None,
        enterprise_id: str | None = None,
        is_bot: bool = False,
        deleted: bool = False,
        tz: str = "Europe/London",
    ) -> dict[str, Any]:
        """A person users.info answers with (the `user` object, as Slack shapes it)."""
        name = (display_name or real_name or user_id).lower().replace(" ", ".")
        profile: dict[str, Any] = {
            "real_name": real_name,
            "real_name_normalized": real_name,
            "display_name": display_name,
            "display_name_normalized": display_name,
            "team": team_id,
        }
        if email:
            profile["email"] = email
        user: dict[str, Any] = {
            "id": user_id,
            "team_id": team_id,
            "name": name,
            "deleted": deleted,
            "real_name": real_name,
            "tz": tz,
            "tz_label": "Greenwich Mean Time",
            "tz_offset": 0,
            "profile": profile,
            "is_admin": False,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": FIRST_TS,
        }
        if enterprise_id:
            user["enterprise_user"] = {
                "id": user_id,
                "enterprise_id": enterprise_id,
                "enterprise_name": enterprise_id,
                "is_admin": False,
                "is_owner": False,
                "teams": [team_id],
            }
        self.users[user_id] = user
        return user

    def expire(self, token: str) -> None:
        """The token has expired: calls with it are `token_expired` (rotation's 12 hours)."""
        self._grants[token].state = "expired"

    def revoke(self, token: str) -> None:
        """The token was revoked (the app uninstalled): calls with it are `token_revoked`."""
        self._grants[token].state = "revoked"

    def fail_next(self, method: str, error: str) -> None:
        """The next call of `method` answers `{"ok": false, "error": error}`."""
        self.faults.setdefault(method, []).append(error)

    # --- What a test reads ----------------------------------------------------------------------

    def dm_channel(self, user_id: str) -> str:
        """The id of the app's DM with a person (the same one conversations.open gives)."""
        if user_id not in self._dms:
            self._dms[user_id] = f"D{next(self._ids):08d}"
        return self._dms[user_id]

    def posted_to(self, channel: str) -> list[Message]:
        """The messages everyone in `channel` sees (a user id: the DM with them), as they stand
        now."""
        channel = self._resolve(channel)
        return [m for m in self.messages if m.channel == channel and not m.ephemeral]

    def ephemeral_to(self, user_id: str, channel: str | None = None) -> list[Message]:
        """The ephemeral messages only `user_id` saw (in `channel`, when given)."""
        where = self._resolve(channel) if channel else None
        return [
            m
            for m in self.messages
            if m.ephemeral and m.user == user_id and (where is None or m.channel == where)
        ]

    def home_of(self, user_id: str) -> dict[str, Any] | None:
        """The App Home view last published for `user_id`."""
        return self.home_views.get(user_id)

    def of(self, method: str) -> list[Call]:
        """Every request of one method, in order."""
        return [call for call in self.requests if call.method == method]

    async def wait_for(self, predicate: Callable[[Call], bool], *, within_s: float = 10.0) -> Call:
        """The first request so far or later that satisfies `predicate`."""

        async def wait() -> Call:
            while True:
                for call in self.requests:
                    if predicate(call):
                        return call
                self._arrived.clear()
                await self._arrived.wait()

        return await asyncio.wait_for(wait(), within_s)

    def clear(self) -> None:
        """Forgets the requests and messages (the installations and users stay)."""
        self.calls.clear()
        self.requests.clear()
        self.messages.clear()
        self.home_views.clear()

    # --- The wire -------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        authorization = request.headers.get("Authorization", "")
        params = await _params(request)
        bearer = authorization[len("Bearer ") :] if authorization.startswith("Bearer ") else ""
        token = bearer or str(params.pop("token", "") or "")
        call = Call(method, params, token, request.method, authorization)
        status, headers = 200, {}
        handler = self._methods().get(method)
        try:
            if handler is None:
                status = 404
                raise _Refused("unknown_method", req_method=method)
            if self.faults.get(method):
                error = self.faults[method].pop(0)
                if error == "ratelimited":
                    status, headers = 429, {"Retry-After": "1"}
                raise _Refused(error)
            if method == "oauth.v2.access":
                answer = self._oauth_v2_access(call)
            else:
                grant = self._authenticate(token)
                headers["x-oauth-scopes"] = _scopes_of(grant)
                answer = handler(call, grant)
            call.answer = {"ok": True, **answer}
        except _Refused as refused:
            call.answer = {"ok": False, "error": refused.error, **refused.extra}
        self.calls[method] += 1
        self.requests.append(call)
        self._arrived.set()
        return web.json_response(call.answer, status=status, headers=headers)

    def _methods(self) -> dict[str, Callable[[Call, _Grant], dict[str, Any]]]:
        return {
            "oauth.v2.access": lambda call, grant: {},  # answered before authentication
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.update": self._update,
            "conversations.open": self._open,
            "views.publish": self._publish,
            "users.info": self._user_info,
        }

    def _authenticate(self, token: str) -> _Grant:
        if not token:
            raise _Refused("not_authed")
        grant = self._grants.get(token)
        if grant is None:
            raise _Refused("invalid_auth")
        if grant.state == "expired":
            raise _Refused("token_expired")
        if grant.state == "revoked":
            raise _Refused("token_revoked")
        return grant

    # --- OAuth ----------------------------------------------------------------------------------

    def _oauth_v2_access(self, call: Call) -> dict[str, Any]:
        client_id, client_secret = _basic(call.authorization)
        client_id = client_id or str(call.params.get("client_id") or "")
        client_secret = client_secret or str(call.params.get("client_secret") or "")
        if client_id != self.client_id:
            raise _Refused("invalid_client_id")
        if client_secret != self.client_secret:
            raise _Refused("bad_client_secret")
        grant_type = call.params.get("grant_type")
        if grant_type == "refresh_token":
            return self._rotate(str(call.params.get("refresh_token") or ""))
        if grant_type not in (None, "authorization_code"):
            raise _Refused("invalid_grant_type")
        code = str(call.params.get("code") or "")
        plan = self._codes.get(code)
        if plan is None:
            raise _Refused("invalid_code")
        if plan.redirect_uri is not None and call.params.get("redirect_uri") != plan.redirect_uri:
            raise _Refused("bad_redirect_uri")
        del self._codes[code]  # a code works once
        installed = self._install(plan)
        authed_user: dict[str, Any] = {"id": installed.user_id}
        if installed.user_token:
            authed_user |= {
                "scope": installed.user_scope,
                "access_token": installed.user_token,
                "token_type": "user",
            }
            if installed.user_refresh_token:
                authed_user |= {
                    "refresh_token": installed.user_refresh_token,
                    "expires_in": ROTATION_EXPIRES_IN,
                }
        answer: dict[str, Any] = {
            "access_token": installed.bot_token,
            "token_type": "bot",
            "scope": installed.bot_scope,
            "bot_user_id": installed.bot_user_id,
            "app_id": self.app_id,
            "team": _named(installed.team_id, installed.team_name),
            "enterprise": _named(installed.enterprise_id, installed.enterprise_name),
            "authed_user": authed_user,
            "is_enterprise_install": installed.is_enterprise_install,
        }
        if installed.bot_refresh_token:
            answer |= {
                "refresh_token": installed.bot_refresh_token,
                "expires_in": ROTATION_EXPIRES_IN,
            }
        return answer

    def _install(self, plan: _Plan) -> Installed:
        key = (plan.enterprise_id, plan.team_id)
        if key not in self._bots:
            number = next(self._ids)
            self._bots[key] = (f"U0BOT{number:05d}", f"B0BOT{number:05d}")
        bot_user_id, bot_id = self._bots[key]
        where = plan.team_id or plan.enterprise_id or "T"
        bot_token = f"xoxb-{where}-{next(self._ids)}-{secrets.token_hex(12)}"
        user_token = (
            f"xoxp-{where}-{next(self._ids)}-{secrets.token_hex(12)}" if plan.user_scope else None
        )
        installed = Installed(
            team_id=plan.team_id,
            team_name=plan.team_name,
            enterprise_id=plan.enterprise_id,
            enterprise_name=plan.enterprise_name,
            is_enterprise_install=plan.is_enterprise_install,
            bot_token=bot_token,
            bot_user_id=bot_user_id,
            bot_id=bot_id,
            bot_scope=plan.scope,
            user_id=plan.user_id,
            user_token=user_token,
            user_scope=plan.user_scope,
            bot_refresh_token=_refresh_token() if self.token_rotation else None,
            user_refresh_token=_refresh_token() if self.token_rotation and user_token else None,
        )
        bot = _Grant("bot", installed)
        self._grants[bot_token] = bot
        if installed.bot_refresh_token:
            self._refresh[installed.bot_refresh_token] = bot
        if user_token:
            user = _Grant("user", installed)
            self._grants[user_token] = user
            if installed.user_refresh_token:
                self._refresh[installed.user_refresh_token] = user
        return installed

    def _rotate(self, refresh_token: str) -> dict[str, Any]:
        """A new access token and refresh token for a refresh token (used once); the old
        access token works until it expires, as on Slack."""
        grant = self._refresh.pop(refresh_token, None)
        if grant is None or grant.state == "revoked":
            raise _Refused("invalid_refresh_token")
        installed = grant.installed
        where = installed.team_id or installed.enterprise_id or "T"
        prefix = "xoxb" if grant.kind == "bot" else "xoxp"
        token = f"{prefix}-{where}-{next(self._ids)}-{secrets.token_hex(12)}"
        new_refresh = _refresh_token()
        if grant.kind == "bot":
            installed = replace(installed, bot_token=token, bot_refresh_token=new_refresh)
        else:
            installed = replace(installed, user_token=token, user_refresh_token=new_refresh)
        rotated = _Grant(grant.kind, installed)
        self._grants[token] = rotated
        self._refresh[new_refresh] = rotated
        answer: dict[str, Any] = {
            "app_id": self.app_id,
            "access_token": token,
            "expires_in": ROTATION_EXPIRES_IN,
            "refresh_token": new_refresh,
            "token_type": grant.kind,
            "scope": installed.bot_scope if grant.kind == "bot" else installed.user_scope,
            "team": _named(installed.team_id, installed.team_name),
            "enterprise": _named(installed.enterprise_id, installed.enterprise_name),
            "is_enterprise_install": installed.is_enterprise_install,
        }
        if grant.kind == "bot":
            answer["bot_user_id"] = installed.bot_user_id
        return answer

    # --- Methods --------------------------------------------------------------------------------

    def _auth_test(self, call: Call, grant: _Grant) -> dict[str, Any]:
        installed = grant.installed
        org_wide = installed.is_enterprise_install
        # An org-wide token belongs to the org: Slack names the org where a team would be.
        team_id = installed.enterprise_id if org_wide else installed.team_id
        team_name = installed.enterprise_name if org_wide else installed.team_name
        slug = (team_name or "fake").lower().replace(" ", "-")
        host = f"{slug}.enterprise.slack.com" if org_wide else f"{slug}.slack.com"
        answer: dict[str, Any] = {
            "url": f"https://{host}/",
            "team": team_name,
            "team_id": team_id,
            "is_enterprise_install": org_wide,
        }
        if grant.kind == "bot":
            answer |= {"user": "runtime-connections", "user_id": installed.bot_user_id}
            answer["bot_id"] = installed.bot_id
        else:
            answer |= {"user": installed.user_id.lower(), "user_id": installed.user_id}
        if installed.enterprise_id:
            answer["enterprise_id"] = installed.enterprise_id
        return answer

    def _post_message(self, call: Call, grant: _Grant) -> dict[str, Any]:
        channel = self._channel_of(call)
        message = self._message(call, grant, channel)
        self.messages.append(message)
        return {"channel": channel, "ts": message.ts, "message": self._shape(message, grant)}

    def _post_ephemeral(self, call: Call, grant: _Grant) -> dict[str, Any]:
        channel = self._channel_of(call)
        user = str(call.params.get("user") or "")
        if not user:
            raise _Refused("user_not_in_channel")
        message = self._message(call, grant, channel)
        message.user, message.ephemeral = user, True
        self.messages.append(message)
        # Slack answers an ephemeral post with its timestamp alone.
        return {"message_ts": message.ts}

    def _update(self, call: Call, grant: _Grant) -> dict[str, Any]:
        channel = str(call.params.get("channel") or "")
        ts = str(call.params.get("ts") or "")
        # chat.update wants a conversation id: a user id is not one.
        if not channel or channel[0] in "UW":
            raise _Refused("channel_not_found")
        if not ts:
            raise _Refused("message_not_found")
        text, blocks = self._content(call)
        for message in self.messages:
            if message.channel == channel and message.ts == ts and not message.ephemeral:
                message.text, message.blocks = text, blocks
                message.edits += 1
                break
        else:
            if self.strict_updates:
                raise _Refused("message_not_found")
            message = Message(channel, ts, text, blocks, call.token, edits=1)
            self.messages.append(message)
        return {
            "channel": channel,
            "ts": ts,
            "text": text,
            "message": self._shape(message, grant),
        }

    def _open(self, call: Call, grant: _Grant) -> dict[str, Any]:
        if call.params.get("channel"):
            return {"channel": {"id": str(call.params["channel"])}}
        users = [user for user in str(call.params.get("users") or "").split(",") if user]
        if not users:
            raise _Refused("users_list_not_supplied")
        if len(users) > MPIM_USERS_MAX:
            raise _Refused("too_many_users")
        for user in users:
            self._user(user)  # user_not_found for nobody
        if len(users) == 1:
            channel_id = self.dm_channel(users[0])
            shape: dict[str, Any] = {"id": channel_id}
            if _truthy(call.params.get("return_im")):
                shape |= {
                    "created": FIRST_TS,
                    "is_im": True,
                    "is_org_shared": False,
                    "user": users[0],
                    "is_user_deleted": False,
                    "priority": 0,
                }
        else:
            key = tuple(sorted(users))
            if key not in self._mpims:
                self._mpims[key] = f"G{next(self._ids):08d}"
            channel_id = self._mpims[key]
            shape = {"id": channel_id}
        answer: dict[str, Any] = {"channel": shape}
        if channel_id in self._opened:
            answer = {"no_op": True, "already_open": True, **answer}
        self._opened.add(channel_id)
        return answer

    def _publish(self, call: Call, grant: _Grant) -> dict[str, Any]:
        user_id = str(call.params.get("user_id") or "")
        view = call.params.get("view")
        if not user_id:
            raise _Refused("invalid_arguments", response_metadata=_metadata(["user_id missing"]))
        self._user(user_id)
        if not isinstance(view, dict) or view.get("type") != "home":
            raise _Refused(
                "invalid_arguments",
                response_metadata=_metadata(["must be a home view [json-pointer:/view/type]"]),
            )
        errors = block_errors(view.get("blocks", []), limit=HOME_BLOCKS_MAX, pointer="/view")
        if errors:
            raise _Refused("invalid_arguments", response_metadata=_metadata(errors))
        previous = self.home_views.get(user_id)
        wanted = call.params.get("hash")
        if wanted and previous is not None and wanted != previous["hash"]:
            raise _Refused("hash_conflict")
        view_id = previous["id"] if previous else f"V{next(self._ids):08d}"
        installed = grant.installed
        published = {
            "id": view_id,
            "team_id": installed.team_id or installed.enterprise_id,
            "type": "home",
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{FIRST_TS + next(self._ids)}.{secrets.token_hex(4)}",
            "title": view.get("title"),
            "close": None,
            "submit": None,
            "clear_on_close": False,
            "notify_on_close": False,
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": self.app_id,
            "external_id": view.get("external_id", ""),
            "app_installed_team_id": installed.team_id or installed.enterprise_id,
            "bot_id": installed.bot_id,
        }
        self.home_views[user_id] = published
        return {"view": published}

    def _user_info(self, call: Call, grant: _Grant) -> dict[str, Any]:
        user = dict(self._user(str(call.params.get("user") or "")))
        if _truthy(call.params.get("include_locale")):
            user["locale"] = "en-GB"
        return {"user": user}

    # --- Helpers --------------------------------------------------------------------------------

    def _user(self, user_id: str) -> dict[str, Any]:
        if user_id in self.users:
            return self.users[user_id]
        if self.auto_users and user_id[:1] in ("U", "W") and user_id[1:].isalnum():
            return self.add_user(user_id, f"User {user_id}")
        raise _Refused("user_not_found")

    def _resolve(self, channel: str) -> str:
        # Posting to a user id posts in the app's DM with them, as on Slack.
        return self.dm_channel(channel) if channel[:1] in ("U", "W") else channel

    def _channel_of(self, call: Call) -> str:
        channel = str(call.params.get("channel") or "")
        if not channel:
            raise _Refused("channel_not_found")
        return self._resolve(channel)

    def _content(self, call: Call) -> tuple[str, list[dict[str, Any]]]:
        text = str(call.params.get("text") or "")
        blocks = call.params.get("blocks")
        if blocks is not None:
            if isinstance(blocks, str):
                raise _Refused("invalid_blocks_format")
            errors = block_errors(blocks, limit=MESSAGE_BLOCKS_MAX)
            if errors:
                raise _Refused("invalid_blocks", errors=errors, response_metadata=_metadata(errors))
        if not text and not blocks and not call.params.get("attachments"):
            raise _Refused("no_text")
        if len(text) > TEXT_MAX:
            raise _Refused("msg_too_long")
        return text, list(blocks or [])

    def _message(self, call: Call, grant: _Grant, channel: str) -> Message:
        text, blocks = self._content(call)
        number = next(self._ids)
        return Message(
            channel=channel,
            ts=f"{FIRST_TS + number}.{number:06d}",
            text=text,
            blocks=blocks,
            token=call.token,
            thread_ts=str(call.params.get("thread_ts") or ""),
        )

    def _shape(self, message: Message, grant: _Grant) -> dict[str, Any]:
        """The `message` object Slack echoes back."""
        installed = grant.installed
        shape: dict[str, Any] = {
            "type": "message",
            "user": installed.bot_user_id if grant.kind == "bot" else installed.user_id,
            "text": message.text,
            "ts": message.ts,
            "team": installed.team_id or installed.enterprise_id,
            "app_id": self.app_id,
        }
        if grant.kind == "bot":
            shape["bot_id"] = installed.bot_id
        if message.blocks:
            shape["blocks"] = message.blocks
        if message.thread_ts:
            shape["thread_ts"] = message.thread_ts
        return shape


def block_errors(blocks: Any, *, limit: int, pointer: str = "") -> list[str]:
    """What Slack would refuse in `blocks`, in its words (`… [json-pointer:/blocks/3]`): too
    many blocks, a block slack_sdk's models reject (unknown type, a text over its limit),
    a repeated block id, or a repeated action id within one block."""
    where = f"{pointer}/blocks"
    if not isinstance(blocks, list):
        return [f"must provide an array [json-pointer:{where}]"]
    errors: list[str] = []
    if len(blocks) > limit:
        errors.append(f"no more than {limit} items allowed [json-pointer:{where}]")
    block_ids: set[str] = set()
    for index, raw in enumerate(blocks):
        at = f"[json-pointer:{where}/{index}]"
        parsed = Block.parse(raw) if isinstance(raw, dict) else None
        if parsed is None:
            errors.append(f"unsupported type {at}")
            continue
        try:
            parsed.to_dict()  # runs every validator, nested elements' too
        except SlackObjectFormationError as problem:
            errors.append(f"{problem} {at}")
        if raw.get("type") == "section" and not (
            (raw.get("text") or {}).get("text") or raw.get("fields") or raw.get("accessory")
        ):
            errors.append(f"must provide text or fields {at}")
        block_id = raw.get("block_id")
        if block_id is not None:
            if block_id in block_ids:
                errors.append(f"duplicate block_id {block_id!r} {at}")
            block_ids.add(block_id)
        action_ids = [
            element.get("action_id")
            for element in raw.get("elements") or []
            if isinstance(element, dict) and element.get("action_id")
        ]
        if len(action_ids) != len(set(action_ids)):
            errors.append(f"duplicate action_id within a block {at}")
    return errors


async def _params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
        else:
            form = await request.post()
            params.update({key: value for key, value in form.items() if isinstance(value, str)})
    for name in JSON_FIELDS:
        value = params.get(name)
        if isinstance(value, str) and value[:1] in ("[", "{"):
            # Left as text when it is not JSON: the method refuses it as Slack would.
            with contextlib.suppress(json.JSONDecodeError):
                params[name] = json.loads(value)
    return params


def _basic(authorization: str) -> tuple[str, str]:
    if not authorization.startswith("Basic "):
        return "", ""
    try:
        decoded = base64.b64decode(authorization[len("Basic ") :], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    client_id, _, client_secret = decoded.partition(":")
    return client_id, client_secret


def _named(identifier: str | None, name: str | None) -> dict[str, str] | None:
    return {"id": identifier, "name": name or ""} if identifier else None


def _scopes_of(grant: _Grant) -> str:
    installed = grant.installed
    return installed.bot_scope if grant.kind == "bot" else installed.user_scope


def _refresh_token() -> str:
    return f"xoxe-1-{secrets.token_hex(16)}"


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("1", "true")


def _metadata(errors: list[str]) -> dict[str, list[str]]:
    return {"messages": [f"[ERROR] {error}" for error in errors]}
