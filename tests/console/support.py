"""A signed-in administrator for console tests: a real session in the store and its cookie.

Sign-in itself (msal against the sandbox issuer) is tested in tests/test_console_signin.py and
in the browser tests; here a session is started directly in the session store, as the
callback does after a successful sign-in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient

from storage.admin_sessions import Administrator
from storage.database import Database
from storage.models import Actor, Connection, Owner, ProviderAccount
from storage.privileges import PrincipalKind, Privilege

CONTOSO = "contoso"
FABRIKAM = "fabrikam"
COOKIE = "rc_console"


@dataclass
class Admin:
    """A signed-in administrator driving the console over real HTTP."""

    client: TestClient
    session_id: str
    csrf: str
    administrator: Administrator

    @property
    def cookie(self) -> dict[str, str]:
        return {"Cookie": f"{COOKIE}={self.session_id}"}

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str, Any]:
        response = await self.client.get(
            path, headers=self.cookie | kwargs.pop("headers", {}), allow_redirects=False, **kwargs
        )
        return response.status, await response.text(), response

    async def post(
        self,
        path: str,
        data: list[tuple[str, str]] | dict[str, str],
        *,
        csrf: bool = True,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str, Any]:
        fields = list(data.items()) if isinstance(data, dict) else list(data)
        if csrf:
            fields.append(("csrf", self.csrf))
        response = await self.client.post(
            path, data=fields, headers=self.cookie | (headers or {}), allow_redirects=False
        )
        return response.status, await response.text(), response


async def sign_in(
    client: TestClient,
    database: Database,
    *,
    tenant: str = CONTOSO,
    object_id: str = "admin-1",
    name: str = "Ada Admin",
    privileges: Iterable[Privilege] = (),
) -> Admin:
    chosen = list(privileges)
    if chosen:
        await database.privileges.grant(
            tenant_id=tenant,
            kind=PrincipalKind.USER,
            principal=object_id,
            privileges=chosen,
            actor=Actor.operator("test"),
        )
    administrator = Administrator(tenant_id=tenant, object_id=object_id, name=name)
    session_id, session = await database.admin_sessions.start(administrator)
    return Admin(client, session_id, session.csrf_token, administrator)


async def stored_parent(
    database: Database, *, tenant: str = CONTOSO, name: str = "sandbox_team", provider: str = "box"
) -> Connection:
    return await database.connections.create_parent(
        provider=provider,
        owner=Owner(tenant_id=tenant, aad_object_id="owner", name="Parent Owner"),
        account=ProviderAccount(id="team", display_name=f"team@{tenant}.example"),
        tenant_id=tenant,
        name=name,
    )


async def stored_runtime(
    database: Database,
    parent: Connection,
    person: str,
    *,
    tenant: str = CONTOSO,
    name: str | None = None,
) -> Connection:
    return await database.connections.create_runtime(
        parent_id=parent.id,
        owner=Owner(tenant_id=tenant, aad_object_id=person, name=name or person.title()),
        account=ProviderAccount(id=person, display_name=f"{person}@{tenant}.example"),
    )


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)
