"""Reading the console's query strings and forms: anything malformed is a 400 page that says
which field and why, never a traceback."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

from bson import ObjectId

import messages

MAX_TEXT = 200
APP_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class BadInput(ValueError):
    """A parameter a person (or a hand-made request) got wrong; the message says which."""


def _bad(field: str, problem: str) -> BadInput:
    return BadInput(messages.CONSOLE_BAD_FIELD.format(field=field, problem=problem))


def text(values: Mapping[str, str], field: str, *, limit: int = MAX_TEXT) -> str:
    value = values.get(field, "")
    if not isinstance(value, str):
        raise _bad(field, messages.CONSOLE_TOO_LONG.format(limit=limit))
    value = value.strip()
    if len(value) > limit or "\x00" in value:
        raise _bad(field, messages.CONSOLE_TOO_LONG.format(limit=limit))
    return value


def choice(values: Mapping[str, str], field: str, allowed: Mapping[str, str], problem: str) -> str:
    value = text(values, field)
    if value and value not in allowed:
        raise _bad(field, problem)
    return value


def object_id(values: Mapping[str, str], field: str, problem: str = messages.CONSOLE_BAD_ID) -> str:
    value = text(values, field)
    if value and not (len(value) == 24 and ObjectId.is_valid(value)):
        raise _bad(field, problem)
    return value


def number(values: Mapping[str, str], field: str, *, low: int, high: int) -> int | None:
    value = text(values, field)
    if not value:
        return None
    if not value.isdigit() or not low <= int(value) <= high:
        raise _bad(field, messages.CONSOLE_BAD_NUMBER.format(low=low, high=high))
    return int(value)


def app_key(values: Mapping[str, str], field: str) -> str:
    value = text(values, field)
    if value and not APP_KEY.match(value):
        raise _bad(field, messages.CONSOLE_BAD_APP)
    return value


def date(values: Mapping[str, str], field: str) -> datetime | None:
    value = text(values, field)
    if not value:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise _bad(field, messages.CONSOLE_BAD_DATE) from None
    return day.replace(tzinfo=UTC)


def ids(values: list[str], field: str, *, limit: int) -> list[str]:
    """Distinct connection ids from repeated form fields, in the order given."""
    chosen: list[str] = []
    for value in values:
        if not (isinstance(value, str) and len(value) == 24 and ObjectId.is_valid(value)):
            raise _bad(field, messages.CONSOLE_BAD_ID)
        if value not in chosen:
            chosen.append(value)
    if len(chosen) > limit:
        raise BadInput(messages.CONSOLE_TOO_MANY.format(limit=limit))
    return chosen


def console_path(values: Mapping[str, str], field: str, *, default: str) -> str:
    """A link back into the console (a page's own path and query); anything else, such as
    another site or a `javascript:` URL, becomes `default`."""
    value = text(values, field, limit=2000)
    if not value.startswith("/admin/") or "\\" in value or value.startswith("//"):
        return default
    if any(ord(character) < 0x20 for character in value):
        return default
    return value
