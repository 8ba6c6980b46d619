"""Reading what a card action sends back: the page asked for, the connection chosen.

The data comes from the request body, so it may be any JSON: every reader here returns a safe
value whatever it gets.
"""

from __future__ import annotations

from typing import Any

from cards import verbs

# No one has this many pages; a bigger number is only clamped to the last page anyway.
_MAX_PAGE = 1_000_000


def page_of(data: dict[str, Any]) -> int:
    """The page a card action asks for: a whole number from the card's data, else 0.

    It may be a float such as 1e999 (inf) or NaN, a huge or negative number, a string, null,
    a list or an object.
    """
    value = data.get(verbs.PAGE_KEY, 0)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0
    try:
        page = int(value)
    except (ValueError, OverflowError):  # NaN, inf, "x", or more digits than int() reads
        return 0
    return min(max(page, 0), _MAX_PAGE)


def chosen_connection(data: dict[str, Any]) -> str | None:
    """The connection picked in the card's list, or None when none was."""
    value = data.get(verbs.CONNECTION_INPUT)
    return value.strip() if isinstance(value, str) and value.strip() else None
