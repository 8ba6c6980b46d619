"""Recipes: typed commands that perform one HTTP action through a connection."""

from recipes.config import RecipesConfigError, load_recipes
from recipes.matching import Match, MatchProblem, TokenizeError, match, tokenize
from recipes.model import (
    BUILTIN_COMMANDS,
    ActionContext,
    ActionResult,
    Handler,
    HttpAction,
    HttpCaller,
    HttpMethod,
    HttpRequest,
    HttpResponse,
    Recipe,
    RecipeBook,
    ResultSpec,
)
from recipes.phrases import Argument, ArgumentValue, Phrase, parse_phrase
from recipes.templates import TemplateError, template_values

__all__ = [
    "BUILTIN_COMMANDS",
    "ActionContext",
    "ActionResult",
    "Argument",
    "ArgumentValue",
    "Handler",
    "HttpAction",
    "HttpCaller",
    "HttpMethod",
    "HttpRequest",
    "HttpResponse",
    "Match",
    "MatchProblem",
    "Phrase",
    "Recipe",
    "RecipeBook",
    "RecipesConfigError",
    "ResultSpec",
    "TemplateError",
    "TokenizeError",
    "load_recipes",
    "match",
    "parse_phrase",
    "template_values",
    "tokenize",
]
