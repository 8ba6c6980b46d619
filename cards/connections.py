"""The personal connections picklist, its delete confirmation, and a plain message card."""

from __future__ import annotations

from collections.abc import Sequence

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


def choice_title(view: ConnectionView) -> str:
    return messages.CONNECTION_CHOICE.format(
        app=view.app_name, account=view.account, status=view.status_label
    )


def connections_picklist(
    views: Sequence[ConnectionView],
    *,
    page: int = 0,
    result: str | None = None,
    problem: str | None = None,
    has_recipes: bool = True,
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
            "choices": [{"title": choice_title(view), "value": view.id} for view in shown],
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
