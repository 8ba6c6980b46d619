"""Every console route over real HTTP: signed out → the sign-in page; a missing privilege → 403;
malformed parameters → 400; never a 500; security headers; CSRF; tenants kept apart; actions
through the connections service (revoked, audited as the administrator)."""

from __future__ import annotations

import random
import string

import pytest
from bson import ObjectId

from storage.models import ConnectionStatus
from storage.privileges import OWNER_PRIVILEGES, Privilege
from tests.conftest import RunningBot
from tests.console.support import (
    CONTOSO,
    FABRIKAM,
    Admin,
    sign_in,
    stored_parent,
    stored_runtime,
)
from tests.support.waiting import eventually

GET_ROUTES = {
    "/admin/": (),
    "/admin/connections": (Privilege.VIEW_CONNECTIONS,),
    "/admin/connections.csv": (Privilege.VIEW_CONNECTIONS,),
    "/admin/parents": (Privilege.VIEW_CONNECTIONS,),
    "/admin/recipes": (Privilege.VIEW_CONNECTIONS, Privilege.EDIT_RECIPES),
    "/admin/audit": (Privilege.VIEW_CONNECTIONS,),
    "/admin/audit.csv": (Privilege.VIEW_CONNECTIONS,),
    "/admin/privileges": (Privilege.MANAGE_PRIVILEGES,),
}
POST_ROUTES = {
    "/admin/connections/confirm": (Privilege.EDIT_CONNECTIONS, Privilege.DELETE_CONNECTIONS),
    "/admin/connections/apply": (Privilege.EDIT_CONNECTIONS, Privilege.DELETE_CONNECTIONS),
    "/admin/parents/confirm": (Privilege.DELETE_CONNECTIONS,),
    "/admin/parents/delete": (Privilege.DELETE_CONNECTIONS,),
    "/admin/recipes/toggle": (Privilege.EDIT_RECIPES,),
    "/admin/privileges/grant": (Privilege.MANAGE_PRIVILEGES,),
    "/admin/privileges/revoke": (Privilege.MANAGE_PRIVILEGES,),
    "/admin/signout": (),
    "/admin/signout-everywhere": (),
}


@pytest.fixture
async def owner(bot: RunningBot) -> Admin:
    return await sign_in(bot.client, bot.database, privileges=OWNER_PRIVILEGES)


@pytest.fixture
async def nobody(bot: RunningBot) -> Admin:
    return await sign_in(bot.client, bot.database, object_id="nobody", name="No Body")


@pytest.mark.parametrize("path", sorted(GET_ROUTES))
async def test_signed_out_pages_send_to_sign_in(bot: RunningBot, path: str) -> None:
    response = await bot.client.get(path, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/admin/signin?return_to=")


@pytest.mark.parametrize("path", sorted(POST_ROUTES))
async def test_signed_out_posts_do_nothing(bot: RunningBot, path: str) -> None:
    parent = await stored_parent(bot.database)
    await stored_runtime(bot.database, parent, "jane")
    response = await bot.client.post(path, data={"action": "delete"}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith("/admin/signin")
    assert len(await bot.database.connections.list_all()) == 2


@pytest.mark.parametrize("path", sorted(p for p, needs in GET_ROUTES.items() if needs))
async def test_pages_without_their_privilege_are_403(nobody: Admin, path: str) -> None:
    status, page, _ = await nobody.get(path)
    assert status == 403
    assert "privilege" in page and "Traceback" not in page


@pytest.mark.parametrize("path", sorted(p for p, needs in POST_ROUTES.items() if needs))
async def test_actions_without_their_privilege_are_403(
    bot: RunningBot, nobody: Admin, path: str
) -> None:
    parent = await stored_parent(bot.database)
    jane = await stored_runtime(bot.database, parent, "jane")
    status, _, _ = await nobody.post(
        path,
        [
            ("action", "delete"),
            ("id", jane.id),
            ("key", "x"),
            ("value", "on"),
            ("kind", "user"),
            ("principal", "nobody"),
            ("privilege", "manage_privileges"),
        ],
    )
    assert status == 403
    assert (await bot.database.connections.get(jane.id)) is not None
    held = await bot.database.privileges.held_by(tenant_id=CONTOSO, object_id="nobody")
    assert held == frozenset()


async def test_a_viewer_cannot_delete_even_by_posting_the_form(bot: RunningBot) -> None:
    viewer = await sign_in(
        bot.client, bot.database, object_id="viewer", privileges=[Privilege.VIEW_CONNECTIONS]
    )
    parent = await stored_parent(bot.database)
    jane = await stored_runtime(bot.database, parent, "jane")
    status, page, _ = await viewer.get("/admin/connections")
    assert status == 200 and "Jane" in page
    assert 'value="delete"' not in page and 'value="disconnect"' not in page
    for path in ("/admin/connections/confirm", "/admin/connections/apply"):
        for action in ("delete", "disconnect"):
            status, page, _ = await viewer.post(path, [("action", action), ("id", jane.id)])
            assert status == 403, (path, action)
    status, _, _ = await viewer.post("/admin/parents/delete", {"id": parent.id})
    assert status == 403
    kept = await bot.database.connections.get(jane.id)
    assert kept is not None and kept.status is ConnectionStatus.CONNECTED
    assert await bot.database.connections.get(parent.id) is not None


@pytest.mark.parametrize(
    "path",
    [
        "/admin/connections?status=bogus",
        "/admin/connections?parent=not-an-id",
        "/admin/connections?unused_days=-3",
        "/admin/connections?unused_days=99999",
        "/admin/connections?before=zzz",
        "/admin/connections?app=%3Cscript%3E",
        "/admin/connections?person=" + "x" * 500,
        "/admin/connections.csv?status=nope",
        "/admin/audit?since=yesterday",
        "/admin/audit?connection=123",
        "/admin/audit?action=evil.action",
        "/admin/audit?before=12",
    ],
)
async def test_malformed_parameters_are_400_pages(owner: Admin, path: str) -> None:
    status, page, response = await owner.get(path)
    assert status == 400, page
    assert response.content_type == "text/html"
    assert "isn" in page and "Traceback" not in page


async def test_malformed_forms_are_400_and_change_nothing(bot: RunningBot, owner: Admin) -> None:
    parent = await stored_parent(bot.database)
    jane = await stored_runtime(bot.database, parent, "jane")
    cases = [
        ("/admin/connections/confirm", [("action", "nuke"), ("id", jane.id)]),
        ("/admin/connections/confirm", [("action", "delete"), ("id", "1234")]),
        ("/admin/connections/confirm", [("action", "delete")]),
        ("/admin/connections/apply", [("action", "delete"), ("id", "'; drop")]),
        ("/admin/recipes/toggle", [("key", "nothing"), ("value", "maybe")]),
        ("/admin/privileges/grant", [("kind", "alien"), ("principal", "x")]),
        ("/admin/privileges/grant", [("kind", "user"), ("principal", "x"), ("privilege", "god")]),
        (
            "/admin/privileges/grant",
            [("kind", "user"), ("principal", "x"), ("privilege", "all_tenants")],
        ),
    ]
    for path, data in cases:
        status, page, _ = await owner.post(path, data)
        # A recipe's switch is deployment-wide: this bot serves any tenant, so 403 first.
        allowed = (400, 403, 404) if "recipes" in path else (400, 404)
        assert status in allowed, (path, data, status)
        assert "Traceback" not in page
    assert (await bot.database.connections.get(jane.id)).status is ConnectionStatus.CONNECTED
    assert await bot.database.privileges.held_by(tenant_id=CONTOSO, object_id="x") == frozenset()


async def test_fuzzed_parameters_never_give_a_500(bot: RunningBot, owner: Admin) -> None:
    rng = random.Random(7)  # noqa: S311 - reproducible fuzzing, not secrets
    alphabet = string.printable + "éß€\u202e"
    fields = [
        "status",
        "app",
        "parent",
        "person",
        "unused_days",
        "before",
        "since",
        "until",
        "connection",
        "action",
        "administrator",
        "return_to",
        "tenant",
    ]
    for _ in range(120):
        path = rng.choice([*sorted(GET_ROUTES), "/admin/signin", "/admin/callback", "/admin/link"])
        params = {
            rng.choice(fields): "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
            for _ in range(rng.randint(1, 3))
        }
        response = await bot.client.get(
            path, params=params, headers=owner.cookie, allow_redirects=False
        )
        assert response.status < 500, (path, params, response.status)
    for _ in range(40):
        path = rng.choice(sorted(POST_ROUTES))
        data = [
            (
                rng.choice([*fields, "id", "key", "value", "kind", "principal", "privilege"]),
                "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))),
            )
            for _ in range(rng.randint(0, 4))
        ]
        status, _, _ = await owner.post(path, data)
        assert status < 500, (path, data, status)


async def test_unknown_console_paths_are_friendly_404s(owner: Admin) -> None:
    status, page, _ = await owner.get("/admin/nothing-here")
    assert status == 404 and "no such page" in page


async def test_pages_carry_security_headers(owner: Admin) -> None:
    for path in ("/admin/", "/admin/connections", "/admin/signin", "/admin/nothing"):
        _, _, response = await owner.get(path)
        policy = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_a_post_without_or_with_a_wrong_csrf_token_changes_nothing(
    bot: RunningBot, owner: Admin
) -> None:
    parent = await stored_parent(bot.database)
    jane = await stored_runtime(bot.database, parent, "jane")
    data = [("action", "delete"), ("id", jane.id)]
    status, page, _ = await owner.post("/admin/connections/apply", data, csrf=False)
    assert status == 403 and "Nothing was changed" in page
    status, _, _ = await owner.post(
        "/admin/connections/apply", [*data, ("csrf", "forged-token-" + "x" * 30)], csrf=False
    )
    assert status == 403
    other = await sign_in(
        bot.client, bot.database, object_id="admin-2", privileges=OWNER_PRIVILEGES
    )
    status, _, _ = await owner.post(
        "/admin/connections/apply", [*data, ("csrf", other.csrf)], csrf=False
    )
    assert status == 403, "another session's token is not this session's"
    status, _, _ = await owner.post(
        "/admin/connections/apply", data, headers={"Origin": "https://evil.example"}
    )
    assert status == 403
    assert (await bot.database.connections.get(jane.id)) is not None


async def test_disconnect_goes_through_the_service_and_is_audited_as_the_administrator(
    bot: RunningBot, owner: Admin
) -> None:
    parent = await stored_parent(bot.database)
    jane = await stored_runtime(bot.database, parent, "jane", name="Jane Doe")
    status, page, _ = await owner.post(
        "/admin/connections/confirm", [("action", "disconnect"), ("id", jane.id)]
    )
    assert status == 200
    assert "Jane Doe will be signed out of" in page and "sign in again" in page
    assert (await bot.database.connections.get(jane.id)).status is ConnectionStatus.CONNECTED
    status, page, _ = await owner.post(
        "/admin/connections/apply", [("action", "disconnect"), ("id", jane.id)]
    )
    assert status == 200 and "is disconnected" in page
    assert (await bot.database.connections.get(jane.id)).status is ConnectionStatus.DISCONNECTED
    # Pressed again (a double submit): said, not done twice.
    status, page, _ = await owner.post(
        "/admin/connections/apply", [("action", "disconnect"), ("id", jane.id)]
    )
    assert status == 200 and "already" in page

    async def audited() -> list:
        events = await bot.database.audit.for_connection(jane.id)
        return [e for e in events if e.action == "connection.disconnected"]

    events = await eventually(audited)
    assert len(events) == 1
    assert events[0].actor.kind == "administrator"
    assert (events[0].actor.tenant_id, events[0].actor.aad_object_id) == (CONTOSO, "admin-1")
    assert events[0].owner is not None and events[0].owner.aad_object_id == "jane"


async def test_delete_a_filtered_set_an_offboarding(bot: RunningBot, owner: Admin) -> None:
    box = await stored_parent(bot.database, name="box_team", provider="box")
    sf = await stored_parent(bot.database, name="sf_team", provider="salesforce")
    leaving = [
        await stored_runtime(bot.database, box, "omar", name="Omar Leaving"),
        await stored_runtime(bot.database, sf, "omar", name="Omar Leaving"),
    ]
    staying = await stored_runtime(bot.database, box, "jane", name="Jane Doe")
    status, page, _ = await owner.post(
        "/admin/connections/confirm",
        [("action", "delete"), ("scope", "filtered"), ("person", "omar")],
    )
    assert status == 200
    assert page.count("Omar Leaving&#39;s") == 2 and "Jane" not in page
    ids = [c.id for c in leaving]
    status, page, _ = await owner.post(
        "/admin/connections/apply", [("action", "delete")] + [("id", i) for i in ids]
    )
    assert status == 200 and page.count("is removed") == 2
    for connection_id in ids:
        assert await bot.database.connections.get(connection_id) is None
    assert await bot.database.connections.get(staying.id) is not None


async def test_another_tenants_data_is_invisible_and_untouchable(
    bot: RunningBot, owner: Admin
) -> None:
    ours = await stored_parent(bot.database)
    theirs = await stored_parent(bot.database, tenant=FABRIKAM)
    await stored_runtime(bot.database, ours, "jane", name="Jane Contoso")
    hidden = await stored_runtime(bot.database, theirs, "zed", tenant=FABRIKAM, name="Zed Fabrikam")
    for path in (
        "/admin/connections",
        "/admin/connections.csv",
        "/admin/parents",
        "/admin/connections?person=zed",
        "/admin/audit",
        "/admin/audit.csv",
    ):
        status, page, _ = await owner.get(path)
        assert status == 200, path
        assert "Zed" not in page and "fabrikam" not in page.lower(), path
    status, page, _ = await owner.get("/admin/connections")
    assert "Jane Contoso" in page
    for action in ("disconnect", "delete"):
        status, page, _ = await owner.post(
            "/admin/connections/apply", [("action", action), ("id", hidden.id)]
        )
        assert status == 200 and "already removed" in page
    status, page, _ = await owner.post("/admin/parents/delete", {"id": theirs.id})
    assert status == 200 and "already removed" in page, "as if it did not exist"
    kept = await bot.database.connections.get(hidden.id)
    assert kept is not None and kept.status is ConnectionStatus.CONNECTED
    assert await bot.database.connections.get(theirs.id) is not None


async def test_an_all_tenants_grant_sees_every_tenant(bot: RunningBot) -> None:
    ours = await stored_parent(bot.database)
    theirs = await stored_parent(bot.database, tenant=FABRIKAM)
    await stored_runtime(bot.database, ours, "jane", name="Jane Contoso")
    await stored_runtime(bot.database, theirs, "zed", tenant=FABRIKAM, name="Zed Fabrikam")
    wide = await sign_in(
        bot.client,
        bot.database,
        object_id="wide",
        privileges=[Privilege.VIEW_CONNECTIONS, Privilege.ALL_TENANTS],
    )
    status, page, _ = await wide.get("/admin/connections")
    assert status == 200 and "Jane Contoso" in page and "Zed Fabrikam" in page


async def test_deleting_a_parent_keeps_its_runtime_connections(
    bot: RunningBot, owner: Admin
) -> None:
    parent = await stored_parent(bot.database)
    jane = await stored_runtime(bot.database, parent, "jane")
    status, page, _ = await owner.post("/admin/parents/confirm", {"id": parent.id})
    assert status == 200 and "Its 1 runtime user connection stays stored" in page
    status, page, _ = await owner.post("/admin/parents/delete", {"id": parent.id})
    assert status == 200 and "is removed" in page
    assert await bot.database.connections.get(parent.id) is None
    assert await bot.database.connections.get(jane.id) is not None
    status, page, _ = await owner.post("/admin/parents/delete", {"id": parent.id})
    assert status == 200 and "already removed" in page, "a repeated press is told, not redone"


async def test_privileges_page_grants_and_revokes_in_the_own_tenant(
    bot: RunningBot, owner: Admin
) -> None:
    status, _, _response = await owner.post(
        "/admin/privileges/grant",
        [
            ("kind", "user"),
            ("principal", "new-admin"),
            ("name", "New Admin"),
            ("privilege", "view_connections"),
            ("privilege", "edit_connections"),
            ("tenant", FABRIKAM),
        ],
    )
    assert status == 303
    held = await bot.database.privileges.held_by(tenant_id=CONTOSO, object_id="new-admin")
    assert held == {Privilege.VIEW_CONNECTIONS, Privilege.EDIT_CONNECTIONS}
    assert (
        await bot.database.privileges.held_by(tenant_id=FABRIKAM, object_id="new-admin")
        == frozenset()
    ), "a tenant named in the form is ignored: an administrator's own only"
    status, page, _ = await owner.get("/admin/privileges")
    assert "New Admin" in page
    status, _, _ = await owner.post(
        "/admin/privileges/revoke", [("kind", "user"), ("principal", "new-admin")]
    )
    assert status == 303
    held = await bot.database.privileges.held_by(tenant_id=CONTOSO, object_id="new-admin")
    assert held == frozenset()

    async def recorded() -> bool:
        events = await bot.database.audit.recent(limit=20)
        actions = {e.action for e in events if e.actor.kind == "administrator"}
        return {"privileges.granted", "privileges.revoked"} <= actions

    assert await eventually(recorded)


async def test_sign_out_ends_the_session_and_everywhere_ends_all(bot: RunningBot) -> None:
    first = await sign_in(bot.client, bot.database, privileges=[Privilege.VIEW_CONNECTIONS])
    second = await sign_in(bot.client, bot.database)
    other = await sign_in(bot.client, bot.database, object_id="someone-else")
    status, _, response = await first.post("/admin/signout", {})
    assert status == 303 and "signed_out" in response.headers["Location"]
    assert "rc_console=" in response.headers.get("Set-Cookie", "")
    assert (await first.get("/admin/connections"))[0] == 303
    assert (await second.get("/admin/"))[0] == 200
    third = await sign_in(bot.client, bot.database)
    status, _, _ = await third.post("/admin/signout-everywhere", {})
    assert status == 303
    assert (await second.get("/admin/"))[0] == 303
    assert (await other.get("/admin/"))[0] == 200


async def test_an_expired_session_sends_to_sign_in(bot: RunningBot) -> None:
    admin = await sign_in(bot.client, bot.database, privileges=[Privilege.VIEW_CONNECTIONS])
    await bot.database.admin_sessions.collection.update_many(
        {}, {"$set": {"idle_until": ObjectId().generation_time.replace(year=2000)}}
    )
    status, _, response = await admin.get("/admin/connections")
    assert status == 303 and response.headers["Location"].startswith("/admin/signin")


async def test_a_stale_cookie_or_garbage_cookie_is_signed_out(bot: RunningBot) -> None:
    for value in ("", "x", "y" * 43, "z" * 5000, "\u00e9" * 30):
        response = await bot.client.get(
            "/admin/", headers={"Cookie": f"rc_console={value}"}, allow_redirects=False
        )
        assert response.status in (303, 400), value


async def test_the_cancel_link_of_a_confirmation_stays_in_the_console(
    bot: RunningBot, owner: Admin
) -> None:
    parent = await stored_parent(bot.database)
    jane = await stored_runtime(bot.database, parent, "jane")
    for back in ("javascript:alert(1)", "https://evil.example/admin/", "//evil.example/x"):
        status, page, _ = await owner.post(
            "/admin/connections/confirm", [("action", "delete"), ("id", jane.id), ("back", back)]
        )
        assert status == 200
        assert 'href="/admin/connections">Cancel' in page and "evil" not in page, back
        assert "javascript" not in page
    status, page, _ = await owner.post(
        "/admin/connections/confirm",
        [("action", "delete"), ("id", jane.id), ("back", "/admin/connections?status=connected")],
    )
    assert 'href="/admin/connections?status=connected">Cancel' in page
