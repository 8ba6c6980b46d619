"""The shipped apps.example.toml and recipes.example.toml work together as given."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from oauth.providers import load_registry
from settings import load_settings
from tests.conftest import StartBot
from tests.support import activities
from tests.support.activities import JANE
from wiring import load_recipe_book

REPO = Path(__file__).resolve().parents[1]
APPS_EXAMPLE = REPO / "apps.example.toml"
RECIPES_EXAMPLE = REPO / "recipes.example.toml"


def secret_variables() -> dict[str, str]:
    """A dummy value for every client-secret variable the apps example names."""
    names = re.findall(r'^client_secret_env\s*=\s*"([^"]+)"', APPS_EXAMPLE.read_text(), re.M)
    assert names, "the apps example names no client-secret variable"
    return {name: "dummy-secret" for name in names}


@pytest.fixture
def example_secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    variables = secret_variables()
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return variables


def test_every_example_recipe_names_an_example_parent(example_secrets: dict[str, str]) -> None:
    """The recipes load against the apps file's parents, as `python app.py` loads them."""
    providers = load_registry(APPS_EXAMPLE, example_secrets)
    settings = load_settings(_env_file=None, recipes_file=str(RECIPES_EXAMPLE))
    book = load_recipe_book(settings, providers)
    recipes = list(book)
    assert recipes, "the recipes example defines no recipe"
    assert {recipe.parent for recipe in recipes} <= set(providers.parents)


async def test_bot_starts_with_both_examples_and_help_lists_the_recipes(
    start_bot: StartBot, example_secrets: dict[str, str]
) -> None:
    """APPS_FILE and RECIPES_FILE at the examples: the bot starts and `help` lists every
    example recipe."""
    bot = await start_bot(apps_file=str(APPS_EXAMPLE), recipes_file=str(RECIPES_EXAMPLE))
    status, _ = await bot.post(activities.message(JANE, bot.service_url, "help"))
    assert status == 200
    reply = await bot.connector.wait_for(lambda sent: sent.card is not None)
    shown = json.dumps(reply.activity)
    book = load_recipe_book(bot.settings, load_registry(APPS_EXAMPLE, example_secrets))
    usages = [recipe.usage() for recipe in book]
    assert "create opportunity <name> <amount: number>" in usages
    assert "sandbox opportunity <name> <amount: number>" in usages
    for usage in usages:
        assert usage in shown, usage
