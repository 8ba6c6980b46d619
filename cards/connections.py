"""The personal connections picklist, its delete confirmation, and a plain message card.

Dates are UTC days ("3 Dec"; "3 Dec 2024" in another year than today's): a person's list names
a day, never a time, so a few hours of time zone rarely matter and the card needs no locale.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

import messages
from cards.adaptive import Card, Element, card, execute, notice, text, title
from cards.verbs import (
    CANCEL_DELETE,
    CONFIRM_DELETE,
    CONNECTION_INPUT,
    DELETE,
    DISCONNECT,
    PAGE,
    PAGE_KEY,
    RECONNECT,
)
from connections.views import RECONNECTABLE, ConnectionView

PAGE_SIZE = 10


def page_count(total: int) -> int:
    return max(1, -(-total // PAGE_SIZE))


def clamp_page(page: int, total: int) -> int:
    """A page index that exists for `total` connections (0-based)."""
    return min(max(page, 0), page_count(total) - 1)


def short_date(when: datetime, today: date) -> str:
    """A day as people write it: "3 Dec", with the year only when it is not `today`'s.

    Args:
        when: an aware datetime (a naive one is taken as UTC); its UTC day is shown.
        today: the UTC day the card is made on.
    """
    day = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    month = messages.SHORT_MONTHS[day.month - 1]
    if day.year == today.year:
        return messages.SHORT_DATE.format(day=day.day, month=month)
    return messages.SHORT_DATE_WITH_YEAR.format(day=day.day, month=month, year=day.year)


def status_text(view: ConnectionView, today: date) -> str:
    """The status in words, with since when for a signed-out one ("Needs sign-in since 3 Dec")."""
    if view.since is None:
        return view.status_label
    return messages.STATUS_SINCE.format(
        status=view.status_label, date=short_date(view.since, today)
    )


def choice_title(view: ConnectionView, today: date) -> str:
    return messages.CONNECTION_CHOICE.format(
        app=view.app_name, account=view.account, status=status_text(view, today)
    )


def connections_picklist(
    views: Sequence[ConnectionView],
    *,
    page: int = 0,
    result: str | None = None,
    problem: str | None = None,
    has_recipes: bool = True,
    today: date | None = None,
) -> Card:
    """The picklist of a person's runtime connections with Disconnect and Delete, and
    Reconnect when a shown connection can be signed in again.

    Args:
        views: all of the person's connections, in display order.
        page: which page of `PAGE_SIZE` to show (clamped to the pages that exist).
        result: a one-line outcome of the last action ("Disconnected Box (jane@contoso.com).").
        problem: a one-line problem to show instead (e.g. nothing was chosen).
        has_recipes: False when the bot has no recipes: an empty list then says that nothing
            will ask the person to sign in yet.
        today: the UTC day that decides whether a date shows its year (None: the clock's).
    """
    body: list[Element] = [title(messages.CONNECTIONS_TITLE)]
    if result:
        body.append(notice(result))
    if problem:
        body.append(notice(problem, attention=True))
    if not views:
        body.append(text(messages.CONNECTIONS_EMPTY))
        if not has_recipes:
            body.append(text(messages.CONNECTIONS_EMPTY_NO_RECIPES))
        return card(body)

    page = clamp_page(page, len(views))
    day = today if today is not None else datetime.now(UTC).date()
    first = page * PAGE_SIZE
    shown = views[first : first + PAGE_SIZE]
    if len(views) > PAGE_SIZE:
        body.append(
            text(
                messages.CONNECTIONS_PAGE.format(
                    first=first + 1, last=first + len(shown), total=len(views)
                ),
                isSubtle=True,
                spacing="Small",
            )
        )
    body.append(
        {
            "type": "Input.ChoiceSet",
            "id": CONNECTION_INPUT,
            "style": "compact",
            "isRequired": True,
            "errorMessage": messages.CONNECTIONS_PICK_REQUIRED,
            "placeholder": messages.CONNECTIONS_PICK_PLACEHOLDER,
            "label": messages.CONNECTION_PICKER_LABEL,
            "choices": [{"title": choice_title(view, day), "value": view.id} for view in shown],
        }
    )
    body.append(text(messages.CONNECTIONS_HINT, isSubtle=True, size="Small"))
    actions = [
        execute(messages.BUTTON_DISCONNECT, DISCONNECT, {PAGE_KEY: page}),
        execute(messages.BUTTON_DELETE, DELETE, {PAGE_KEY: page}, style="destructive"),
    ]
    if any(view.status in RECONNECTABLE and view.reconnect_blocked for view in shown):
        body.append(text(messages.CONNECTIONS_CANNOT_RECONNECT, isSubtle=True, size="Small"))
    if any(view.can_reconnect for view in shown):
        actions.insert(
            0, execute(messages.BUTTON_RECONNECT, RECONNECT, {PAGE_KEY: page}, style="positive")
        )
    if page > 0:
        actions.append(
            execute(messages.BUTTON_PREVIOUS, PAGE, {PAGE_KEY: page - 1}, with_inputs=False)
        )
    if first + PAGE_SIZE < len(views):
        actions.append(execute(messages.BUTTON_NEXT, PAGE, {PAGE_KEY: page + 1}, with_inputs=False))
    return card(body, actions)


def confirm_delete(view: ConnectionView, *, page: int = 0) -> Card:
    """Asks the person to confirm deleting one connection, in place of the picklist."""
    body = [
        title(messages.CONFIRM_DELETE_TITLE),
        text(messages.CONFIRM_DELETE_TEXT.format(label=view.label)),
    ]
    actions = [
        execute(
            messages.BUTTON_CONFIRM_DELETE,
            CONFIRM_DELETE,
            {CONNECTION_INPUT: view.id, PAGE_KEY: page},
            style="destructive",
            with_inputs=False,
        ),
        execute(messages.BUTTON_CANCEL, CANCEL_DELETE, {PAGE_KEY: page}, with_inputs=False),
    ]
    return card(body, actions)


def message_card(message: str, *, heading: str | None = None) -> Card:
    """A card that only says something (used to answer card actions)."""
    body: list[Element] = [title(heading)] if heading else []
    body.append(text(message))
    return card(body)
