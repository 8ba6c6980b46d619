"""The help card: what the bot can do, with a button that opens the personal connections list."""

from __future__ import annotations

import messages
from cards.adaptive import Card, card, execute, text, title
from cards.verbs import SHOW_CONNECTIONS


def help_card() -> Card:
    facts = [{"title": command, "value": meaning} for command, meaning in messages.HELP_COMMANDS]
    body = [
        title(messages.HELP_TITLE),
        text(messages.HELP_INTRO),
        {"type": "FactSet", "facts": facts},
    ]
    actions = [execute(messages.HELP_PERSONAL_ACCOUNTS, SHOW_CONNECTIONS, with_inputs=False)]
    return card(body, actions)
