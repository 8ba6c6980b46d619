"""The loopback Slack Web API (tests/support/slack_api.py) answers slack_sdk's real client the
way slack.com does: every method through `AsyncWebClient(base_url=...)`, Bolt's OAuth flow and
slack_sdk's token rotator against it, and the refusals Slack gives (`invalid_auth`,
`invalid_code`, `invalid_blocks`, ...) as `SlackApiError`s.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.installation_store import FileInstallationStore, Installation
from slack_sdk.oauth.state_store import FileOAuthStateStore
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient

from connections.views import ConnectionView
from slack.blocks import connections_blocks, home_view
from tests.support.slack_api import SlackApi

# slack_sdk sends oauth.v2.access's client credentials with aiohttp's BasicAuth, which this aiohttp
# deprecates: the library's warning, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")

VIEWS = [
    ConnectionView(id="c1", app_name="Box", account="jane@contoso.com", status="connected"),
    ConnectionView(
        id="c2",
        app_name="Salesforce",
        account="jane@contoso.com",
        status="needs_reauth",
        since=datetime(2025, 12, 3, tzinfo=UTC),
    ),
]


@pytest.fixture
async def api() -> AsyncIterator[SlackApi]:
    fake = SlackApi()
    await fake.start()
    yield fake
    await fake.close()


def client(api: SlackApi, token: str | None = None) -> AsyncWebClient:
    return AsyncWebClient(token=token, base_url=api.base_url)


async def refused(call: object) -> SlackApiError:
    """The SlackApiError an awaited call raises."""
    with pytest.raises(SlackApiError) as raised:
        await call  # type: ignore[misc]
    return raised.value


# --- OAuth --------------------------------------------------------------------------------------


async def test_base_url_is_the_web_api_root(api: SlackApi) -> None:
    assert api.base_url.startswith("http://127.0.0.1:")
    assert api.base_url.endswith("/api/")


async def test_a_code_installs_the_chosen_workspace_and_installer(api: SlackApi) -> None:
    code = api.issue_code(team_id="T0AAA", team_name="Contoso", user_id="U0JANE")
    answer = await client(api).oauth_v2_access(
        client_id=api.client_id, client_secret=api.client_secret, code=code
    )
    assert answer["ok"] is True
    assert answer["access_token"].startswith("xoxb-")
    assert answer["token_type"] == "bot"
    assert "chat:write" in answer["scope"].split(",")
    assert answer["bot_user_id"].startswith("U")
    assert answer["app_id"] == api.app_id
    assert answer["team"] == {"id": "T0AAA", "name": "Contoso"}
    assert answer["enterprise"] is None
    assert answer["authed_user"] == {"id": "U0JANE"}
    assert answer["is_enterprise_install"] is False
    assert "refresh_token" not in answer and "expires_in" not in answer
    # The client credentials went as HTTP Basic, as slack_sdk sends them.
    assert api.of("oauth.v2.access")[0].authorization.startswith("Basic ")

    me = await client(api, answer["access_token"]).auth_test()
    assert me["team_id"] == "T0AAA"
    assert me["team"] == "Contoso"
    assert me["user_id"] == answer["bot_user_id"]
    assert me["bot_id"].startswith("B")
    assert me["url"] == "https://contoso.slack.com/"
    assert me["is_enterprise_install"] is False
    assert "enterprise_id" not in me
    assert me.headers["x-oauth-scopes"] == answer["scope"]


async def test_a_code_works_once_and_unknown_codes_are_invalid(api: SlackApi) -> None:
    code = api.issue_code()
    web = client(api)
    await web.oauth_v2_access(client_id=api.client_id, client_secret=api.client_secret, code=code)
    again = await refused(
        web.oauth_v2_access(client_id=api.client_id, client_secret=api.client_secret, code=code)
    )
    assert again.response["error"] == "invalid_code"
    unknown = await refused(
        web.oauth_v2_access(client_id=api.client_id, client_secret=api.client_secret, code="nope")
    )
    assert unknown.response.data == {"ok": False, "error": "invalid_code"}


async def test_client_credentials_and_redirect_uri_are_checked(api: SlackApi) -> None:
    code = api.issue_code(redirect_uri="https://bot.example/slack/oauth_redirect")
    web = client(api)
    wrong_id = await refused(
        web.oauth_v2_access(client_id="9.9", client_secret=api.client_secret, code=code)
    )
    assert wrong_id.response["error"] == "invalid_client_id"
    wrong_secret = await refused(
        web.oauth_v2_access(client_id=api.client_id, client_secret="guess", code=code)
    )
    assert wrong_secret.response["error"] == "bad_client_secret"
    wrong_redirect = await refused(
        web.oauth_v2_access(
            client_id=api.client_id,
            client_secret=api.client_secret,
            code=code,
            redirect_uri="https://elsewhere.example/",
        )
    )
    assert wrong_redirect.response["error"] == "bad_redirect_uri"
    answer = await web.oauth_v2_access(
        client_id=api.client_id,
        client_secret=api.client_secret,
        code=code,
        redirect_uri="https://bot.example/slack/oauth_redirect",
    )
    assert answer["ok"] is True


async def test_an_enterprise_grid_workspace_and_an_org_wide_install(api: SlackApi) -> None:
    web = client(api)
    workspace = await web.oauth_v2_access(
        client_id=api.client_id,
        client_secret=api.client_secret,
        code=api.issue_code(team_id="T0GRID", enterprise_id="E0ORG", enterprise_name="Org"),
    )
    assert workspace["enterprise"] == {"id": "E0ORG", "name": "Org"}
    assert workspace["team"]["id"] == "T0GRID"
    me = await client(api, workspace["access_token"]).auth_test()
    assert (me["enterprise_id"], me["team_id"]) == ("E0ORG", "T0GRID")

    org = await web.oauth_v2_access(
        client_id=api.client_id,
        client_secret=api.client_secret,
        code=api.issue_code(
            enterprise_id="E0ORG", enterprise_name="Org", is_enterprise_install=True
        ),
    )
    assert org["team"] is None
    assert org["is_enterprise_install"] is True
    org_me = await client(api, org["access_token"]).auth_test()
    assert org_me["is_enterprise_install"] is True
    assert org_me["enterprise_id"] == "E0ORG"
    assert org_me["url"] == "https://org.enterprise.slack.com/"


async def test_user_scopes_give_the_installer_a_user_token(api: SlackApi) -> None:
    code = api.issue_code(user_id="U0JANE", user_scope="search:read")
    answer = await client(api).oauth_v2_access(
        client_id=api.client_id, client_secret=api.client_secret, code=code
    )
    user = answer["authed_user"]
    assert user["id"] == "U0JANE"
    assert user["scope"] == "search:read"
    assert user["token_type"] == "user"
    assert user["access_token"].startswith("xoxp-")
    me = await client(api, user["access_token"]).auth_test()
    assert me["user_id"] == "U0JANE"
    assert "bot_id" not in me
    assert me.headers["x-oauth-scopes"] == "search:read"


async def test_token_rotation_refreshes_and_expires(api: SlackApi) -> None:
    api.token_rotation = True
    code = api.issue_code(user_scope="search:read")
    answer = await client(api).oauth_v2_access(
        client_id=api.client_id, client_secret=api.client_secret, code=code
    )
    assert answer["refresh_token"].startswith("xoxe-1-")
    assert answer["expires_in"] == 43200
    assert answer["authed_user"]["refresh_token"].startswith("xoxe-1-")
    assert answer["authed_user"]["expires_in"] == 43200

    refreshed = await client(api).oauth_v2_access(
        client_id=api.client_id,
        client_secret=api.client_secret,
        grant_type="refresh_token",
        refresh_token=answer["refresh_token"],
    )
    assert refreshed["token_type"] == "bot"
    assert refreshed["access_token"] != answer["access_token"]
    assert refreshed["refresh_token"] != answer["refresh_token"]
    assert (await client(api, refreshed["access_token"]).auth_test())["ok"] is True
    used = await refused(
        client(api).oauth_v2_access(
            client_id=api.client_id,
            client_secret=api.client_secret,
            grant_type="refresh_token",
            refresh_token=answer["refresh_token"],
        )
    )
    assert used.response["error"] == "invalid_refresh_token"

    api.expire(answer["access_token"])
    expired = await refused(client(api, answer["access_token"]).auth_test())
    assert expired.response["error"] == "token_expired"


async def test_bolt_installs_and_slack_sdk_rotates_against_it(
    api: SlackApi, tmp_path: Path
) -> None:
    """The fake satisfies the real consumers: Bolt's OAuth flow and slack_sdk's rotator."""
    api.token_rotation = True
    flow = AsyncOAuthFlow(
        client=client(api),
        settings=AsyncOAuthSettings(
            client_id=api.client_id,
            client_secret=api.client_secret,
            scopes=["chat:write", "commands"],
            installation_store=FileInstallationStore(base_dir=str(tmp_path / "installations")),
            state_store=FileOAuthStateStore(expiration_seconds=600, base_dir=str(tmp_path)),
        ),
    )
    installation = await flow.run_installation(
        api.issue_code(team_id="T0AAA", team_name="Contoso", user_id="U0JANE")
    )
    assert isinstance(installation, Installation)
    assert installation.team_id == "T0AAA"
    assert installation.user_id == "U0JANE"
    assert installation.bot_token and installation.bot_token.startswith("xoxb-")
    assert installation.bot_id and installation.bot_id.startswith("B")
    assert installation.bot_refresh_token
    assert installation.bot_token_expires_at

    rotator = AsyncTokenRotator(
        client_id=api.client_id, client_secret=api.client_secret, client=client(api)
    )
    rotated = await rotator.perform_token_rotation(
        installation=installation, minutes_before_expiration=24 * 60
    )
    assert rotated is not None
    assert rotated.bot_token != installation.bot_token
    assert (await client(api, rotated.bot_token).auth_test())["team_id"] == "T0AAA"


# --- Authentication -----------------------------------------------------------------------------

EVERY_METHOD = [
    ("auth_test", {}),
    ("chat_postMessage", {"channel": "C0GENERAL", "text": "hi"}),
    ("chat_postEphemeral", {"channel": "C0GENERAL", "user": "U0JANE", "text": "hi"}),
    ("chat_update", {"channel": "C0GENERAL", "ts": "1.000001", "text": "hi"}),
    ("conversations_open", {"users": ["U0JANE"]}),
    ("views_publish", {"user_id": "U0JANE", "view": {"type": "home", "blocks": []}}),
    ("users_info", {"user": "U0JANE"}),
]


@pytest.mark.parametrize(("method", "arguments"), EVERY_METHOD)
async def test_an_unknown_token_is_invalid_auth(
    api: SlackApi, method: str, arguments: dict[str, object]
) -> None:
    web = client(api, "xoxb-not-a-token")
    error = await refused(getattr(web, method)(**arguments))
    assert error.response["ok"] is False
    assert error.response["error"] == "invalid_auth"
    assert api.requests[-1].token == "xoxb-not-a-token"
    assert api.requests[-1].error == "invalid_auth"
    assert not api.messages and not api.home_views


async def test_no_token_is_not_authed_and_a_revoked_one_is_revoked(api: SlackApi) -> None:
    assert (await refused(client(api).auth_test())).response["error"] == "not_authed"
    token = api.install().bot_token
    api.revoke(token)
    assert (await refused(client(api, token).auth_test())).response["error"] == "token_revoked"


# --- Messages ---------------------------------------------------------------------------------


async def test_post_message_records_text_blocks_and_the_bearer_token(api: SlackApi) -> None:
    installed = api.install()
    blocks = connections_blocks(VIEWS, today=datetime(2025, 12, 5, tzinfo=UTC).date())
    answer = await client(api, installed.bot_token).chat_postMessage(
        channel="C0GENERAL", text="Your personal connections", blocks=blocks
    )
    assert answer["channel"] == "C0GENERAL"
    assert answer["ts"]
    assert answer["message"]["bot_id"] == installed.bot_id
    assert answer["message"]["blocks"] == blocks

    call = api.of("chat.postMessage")[0]
    assert call.token == installed.bot_token
    assert call.authorization == f"Bearer {installed.bot_token}"
    assert call.params["blocks"] == blocks
    assert api.calls["chat.postMessage"] == 1
    [posted] = api.posted_to("C0GENERAL")
    assert (posted.ts, posted.text, posted.blocks) == (answer["ts"], call.params["text"], blocks)
    assert "connections_delete" in posted.action_ids()


async def test_form_encoded_blocks_are_parsed(api: SlackApi) -> None:
    token = api.install().bot_token
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}]
    await client(api, token).api_call(
        "chat.postMessage",
        data={"channel": "C0GENERAL", "text": "hello", "blocks": json.dumps(blocks)},
    )
    assert api.requests[-1].params["blocks"] == blocks
    assert api.posted_to("C0GENERAL")[0].blocks == blocks


async def test_posting_to_a_user_lands_in_their_dm(api: SlackApi) -> None:
    web = client(api, api.install().bot_token)
    answer = await web.chat_postMessage(channel="U0JANE", text="hi")
    opened = await web.conversations_open(users=["U0JANE"])
    assert answer["channel"] == opened["channel"]["id"] == api.dm_channel("U0JANE")
    assert answer["channel"].startswith("D")
    assert [m.text for m in api.posted_to("U0JANE")] == ["hi"]


async def test_ephemeral_messages_reach_one_person(api: SlackApi) -> None:
    web = client(api, api.install().bot_token)
    answer = await web.chat_postEphemeral(channel="C0GENERAL", user="U0JANE", text="only you")
    # Slack answers an ephemeral post with its timestamp alone.
    assert answer["message_ts"]
    assert api.posted_to("C0GENERAL") == []
    [message] = api.ephemeral_to("U0JANE")
    assert (message.text, message.channel, message.ts) == (
        "only you",
        "C0GENERAL",
        answer["message_ts"],
    )
    assert api.ephemeral_to("U0JANE", "C0OTHER") == []
    assert api.ephemeral_to("U0BOB") == []


async def test_update_changes_the_posted_message(api: SlackApi) -> None:
    web = client(api, api.install().bot_token)
    posted = await web.chat_postMessage(channel="C0GENERAL", text="before")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "after"}}]
    answer = await web.chat_update(
        channel="C0GENERAL", ts=posted["ts"], text="after", blocks=blocks
    )
    assert (answer["channel"], answer["ts"], answer["text"]) == ("C0GENERAL", posted["ts"], "after")
    [message] = api.posted_to("C0GENERAL")
    assert (message.text, message.blocks, message.edits) == ("after", blocks, 1)

    api.strict_updates = True
    missing = await refused(web.chat_update(channel="C0GENERAL", ts="1.000009", text="x"))
    assert missing.response["error"] == "message_not_found"


async def test_messages_without_content_or_with_invalid_blocks_are_refused(
    api: SlackApi,
) -> None:
    web = client(api, api.install().bot_token)
    with pytest.warns(UserWarning, match="top-level `text`"):  # slack_sdk's own nudge
        empty = await refused(web.chat_postMessage(channel="C0GENERAL"))
    assert empty.response["error"] == "no_text"
    too_many = [{"type": "divider"}] * 51
    error = await refused(web.chat_postMessage(channel="C0GENERAL", text="x", blocks=too_many))
    assert error.response["error"] == "invalid_blocks"
    assert any("no more than 50" in problem for problem in error.response["errors"])
    button = {"type": "button", "text": {"type": "plain_text", "text": "Go"}, "action_id": "go"}
    twice = [{"type": "actions", "elements": [button, button]}]
    error = await refused(web.chat_postMessage(channel="C0GENERAL", text="x", blocks=twice))
    assert any("duplicate action_id" in problem for problem in error.response["errors"])
    long_text = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]
    error = await refused(web.chat_postMessage(channel="C0GENERAL", text="x", blocks=long_text))
    assert error.response["error"] == "invalid_blocks"
    assert api.messages == []


# --- Conversations, views, users ------------------------------------------------------------


async def test_conversations_open_gives_one_dm_per_user(api: SlackApi) -> None:
    web = client(api, api.install().bot_token)
    first = await web.conversations_open(users=["U0JANE"])
    again = await web.conversations_open(users="U0JANE", return_im=True)
    other = await web.conversations_open(users=["U0BOB"])
    group = await web.conversations_open(users=["U0JANE", "U0BOB"])
    assert first["channel"] == {"id": api.dm_channel("U0JANE")}
    assert again["channel"]["id"] == first["channel"]["id"]
    assert again["already_open"] is True
    assert again["channel"]["is_im"] is True and again["channel"]["user"] == "U0JANE"
    assert other["channel"]["id"].startswith("D")
    assert other["channel"]["id"] != first["channel"]["id"]
    assert group["channel"]["id"].startswith("G")
    assert api.of("conversations.open")[0].params["users"] == "U0JANE"
    nobody = await refused(web.conversations_open(users=[]))
    assert nobody.response["error"] == "users_list_not_supplied"


async def test_views_publish_keeps_each_persons_home_tab(api: SlackApi) -> None:
    installed = api.install()
    web = client(api, installed.bot_token)
    view = home_view(VIEWS)
    answer = await web.views_publish(user_id="U0JANE", view=view)
    published = answer["view"]
    assert published["id"].startswith("V")
    assert published["type"] == "home"
    assert published["blocks"] == view["blocks"]
    assert published["bot_id"] == installed.bot_id
    assert api.home_of("U0JANE") == published
    assert api.of("views.publish")[0].params["view"] == view

    again = await web.views_publish(user_id="U0JANE", view=view, hash=published["hash"])
    assert again["view"]["id"] == published["id"]
    stale = await refused(web.views_publish(user_id="U0JANE", view=view, hash=published["hash"]))
    assert stale.response["error"] == "hash_conflict"
    modal = await refused(web.views_publish(user_id="U0JANE", view={"type": "modal"}))
    assert modal.response["error"] == "invalid_arguments"


async def test_users_info_answers_with_the_person(api: SlackApi) -> None:
    api.add_user("U0JANE", "Jane Doe", email="jane@contoso.com")
    web = client(api, api.install().bot_token)
    answer = await web.users_info(user="U0JANE", include_locale=True)
    assert answer["user"]["id"] == "U0JANE"
    assert answer["user"]["real_name"] == "Jane Doe"
    assert answer["user"]["profile"]["real_name"] == "Jane Doe"
    assert answer["user"]["profile"]["email"] == "jane@contoso.com"
    assert answer["user"]["locale"]
    call = api.of("users.info")[0]
    assert (call.http_method, call.params["user"]) == ("GET", "U0JANE")

    made_up = await web.users_info(user="U0BOB")
    assert made_up["user"]["real_name"]
    api.auto_users = False
    nobody = await refused(web.users_info(user="U0NOBODY"))
    assert nobody.response["error"] == "user_not_found"


# --- Failures, counting, waiting ----------------------------------------------------------------


async def test_fail_next_answers_the_chosen_error_once(api: SlackApi) -> None:
    web = client(api, api.install().bot_token)
    api.fail_next("chat.postMessage", "ratelimited")
    api.fail_next("chat.postMessage", "channel_not_found")
    limited = await refused(web.chat_postMessage(channel="C0GENERAL", text="x"))
    assert limited.response.status_code == 429
    assert limited.response.headers["Retry-After"] == "1"
    gone = await refused(web.chat_postMessage(channel="C0GENERAL", text="x"))
    assert gone.response["error"] == "channel_not_found"
    assert (await web.chat_postMessage(channel="C0GENERAL", text="x"))["ok"] is True
    assert api.calls["chat.postMessage"] == 3
    assert [call.ok for call in api.of("chat.postMessage")] == [False, False, True]


async def test_an_unknown_method_is_unknown_method(api: SlackApi) -> None:
    web = client(api, api.install().bot_token)
    error = await refused(web.api_call("chat.teleport"))
    assert error.response["error"] == "unknown_method"


async def test_wait_for_wakes_on_the_call(api: SlackApi) -> None:
    web = client(api, api.install().bot_token)
    waiting = asyncio.create_task(
        api.wait_for(lambda call: call.method == "chat.postMessage", within_s=5)
    )
    await asyncio.sleep(0)  # let it start waiting before the call arrives
    await web.chat_postMessage(channel="C0GENERAL", text="hello")
    call = await waiting
    assert call.params["text"] == "hello"
    with pytest.raises(TimeoutError):
        await api.wait_for(lambda call: call.method == "views.publish", within_s=0.05)
