"""Templates in recipe actions: `{arg}`, `{connection.api_base_url}` and `{response.<path>}`.

Templates are parsed with `string.Formatter().parse` and filled in by hand, never with
`str.format`: a value is inserted as text once and is never parsed again, so braces or attribute
lookups inside what a person typed mean nothing. Argument values in URLs are percent-encoded
(`/` too); the connection's API base URL is trusted configuration and goes in as it is.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import quote

JsonValue: TypeAlias = "str | int | float | bool | list[JsonValue] | dict[str, JsonValue] | None"
TemplateValue: TypeAlias = str | int | float

API_BASE_URL = "connection.api_base_url"
RESPONSE_PREFIX = "response."

_FORMATTER = string.Formatter()
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9_$@-]+")
_INDEX = re.compile(r"[0-9]+")


class TemplateError(ValueError):
    """A template is malformed (at load) or cannot be filled in (at run time)."""


@dataclass(frozen=True)
class Placeholder:
    name: str


Part: TypeAlias = str | Placeholder


def parse(template: str) -> tuple[Part, ...]:
    """Split a template into literal text and placeholders.

    Raises:
        TemplateError: unbalanced braces, an empty placeholder, a `!conversion` or a `:format`.
    """
    parts: list[Part] = []
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError:
        raise TemplateError("has an unbalanced { or }; write {{ or }} for a brace") from None
    for literal, field, spec, conversion in parsed:
        if literal:
            parts.append(literal)
        if field is None:
            continue
        if not field:
            raise TemplateError("has an empty {}; placeholders need a name")
        if conversion is not None or spec:
            # Types belong in the phrase; a template placeholder is just a name.
            raise TemplateError(f"{{{field}}} must be a plain name, without ! or :")
        parts.append(Placeholder(field))
    return tuple(parts)


def placeholders(template: str) -> Iterator[str]:
    """The names of the placeholders in a template, in order."""
    for part in parse(template):
        if isinstance(part, Placeholder):
            yield part.name


def is_path(path: str) -> bool:
    """A dotted path into a JSON document: `id`, `result.number`, `entries.0.name`."""
    return all(_PATH_SEGMENT.fullmatch(segment) for segment in path.split("."))


def lookup(document: Any, path: str) -> Any:
    """The value at a dotted path in a JSON document, or None when there is none."""
    value = document
    for segment in path.split("."):
        if isinstance(value, dict):
            value = value.get(segment)
        elif isinstance(value, list) and _INDEX.fullmatch(segment) and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return None
    return value


def check(template: str, names: Collection[str], *, response: bool = False) -> None:
    """Check that every placeholder is one of `names` (or a `response.<path>` when allowed).

    Raises:
        TemplateError: naming the first unknown placeholder.
    """
    for name in placeholders(template):
        if name in names:
            continue
        if response and name.startswith(RESPONSE_PREFIX):
            if is_path(name.removeprefix(RESPONSE_PREFIX)):
                continue
            raise TemplateError(f"{{{name}}} is not a dotted path like {{response.id}}")
        allowed = "a phrase argument, {connection.api_base_url}"
        allowed += " or {response.<path>}" if response else ""
        raise TemplateError(f"{{{name}}} is unknown; a placeholder is {allowed}")


def check_url(template: str, names: Collection[str], *, response: bool = False) -> None:
    """Check a URL template: known placeholders and a target fixed by configuration.

    The URL must start with `{connection.api_base_url}` followed by `/`, `?` or nothing (so an
    argument cannot extend the host name), or with `https://` and a host written out.

    Raises:
        TemplateError: naming the problem.
    """
    check(template, names, response=response)
    parts = parse(template)
    first = parts[0] if parts else ""
    if first == Placeholder(API_BASE_URL):
        after = parts[1] if len(parts) > 1 else ""
        if not (isinstance(after, str) and after.startswith(("/", "?"))) and len(parts) > 1:
            raise TemplateError("must have / or ? right after {connection.api_base_url}")
        return
    if isinstance(first, str) and first.startswith("https://"):
        host = re.split(r"[/?#]", first.removeprefix("https://"), maxsplit=1)
        # The host must be complete in the literal text, i.e. followed by / ? # or the end.
        if host[0] and (len(host) > 1 or len(parts) == 1):
            return
        raise TemplateError("must name its https host in full, without placeholders")
    raise TemplateError("must start with {connection.api_base_url} or https://")


def template_values(
    arguments: Mapping[str, TemplateValue], *, api_base_url: str | None
) -> dict[str, TemplateValue]:
    """The values templates are filled in with: the arguments and the connection's base URL."""
    values = dict(arguments)
    if api_base_url is not None:
        # Base URLs from token responses may end in /; templates always add their own.
        values[API_BASE_URL] = api_base_url.rstrip("/")
    return values


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _value(values: Mapping[str, TemplateValue], name: str) -> TemplateValue:
    if name in values:
        return values[name]
    if name == API_BASE_URL:
        raise TemplateError("the connection has no API base URL")
    raise TemplateError(f"no value for {{{name}}}")


def render_url(template: str, values: Mapping[str, TemplateValue]) -> str:
    """Fill in a URL template, percent-encoding every value except the API base URL.

    Raises:
        TemplateError: a placeholder has no value (e.g. the connection has no API base URL).
    """
    pieces: list[str] = []
    for part in parse(template):
        if isinstance(part, str):
            pieces.append(part)
        elif part.name == API_BASE_URL:
            pieces.append(_text(_value(values, part.name)))
        else:
            pieces.append(quote(_text(_value(values, part.name)), safe=""))
    return "".join(pieces)


def render_text(template: str, values: Mapping[str, TemplateValue]) -> str:
    """Fill in a plain text template (no encoding)."""
    return "".join(
        part if isinstance(part, str) else _text(_value(values, part.name))
        for part in parse(template)
    )


def render_body(template: JsonValue, values: Mapping[str, TemplateValue]) -> JsonValue:
    """Fill in a JSON body template: strings are templates, everything else is kept.

    A string that is exactly one placeholder of a number argument becomes a JSON number;
    object keys are sent as written.
    """
    if isinstance(template, dict):
        return {key: render_body(item, values) for key, item in template.items()}
    if isinstance(template, list):
        return [render_body(item, values) for item in template]
    if isinstance(template, str):
        parts = parse(template)
        if len(parts) == 1 and isinstance(parts[0], Placeholder):
            value = _value(values, parts[0].name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return value
        return render_text(template, values)
    return template


def render_link(template: str, values: Mapping[str, TemplateValue], response: Any) -> str | None:
    """Fill in a result link; None when a response field it needs is missing or not a scalar."""
    filled = dict(values)
    for name in placeholders(template):
        if name.startswith(RESPONSE_PREFIX):
            found = lookup(response, name.removeprefix(RESPONSE_PREFIX))
            if found is None or isinstance(found, dict | list):
                return None
            filled[name] = _text(found)
    try:
        return render_url(template, filled)
    except TemplateError:
        return None


def render_fields(fields: Mapping[str, str], response: Any) -> dict[str, str]:
    """Result fields (label -> dotted path) read from a JSON response; missing ones left out."""
    shown: dict[str, str] = {}
    for label, path in fields.items():
        found = lookup(response, path)
        if found is None:
            continue
        if isinstance(found, dict | list):
            shown[label] = json.dumps(found, ensure_ascii=False, separators=(",", ":"))
        else:
            shown[label] = _text(found)
    return shown
