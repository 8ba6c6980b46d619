"""Reading what an Adaptive Card says: its texts, the choices of its picklist, an action."""

from __future__ import annotations

from typing import Any


def texts(card: dict[str, Any]) -> list[str]:
    return [element["text"] for element in card["body"] if element.get("type") == "TextBlock"]


def choices(card: dict[str, Any]) -> list[str]:
    for element in card["body"]:
        if element.get("type") == "Input.ChoiceSet":
            return [choice["title"] for choice in element["choices"]]
    return []


def action(card: dict[str, Any], title: str) -> dict[str, Any]:
    [found] = [item for item in card.get("actions", []) if item["title"] == title]
    return found
