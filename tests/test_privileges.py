"""Privileges of the admin console: granted per person, group or app role within one tenant,
held as the union of what names the administrator, audited once per change, managed from the
command line (`python -m admin privileges ...`)."""

from __future__ import annotations

import asyncio
import io

import pytest

from admin.cli import main
from storage.database import Database, open_database
from storage.embedded import MEMORY
from storage.models import Actor
from storage.outbox import drain_all
from storage.privileges import OWNER_PRIVILEGES, PrincipalKind, Privilege
from tests.conftest import unique_database_name

OPERATOR = Actor.operator("ops")
ALL = frozenset(Privilege)


async def test_held_privileges_are_the_union_of_user_group_and_role_grants(
    database: Database,
) -> None:
    store = database.privileges
    await store.grant(
        tenant_id="t1",
        kind=PrincipalKind.USER,
        principal="oid-jane",
        privileges=[Privilege.VIEW_CONNECTIONS],
        actor=OPERATOR,
    )
    await store.grant(
        tenant_id="t1",
        kind=PrincipalKind.GROUP,
        principal="helpdesk",
        privileges=[Privilege.EDIT_CONNECTIONS],
        actor=OPERATOR,
    )
    await store.grant(
        tenant_id="t1",
        kind=PrincipalKind.ROLE,
        principal="Recipes.Admin",
        privileges=[Privilege.EDIT_RECIPES],
        actor=OPERATOR,
    )
    held = await store.held_by(
        tenant_id="t1", object_id="oid-jane", groups=["helpdesk"], roles=["Recipes.Admin"]
    )
    assert held == {Privilege.VIEW_CONNECTIONS, Privilege.EDIT_CONNECTIONS, Privilege.EDIT_RECIPES}
    assert await store.held_by(tenant_id="t1", object_id="oid-jane") == {Privilege.VIEW_CONNECTIONS}
    # The same ids in another tenant hold nothing.
    assert (
        await store.held_by(
            tenant_id="t2", object_id="oid-jane", groups=["helpdesk"], roles=["Recipes.Admin"]
        )
        == frozenset()
    )


async def test_grants_merge_revokes_subtract_and_each_change_is_audited_once(
    database: Database,
) -> None:
    store = database.privileges
    for chosen in ([Privilege.VIEW_CONNECTIONS], [Privilege.DELETE_CONNECTIONS]):
        await store.grant(
            tenant_id="t1",
            kind=PrincipalKind.USER,
            principal="oid-omar",
            privileges=chosen,
            actor=OPERATOR,
            name="Omar",
        )
    assert await store.held_by(tenant_id="t1", object_id="oid-omar") == {
        Privilege.VIEW_CONNECTIONS,
        Privilege.DELETE_CONNECTIONS,
    }
    assert await store.revoke(
        tenant_id="t1",
        kind=PrincipalKind.USER,
        principal="oid-omar",
        privileges=[Privilege.DELETE_CONNECTIONS],
        actor=OPERATOR,
    )
    assert not await store.revoke(
        tenant_id="t1",
        kind=PrincipalKind.USER,
        principal="oid-omar",
        privileges=[Privilege.DELETE_CONNECTIONS],
        actor=OPERATOR,
    )
    assert await store.held_by(tenant_id="t1", object_id="oid-omar") == {Privilege.VIEW_CONNECTIONS}
    await drain_all([store.collection], database.audit)
    await drain_all([store.collection], database.audit)  # a second round writes nothing more
    actions = [e.action for e in await database.audit.recent(limit=20)]
    assert sorted(actions) == sorted(
        ["privileges.granted", "privileges.granted", "privileges.revoked"]
    )
    [grant] = await store.list(tenant_id="t1")
    assert grant.name == "Omar" and grant.privileges == {Privilege.VIEW_CONNECTIONS}


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


@pytest.fixture
def cli_database(monkeypatch: pytest.MonkeyPatch, mongodb_uri: str) -> str:
    name = unique_database_name()
    monkeypatch.setenv("MONGODB_URI", mongodb_uri)
    monkeypatch.setenv("DATABASE_NAME", name)
    return name


def test_the_first_owner_is_made_on_the_command_line(cli_database: str, mongodb_uri: str) -> None:
    code, out = run("privileges", "grant", "--tenant", "t1", "--user", "oid-ada", "--all")
    assert code == 0 and "manage_privileges" in out
    code, out = run("privileges", "list", "--tenant", "t1")
    assert code == 0 and "oid-ada" in out and "view_connections" in out
    code, out = run("privileges", "grant", "--tenant", "t1", "--group", "g1")
    assert code == 2  # nothing named: nothing done
    code, out = run("privileges", "revoke", "--tenant", "t1", "--user", "oid-ada")
    assert code == 0
    code, out = run("privileges", "revoke", "--tenant", "t1", "--user", "oid-ada")
    assert code == 1
    asyncio.run(_check_owner_revoked(mongodb_uri, cli_database))


async def _check_owner_revoked(mongodb_uri: str, name: str) -> None:
    async with open_database(mongodb_uri=mongodb_uri, database_name=name, data_dir=MEMORY) as db:
        assert await db.privileges.held_by(tenant_id="t1", object_id="oid-ada") == set()
        actions = sorted(e.action for e in await db.audit.recent(limit=20))
        assert actions == ["privileges.granted", "privileges.revoked"]
        [event] = [e for e in await db.audit.recent() if e.action == "privileges.granted"]
        # --all: a tenant's owner; every tenant's data only when named.
        assert event.details["privileges"] == sorted(p.value for p in OWNER_PRIVILEGES)
        assert Privilege.ALL_TENANTS.value not in event.details["privileges"]
        await db.client.drop_database(name)


async def test_two_revocations_at_once_record_one_change(database: Database) -> None:
    store = database.privileges
    await store.grant(
        tenant_id="t1",
        kind=PrincipalKind.USER,
        principal="oid-lee",
        privileges=[Privilege.EDIT_RECIPES],
        actor=OPERATOR,
    )
    results = await asyncio.gather(
        *(
            store.revoke(
                tenant_id="t1",
                kind=PrincipalKind.USER,
                principal="oid-lee",
                privileges=None,
                actor=OPERATOR,
            )
            for _ in range(8)
        )
    )
    assert results.count(True) == 1
    await drain_all([store.collection], database.audit)
    actions = [e.action for e in await database.audit.recent(limit=20)]
    assert actions.count("privileges.revoked") == 1
