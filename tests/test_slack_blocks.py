"""Block Kit for the Slack surface (slack/blocks.py): every output is Block Kit that slack_sdk's
models read back unchanged (their validators hold Slack's limits), with the action ids and
values the handlers expect, confirm dialogs before destructive buttons, Reconnect only where it
can work, paging, escaped data and Slack's size limits kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

import messages
from connections.views import BreakNotice, ConnectionView, blocked
from recipes.results import Outcome, RunResult
from slack import blocks as kit
from tests.support.slack_api import block_errors

TODAY = date(2025, 12, 5)
SINCE = datetime(2025, 12, 3, 9, 30, tzinfo=UTC)
HOSTILE = "<!channel> & <@U123>"


def view(
    number: int, status: str = "connected", *, app: str = "Box", account: str = ""
) -> ConnectionView:
    return ConnectionView(
        id=f"65a1b2c3d4e5f6a7b8c9d{number:03d}",
        app_name=app,
        account=account or f"person{number}@contoso.com",
        status=status,
        since=None if status == "connected" else SINCE,
    )


def round_trips(blocks: list[dict[str, Any]], *, limit: int = kit.MESSAGE_BLOCKS_MAX) -> None:
    """Every block reads back through slack_sdk's models unchanged (its validators check
    Slack's per-field limits), and the whole passes the loopback Slack API's checks."""
    assert 0 < len(blocks) <= limit
    for block in blocks:
        parsed = Block.parse(block)
        assert parsed is not None, block
        assert parsed.to_dict() == block
    assert block_errors(blocks, limit=limit) == []


def buttons(blocks: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(block, button) for every button, in actions blocks and as accessories."""
    for block in blocks:
        for element in [*(block.get("elements") or []), block.get("accessory") or {}]:
            if element.get("type") == "button":
                yield block, element


def texts(value: Any) -> Iterator[str]:
    """Every text object's text, anywhere."""
    if isinstance(value, dict):
        if value.get("type") in ("plain_text", "mrkdwn") and isinstance(value.get("text"), str):
            yield value["text"]
        for inner in value.values():
            yield from texts(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from texts(inner)


def button_of(blocks: list[dict[str, Any]], action_id: str, value: str) -> dict[str, Any] | None:
    for _, button in buttons(blocks):
        if button["action_id"] == action_id and button.get("value") == value:
            return button
    return None


# --- Connections --------------------------------------------------------------------------------


def test_each_connection_has_its_line_and_its_buttons() -> None:
    connected = view(1)
    signed_out = view(2, "needs_reauth", app="Salesforce")
    disconnected = view(3, "disconnected")
    out = kit.connections_blocks([connected, signed_out, disconnected], today=TODAY)
    round_trips(out)
    assert out[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": messages.CONNECTIONS_TITLE, "emoji": False},
    }
    lines = [block["text"]["text"] for block in out if block["type"] == "section"]
    assert lines == [
        "*Box* — person1@contoso.com\nConnected",
        "*Salesforce* — person2@contoso.com\nNeeds sign-in since 3 Dec",
        "*Box* — person3@contoso.com\nDisconnected since 3 Dec",
    ]

    assert {b["action_id"] for _, b in buttons(out) if b["value"] == connected.id} == {
        kit.DISCONNECT,
        kit.DELETE,
    }
    for signed_out_one in (signed_out, disconnected):
        assert {b["action_id"] for _, b in buttons(out) if b["value"] == signed_out_one.id} == {
            kit.RECONNECT,
            kit.DELETE,
        }
    reconnect = button_of(out, kit.RECONNECT, signed_out.id)
    assert reconnect is not None and reconnect["style"] == "primary"
    assert "confirm" not in reconnect


def test_action_ids_are_the_ones_the_handlers_listen_to() -> None:
    assert (kit.DISCONNECT, kit.DELETE, kit.RECONNECT, kit.PAGE) == (
        "connections_disconnect",
        "connections_delete",
        "connections_reconnect",
        "connections_page",
    )
    assert (kit.SHOW_CONNECTIONS, kit.SIGNIN_OPEN) == ("connections_show", "signin_open")


def test_disconnect_and_delete_ask_first() -> None:
    connected = view(1)
    out = kit.connections_blocks([connected], today=TODAY)
    disconnect = button_of(out, kit.DISCONNECT, connected.id)
    delete = button_of(out, kit.DELETE, connected.id)
    assert disconnect is not None and delete is not None
    assert disconnect["confirm"]["title"]["text"] == messages.SLACK_CONFIRM_DISCONNECT_TITLE
    assert disconnect["confirm"]["text"]["text"].startswith(f"Disconnect {connected.label}?")
    assert disconnect["confirm"]["confirm"]["text"] == messages.BUTTON_DISCONNECT
    assert disconnect["confirm"]["deny"]["text"] == messages.BUTTON_CANCEL
    assert delete["style"] == "danger"
    assert delete["confirm"]["style"] == "danger"
    assert delete["confirm"]["title"]["text"] == messages.CONFIRM_DELETE_TITLE
    assert delete["confirm"]["text"]["text"] == messages.CONFIRM_DELETE_TEXT.format(
        label=connected.label
    )


def test_reconnect_only_where_it_can_work() -> None:
    """A signed-out connection whose app is no longer set up gets no Reconnect, and the list
    says why."""
    gone = blocked(view(1, "disconnected"))
    out = kit.connections_blocks([gone], today=TODAY)
    round_trips(out)
    assert {b["action_id"] for _, b in buttons(out)} == {kit.DELETE}
    assert messages.CONNECTIONS_CANNOT_RECONNECT in json.dumps(out, ensure_ascii=False)


def test_values_are_connection_ids_and_block_ids_are_unique() -> None:
    views = [
        view(number, status)
        for number, status in enumerate(["connected"] * 5 + ["disconnected"] * 5)
    ]
    out = kit.connections_blocks(views, today=TODAY)
    ids = {v.id for v in views}
    for _, button in buttons(out):
        assert button["value"] in ids  # never a token, never more than the id
    block_ids = [block["block_id"] for block in out if "block_id" in block]
    assert len(block_ids) == len(set(block_ids)) == 2 * len(views)
    for block in out:
        if block["type"] == "actions":
            action_ids = [element["action_id"] for element in block["elements"]]
            assert len(action_ids) == len(set(action_ids))
            assert kit.page_of(block["block_id"]) == 0


def test_paging_25_connections() -> None:
    views = [view(number) for number in range(25)]
    pages = [kit.connections_blocks(views, page=page, today=TODAY) for page in range(3)]
    for page, out in enumerate(pages):
        round_trips(out)
        shown = {b["value"] for _, b in buttons(out) if b["action_id"] == kit.DELETE}
        assert shown == {v.id for v in views[page * 10 : page * 10 + 10]}
        paging = sorted(b["value"] for _, b in buttons(out) if b["action_id"] == kit.PAGE)
        assert paging == {0: ["1"], 1: ["0", "2"], 2: ["1"]}[page]
        first, last = page * 10 + 1, min(page * 10 + 10, 25)
        expected = messages.CONNECTIONS_PAGE.format(first=first, last=last, total=25)
        assert expected in list(texts(out))
        for block in out:
            if block.get("block_id", "").startswith(kit.CONNECTION_ACTIONS_BLOCK):
                assert kit.page_of(block["block_id"]) == page
    # A page past the end shows the last one.
    assert kit.connections_blocks(views, page=7, today=TODAY) == pages[2]
    # One page: no paging at all.
    one_page = kit.connections_blocks(views[:10], today=TODAY)
    assert not [b for _, b in buttons(one_page) if b["action_id"] == kit.PAGE]


def test_result_and_problem_lines() -> None:
    out = kit.connections_blocks(
        [view(1)], result="Disconnected Box (a@b.c).", problem="Choose a connection first."
    )
    round_trips(out)
    assert out[1]["text"]["text"] == "Disconnected Box (a@b.c)."
    assert out[2]["text"]["text"] == ":warning: Choose a connection first."


def test_the_empty_list_says_how_connections_appear() -> None:
    out = kit.connections_blocks([])
    round_trips(out)
    assert [block["text"]["text"] for block in out[1:]] == [messages.CONNECTIONS_EMPTY]
    assert not list(buttons(out))
    no_recipes = kit.connections_blocks([], has_recipes=False)
    assert messages.CONNECTIONS_EMPTY_NO_RECIPES in list(texts(no_recipes))


def test_data_is_escaped_everywhere() -> None:
    """An app or account named like a mention never reaches Slack unescaped."""
    hostile = view(1, app=HOSTILE, account=HOSTILE)
    signed_out = view(2, "needs_reauth", app=HOSTILE, account=HOSTILE)
    notice = BreakNotice(
        connection_id=hostile.id,
        app_name=HOSTILE,
        account=HOSTILE,
        reason="refresh_refused",
        why=messages.NOTICE_WHY_REFRESH_REFUSED,
        since=SINCE,
        can_reconnect=False,
        contact=HOSTILE,
    )
    result = RunResult(
        Outcome.SUCCEEDED,
        recipe_name=HOSTILE,
        verb="Created",
        app_name=HOSTILE,
        acted_as=HOSTILE,
        fields={HOSTILE: HOSTILE},
        summary=HOSTILE,
        link="https://example.com/item/1",
    )
    failed = RunResult(Outcome.FAILED, recipe_name=HOSTILE, message=f"Box said {HOSTILE}")
    outputs: list[Any] = [
        kit.connections_blocks([hostile, signed_out], result=f"Deleted {HOSTILE}.", today=TODAY),
        kit.home_view([hostile, signed_out], problem=HOSTILE, today=TODAY),
        kit.notice_blocks(notice, today=TODAY),
        kit.notice_text(notice),
        kit.result_blocks(result),
        kit.result_text(result),
        kit.result_blocks(failed),
        kit.result_text(failed),
        kit.login_blocks(HOSTILE, "https://bot.example/signin/start?s=1"),
        kit.login_text(HOSTILE),
        kit.help_blocks([(HOSTILE, HOSTILE)], commands=[(HOSTILE, HOSTILE)]),
    ]
    for output in outputs:
        written = json.dumps(output, ensure_ascii=False)
        for raw in (HOSTILE, "<!channel>", "<@U123>", " & "):
            assert raw not in written, written
        assert "&lt;!channel&gt; &amp; &lt;@U123&gt;" in written, written
        for text in texts(output):
            assert "<" not in text and ">" not in text


def test_long_names_stay_within_slacks_limits() -> None:
    views = [
        view(number, status, app="A" * 400 + f" {number}", account="b&" * 3000)
        for number, status in enumerate(["connected", "disconnected"] * 5)
    ]
    out = kit.connections_blocks(views, result="r" * 5000, problem="p<" * 5000, today=TODAY)
    round_trips(out)  # slack_sdk's validators: 3000 per text, 75 per button, 300 per confirm
    for text in texts(out):
        assert len(text) <= kit.TEXT_MAX
        assert not text.endswith(("&", "&a", "&am", "&amp", "&l", "&lt")), text[-8:]
    for _, button in buttons(out):
        confirm = button.get("confirm")
        if confirm:
            assert len(confirm["text"]["text"]) <= kit.CONFIRM_TEXT_MAX
            # The sentence keeps its end: only the label was shortened.
            assert confirm["text"]["text"].endswith("sign in again.")
    home = kit.home_view(views, today=TODAY)
    assert View(**home).to_dict() == home


def test_page_of_reads_the_page_back() -> None:
    assert kit.page_of("connection_actions:3:65a1b2c3") == 3
    assert kit.page_of("connection:0:65a1b2c3") == 0
    assert kit.page_of("connections_next") == 0
    assert kit.page_of("connection_actions:x:1") == 0


# --- App Home -----------------------------------------------------------------------------------


def test_home_view_is_a_home_tab_with_the_same_list() -> None:
    views = [view(1), view(2, "needs_reauth")]
    home = kit.home_view(views, today=TODAY)
    assert home["type"] == "home"
    assert home["title"]["text"] == "Your connections"
    assert home["blocks"][0]["text"]["text"] == "Your connections"
    assert View(**home).to_dict() == home
    round_trips(home["blocks"], limit=kit.HOME_BLOCKS_MAX)
    listed = kit.connections_blocks(views, today=TODAY)
    assert home["blocks"][1:] == listed[1:]
    paged = kit.home_view([view(number) for number in range(25)], page=1, today=TODAY)
    assert View(**paged).to_dict() == paged
    assert sorted(
        b["value"] for _, b in buttons(paged["blocks"]) if b["action_id"] == kit.PAGE
    ) == [
        "0",
        "2",
    ]


# --- Help ---------------------------------------------------------------------------------------


def test_help_lists_recipes_and_opens_the_connections() -> None:
    recipes = [("create opportunity {name}", "Creates an opportunity in Salesforce.")]
    out = kit.help_blocks(recipes)
    round_trips(out)
    written = list(texts(out))
    assert messages.HELP_TITLE in written
    assert messages.HELP_INTRO in written
    assert f"*{messages.HELP_RECIPES}*" in written
    assert "`create opportunity {name}` — Creates an opportunity in Salesforce." in written
    [(_, button)] = list(buttons(out))
    assert button["action_id"] == kit.SHOW_CONNECTIONS
    assert button["text"]["text"] == messages.HELP_PERSONAL_ACCOUNTS


def test_help_without_recipes_promises_none() -> None:
    out = kit.help_blocks([])
    round_trips(out)
    written = list(texts(out))
    assert messages.HELP_INTRO_NO_RECIPES in written
    assert f"*{messages.HELP_RECIPES}*" not in written


def test_help_with_very_many_recipes_fits_one_message() -> None:
    recipes = [(f"recipe {number} {{name}}", "d" * 1500) for number in range(200)]
    out = kit.help_blocks(recipes)
    round_trips(out)
    assert messages.SLACK_MORE_RECIPES.split("{")[0] in json.dumps(out, ensure_ascii=False)
    assert out[-1]["block_id"] == kit.HELP_ACTIONS_BLOCK


# --- Sign-in ------------------------------------------------------------------------------------


def test_login_has_a_url_button_and_says_where_the_code_goes() -> None:
    url = "https://bot.example/signin/start?state=abc"
    out = kit.login_blocks("Salesforce", url)
    round_trips(out)
    [(block, button)] = list(buttons(out))
    assert block["text"]["text"] == "Sign in to *Salesforce* to continue"
    assert button["action_id"] == kit.SIGNIN_OPEN
    assert button["url"] == url
    assert button["text"]["text"] == messages.LOGIN_CARD_BUTTON
    assert out[-1]["type"] == "context"
    detail = out[-1]["elements"][0]["text"]
    assert "6-digit code" in detail and "direct message" in detail
    assert kit.login_text("Salesforce") == "Sign in to Salesforce to continue"


@pytest.mark.parametrize("url", ["", "javascript:alert(1)", "https://x.example/" + "a" * 3000])
def test_login_refuses_a_url_nobody_could_open(url: str) -> None:
    with pytest.raises(ValueError, match="sign-in URL"):
        kit.login_blocks("Box", url)


# --- Recipe results -----------------------------------------------------------------------------


def test_a_successful_run_shows_what_was_done_and_as_whom() -> None:
    result = RunResult(
        Outcome.SUCCEEDED,
        recipe_name="Create opportunity",
        verb="Created",
        app_name="Salesforce",
        acted_as="jane@contoso.com",
        fields={"Name": "Big deal", "Amount": "1000"},
        link="https://contoso.my.salesforce.com/006xx",
        summary="Opportunity created.",
    )
    out = kit.result_blocks(result)
    assert out is not None
    round_trips(out)
    assert out[0]["text"]["text"] == "Create opportunity"
    written = list(texts(out))
    assert ":white_check_mark: Created in Salesforce as jane@contoso.com" in written
    assert "Opportunity created." in written
    assert "*Name*\nBig deal" in written and "*Amount*\n1000" in written
    [(_, button)] = list(buttons(out))
    assert button["url"] == result.link
    assert button["text"]["text"] == "Open in Salesforce"
    assert (
        kit.result_text(result) == "Create opportunity: Created in Salesforce as jane@contoso.com"
    )


def test_many_fields_and_an_unusable_link() -> None:
    result = RunResult(
        Outcome.SUCCEEDED,
        recipe_name="r",
        verb="Done",
        app_name="Box",
        acted_as="a",
        fields={f"Field {number}": "v" * 2500 for number in range(25)},
        link="ftp://files.example/x",
    )
    out = kit.result_blocks(result)
    assert out is not None
    round_trips(out)
    field_sections = [block for block in out if "fields" in block]
    assert [len(block["fields"]) for block in field_sections] == [10, 10, 5]
    assert not list(buttons(out))


@pytest.mark.parametrize(
    ("outcome", "title"),
    [
        (Outcome.SIGN_IN_NEEDED, messages.RECIPE_WAITING_TITLE),
        (Outcome.FAILED, messages.RECIPE_FAILED_TITLE),
        (Outcome.PARENT_UNAVAILABLE, messages.RECIPE_FAILED_TITLE),
    ],
)
def test_runs_that_did_not_complete_say_why(outcome: Outcome, title: str) -> None:
    result = RunResult(outcome, recipe_name="Create opportunity", message="Box can't be reached.")
    out = kit.result_blocks(result)
    assert out is not None
    round_trips(out)
    assert out[0]["text"]["text"] == title.format(recipe="Create opportunity")
    assert "Box can't be reached." in out[1]["text"]["text"]
    assert kit.result_text(result)


def test_a_repeated_delivery_shows_nothing() -> None:
    assert kit.result_blocks(RunResult(Outcome.DUPLICATE)) is None
    assert kit.result_text(RunResult(Outcome.DUPLICATE)) is None


# --- Break notices ------------------------------------------------------------------------------


def notice(*, can_reconnect: bool, contact: str = "") -> BreakNotice:
    return BreakNotice(
        connection_id="65a1b2c3d4e5f6a7b8c9d0e1",
        app_name="Box",
        account="jane@contoso.com",
        reason="refresh_refused",
        why=messages.NOTICE_WHY_REFRESH_REFUSED,
        since=SINCE,
        can_reconnect=can_reconnect,
        contact=contact,
    )


def test_a_break_notice_offers_reconnect_where_it_can_work() -> None:
    out = kit.notice_blocks(notice(can_reconnect=True), today=TODAY)
    round_trips(out)
    written = list(texts(out))
    assert written[0] == messages.NOTICE_TITLE.format(app="Box")
    assert "*Box (jane@contoso.com)*" in written
    assert messages.NOTICE_WHY_REFRESH_REFUSED in written
    assert "Since 3 Dec" in written
    assert messages.NOTICE_RECONNECT in written
    [(_, button)] = list(buttons(out))
    assert (button["action_id"], button["value"]) == (kit.RECONNECT, "65a1b2c3d4e5f6a7b8c9d0e1")
    assert kit.notice_text(notice(can_reconnect=True)) == messages.NOTICE_TITLE.format(app="Box")


def test_a_removed_connection_says_whom_to_ask() -> None:
    out = kit.notice_blocks(notice(can_reconnect=False, contact="the IT desk"), today=TODAY)
    round_trips(out)
    written = list(texts(out))
    assert written[0] == messages.NOTICE_TITLE_REMOVED.format(app="Box")
    assert messages.NOTICE_ASK.format(contact="the IT desk") in written
    assert not list(buttons(out))
    nobody = kit.notice_blocks(notice(can_reconnect=False), today=TODAY)
    assert messages.NOTICE_ASK.format(contact=messages.NOTICE_AN_ADMINISTRATOR) in list(
        texts(nobody)
    )
