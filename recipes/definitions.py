"""Recipes: commands people type that perform one HTTP action through a connection.

Recipes come from a TOML file (`RECIPES_FILE`, see `recipes.example.toml`), one
`[recipes.<key>]` table each, or from code through `RecipeBook.register`. Both pass the same
checks. A phrase starts with literal words ("create opportunity") that no built-in command and no
other recipe shares or extends, so a message matches at most one recipe.
"""

from __future__ import annotations

import math
import re
import string
import tomllib
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Protocol, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import messages
from recipes import templates
from recipes.templates import API_BASE_URL, JsonValue, TemplateError, TemplateValue

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
ArgumentType = Literal["text", "number", "integer"]
ArgumentValue: TypeAlias = str | int | float

ARGUMENT_TYPES: tuple[ArgumentType, ...] = ("text", "number", "integer")
# The bot's own commands; pass them (and any later ones) as `reserved_phrases`.
BUILTIN_COMMANDS: tuple[str, ...] = ("help", "personal_connections", "connections")

_TYPES: dict[str, ArgumentType] = {kind: kind for kind in ARGUMENT_TYPES}
_FORMATTER = string.Formatter()
_KEY = re.compile(r"[a-z0-9_]+")
_ARGUMENT_NAME = re.compile(r"[a-z][a-z0-9_]*")
_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_INTEGER = re.compile(r"-?[0-9]+")
# Longer numbers are typos, and Python refuses to convert very long digit strings anyway.
_MAX_NUMBER_LENGTH = 40
# So `{connection.api_base_url}` and `{response.id}` can never be read as an argument.
_RESERVED_ARGUMENTS = frozenset({"connection", "response"})
_SAMPLES: dict[ArgumentType, str] = {"text": "Acme Corp", "number": "5000", "integer": "42"}


class RecipesConfigError(ValueError):
    """The recipes are unusable; the message names the file (or handler) and the key."""


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
            raise ValueError(f"{self.name} must not be empty")
        if self.type == "text":
            if in_url and templates.has_dot_segment(token):
                raise ValueError(
                    messages.RECIPE_ARGUMENT_DOT_SEGMENT.format(name=self.name, value=_shown(token))
                )
            return token
        if len(token) > _MAX_NUMBER_LENGTH:
            raise ValueError(f"{self.name} is too long for a number")
        if self.type == "integer":
            if _INTEGER.fullmatch(token):
                return int(token)
            raise ValueError(f"{self.name} must be a whole number, not {_shown(token)}")
        if not _NUMBER.fullmatch(token):
            raise ValueError(f"{self.name} must be a number, not {_shown(token)}")
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
        raise ValueError("must not be empty")
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError:
        raise ValueError("has an unbalanced { or }") from None
    parts: list[str | Argument] = []
    names: set[str] = set()
    after_argument = False
    for literal, name, spec, conversion in parsed:
        if after_argument and literal and not literal[0].isspace():
            raise ValueError("needs a space after each {argument}")
        words = literal.split()
        if any(set(word) & set('"{}') for word in words):
            raise ValueError("has a word with a double quote or a brace")
        parts.extend(words)
        if name is None:
            continue
        if (literal and not literal[-1].isspace()) or (not literal and after_argument):
            raise ValueError(f"needs a space before {{{name}}}")
        if not name:
            raise ValueError("has an empty {}; arguments need a name")
        if conversion is not None:
            raise ValueError(f"{{{name}!{conversion}}} is not an argument; drop the !{conversion}")
        if not _ARGUMENT_NAME.fullmatch(name):
            raise ValueError(f"{{{name}}}: argument names use lower-case letters, digits and _")
        if name in _RESERVED_ARGUMENTS:
            raise ValueError(f"{{{name}}}: {name} is reserved, choose another argument name")
        kind = _TYPES.get(spec or "text")
        if kind is None:
            raise ValueError(f"{{{name}:{spec}}} has an unknown type; use text, number or integer")
        if name in names:
            raise ValueError(f"uses the argument {name} twice")
        names.add(name)
        parts.append(Argument(name, kind))
        after_argument = True
    if not isinstance(parts[0], str):
        raise ValueError('must start with a literal word, like "create opportunity {name}"')
    return Phrase(" ".join(text.split()), tuple(parts))


@dataclass(frozen=True)
class HttpRequest:
    """An action with its templates filled in, ready to send."""

    method: HttpMethod
    url: str
    json: JsonValue = None


@dataclass(frozen=True)
class HttpAction:
    """The request a configured recipe makes; `body` None means no body."""

    method: HttpMethod
    url: str
    body: JsonValue = None

    def render(self, values: Mapping[str, TemplateValue]) -> HttpRequest:
        """Fill in the URL and body (see `templates.template_values` for `values`).

        Raises:
            TemplateError: a value is missing (e.g. the connection has no API base URL).
        """
        body = None if self.body is None else templates.render_body(self.body, values)
        return HttpRequest(self.method, templates.render_url(self.url, values), body)


@dataclass(frozen=True)
class HttpResponse:
    status: int
    json: Any
    text: str


class HttpCaller(Protocol):
    """Makes one request with the connection's access token (the runner provides it)."""

    # json: anything json.dumps accepts (a handler's arguments dict, a list...), None for no body.
    async def __call__(self, method: HttpMethod, url: str, json: Any = None) -> HttpResponse: ...


@dataclass(frozen=True)
class ActionContext:
    """What a code recipe's handler gets."""

    arguments: dict[str, ArgumentValue]
    access_token: str = field(repr=False)
    api_base_url: str | None
    http: HttpCaller


@dataclass(frozen=True)
class ActionResult:
    """What a recipe produced: labelled fields, an optional link and summary line."""

    fields: dict[str, str] = field(default_factory=dict)
    link: str | None = None
    summary: str | None = None


Handler: TypeAlias = Callable[[ActionContext], Awaitable[ActionResult]]


@dataclass(frozen=True)
class ResultSpec:
    """How a configured recipe's response is shown: "Created in Salesforce as jane@…"."""

    verb: str = "Done"
    # label -> dotted path in the JSON response
    fields: Mapping[str, str] = field(default_factory=dict)
    link: str | None = None

    def render(self, values: Mapping[str, TemplateValue], response: Any) -> ActionResult:
        """The fields and link for a JSON response; missing fields and links are left out."""
        link = templates.render_link(self.link, values, response) if self.link else None
        return ActionResult(fields=templates.render_fields(self.fields, response), link=link)


@dataclass(frozen=True)
class Recipe:
    """One recipe; exactly one of `action` (configured) and `handler` (code) is set."""

    key: str
    name: str
    phrase: Phrase
    parent: str
    verify_user_access: bool = False
    description: str | None = None
    secret_arguments: frozenset[str] = frozenset()
    action: HttpAction | None = None
    handler: Handler | None = None
    result: ResultSpec = field(default_factory=ResultSpec)
    # argument name -> sample value for example(), as typed
    examples: Mapping[str, str] = field(default_factory=dict)

    def usage(self) -> str:
        """`create opportunity <name> <amount: number>`."""
        return self.phrase.usage()

    def example(self) -> str:
        """`create opportunity "Acme Corp" 5000`: the phrase with sample values."""
        return " ".join(
            part
            if isinstance(part, str)
            else quote_value(self.examples.get(part.name, _SAMPLES[part.type]))
            for part in self.phrase.parts
        )

    def public_arguments(self, arguments: Mapping[str, ArgumentValue]) -> dict[str, ArgumentValue]:
        """The arguments that may be stored, audited and shown: all but the secret ones."""
        return {k: v for k, v in arguments.items() if k not in self.secret_arguments}


def _overlaps(first: Sequence[str], second: Sequence[str]) -> bool:
    # One word sequence begins the other: a message could then be read as either.
    shorter = min(len(first), len(second))
    return tuple(first[:shorter]) == tuple(second[:shorter])


def _handler_source(handler: object) -> str:
    module = getattr(handler, "__module__", None) or "code"
    name = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    return f"{module}.{name}"


def _secret_arguments(where: str, secrets: Collection[str], phrase: Phrase) -> frozenset[str]:
    names = {argument.name for argument in phrase.arguments}
    for secret in secrets:
        if secret not in names:
            raise RecipesConfigError(
                f"{where}.secret_arguments: {secret} is not an argument of the phrase."
            )
    return frozenset(secrets)


class RecipeBook:
    """The recipes by key, checked so that any message matches at most one of them."""

    def __init__(
        self,
        *,
        parent_names: Collection[str],
        reserved_phrases: Collection[str],
        source: str = "code",
    ) -> None:
        self.source = source
        self._parents = frozenset(parent_names)
        self._reserved = {
            phrase: tuple(word.casefold() for word in phrase.split())
            for phrase in reserved_phrases
            if phrase.strip()
        }
        self._recipes: dict[str, Recipe] = {}

    @property
    def recipes(self) -> Mapping[str, Recipe]:
        """The recipes by key, in the order they were added."""
        return MappingProxyType(self._recipes)

    def __iter__(self) -> Iterator[Recipe]:
        return iter(list(self._recipes.values()))

    def __len__(self) -> int:
        return len(self._recipes)

    def get(self, key: str) -> Recipe | None:
        return self._recipes.get(key)

    def find(self, words: Sequence[str]) -> Recipe | None:
        """The recipe whose leading literal words begin `words` (case-insensitively)."""
        folded = tuple(word.casefold() for word in words)
        for recipe in self._recipes.values():
            prefix = recipe.phrase.prefix
            if folded[: len(prefix)] == prefix:
                return recipe
        return None

    def add(self, recipe: Recipe, *, source: str | None = None) -> Recipe:
        """Add a built recipe after checking its key, parent and phrase against the book.

        Raises:
            RecipesConfigError: naming `source` (default: the book's file) and the key.
        """
        where = f"{source or self.source}: recipes.{recipe.key}"
        if not _KEY.fullmatch(recipe.key):
            raise RecipesConfigError(f"{where}: recipe keys use lower-case letters, digits and _.")
        if recipe.key in self._recipes:
            raise RecipesConfigError(f"{where}: the key is already used by another recipe.")
        if (recipe.action is None) == (recipe.handler is None):
            raise RecipesConfigError(f"{where}: a recipe has either an action or a handler.")
        if recipe.parent not in self._parents:
            raise RecipesConfigError(
                f"{where}.parent: {recipe.parent!r} is not a configured parent connection."
            )
        words = " ".join(recipe.phrase.words)
        for phrase, reserved in self._reserved.items():
            if _overlaps(recipe.phrase.prefix, reserved):
                raise RecipesConfigError(
                    f'{where}.phrase: "{words}" collides with the built-in command "{phrase}".'
                )
        for other in self._recipes.values():
            if _overlaps(recipe.phrase.prefix, other.phrase.prefix):
                raise RecipesConfigError(
                    f'{where}.phrase: "{words}" collides with recipe {other.key} '
                    f'("{other.phrase.text}"), so a message could match both.'
                )
        self._recipes[recipe.key] = recipe
        return recipe

    def register(
        self,
        key: str,
        *,
        name: str,
        phrase: str,
        parent: str,
        verify_user_access: bool,
        handler: Handler,
        description: str | None = None,
        secret_arguments: Collection[str] = (),
        verb: str = "Done",
    ) -> Recipe:
        """Add a code recipe: `handler(context)` performs the action and returns its result.

        Raises:
            RecipesConfigError: naming the handler and the key (same checks as the file).
        """
        source = _handler_source(handler)
        where = f"{source}: recipes.{key}"
        if not callable(handler):
            raise RecipesConfigError(f"{where}.handler: must be an async callable.")
        if not name.strip():
            raise RecipesConfigError(f"{where}.name: must not be empty.")
        try:
            parsed = parse_phrase(phrase)
        except ValueError as error:
            raise RecipesConfigError(f"{where}.phrase: {error}.") from None
        recipe = Recipe(
            key=key,
            name=name,
            phrase=parsed,
            parent=parent,
            verify_user_access=verify_user_access,
            description=description,
            secret_arguments=_secret_arguments(where, secret_arguments, parsed),
            handler=handler,
            result=ResultSpec(verb=verb),
        )
        return self.add(recipe, source=source)


class _Model(BaseModel):
    # Strict: TOML already has types; a quoted "true" or a number for a name is a mistake.
    model_config = ConfigDict(extra="forbid", strict=True)


class ActionConfig(_Model):
    """`[recipes.<key>.action]`."""

    method: HttpMethod
    url: str = Field(min_length=1)
    body: Any = None


class ResultConfig(_Model):
    """`[recipes.<key>.result]`."""

    verb: str = Field(default="Done", min_length=1)
    fields: dict[str, str] = Field(default_factory=dict)
    link: str | None = None


class RecipeConfig(_Model):
    """One `[recipes.<key>]` table of the recipes file."""

    name: str = Field(min_length=1)
    phrase: str = Field(min_length=1)
    parent: str = Field(min_length=1)
    verify_user_access: bool = False
    description: str | None = None
    secret_arguments: list[str] = Field(default_factory=list)
    # argument name -> sample value shown in examples (default: Acme Corp, 5000, 42)
    examples: dict[str, Any] = Field(default_factory=dict)
    action: ActionConfig
    result: ResultConfig = Field(default_factory=ResultConfig)


def _check_body(where: str, body: Any, names: Collection[str]) -> JsonValue:
    # TOML has dates and times, and nan / inf floats, which JSON has not.
    if isinstance(body, dict):
        return {key: _check_body(f"{where}.{key}", item, names) for key, item in body.items()}
    if isinstance(body, list):
        return [_check_body(f"{where}.{index}", item, names) for index, item in enumerate(body)]
    if isinstance(body, str):
        try:
            templates.check(body, names)
        except TemplateError as error:
            raise RecipesConfigError(f"{where}: {error}.") from None
        return body
    if isinstance(body, bool | int) or (isinstance(body, float) and math.isfinite(body)):
        return body
    raise RecipesConfigError(f"{where}: must be a string, a finite number, true/false or a table.")


def _examples(where: str, examples: Mapping[str, Any], phrase: Phrase) -> dict[str, str]:
    arguments = {argument.name: argument for argument in phrase.arguments}
    checked: dict[str, str] = {}
    for name, value in examples.items():
        argument = arguments.get(name)
        if argument is None:
            raise RecipesConfigError(f"{where}.examples.{name}: is not an argument of the phrase.")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise RecipesConfigError(f"{where}.examples.{name}: must be a string or a number.")
        text = str(value)
        if '"' in text:
            raise RecipesConfigError(f"{where}.examples.{name}: cannot contain double quotes.")
        try:
            argument.parse(text)
        except ValueError as error:
            raise RecipesConfigError(f"{where}.examples.{name}: {error}.") from None
        checked[name] = text
    return checked


def _build(where: str, key: str, config: RecipeConfig) -> Recipe:
    try:
        phrase = parse_phrase(config.phrase)
    except ValueError as error:
        raise RecipesConfigError(f"{where}.phrase: {error}.") from None
    secrets = _secret_arguments(where, config.secret_arguments, phrase)
    names = {argument.name for argument in phrase.arguments} | {API_BASE_URL}
    action = config.action
    try:
        templates.check_url(action.url, names)
    except TemplateError as error:
        raise RecipesConfigError(f"{where}.action.url: {error}.") from None
    if action.method == "GET" and action.body is not None:
        raise RecipesConfigError(f"{where}.action.body: a GET request has no body.")
    body = None if action.body is None else _check_body(f"{where}.action.body", action.body, names)
    for label, path in config.result.fields.items():
        if not templates.is_path(path):
            raise RecipesConfigError(
                f"{where}.result.fields.{label}: {path!r} is not a dotted path like result.number."
            )
    link = config.result.link
    if link is not None:
        try:
            templates.check_url(link, names, response=True)
        except TemplateError as error:
            raise RecipesConfigError(f"{where}.result.link: {error}.") from None
        for name in templates.placeholders(link):
            if name in secrets:
                raise RecipesConfigError(f"{where}.result.link: shows the secret argument {name}.")
    return Recipe(
        key=key,
        name=config.name,
        phrase=phrase,
        parent=config.parent,
        verify_user_access=config.verify_user_access,
        description=config.description,
        secret_arguments=secrets,
        action=HttpAction(action.method, action.url, body),
        result=ResultSpec(config.result.verb, dict(config.result.fields), link),
        examples=_examples(where, config.examples, phrase),
    )


def _validation_message(error: ValidationError) -> tuple[str, str]:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        return location, "unknown key"
    if first["type"] == "missing":
        return location, "is required"
    return location, str(first["msg"]).removeprefix("Value error, ")


def load_recipes(
    path: Path, *, parent_names: Collection[str], reserved_phrases: Collection[str]
) -> RecipeBook:
    """Read the recipes file.

    Raises:
        RecipesConfigError: naming the file and the key that is wrong.
    """
    try:
        document = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as error:
        raise RecipesConfigError(f"{path}: cannot be read ({error.strerror}).") from None
    except UnicodeDecodeError:
        raise RecipesConfigError(f"{path}: is not UTF-8 text.") from None
    except tomllib.TOMLDecodeError as error:
        raise RecipesConfigError(f"{path}: is not valid TOML ({error}).") from None
    unknown = set(document) - {"recipes"}
    if unknown:
        raise RecipesConfigError(f"{path}: unknown top-level key {sorted(unknown)[0]!r}.")
    recipes = document.get("recipes", {})
    if not isinstance(recipes, dict):
        raise RecipesConfigError(f"{path}: [recipes] must be a table.")
    book = RecipeBook(
        parent_names=parent_names, reserved_phrases=reserved_phrases, source=str(path)
    )
    for key, table in recipes.items():
        where = f"{path}: recipes.{key}"
        if not _KEY.fullmatch(key):
            raise RecipesConfigError(f"{where}: recipe keys use lower-case letters, digits and _.")
        if not isinstance(table, dict):
            raise RecipesConfigError(f"{where}: must be a table.")
        try:
            config = RecipeConfig.model_validate(table)
        except ValidationError as error:
            location, message = _validation_message(error)
            raise RecipesConfigError(f"{where}.{location}: {message}.") from None
        book.add(_build(where, key, config))
    return book
