"""The help card: what the bot can do, with a button that opens the personal connections list."""

from __future__ import annotations

from collections.abc import Sequence

import messages
from cards.adaptive import Card, card, execute, text, title
from cards.verbs import SHOW_CONNECTIONS


def help_card(recipes: Sequence[tuple[str, str]] = ()) -> Card:
    """The help card; `recipes` are (usage, description) pairs of the configured recipes (none:
    the card says the bot has no recipes yet instead of promising them)."""
    facts = [{"title": command, "value": meaning} for command, meaning in messages.HELP_COMMANDS]
    body = [
        title(messages.HELP_TITLE),
        text(messages.HELP_INTRO if recipes else messages.HELP_INTRO_NO_RECIPES),
        {"type": "FactSet", "facts": facts},
    ]
    if recipes:
        body.append(text(messages.HELP_RECIPES, weight="Bolder", spacing="Medium"))
        body.append(
            {
                "type": "FactSet",
                "facts": [{"title": usage, "value": about} for usage, about in recipes],
            }
        )
    actions = [execute(messages.HELP_PERSONAL_ACCOUNTS, SHOW_CONNECTIONS, with_inputs=False)]
    return card(body, actions)
