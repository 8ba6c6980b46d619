"""Templates in recipe actions: `{arg}`, `{connection.api_base_url}` and `{response.<path>}`.

Templates are parsed with `string.Formatter().parse` and filled in by hand, never with
`str.format`: a value is inserted as text once and is never parsed again, so braces or attribute
lookups inside what a person typed mean nothing. Argument values in URLs are percent-encoded
(`/` too); the connection's API base URL is trusted configuration and goes in as it is.

A value stays inside its path segment. Percent-encoding leaves `.` and `..` as they are, and an
HTTP client resolves those as "this folder" and "the folder above" (RFC 3986 §5.2.4), so
`{connection.api_base_url}/api/records/{id}` with id `..` would reach `/api/` with the
connection's token. Three layers keep that from happening:

1. Matching (`has_dot_segment`, used by `Argument.parse`): a text argument that appears in a URL
   template (the action URL or the result link, path or query) is refused when it reads as `.`
   or `..`, or holds such a segment between slashes or backslashes, however it is disguised:
   percent-encoded (also twice, `%uXXXX`, overlong UTF-8), Unicode compatibility forms (the
   fullwidth full stop U+FF0E, the two-dot leader U+2025, the fullwidth solidus U+FF0F),
   invisible format or control characters, surrounding white space or a `;parameter`. A
   server or proxy that decodes once more must not find one either. Query values are refused
   too: they cannot move the URL, but APIs often read a path from them. Arguments used only in
   a JSON body, and the arguments of code recipes, are sent verbatim: they are never part of a
   URL the bot builds (a code recipe's handler builds its own and answers for it).
2. Loading (`check_url`): a template whose own text has such a segment is refused.
3. Sending (`render_target`): the filled-in URL, resolved the way the HTTP client resolves it
   (yarl), must keep the scheme, host, port and path prefix its template fixes: everything
   before the first argument, up to its last `/` (the whole path when a `?` comes first). That
   prefix starts with the connection's API base URL, or with the `https://host/…` written in
   the template. Its path must also have no such segment, so resolving changes nothing. The URL
   object returned is what is sent: what was built, byte for byte (yarl would decode some
   characters a value had percent-encoded), and aiohttp does not parse it again.
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import quote, unquote_to_bytes, urlsplit

from yarl import URL

import messages

JsonValue: TypeAlias = "str | int | float | bool | list[JsonValue] | dict[str, JsonValue] | None"
TemplateValue: TypeAlias = str | int | float

API_BASE_URL = "connection.api_base_url"
RESPONSE_PREFIX = "response."

_FORMATTER = string.Formatter()
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9_$@-]+")
_INDEX = re.compile(r"[0-9]+")
_DOT_SEGMENTS = frozenset({".", ".."})
_SEGMENT_SEPARATORS = re.compile(r"[/\\]")
_PERCENT_U = re.compile(r"%[uU]([0-9A-Fa-f]{4})")
# Overlong UTF-8 for "." and "/" ("\\" too), which old servers decoded as the real thing.
_OVERLONG = (
    (b"\xc0\xae", b"."),
    (b"\xe0\x80\xae", b"."),
    (b"\xc0\xaf", b"/"),
    (b"\xe0\x80\xaf", b"/"),
    (b"\xc1\x9c", b"\\"),
)
# Nested encodings deeper than this are not a real value; they are refused.
_MAX_DECODINGS = 8
# A URI as RFC 3986 writes it: its characters, and % only before two hex digits.
_URI = re.compile(r"(?:[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=-]|%[0-9A-Fa-f]{2})+")


class TemplateError(ValueError):
    """A template is malformed (at load) or cannot be filled in (at run time)."""


class TargetError(TemplateError):
    """A filled-in URL would leave the place its template fixes (scheme, host, path prefix)."""


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
        raise TemplateError(messages.TEMPLATE_UNBALANCED) from None
    for literal, field, spec, conversion in parsed:
        if literal:
            parts.append(literal)
        if field is None:
            continue
        if not field:
            raise TemplateError(messages.TEMPLATE_EMPTY_PLACEHOLDER)
        if conversion is not None or spec:
            # Types belong in the phrase; a template placeholder is just a name.
            raise TemplateError(messages.TEMPLATE_NOT_PLAIN.format(name=field))
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


def _visible(text: str) -> str:
    # Compatibility forms become plain ones (fullwidth dots and slashes, the two-dot leader);
    # invisible format and control characters go (URL parsers drop tabs and newlines).
    folded = unicodedata.normalize("NFKC", text)
    return "".join(c for c in folded if unicodedata.category(c) not in ("Cc", "Cf"))


def _percent_decoded(text: str) -> str:
    raw = unquote_to_bytes(_PERCENT_U.sub(lambda found: chr(int(found[1], 16)), text))
    for overlong, plain in _OVERLONG:
        raw = raw.replace(overlong, plain)
    return raw.decode("utf-8", errors="replace")


def _holds_dot_segment(text: str) -> bool:
    return any(
        segment.split(";", 1)[0].strip() in _DOT_SEGMENTS
        for segment in _SEGMENT_SEPARATORS.split(text)
    )


def has_dot_segment(value: str) -> bool:
    """Whether a value is, or holds between `/` or `\\`, a `.` or `..` path segment in any
    encoding a client, proxy or server might decode (see the module docstring)."""
    text = value
    for _ in range(_MAX_DECODINGS):
        text = _visible(text)
        if _holds_dot_segment(text):
            return True
        decoded = _percent_decoded(text)
        if decoded == text:
            return False
        text = decoded
    return True


def _literal_path_segments(parts: tuple[Part, ...]) -> Iterator[str]:
    """The path segments of a URL template written out in full (no placeholder in them)."""
    marker = "\x00"
    text = "".join(part if isinstance(part, str) else marker for part in parts)
    if text.startswith("https://"):
        text = text.removeprefix("https://").partition("/")[2]
    path = re.split(r"[?#]", text, maxsplit=1)[0]
    for segment in path.split("/"):
        if marker not in segment:
            yield segment


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
            raise TemplateError(messages.TEMPLATE_NOT_A_PATH.format(name=name))
        unknown = messages.TEMPLATE_UNKNOWN_WITH_RESPONSE if response else messages.TEMPLATE_UNKNOWN
        raise TemplateError(unknown.format(name=name))


def check_url(template: str, names: Collection[str], *, response: bool = False) -> None:
    """Check a URL template: known placeholders and a target fixed by configuration.

    The URL must start with `{connection.api_base_url}` followed by `/`, `?` or nothing (so an
    argument cannot extend the host name), or with `https://` and a host written out; its own
    text has no `.` or `..` path segment.

    Raises:
        TemplateError: naming the problem.
    """
    check(template, names, response=response)
    parts = parse(template)
    if any(has_dot_segment(segment) for segment in _literal_path_segments(parts)):
        raise TemplateError(messages.TEMPLATE_DOT_SEGMENT)
    first = parts[0] if parts else ""
    if first == Placeholder(API_BASE_URL):
        after = parts[1] if len(parts) > 1 else ""
        if not (isinstance(after, str) and after.startswith(("/", "?"))) and len(parts) > 1:
            raise TemplateError(messages.TEMPLATE_AFTER_BASE_URL)
        return
    if isinstance(first, str) and first.startswith("https://"):
        host = re.split(r"[/?#]", first.removeprefix("https://"), maxsplit=1)
        # The host must be complete in the literal text, i.e. followed by / ? # or the end.
        if host[0] and (len(host) > 1 or len(parts) == 1):
            return
        raise TemplateError(messages.TEMPLATE_HOST_IN_FULL)
    raise TemplateError(messages.TEMPLATE_URL_START)


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
        raise TemplateError(messages.TEMPLATE_NO_BASE_URL)
    raise TemplateError(messages.TEMPLATE_NO_VALUE.format(name=name))


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


def _resolved(url: str) -> URL:
    # How aiohttp reads a URL string: percent-encoded unreserved characters decoded, dot
    # segments resolved (RFC 3986 §5.2.4), scheme and host lower-cased.
    try:
        resolved = URL(url)
    except (TypeError, ValueError):
        raise TargetError(messages.TARGET_INVALID) from None
    if resolved.scheme not in ("http", "https") or not resolved.raw_host:
        raise TargetError(messages.TARGET_NOT_ABSOLUTE)
    return resolved


def _authority(url: URL) -> tuple[object, ...]:
    return (url.scheme, url.raw_host, url.port, url.raw_user, url.raw_password)


def render_target(template: str, values: Mapping[str, TemplateValue]) -> URL:
    """Fill in a URL template and return the URL to send, once it is known to stay in place.

    Raises:
        TemplateError: a placeholder has no value.
        TargetError: the resolved URL leaves the scheme, host, port or path prefix the
            template fixes, or the filled-in path has a `.` or `..` segment in any encoding
            (see the module docstring).
    """
    rendered = render_url(template, values)
    fixed_text = ""
    for part in parse(template):
        if isinstance(part, Placeholder) and part.name != API_BASE_URL:
            break
        fixed_text += part if isinstance(part, str) else _text(_value(values, part.name))
    target, fixed = _resolved(rendered), _resolved(fixed_text)
    if _authority(target) != _authority(fixed):
        raise TargetError(messages.TARGET_OTHER_HOST)
    if re.search(r"[?#]", fixed_text.partition("://")[2]):
        inside = target.raw_path == fixed.raw_path
    else:
        prefix = fixed.raw_path[: fixed.raw_path.rfind("/") + 1]
        inside = target.raw_path.startswith(prefix)
    if not inside:
        raise TargetError(messages.TARGET_LEAVES_PATH)
    # Inside its prefix, a "." or ".." could still drop or swap a segment of the template's own.
    if any(has_dot_segment(segment) for segment in urlsplit(rendered).path.split("/")):
        raise TargetError(messages.TARGET_DOT_SEGMENT)
    # With no dot segment, resolving changed nothing that matters, so send what was built, byte
    # for byte: yarl would otherwise decode reserved characters a value had encoded (%3B to ;
    # in a path, %2F to / in a query), which a server may read differently.
    if _URI.fullmatch(rendered):
        return URL(rendered, encoded=True)
    return target


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
        # A response field cannot lead the link out of its place either.
        render_target(template, filled)
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
