"""Recipes: each with its parent connection and its "Verify user access at runtime" switch.

The switch is the database value the runner reads at every run (as `python -m admin recipes
toggle` sets it), so a change takes effect on the next run without a restart; it is audited in
the same update. It is one value for the whole deployment, so only an administrator who may act
for every tenant the bot serves can change it.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

import messages
from console import forms
from console.access import Forbidden, access, form, parts_of, requires
from console.pages import redirect, render
from storage.models import Actor
from storage.outbox import drain
from storage.privileges import Privilege

RECIPE_SETTING_CHANGED = "recipe.setting_changed"
ON_OFF = {"on": "on", "off": "off"}


@dataclass(frozen=True)
class RecipeRow:
    key: str
    name: str
    usage: str
    parent: str
    verify_user_access: bool


@requires(Privilege.VIEW_CONNECTIONS, Privilege.EDIT_RECIPES)
async def list_page(request: web.Request) -> web.StreamResponse:
    parts = parts_of(request)
    me = access(request)
    stored = await parts.recipe_settings.all()
    rows = [
        RecipeRow(
            key=recipe.key,
            name=recipe.name,
            usage=recipe.usage(),
            parent=recipe.parent,
            verify_user_access=stored.get(recipe.key, recipe.verify_user_access),
        )
        for recipe in parts.book
    ]
    can_edit = me.holds(Privilege.EDIT_RECIPES) and me.covers_every_tenant_of(parts.settings)
    return await render(
        request,
        "recipes.html",
        {
            "rows": rows,
            "can_edit": can_edit,
            "edit_elsewhere": me.holds(Privilege.EDIT_RECIPES) and not can_edit,
            "changed": forms.text(request.query, "changed", limit=100),
        },
    )


@requires(Privilege.EDIT_RECIPES)
async def toggle(request: web.Request) -> web.StreamResponse:
    parts = parts_of(request)
    me = access(request)
    if not me.covers_every_tenant_of(parts.settings):
        raise Forbidden(messages.CONSOLE_EVERY_TENANT)
    posted = form(request)
    key = forms.text(posted, "key", limit=100)
    if key not in parts.book.recipes:
        raise web.HTTPNotFound()
    value = forms.choice(posted, "value", ON_OFF, messages.CONSOLE_BAD_SWITCH)
    if not value:
        raise forms.BadInput(
            messages.CONSOLE_BAD_FIELD.format(field="value", problem=messages.CONSOLE_BAD_SWITCH)
        )
    administrator = me.administrator
    actor = Actor.administrator(
        tenant_id=administrator.tenant_id,
        object_id=administrator.object_id,
        name=administrator.name,
    )
    event = parts.audit.event(
        actor=actor,
        action=RECIPE_SETTING_CHANGED,
        details={"recipe": key, "verify_user_access": value == "on"},
    )
    await parts.recipe_settings.set_verify_user_access(
        key,
        value == "on",
        changed_by=f"administrator:{administrator.tenant_id}/{administrator.object_id}",
        event=event,
    )
    await drain(parts.recipe_settings.collection, key, parts.audit)
    return redirect(f"/admin/recipes?changed={key}")


ROUTES = [
    web.get("/recipes", list_page),
    web.post("/recipes/toggle", toggle),
]
