"""The runtime model of recipes: what a recipe is, what its action gets and gives back, and
the book that holds them.

A recipe either makes one configured HTTP request (`HttpAction`, shown through its
`ResultSpec`) or calls a code handler (`Handler`). The `RecipeBook` checks every recipe it is
given, whether from the recipes file (`recipes.config`) or from code (`RecipeBook.register`), so
that a message matches at most one recipe.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol, TypeAlias

import messages
from recipes import templates
from recipes.phrases import ArgumentType, ArgumentValue, Phrase, parse_phrase, quote_value
from recipes.templates import JsonValue, TemplateValue

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
# The bot's own commands; pass them (and any later ones) as `reserved_phrases`.
BUILTIN_COMMANDS: tuple[str, ...] = ("help", "personal_connections", "connections")
# What a recipe key may be made of.
RECIPE_KEY = re.compile(r"[a-z0-9_]+")

_SAMPLES: dict[ArgumentType, str] = {"text": "Acme Corp", "number": "5000", "integer": "42"}


class RecipesConfigError(ValueError):
    """The recipes are unusable; the message names the file (or handler) and the key.

    Defined here because the book's own checks raise it; `recipes.config` re-exports it."""


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


def check_secret_arguments(where: str, secrets: Collection[str], phrase: Phrase) -> frozenset[str]:
    """The secret argument names, each checked to be an argument of the phrase.

    Raises:
        RecipesConfigError: naming `where` and the unknown name.
    """
    names = {argument.name for argument in phrase.arguments}
    for secret in secrets:
        if secret not in names:
            raise RecipesConfigError(
                messages.RECIPES_SECRETS_UNKNOWN.format(where=where, name=secret)
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
        if not RECIPE_KEY.fullmatch(recipe.key):
            raise RecipesConfigError(messages.RECIPES_KEY_INVALID.format(where=where))
        if recipe.key in self._recipes:
            raise RecipesConfigError(messages.RECIPES_KEY_TAKEN.format(where=where))
        if (recipe.action is None) == (recipe.handler is None):
            raise RecipesConfigError(messages.RECIPES_ACTION_OR_HANDLER.format(where=where))
        if recipe.parent not in self._parents:
            raise RecipesConfigError(
                messages.RECIPES_PARENT_UNKNOWN.format(where=where, parent=recipe.parent)
            )
        words = " ".join(recipe.phrase.words)
        for phrase, reserved in self._reserved.items():
            if _overlaps(recipe.phrase.prefix, reserved):
                raise RecipesConfigError(
                    messages.RECIPES_PHRASE_BUILTIN.format(where=where, words=words, command=phrase)
                )
        for other in self._recipes.values():
            if _overlaps(recipe.phrase.prefix, other.phrase.prefix):
                raise RecipesConfigError(
                    messages.RECIPES_PHRASE_COLLIDES.format(
                        where=where, words=words, other=other.key, other_phrase=other.phrase.text
                    )
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
        verb: str = messages.RECIPE_VERB_DEFAULT,
    ) -> Recipe:
        """Add a code recipe: `handler(context)` performs the action and returns its result.

        Raises:
            RecipesConfigError: naming the handler and the key (same checks as the file).
        """
        source = _handler_source(handler)
        where = f"{source}: recipes.{key}"
        if not callable(handler):
            raise RecipesConfigError(messages.RECIPES_HANDLER_NOT_CALLABLE.format(where=where))
        if not name.strip():
            raise RecipesConfigError(messages.RECIPES_NAME_EMPTY.format(where=where))
        try:
            parsed = parse_phrase(phrase)
        except ValueError as error:
            raise RecipesConfigError(
                messages.CONFIG_ERROR.format(where=f"{where}.phrase", detail=error)
            ) from None
        recipe = Recipe(
            key=key,
            name=name,
            phrase=parsed,
            parent=parent,
            verify_user_access=verify_user_access,
            description=description,
            secret_arguments=check_secret_arguments(where, secret_arguments, parsed),
            handler=handler,
            result=ResultSpec(verb=verb),
        )
        return self.add(recipe, source=source)
