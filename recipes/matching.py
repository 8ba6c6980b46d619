"""Matching a typed message to a recipe: the literal words pick it, the rest are its arguments.

A message is split the way a POSIX shell splits it, with double quotes only: `"Acme Corp"` is one
value. Apostrophes and backslashes stay ordinary characters because people type them in prose
("isn't", DOMAIN\\jane).

A text argument that a recipe puts in a URL (its action URL or its result link) may not read as
`.` or `..` in any encoding: that would move the request out of its path segment, to another
endpoint, with the connection's token. Such a message gets the usual "what was expected" answer
with an example. Arguments used only in the JSON body, and those of code recipes, are taken as
typed (see `recipes.templates` for the rules and why).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import messages
from recipes import templates
from recipes.model import Recipe, RecipeBook
from recipes.phrases import Argument, ArgumentValue

# Teams clients (and phone keyboards) turn straight quotes into curly ones.
_CURLY_QUOTES = str.maketrans(dict.fromkeys("\u201c\u201d\u201e\u201f\u00ab\u00bb", '"'))


class TokenizeError(ValueError):
    """A message cannot be split into words (a double quote is not closed)."""


@dataclass(frozen=True)
class Match:
    """The message runs `recipe` with these typed arguments."""

    recipe: Recipe
    arguments: dict[str, ArgumentValue]


@dataclass(frozen=True)
class MatchProblem:
    """The message names `recipe` but its arguments are wrong; `message` says how to fix it."""

    recipe: Recipe
    message: str


def tokenize(text: str) -> list[str]:
    """Split a message into words; double-quoted text is one word, without its quotes.

    Raises:
        TokenizeError: a double quote is not closed.
    """
    lexer = shlex.shlex(text.translate(_CURLY_QUOTES), posix=True)
    lexer.whitespace_split = True
    lexer.whitespace += "\u00a0"  # Teams sends non-breaking spaces
    lexer.commenters = ""
    lexer.quotes = '"'
    lexer.escape = ""
    try:
        return list(lexer)
    except ValueError:
        raise TokenizeError(messages.RECIPE_QUOTE_NOT_CLOSED) from None


def _url_arguments(recipe: Recipe) -> frozenset[str]:
    """The names a configured recipe fills into a URL: its action URL and its result link."""
    if recipe.action is None:
        return frozenset()
    names = set(templates.placeholders(recipe.action.url))
    if recipe.result.link:
        names.update(templates.placeholders(recipe.result.link))
    return frozenset(names)


def _with_example(recipe: Recipe, message: str) -> MatchProblem:
    return MatchProblem(
        recipe,
        messages.RECIPE_PROBLEM_WITH_EXAMPLE.format(problem=message, example=recipe.example()),
    )


def _shape_problem(recipe: Recipe, extra: bool) -> MatchProblem:
    words = " ".join(recipe.phrase.words)
    rest = recipe.phrase.parts[len(recipe.phrase.words) :]
    expected = " ".join(part if isinstance(part, str) else part.usage() for part in rest)
    if not extra:
        return _with_example(recipe, messages.RECIPE_NEEDS.format(words=words, expected=expected))
    if not rest:
        return _with_example(recipe, messages.RECIPE_TAKES_NOTHING.format(words=words))
    return _with_example(recipe, messages.RECIPE_TAKES_ONLY.format(words=words, expected=expected))


def match(book: RecipeBook, text: str) -> Match | MatchProblem | None:
    """The recipe a message runs, what is wrong with its arguments, or None (not a recipe)."""
    try:
        tokens = tokenize(text)
    except TokenizeError:
        # Still say which recipe it was meant for when the words before the quote name one.
        recipe = book.find(text.translate(_CURLY_QUOTES).replace('"', " ").split())
        if recipe is None:
            return None
        return _with_example(recipe, messages.RECIPE_QUOTE_NOT_CLOSED_PROBLEM)
    recipe = book.find(tokens)
    if recipe is None:
        return None
    pattern = recipe.phrase.parts[len(recipe.phrase.words) :]
    given = tokens[len(recipe.phrase.words) :]
    if len(given) != len(pattern):
        return _shape_problem(recipe, extra=len(given) > len(pattern))
    arguments: dict[str, ArgumentValue] = {}
    in_url = _url_arguments(recipe)
    for token, part in zip(given, pattern, strict=True):
        if isinstance(part, Argument):
            try:
                arguments[part.name] = part.parse(token, in_url=part.name in in_url)
            except ValueError as error:
                return _with_example(recipe, str(error))
        elif token.casefold() != part.casefold():
            return _shape_problem(recipe, extra=False)
    return Match(recipe, arguments)
