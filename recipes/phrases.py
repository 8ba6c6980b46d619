"""The phrase grammar of recipes: literal words and `{name}` / `{name:type}` arguments.

`parse_phrase("create opportunity {name} {amount:number}")` gives a `Phrase`: its leading
literal words pick the recipe, and each `Argument` turns what a person typed into a typed value.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Literal, TypeAlias

import messages
from recipes import templates

ArgumentType = Literal["text", "number", "integer"]
ArgumentValue: TypeAlias = str | int | float

ARGUMENT_TYPES: tuple[ArgumentType, ...] = ("text", "number", "integer")

_TYPES: dict[str, ArgumentType] = {kind: kind for kind in ARGUMENT_TYPES}
_FORMATTER = string.Formatter()
_ARGUMENT_NAME = re.compile(r"[a-z][a-z0-9_]*")
_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_INTEGER = re.compile(r"-?[0-9]+")
# Longer numbers are typos, and Python refuses to convert very long digit strings anyway.
_MAX_NUMBER_LENGTH = 40
# So `{connection.api_base_url}` and `{response.id}` can never be read as an argument.
_RESERVED_ARGUMENTS = frozenset({"connection", "response"})


def _shown(token: str) -> str:
    return f'"{token}"' if len(token) <= 40 else f'"{token[:39]}…"'


def quote_value(value: str) -> str:
    """A value as a person would type it: in double quotes when it is empty or has spaces."""
    return f'"{value}"' if not value or any(c.isspace() for c in value) else value


@dataclass(frozen=True)
class Argument:
    """One `{name}` / `{name:type}` placeholder of a phrase."""

    name: str
    type: ArgumentType = "text"

    def parse(self, token: str, *, in_url: bool = False) -> ArgumentValue:
        """The typed value of one typed token.

        Args:
            token: what the person typed for this argument (without its quotes).
            in_url: the recipe puts this argument in a URL (its action URL or result link);
                then a text value that reads as `.` or `..` in any encoding is refused, since
                it would lead the request out of its path segment (see `recipes.templates`).

        Raises:
            ValueError: with a message for the person who typed it.
        """
        if not token.strip():
            raise ValueError(messages.RECIPE_ARGUMENT_EMPTY.format(name=self.name))
        if self.type == "text":
            if in_url and templates.has_dot_segment(token):
                raise ValueError(
                    messages.RECIPE_ARGUMENT_DOT_SEGMENT.format(name=self.name, value=_shown(token))
                )
            return token
        if len(token) > _MAX_NUMBER_LENGTH:
            raise ValueError(messages.RECIPE_ARGUMENT_TOO_LONG.format(name=self.name))
        if self.type == "integer":
            if _INTEGER.fullmatch(token):
                return int(token)
            raise ValueError(
                messages.RECIPE_ARGUMENT_NOT_INTEGER.format(name=self.name, value=_shown(token))
            )
        if not _NUMBER.fullmatch(token):
            raise ValueError(
                messages.RECIPE_ARGUMENT_NOT_NUMBER.format(name=self.name, value=_shown(token))
            )
        if "." not in token:
            return int(token)
        number = float(token)
        return int(number) if number.is_integer() else number

    def usage(self) -> str:
        """`<name>` for text, `<amount: number>` otherwise."""
        return f"<{self.name}>" if self.type == "text" else f"<{self.name}: {self.type}>"


@dataclass(frozen=True)
class Phrase:
    """A parsed phrase: literal words (as written) and arguments, in order."""

    text: str
    parts: tuple[str | Argument, ...]

    @property
    def words(self) -> tuple[str, ...]:
        """The literal words before the first argument, as written."""
        words: list[str] = []
        for part in self.parts:
            if not isinstance(part, str):
                break
            words.append(part)
        return tuple(words)

    @property
    def prefix(self) -> tuple[str, ...]:
        """The leading literal words, case-folded: what picks this recipe."""
        return tuple(word.casefold() for word in self.words)

    @property
    def arguments(self) -> tuple[Argument, ...]:
        return tuple(part for part in self.parts if isinstance(part, Argument))

    def usage(self) -> str:
        """`create opportunity <name> <amount: number>`."""
        return " ".join(part if isinstance(part, str) else part.usage() for part in self.parts)


def parse_phrase(text: str) -> Phrase:
    """Parse `create opportunity {name} {amount:number}`.

    Raises:
        ValueError: naming the problem (no leading word, unknown type, duplicate argument...).
    """
    if not text.strip():
        raise ValueError(messages.PHRASE_EMPTY)
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError:
        raise ValueError(messages.PHRASE_UNBALANCED) from None
    parts: list[str | Argument] = []
    names: set[str] = set()
    after_argument = False
    for literal, name, spec, conversion in parsed:
        if after_argument and literal and not literal[0].isspace():
            raise ValueError(messages.PHRASE_SPACE_AFTER)
        words = literal.split()
        if any(set(word) & set('"{}') for word in words):
            raise ValueError(messages.PHRASE_QUOTE_OR_BRACE)
        parts.extend(words)
        if name is None:
            continue
        if (literal and not literal[-1].isspace()) or (not literal and after_argument):
            raise ValueError(messages.PHRASE_SPACE_BEFORE.format(name=name))
        if not name:
            raise ValueError(messages.PHRASE_EMPTY_ARGUMENT)
        if conversion is not None:
            raise ValueError(messages.PHRASE_CONVERSION.format(name=name, conversion=conversion))
        if not _ARGUMENT_NAME.fullmatch(name):
            raise ValueError(messages.PHRASE_ARGUMENT_NAME.format(name=name))
        if name in _RESERVED_ARGUMENTS:
            raise ValueError(messages.PHRASE_ARGUMENT_RESERVED.format(name=name))
        kind = _TYPES.get(spec or "text")
        if kind is None:
            raise ValueError(messages.PHRASE_ARGUMENT_TYPE.format(name=name, spec=spec))
        if name in names:
            raise ValueError(messages.PHRASE_ARGUMENT_TWICE.format(name=name))
        names.add(name)
        parts.append(Argument(name, kind))
        after_argument = True
    if not isinstance(parts[0], str):
        raise ValueError(messages.PHRASE_LITERAL_FIRST)
    return Phrase(" ".join(text.split()), tuple(parts))
