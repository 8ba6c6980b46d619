"""How the console is reached: the one-time loopback link (no sign-in configured), the console
turned off on a reachable bot without a sign-in, and recipe switches that are deployment-wide."""

from __future__ import annotations

from pathlib import Path

from storage.models import Actor
from storage.privileges import PrincipalKind, Privilege
from tests.conftest import StartBot
from tests.console.support import CONTOSO, sign_in

RECIPES = """
[recipes.report]
name = "Weekly report"
phrase = "weekly report"
parent = "reports"
verify_user_access = false
[recipes.report.action]
method = "GET"
url = "{connection.api_base_url}/api/report"
"""
APPS = """
[apps.box]
preset = "box"
client_id = "box-client"
client_secret_env = "BOX_SECRET_FOR_TEST"

[parents.reports]
app = "box"
contact = "Ada Admin"
"""


async def test_a_one_time_link_opens_the_console_once(start_bot: StartBot) -> None:
    bot = await start_bot()
    assert bot.settings.console_sign_in == "link"
    token = await bot.database.admin_signins.create_link()
    response = await bot.client.get(f"/admin/link?token={token}", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/admin/"
    cookie = response.cookies["rc_console"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    page = await bot.client.get(
        "/admin/connections",
        headers={"Cookie": f"rc_console={cookie.value}"},
        allow_redirects=False,
    )
    assert page.status == 200, "the operator's link holds every privilege"
    again = await bot.client.get(f"/admin/link?token={token}", allow_redirects=False)
    assert again.status == 400 and "rc_console" not in again.cookies
    for forged in ("", "x", token[:-2] + "AA", "a" * 300):
        refused = await bot.client.get(f"/admin/link?token={forged}", allow_redirects=False)
        assert refused.status == 400


async def test_the_sign_in_page_explains_the_link(start_bot: StartBot) -> None:
    bot = await start_bot()
    page = await bot.client.get("/admin/signin")
    assert page.status == 200
    assert "python -m admin console-link" in await page.text()


async def test_a_reachable_bot_without_a_console_sign_in_keeps_the_console_closed(
    start_bot: StartBot,
) -> None:
    bot = await start_bot(
        app_id="bot-app",
        app_type="UserAssignedMSI",
        app_tenant_id=CONTOSO,
        allowed_tenant_ids=CONTOSO,
        host="0.0.0.0",
    )
    assert bot.settings.console_sign_in == "link"
    token = await bot.database.admin_signins.create_link()
    for path in ("/admin/", "/admin/signin", f"/admin/link?token={token}"):
        response = await bot.client.get(path, allow_redirects=False)
        assert response.status == 403, path
        assert "ADMIN_CLIENT_ID" in await response.text()
    assert await bot.database.admin_signins.take_link(token), "the link was never used"


async def _bot_with_recipe(start_bot: StartBot, tmp_path: Path, monkeypatch, **overrides: str):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("BOX_SECRET_FOR_TEST", "s")
    apps = tmp_path / "apps.toml"
    apps.write_text(APPS)
    recipes = tmp_path / "recipes.toml"
    recipes.write_text(RECIPES)
    return await start_bot(apps_file=str(apps), recipes_file=str(recipes), **overrides)


async def test_recipe_switch_changes_the_setting_and_is_audited(
    start_bot: StartBot, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    bot = await _bot_with_recipe(start_bot, tmp_path, monkeypatch, allowed_tenant_ids=CONTOSO)
    editor = await sign_in(bot.client, bot.database, privileges=[Privilege.EDIT_RECIPES])
    status, page, _ = await editor.get("/admin/recipes")
    assert status == 200 and "Weekly report" in page and "Turn on" in page
    status, _, _ = await editor.post("/admin/recipes/toggle", {"key": "report", "value": "on"})
    assert status == 303
    assert await bot.database.recipe_settings.verify_user_access("report", default=False)
    status, page, _ = await editor.get("/admin/recipes?changed=report")
    assert "Turn off" in page
    events = await bot.database.audit.recent(limit=5)
    changed = [e for e in events if e.action == "recipe.setting_changed"]
    assert len(changed) == 1 and changed[0].actor.kind == "administrator"
    assert changed[0].details == {"recipe": "report", "verify_user_access": True}


async def test_a_tenant_administrator_cannot_switch_a_recipe_every_tenant_uses(
    start_bot: StartBot, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    bot = await _bot_with_recipe(
        start_bot, tmp_path, monkeypatch, allowed_tenant_ids=f"{CONTOSO},fabrikam"
    )
    editor = await sign_in(bot.client, bot.database, privileges=[Privilege.EDIT_RECIPES])
    status, page, _ = await editor.get("/admin/recipes")
    assert status == 200 and "Turn on" not in page and "every tenant" in page
    status, _, _ = await editor.post("/admin/recipes/toggle", {"key": "report", "value": "on"})
    assert status == 403
    assert not await bot.database.recipe_settings.verify_user_access("report", default=False)
    await bot.database.privileges.grant(
        tenant_id=CONTOSO,
        kind=PrincipalKind.USER,
        principal="admin-1",
        privileges=[Privilege.ALL_TENANTS],
        actor=Actor.operator("test"),
    )
    status, _, _ = await editor.post("/admin/recipes/toggle", {"key": "report", "value": "on"})
    assert status == 303
    assert await bot.database.recipe_settings.verify_user_access("report", default=False)
