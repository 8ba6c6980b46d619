"""Parents serve one tenant; no one acts through another tenant's parent or connection.

Over real HTTP against the running bot and the sandbox provider: the sandbox records who each
opportunity was created as, so "nothing ran" is checked at the provider, not in the bot.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import messages
from storage.crypto import TokenCipher
from storage.models import ProviderAccount
from tests.conftest import TEST_TOKEN_KEY, StartBot
from tests.support import activities
from tests.support.activities import JANE, MALLORY, Person
from tests.support.data import ADMIN, owner
from tests.support.sandbox import RunningSandbox, issue_tokens
from tests.test_recipe_runs import RECIPES, World, world  # noqa: F401 - the fixture

# Someone of another tenant who carries Jane's object id (object ids are only unique per tenant).
JANE_OF_FABRIKAM = Person("29:jane-f", JANE.aad_object_id, "Jane F", tenant_id=MALLORY.tenant_id)


async def run_as(world: World, person: Person, text: str) -> str:  # noqa: F811
    world.bot.connector.clear()
    status, _ = await world.bot.post(activities.message(person, world.bot.service_url, text))
    assert status == 200
    return json.dumps([s.activity for s in world.bot.connector.sent], ensure_ascii=False)


@pytest.mark.parametrize("verify", [False, True])
async def test_another_tenant_never_uses_the_parent(world: World, verify: bool) -> None:  # noqa: F811
    """A person of another tenant gets a clear sentence and nothing runs, with the setting off
    (the parent's token) and on (no Login card under another tenant's parent either)."""
    await world.bot.database.recipe_settings.set_verify_user_access(
        "sandbox_opportunity", verify, changed_by="test"
    )
    shown = await run_as(world, MALLORY, 'sandbox opportunity "Foreign deal" 1')
    assert world.created_by("Foreign deal") == []
    expected = messages.RECIPE_OTHER_TENANT.format(recipe="Sandbox opportunity", app="Sandbox")
    assert expected in shown
    assert "application/vnd.microsoft.card.signin" not in shown
    assert await world.bot.database.login_states.pending_for(owner(MALLORY)) == []
    # The parent's own tenant is unaffected.
    await world.bot.database.recipe_settings.set_verify_user_access(
        "sandbox_opportunity", False, changed_by="test"
    )
    await run_as(world, JANE, 'sandbox opportunity "Home deal" 1')
    assert world.created_by("Home deal") == ["omar@sandbox.example"]


async def test_each_tenant_uses_its_own_parent(world: World) -> None:  # noqa: F811
    """Two tenants may each authorize a parent under the same name; each acts only as its own."""
    tokens = await world.tokens_for("alex")
    await world.bot.database.connections.create_parent(
        provider="sandbox",
        owner=ADMIN,
        account=ProviderAccount(id="user-alex", display_name="alex@sandbox.example"),
        tokens=world.cipher.seal(tokens.as_record()),
        api_base_url=world.sandbox.base_url,
        name="sandbox_team",
        tenant_id=MALLORY.tenant_id,
    )
    await run_as(world, MALLORY, 'sandbox opportunity "Fabrikam deal" 1')
    await run_as(world, JANE, 'sandbox opportunity "Contoso deal" 1')
    assert world.created_by("Fabrikam deal") == ["alex@sandbox.example"]
    assert world.created_by("Contoso deal") == ["omar@sandbox.example"]


async def test_runtime_connection_never_crosses_tenants(world: World) -> None:  # noqa: F811
    """Jane's own connection is never used for someone of another tenant with her object id."""
    await world.bot.database.recipe_settings.set_verify_user_access(
        "sandbox_opportunity", True, changed_by="test"
    )
    await world.janes_connection("connected")
    shown = await run_as(world, JANE_OF_FABRIKAM, 'sandbox opportunity "Borrowed" 1')
    assert world.created_by("Borrowed") == []
    assert "jane@sandbox.example" not in shown
    await run_as(world, JANE, 'sandbox opportunity "Own" 1')
    assert world.created_by("Own") == ["jane@sandbox.example"]


@pytest.fixture
def recipes(apps_file: Path, tmp_path: Path) -> Path:
    """The recipes file, with the apps file's parent bound to Jane's tenant."""
    apps_file.write_text(apps_file.read_text() + f'tenant = "{JANE.tenant_id}"\n')
    path = tmp_path / "recipes.toml"
    path.write_text(RECIPES)
    return path


async def test_configured_tenant_wins_over_stored_records(
    start_bot: StartBot, sandbox: RunningSandbox, apps_file: Path, bot_port: int, recipes: Path
) -> None:
    """`tenant = "…"` in APPS_FILE binds the parent: even a parent record stored for another
    tenant under that name is never used for that tenant's people."""
    bot = await start_bot(
        port=bot_port,
        apps_file=str(apps_file),
        recipes_file=str(recipes),
        public_base_url=f"http://127.0.0.1:{bot_port}",
    )
    tokens = await issue_tokens(
        apps_file, f"http://127.0.0.1:{bot_port}/auth/callback", user="alex"
    )
    await bot.database.connections.create_parent(
        provider="sandbox",
        owner=ADMIN,
        account=ProviderAccount(id="user-alex", display_name="alex@sandbox.example"),
        tokens=TokenCipher([TEST_TOKEN_KEY]).seal(tokens.as_record()),
        api_base_url=sandbox.base_url,
        name="sandbox_team",
        tenant_id=MALLORY.tenant_id,
    )
    bot.connector.clear()
    status, _ = await bot.post(
        activities.message(MALLORY, bot.service_url, 'sandbox opportunity "Sneaky" 1')
    )
    assert status == 200
    assert [o for o in sandbox.state.opportunities if o["name"] == "Sneaky"] == []
    shown = json.dumps([s.activity for s in bot.connector.sent])
    assert "serves another organization" in shown
