"""The break notice: one card in a person's 1:1 chat saying which connection broke and why."""

from __future__ import annotations

from datetime import UTC, datetime

import messages
from cards.adaptive import Card, card, execute, text, title
from cards.connections import short_date
from cards.verbs import CONNECTION_INPUT, FROM_NOTICE_KEY, RECONNECT
from connections.views import BreakNotice


def break_notice_card(notice: BreakNotice, *, today: datetime | None = None) -> Card:
    """Which account, why in plain words and since when, and Reconnect where it can work
    (for a connection an administrator removed: whom to ask instead)."""
    day = (today or datetime.now(UTC)).date()
    removed = not notice.can_reconnect and bool(notice.contact)
    heading = messages.NOTICE_TITLE_REMOVED if removed else messages.NOTICE_TITLE
    body = [
        title(heading.format(app=notice.app_name)),
        text(notice.label, weight="Bolder"),
        text(notice.why),
        text(
            messages.NOTICE_SINCE.format(date=short_date(notice.since, day)),
            isSubtle=True,
            spacing="Small",
        ),
    ]
    actions = []
    if notice.can_reconnect:
        body.append(text(messages.NOTICE_RECONNECT))
        actions.append(
            execute(
                messages.BUTTON_RECONNECT,
                RECONNECT,
                {CONNECTION_INPUT: notice.connection_id, FROM_NOTICE_KEY: True},
                style="positive",
                with_inputs=False,
            )
        )
    elif notice.contact:
        body.append(text(messages.NOTICE_ASK.format(contact=notice.contact)))
    return card(body, actions)


def notice_answered_card(label: str, result: str) -> Card:
    """What a break notice becomes once its Reconnect was pressed: still which account, and
    what happened (a sign-in card was sent, or why none could be)."""
    return card([text(label, weight="Bolder"), text(result)])
