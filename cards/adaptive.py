"""Small builders for Adaptive Card 1.5 elements shared by every card."""

from __future__ import annotations

from typing import Any

from cards.verbs import VERB_KEY

CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION = "1.5"
ADAPTIVE_CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"

Card = dict[str, Any]
Element = dict[str, Any]


def card(body: list[Element], actions: list[Element] | None = None) -> Card:
    """An Adaptive Card 1.5 that uses the full message width in Teams."""
    result: Card = {
        "type": "AdaptiveCard",
        "$schema": CARD_SCHEMA,
        "version": CARD_VERSION,
        "body": body,
        "msteams": {"width": "Full"},
    }
    if actions:
        result["actions"] = actions
    return result


def text(value: str, **options: Any) -> Element:
    return {"type": "TextBlock", "text": value, "wrap": True, **options}


def title(value: str) -> Element:
    return text(value, size="Medium", weight="Bolder")


def notice(value: str, *, attention: bool = False) -> Element:
    return text(value, color="Attention" if attention else "Good", spacing="Small")


def execute(
    title: str,
    verb: str,
    data: dict[str, Any] | None = None,
    *,
    style: str | None = None,
    with_inputs: bool = True,
) -> Element:
    """An Action.Execute with an Action.Submit fallback for clients without Universal Actions.

    The fallback carries the verb inside its data, so both arrive at the same handler.
    """
    payload = dict(data or {})
    action: Element = {"type": "Action.Execute", "title": title, "verb": verb, "data": payload}
    fallback: Element = {
        "type": "Action.Submit",
        "title": title,
        "data": {VERB_KEY: verb, **payload},
    }
    if not with_inputs:
        action["associatedInputs"] = "none"
        fallback["associatedInputs"] = "none"
    if style:
        action["style"] = style
        fallback["style"] = style
    action["fallback"] = fallback
    return action
