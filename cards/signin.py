"""The Login card: the one card that is not an Adaptive Card.

Teams opens a Bot Framework sign-in card's `signin` button in its authentication window (and the
Agents Playground in a popup); an Adaptive Card button of type signin does nothing there.
"""

from __future__ import annotations

from typing import Any

import messages

SIGNIN_CARD_CONTENT_TYPE = "application/vnd.microsoft.card.signin"


def login_card(*, app_name: str, start_url: str) -> dict[str, Any]:
    """The attachment (content type and content) of a Login card for one app."""
    return {
        "contentType": SIGNIN_CARD_CONTENT_TYPE,
        "content": {
            "text": messages.LOGIN_CARD_TEXT.format(app=app_name),
            "buttons": [
                {"type": "signin", "title": messages.LOGIN_CARD_BUTTON, "value": start_url}
            ],
        },
    }
