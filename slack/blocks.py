"""Block Kit for the Slack surface: the same connections, help, sign-in, recipe results and break
notices as the Teams cards (`cards/`), drawn from the same plain data.

Pure functions: plain data in, Block Kit dicts out, no I/O and no storage. The blocks are built
with `slack_sdk.models` and serialised with `.to_dict()`, which checks Slack's per-field limits
as it goes; the text that comes from data (app names, accounts, recipe output) is escaped and
shortened here first, so that the limits are never hit and nobody's data turns into a mention.

Escaping: Slack reads `&`, `<` and `>` as control characters in every text object (`<@U123>` is a
mention, `<!channel>` pings a whole channel), so data always goes through `escape`. Markdown
text from data is also `verbatim`, so that Slack does not link-ify a bare `@here` or a channel
name in it either.

Buttons carry a connection id (or a page number) in `value`, never a token. Block ids name the
page they were drawn on (`connection_actions:<page>:<id>`), so that a handler can draw the same
page again after an action: `page_of(block_id)`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

import messages
from cards.connections import PAGE_SIZE, clamp_page, page_count, short_date, status_text
from connections.views import RECONNECTABLE, BreakNotice, ConnectionView
from recipes.results import Outcome, RunResult

# --- Action ids (what a Bolt handler listens to) --------------------------------------------
DISCONNECT = "connections_disconnect"  # value: the connection id
DELETE = "connections_delete"  # value: the connection id
RECONNECT = "connections_reconnect"  # value: the connection id
PAGE = "connections_page"  # value: the page number to show (0-based)
SHOW_CONNECTIONS = "connections_show"  # the help message's Personal accounts button
SIGNIN_OPEN = "signin_open"  # a URL button: Slack still sends its click, which must be acked
RESULT_OPEN = "recipe_result_open"  # a URL button to what a recipe made, acked the same way

# --- Block ids ----------------------------------------------------------------------------------
CONNECTION_BLOCK = "connection"  # connection:<page>:<connection id>
CONNECTION_ACTIONS_BLOCK = "connection_actions"  # connection_actions:<page>:<connection id>
PREVIOUS_BLOCK = "connections_previous"
NEXT_BLOCK = "connections_next"
HELP_ACTIONS_BLOCK = "help_actions"
SIGNIN_BLOCK = "signin"
NOTICE_ACTIONS_BLOCK = "notice_actions"
HOME_CALLBACK_ID = "connections_home"

# --- Slack's limits (docs.slack.dev, Block Kit reference) ---------------------------------------
MESSAGE_BLOCKS_MAX = 50
HOME_BLOCKS_MAX = 100
TEXT_MAX = 3000  # a section's or context element's text
FIELD_MAX = 2000  # one of a section's fields
FIELDS_PER_SECTION = 10
HEADER_MAX = 150
BUTTON_TEXT_MAX = 75
CONFIRM_TITLE_MAX = 100
CONFIRM_TEXT_MAX = 300
CONFIRM_BUTTON_MAX = 30
URL_MAX = 3000
VIEW_TITLE_MAX = 24
# A message's top-level `text` (the notification fallback) is cut well before Slack's 40,000.
FALLBACK_MAX = 3000

ELLIPSIS = "…"

# --- Text -------------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Text from data as Slack shows it literally: `&`, `<` and `>` as entities (in that order,
    so that an entity is never escaped twice)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fit(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters with an ellipsis, never inside an entity (a cut
    `&am` would show as garbage)."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - len(ELLIPSIS), 0)]
    ampersand = cut.rfind("&", max(len(cut) - len("&amp;") + 1, 0))
    if ampersand != -1 and ";" not in cut[ampersand:]:
        cut = cut[:ampersand]
    return cut + ELLIPSIS


def _sentence(text: str) -> str:
    """One of our sentences that may carry data (escaped), in Slack's markdown: the Teams
    sentences write bold as `**x**`, Slack as `*x*`."""
    return escape(text).replace("**", "*")


def _fill(template: str, limit: int, **data: str) -> str:
    """`template` filled with escaped `data`, the longest value shortened until the whole fits
    `limit` (so that the sentence keeps its meaning and its end, unlike a cut at the end)."""
    values = {key: escape(value) for key, value in data.items()}
    while True:
        text = template.format(**values)
        excess = len(text) - limit
        if excess <= 0 or not values:
            return fit(text, limit)
        key = max(values, key=lambda name: len(values[name]))
        if len(values[key]) <= len(ELLIPSIS):
            return fit(text, limit)
        values[key] = fit(values[key], max(len(values[key]) - excess, len(ELLIPSIS)))


def _mrkdwn(text: str, limit: int = TEXT_MAX) -> MarkdownTextObject:
    # verbatim: Slack links only what is written as <…>, which escaped data never is.
    return MarkdownTextObject(text=fit(text, limit), verbatim=True)


def _plain(text: str, limit: int) -> PlainTextObject:
    # emoji=False: a `:name:` in an app or account name stays text.
    return PlainTextObject(text=fit(text, limit), emoji=False)


def _section(text: str, *, block_id: str | None = None) -> SectionBlock:
    return SectionBlock(text=_mrkdwn(text), block_id=block_id)


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[_mrkdwn(text)])


def _header(text: str) -> HeaderBlock:
    return HeaderBlock(text=_plain(text, HEADER_MAX))


def _dicts(blocks: Iterable[Block], limit: int = MESSAGE_BLOCKS_MAX) -> list[dict[str, Any]]:
    # to_dict() validates every block against slack_sdk's limits; the builders stay within
    # `limit` blocks themselves, and the assertion guards that promise.
    rendered = [block.to_dict() for block in blocks]
    assert len(rendered) <= limit, len(rendered)
    return rendered


def _today(today: date | None) -> date:
    return today if today is not None else datetime.now(UTC).date()


def _safe_url(url: str | None) -> str | None:
    """A URL a button may open: http(s) and within Slack's length, else None (no button)."""
    if not url or len(url) > URL_MAX:
        return None
    return url if url.startswith(("https://", "http://")) else None


# --- Connections --------------------------------------------------------------------------------


def page_of(block_id: str) -> int:
    """The page a connection's block was drawn on (0 when the id names none)."""
    parts = block_id.split(":", 2)
    if len(parts) == 3 and parts[0] in (CONNECTION_BLOCK, CONNECTION_ACTIONS_BLOCK):
        try:
            return max(int(parts[1]), 0)
        except ValueError:
            return 0
    return 0


def _confirm(
    view: ConnectionView, *, title: str, text: str, button: str, style: str | None = None
) -> ConfirmObject:
    """The dialog Slack shows before a press is sent (its texts' limits are Slack's)."""
    return ConfirmObject(
        title=_plain(title, CONFIRM_TITLE_MAX),
        text=_plain(_fill(text, CONFIRM_TEXT_MAX, label=view.label), CONFIRM_TEXT_MAX),
        confirm=_plain(button, CONFIRM_BUTTON_MAX),
        deny=_plain(messages.BUTTON_CANCEL, CONFIRM_BUTTON_MAX),
        style=style,
    )


def _confirm_disconnect(view: ConnectionView) -> ConfirmObject:
    return _confirm(
        view,
        title=messages.SLACK_CONFIRM_DISCONNECT_TITLE,
        text=messages.SLACK_CONFIRM_DISCONNECT_TEXT,
        button=messages.BUTTON_DISCONNECT,
    )


def _confirm_delete(view: ConnectionView) -> ConfirmObject:
    return _confirm(
        view,
        title=messages.CONFIRM_DELETE_TITLE,
        text=messages.CONFIRM_DELETE_TEXT,
        button=messages.BUTTON_DELETE,
        style="danger",
    )


def _connection(view: ConnectionView, *, page: int, today: date) -> list[Block]:
    """A connection's line and its buttons: Reconnect where it can work, Disconnect for a
    connected one, Delete always (each destructive one behind a confirm dialog)."""
    line = _fill(
        messages.SLACK_CONNECTION_LINE,
        TEXT_MAX,
        app=view.app_name,
        account=view.account,
        status=status_text(view, today),
    )
    buttons: list[ButtonElement] = []
    if view.can_reconnect:
        buttons.append(
            ButtonElement(
                text=_plain(messages.BUTTON_RECONNECT, BUTTON_TEXT_MAX),
                action_id=RECONNECT,
                value=view.id,
                style="primary",
            )
        )
    if view.status == "connected":
        buttons.append(
            ButtonElement(
                text=_plain(messages.BUTTON_DISCONNECT, BUTTON_TEXT_MAX),
                action_id=DISCONNECT,
                value=view.id,
                confirm=_confirm_disconnect(view),
            )
        )
    buttons.append(
        ButtonElement(
            text=_plain(messages.BUTTON_DELETE, BUTTON_TEXT_MAX),
            action_id=DELETE,
            value=view.id,
            style="danger",
            confirm=_confirm_delete(view),
        )
    )
    return [
        _section(line, block_id=f"{CONNECTION_BLOCK}:{page}:{view.id}"),
        ActionsBlock(elements=buttons, block_id=f"{CONNECTION_ACTIONS_BLOCK}:{page}:{view.id}"),
    ]


def _page_button(text: str, page: int, block_id: str) -> ActionsBlock:
    # One button per block: Slack refuses two equal action ids in one actions block, and both
    # paging buttons are `connections_page` so that one handler serves them.
    return ActionsBlock(
        elements=[
            ButtonElement(text=_plain(text, BUTTON_TEXT_MAX), action_id=PAGE, value=str(page))
        ],
        block_id=block_id,
    )


def _connection_list(
    views: Sequence[ConnectionView],
    *,
    page: int,
    result: str | None,
    problem: str | None,
    has_recipes: bool,
    today: date | None,
) -> list[Block]:
    """The list below the title, shared by the message and the App Home tab.

    At most 36 blocks (3 lines above the connections, 29 for ten of them with their dividers,
    4 below): with the title, within a message's 50 and a Home tab's 100.
    """
    blocks: list[Block] = []
    if result:
        blocks.append(_section(_sentence(result)))
    if problem:
        blocks.append(_section(messages.SLACK_PROBLEM_LINE.format(problem=_sentence(problem))))
    if not views:
        blocks.append(_section(messages.CONNECTIONS_EMPTY))
        if not has_recipes:
            blocks.append(_section(messages.CONNECTIONS_EMPTY_NO_RECIPES))
        return blocks

    page = clamp_page(page, len(views))
    day = _today(today)
    first = page * PAGE_SIZE
    shown = views[first : first + PAGE_SIZE]
    if page_count(len(views)) > 1:
        blocks.append(
            _context(
                messages.CONNECTIONS_PAGE.format(
                    first=first + 1, last=first + len(shown), total=len(views)
                )
            )
        )
    for index, view in enumerate(shown):
        if index:
            blocks.append(DividerBlock())
        blocks.extend(_connection(view, page=page, today=day))
    blocks.append(_context(messages.CONNECTIONS_HINT))
    if any(view.status in RECONNECTABLE and view.reconnect_blocked for view in shown):
        blocks.append(_context(messages.CONNECTIONS_CANNOT_RECONNECT))
    if page > 0:
        blocks.append(_page_button(messages.BUTTON_PREVIOUS, page - 1, PREVIOUS_BLOCK))
    if first + PAGE_SIZE < len(views):
        blocks.append(_page_button(messages.BUTTON_NEXT, page + 1, NEXT_BLOCK))
    return blocks


def connections_blocks(
    views: Sequence[ConnectionView],
    *,
    page: int = 0,
    result: str | None = None,
    problem: str | None = None,
    has_recipes: bool = True,
    today: date | None = None,
) -> list[dict[str, Any]]:
    """A person's connections as a message: a title, the outcome of the last action, then one
    page of `PAGE_SIZE` connections, each with its buttons, and Previous / Next.

    Args:
        views: all of the person's connections, in display order.
        page: which page to show (clamped to the pages that exist).
        result: a one-line outcome of the last action ("Disconnected Box (jane@contoso.com).").
        problem: a one-line problem to show instead (e.g. the connection is gone).
        has_recipes: False when the bot has no recipes (an empty list then says so).
        today: the UTC day that decides whether a date shows its year (None: the clock's).
    """
    header = _header(messages.CONNECTIONS_TITLE)
    listed = _connection_list(
        views, page=page, result=result, problem=problem, has_recipes=has_recipes, today=today
    )
    return _dicts([header, *listed])


def connections_text() -> str:
    """The notification text of the connections message."""
    return messages.CONNECTIONS_TITLE


def home_view(
    views: Sequence[ConnectionView],
    *,
    page: int = 0,
    result: str | None = None,
    problem: str | None = None,
    has_recipes: bool = True,
    today: date | None = None,
) -> dict[str, Any]:
    """The App Home tab (`views.publish`): the same list, with the same action ids, so that one
    set of handlers serves the message and the tab."""
    blocks = [
        _header(messages.SLACK_HOME_TITLE),
        *_connection_list(
            views, page=page, result=result, problem=problem, has_recipes=has_recipes, today=today
        ),
    ]
    return View(
        type="home",
        title=_plain(messages.SLACK_HOME_TITLE, VIEW_TITLE_MAX),
        callback_id=HOME_CALLBACK_ID,
        blocks=_dicts(blocks, HOME_BLOCKS_MAX),
    ).to_dict()


# --- Help ---------------------------------------------------------------------------------------


def _line_sections(lines: Sequence[str], room: int) -> list[Block]:
    """`lines` packed into as few sections as fit Slack's text limit, in at most `room`
    sections; what does not fit ends with a line saying how many were left out."""
    sections: list[str] = []
    current = ""
    for index, line in enumerate(lines):
        line = fit(line, TEXT_MAX)
        joined = f"{current}\n{line}" if current else line
        if len(joined) <= TEXT_MAX:
            current = joined
            continue
        sections.append(current)
        current = line
        if len(sections) == room - 1:
            # The last section there is room for: this line, then how many are left out.
            left = len(lines) - index - 1
            if left:
                more = messages.SLACK_MORE_RECIPES.format(count=left)
                current = f"{fit(line, TEXT_MAX - len(more) - 1)}\n{more}"
            break
    if current:
        sections.append(current)
    return [_section(text) for text in sections]


def help_blocks(
    recipes_help: Sequence[tuple[str, str]],
    *,
    commands: Sequence[tuple[str, str]] = (),
) -> list[dict[str, Any]]:
    """What the bot does, the recipes (usage, description) when there are any, and the
    Personal accounts button (`connections_show`).

    Args:
        recipes_help: (usage, description) of each configured recipe; none: the message says
            the bot has no recipes yet instead of promising them.
        commands: (words, meaning) of what a person can type here, when the surface has any.
    """
    blocks: list[Block] = [
        _header(messages.HELP_TITLE),
        _section(messages.HELP_INTRO if recipes_help else messages.HELP_INTRO_NO_RECIPES),
    ]
    if commands:
        blocks.append(
            _section(
                "\n".join(
                    _fill(
                        messages.SLACK_RECIPE_LINE, TEXT_MAX // 10 - 1, usage=words, about=meaning
                    )
                    for words, meaning in commands[:10]
                )
            )
        )
    if recipes_help:
        blocks.append(_section(f"*{messages.HELP_RECIPES}*"))
        lines = [
            _fill(messages.SLACK_RECIPE_LINE, TEXT_MAX, usage=usage, about=about)
            for usage, about in recipes_help
        ]
        # Room left for recipe sections: everything but the blocks above and the button below.
        blocks.extend(_line_sections(lines, MESSAGE_BLOCKS_MAX - len(blocks) - 1))
    blocks.append(
        ActionsBlock(
            elements=[
                ButtonElement(
                    text=_plain(messages.HELP_PERSONAL_ACCOUNTS, BUTTON_TEXT_MAX),
                    action_id=SHOW_CONNECTIONS,
                    value="show",
                    style="primary",
                )
            ],
            block_id=HELP_ACTIONS_BLOCK,
        )
    )
    return _dicts(blocks)


def help_text() -> str:
    """The notification text of the help message."""
    return messages.HELP_TITLE


# --- Sign-in ------------------------------------------------------------------------------------


def login_blocks(app_name: str, url: str) -> list[dict[str, Any]]:
    """ "Sign in to <App> to continue" with a button opening `url`, and where the 6-digit code
    goes afterwards: here, in this DM.

    Raises:
        ValueError: `url` is not an http(s) URL within Slack's length (a sign-in the person
            could not open is a bug, not something to hide).
    """
    target = _safe_url(url)
    if target is None:
        raise ValueError("The sign-in URL must be an http(s) URL of at most 3000 characters")
    blocks: list[Block] = [
        SectionBlock(
            text=_mrkdwn(_fill(messages.SLACK_LOGIN_TEXT, TEXT_MAX, app=app_name)),
            block_id=SIGNIN_BLOCK,
            accessory=ButtonElement(
                text=_plain(messages.LOGIN_CARD_BUTTON, BUTTON_TEXT_MAX),
                action_id=SIGNIN_OPEN,
                url=target,
                style="primary",
            ),
        ),
        _context(_fill(messages.SLACK_LOGIN_DETAIL, TEXT_MAX, app=app_name)),
    ]
    return _dicts(blocks)


def login_text(app_name: str) -> str:
    """The notification text of the sign-in message."""
    return _fill(messages.LOGIN_CARD_TEXT, FALLBACK_MAX, app=app_name)


# --- Recipe results -------------------------------------------------------------------------


def _field_sections(fields: Mapping[str, str], room: int) -> list[Block]:
    """Labelled values as section fields, ten to a section, in at most `room` sections."""
    rendered = [
        _mrkdwn(_fill(messages.SLACK_FIELD_LINE, FIELD_MAX, label=label, value=value), FIELD_MAX)
        for label, value in fields.items()
    ]
    chunks = [
        rendered[start : start + FIELDS_PER_SECTION]
        for start in range(0, len(rendered), FIELDS_PER_SECTION)
    ]
    return [SectionBlock(fields=chunk) for chunk in chunks[: max(room, 0)]]


def result_blocks(result: RunResult) -> list[dict[str, Any]] | None:
    """A recipe run's outcome, as `cards.recipes.run_result_card` shows it: what was done and
    as whom, the app's summary and fields, and a button to open what was made; for a run that
    waits for a sign-in or did not complete, the sentence saying why. None for a repeated
    delivery (nothing to show)."""
    if result.outcome is Outcome.DUPLICATE:
        return None
    if result.outcome is Outcome.SUCCEEDED:
        blocks: list[Block] = [
            _header(escape(result.recipe_name)),
            _section(
                _fill(
                    messages.SLACK_RESULT_CREDITED,
                    TEXT_MAX,
                    verb=result.verb,
                    app=result.app_name,
                    account=result.acted_as,
                )
            ),
        ]
        if result.summary:
            blocks.append(_section(escape(result.summary)))
        link = _safe_url(result.link)
        # Room for the fields: everything but the blocks above and the link's.
        room = MESSAGE_BLOCKS_MAX - len(blocks) - (1 if link else 0)
        blocks.extend(_field_sections(result.fields, room))
        if link:
            blocks.append(
                ActionsBlock(
                    elements=[
                        ButtonElement(
                            text=_plain(
                                _fill(
                                    messages.BUTTON_OPEN_IN_APP,
                                    BUTTON_TEXT_MAX,
                                    app=result.app_name,
                                ),
                                BUTTON_TEXT_MAX,
                            ),
                            action_id=RESULT_OPEN,
                            url=link,
                        )
                    ]
                )
            )
        return _dicts(blocks)
    message = result.message or messages.TURN_FAILED
    if result.outcome is Outcome.SIGN_IN_NEEDED:
        title = _fill(messages.RECIPE_WAITING_TITLE, HEADER_MAX, recipe=result.recipe_name)
        return _dicts([_header(title), _section(_sentence(message))])
    title = _fill(messages.RECIPE_FAILED_TITLE, HEADER_MAX, recipe=result.recipe_name)
    problem = messages.SLACK_PROBLEM_LINE.format(problem=_sentence(message))
    return _dicts([_header(title), _section(problem)])


def result_text(result: RunResult) -> str | None:
    """The notification text of a run's outcome; None where `result_blocks` is None."""
    if result.outcome is Outcome.DUPLICATE:
        return None
    if result.outcome is Outcome.SUCCEEDED:
        credited = messages.RECIPE_CREDITED.format(
            verb=result.verb, app=result.app_name, account=result.acted_as
        )
        return fit(escape(f"{result.recipe_name}: {credited}"), FALLBACK_MAX)
    message = result.message or messages.TURN_FAILED
    if result.outcome is Outcome.SIGN_IN_NEEDED:
        title = messages.RECIPE_WAITING_TITLE.format(recipe=result.recipe_name)
    else:
        title = messages.RECIPE_FAILED_TITLE.format(recipe=result.recipe_name)
    return fit(_sentence(f"{title}: {message}"), FALLBACK_MAX)


# --- Break notices ------------------------------------------------------------------------------


def notice_blocks(notice: BreakNotice, *, today: date | None = None) -> list[dict[str, Any]]:
    """Which account broke, why in plain words and since when, and Reconnect where it can work;
    otherwise whom to ask (the removed connection's contact, else an administrator)."""
    removed = not notice.can_reconnect and bool(notice.contact)
    heading = messages.NOTICE_TITLE_REMOVED if removed else messages.NOTICE_TITLE
    blocks: list[Block] = [
        _header(_fill(heading, HEADER_MAX, app=notice.app_name)),
        _section(f"*{fit(escape(notice.label), TEXT_MAX - 2)}*"),
        _section(escape(notice.why)),
        _context(messages.NOTICE_SINCE.format(date=short_date(notice.since, _today(today)))),
    ]
    if notice.can_reconnect:
        blocks.append(_section(messages.NOTICE_RECONNECT))
        blocks.append(
            ActionsBlock(
                elements=[
                    ButtonElement(
                        text=_plain(messages.BUTTON_RECONNECT, BUTTON_TEXT_MAX),
                        action_id=RECONNECT,
                        value=str(notice.connection_id),
                        style="primary",
                    )
                ],
                block_id=f"{NOTICE_ACTIONS_BLOCK}:{notice.connection_id}",
            )
        )
    else:
        contact = notice.contact or messages.NOTICE_AN_ADMINISTRATOR
        blocks.append(_section(_fill(messages.NOTICE_ASK, TEXT_MAX, contact=contact)))
    return _dicts(blocks)


def notice_text(notice: BreakNotice) -> str:
    """The notification text of a break notice."""
    removed = not notice.can_reconnect and bool(notice.contact)
    heading = messages.NOTICE_TITLE_REMOVED if removed else messages.NOTICE_TITLE
    return _fill(heading, FALLBACK_MAX, app=notice.app_name)
