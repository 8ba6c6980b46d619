"""The recipes file (TOML): its tables, checked, turned into the recipes of a `RecipeBook`.

Recipes come from a TOML file (`RECIPES_FILE`, see `recipes.example.toml`), one
`[recipes.<key>]` table each; code recipes are added through `RecipeBook.register`
(`recipes.model`). Both pass the same checks. A phrase starts with literal words
("create opportunity") that no built-in command and no other recipe shares or extends, so a
message matches at most one recipe.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import messages
from recipes import templates
from recipes.model import (
    RECIPE_KEY,
    HttpAction,
    HttpMethod,
    Recipe,
    RecipeBook,
    RecipesConfigError,
    ResultSpec,
    check_secret_arguments,
)
from recipes.phrases import Phrase, parse_phrase
from recipes.templates import API_BASE_URL, JsonValue, TemplateError

__all__ = [
    "ActionConfig",
    "RecipeConfig",
    "RecipesConfigError",
    "ResultConfig",
    "load_recipes",
]


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

    verb: str = Field(default=messages.RECIPE_VERB_DEFAULT, min_length=1)
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
            raise RecipesConfigError(
                messages.CONFIG_ERROR.format(where=where, detail=error)
            ) from None
        return body
    if isinstance(body, bool | int) or (isinstance(body, float) and math.isfinite(body)):
        return body
    raise RecipesConfigError(messages.RECIPES_BODY_VALUE.format(where=where))


def _examples(where: str, examples: Mapping[str, Any], phrase: Phrase) -> dict[str, str]:
    arguments = {argument.name: argument for argument in phrase.arguments}
    checked: dict[str, str] = {}
    for name, value in examples.items():
        argument = arguments.get(name)
        if argument is None:
            raise RecipesConfigError(
                messages.RECIPES_EXAMPLE_UNKNOWN.format(where=where, name=name)
            )
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise RecipesConfigError(messages.RECIPES_EXAMPLE_TYPE.format(where=where, name=name))
        text = str(value)
        if '"' in text:
            raise RecipesConfigError(messages.RECIPES_EXAMPLE_QUOTES.format(where=where, name=name))
        try:
            argument.parse(text)
        except ValueError as error:
            raise RecipesConfigError(
                messages.CONFIG_ERROR.format(where=f"{where}.examples.{name}", detail=error)
            ) from None
        checked[name] = text
    return checked


def _build(where: str, key: str, config: RecipeConfig) -> Recipe:
    try:
        phrase = parse_phrase(config.phrase)
    except ValueError as error:
        raise RecipesConfigError(
            messages.CONFIG_ERROR.format(where=f"{where}.phrase", detail=error)
        ) from None
    secrets = check_secret_arguments(where, config.secret_arguments, phrase)
    names = {argument.name for argument in phrase.arguments} | {API_BASE_URL}
    action = config.action
    try:
        templates.check_url(action.url, names)
    except TemplateError as error:
        raise RecipesConfigError(
            messages.CONFIG_ERROR.format(where=f"{where}.action.url", detail=error)
        ) from None
    if action.method == "GET" and action.body is not None:
        raise RecipesConfigError(messages.RECIPES_GET_BODY.format(where=where))
    body = None if action.body is None else _check_body(f"{where}.action.body", action.body, names)
    for label, path in config.result.fields.items():
        if not templates.is_path(path):
            raise RecipesConfigError(
                messages.RECIPES_FIELD_NOT_PATH.format(where=where, label=label, path=path)
            )
    link = config.result.link
    if link is not None:
        try:
            templates.check_url(link, names, response=True)
        except TemplateError as error:
            raise RecipesConfigError(
                messages.CONFIG_ERROR.format(where=f"{where}.result.link", detail=error)
            ) from None
        for name in templates.placeholders(link):
            if name in secrets:
                raise RecipesConfigError(
                    messages.RECIPES_LINK_SHOWS_SECRETS.format(where=where, name=name)
                )
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
        return location, messages.CONFIG_UNKNOWN_KEY
    if first["type"] == "missing":
        return location, messages.CONFIG_REQUIRED
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
        raise RecipesConfigError(
            messages.CONFIG_UNREADABLE.format(path=path, reason=error.strerror)
        ) from None
    except UnicodeDecodeError:
        raise RecipesConfigError(messages.CONFIG_NOT_UTF8.format(path=path)) from None
    except tomllib.TOMLDecodeError as error:
        raise RecipesConfigError(messages.CONFIG_NOT_TOML.format(path=path, error=error)) from None
    unknown = set(document) - {"recipes"}
    if unknown:
        raise RecipesConfigError(
            messages.CONFIG_UNKNOWN_TOP_KEY.format(path=path, key=sorted(unknown)[0])
        )
    recipes = document.get("recipes", {})
    if not isinstance(recipes, dict):
        raise RecipesConfigError(
            messages.CONFIG_TABLE_NOT_A_TABLE.format(path=path, table="recipes")
        )
    book = RecipeBook(
        parent_names=parent_names, reserved_phrases=reserved_phrases, source=str(path)
    )
    for key, table in recipes.items():
        where = f"{path}: recipes.{key}"
        if not RECIPE_KEY.fullmatch(key):
            raise RecipesConfigError(messages.RECIPES_KEY_INVALID.format(where=where))
        if not isinstance(table, dict):
            raise RecipesConfigError(messages.CONFIG_NOT_A_TABLE.format(where=where))
        try:
            config = RecipeConfig.model_validate(table)
        except ValidationError as error:
            location, message = _validation_message(error)
            raise RecipesConfigError(
                messages.CONFIG_ERROR.format(where=f"{where}.{location}", detail=message)
            ) from None
        book.add(_build(where, key, config))
    return book
