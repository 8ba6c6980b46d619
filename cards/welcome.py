"""The welcome cards: one in a person's 1:1 chat when they install the app, one in a team or
group chat when the app is added there (never naming anyone's connections)."""

from __future__ import annotations

import messages
from cards.adaptive import Card, card, execute, text, title
from cards.verbs import SHOW_CONNECTIONS


def welcome_card() -> Card:
    """The 1:1 welcome: what the bot does, the Personal accounts button (the help card's verb),
    and how to get help."""
    body = [
        title(messages.WELCOME_TITLE),
        text(messages.WELCOME_TEXT),
        text(messages.WELCOME_HELP, isSubtle=True, spacing="Small"),
    ]
    actions = [execute(messages.HELP_PERSONAL_ACCOUNTS, SHOW_CONNECTIONS, with_inputs=False)]
    return card(body, actions)


def shared_welcome_card() -> Card:
    """The welcome in a team or group chat: what the bot does and how to get help, nothing
    about any person."""
    return card(
        [
            text(messages.WELCOME_TEAM_TEXT),
            text(messages.WELCOME_TEAM_HELP, isSubtle=True, spacing="Small"),
        ]
    )
