"""Parent connections from the command line: authorize (with the operator's acceptance), list.

`authorize` prints a sign-in URL, waits until the browser flow has finished at the bot's
`/auth/callback`, shows the account that signed in and stores the parent only when the operator
accepts it: a forwarded URL can therefore never silently install someone else's account. When
no bot answers at PUBLIC_BASE_URL and it is a local address, the command serves the `/auth/*`
pages itself for the duration of the sign-in.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TextIO
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

import messages
from connections.service import ConnectionsService
from oauth.pages import sign_in_routes
from oauth.providers import ProviderRegistry
from oauth.signin import SignInService
from oauth.tokens import TokenService
from settings import Settings
from storage.crypto import TokenCipher
from storage.database import Database
from storage.login_states import LoginState, Step, VoidReason
from storage.models import Actor, ConnectionKind, Owner

POLL_S = 0.5
_SIGNIN = web.AppKey("signin", SignInService)


def operator_owner() -> Owner:
    login = getpass.getuser()
    return Owner(tenant_id="", aad_object_id=f"operator:{login}", name=login)


async def _bot_answers(base_url: str) -> bool:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
            session.get(f"{base_url}/healthz") as response,
        ):
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


@asynccontextmanager
async def _auth_pages(base_url: str, signin: SignInService, out: TextIO) -> AsyncIterator[None]:
    """Serve /auth/* locally when no bot does (only for a loopback PUBLIC_BASE_URL)."""
    parts = urlsplit(base_url)
    if await _bot_answers(base_url) or parts.hostname not in ("localhost", "127.0.0.1"):
        yield
        return
    app = web.Application()
    app[_SIGNIN] = signin
    app.router.add_routes(sign_in_routes(_SIGNIN))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, parts.hostname, parts.port or 80).start()
        print(messages.CLI_SERVING_AUTH_PAGES.format(base_url=base_url), file=out)
        yield
    finally:
        await runner.cleanup()


async def _wait_for_account(database: Database, login_id: str) -> LoginState | None:
    while True:
        login = await database.login_states.get(login_id)
        if login is None or login.step in (Step.FAILED, Step.DISCARDED):
            return None
        if login.account is not None and login.tokens is not None:
            return login
        if login.expires_at <= datetime.now(UTC):
            return None
        # The browser flow happens elsewhere; the record is all there is to watch.
        await asyncio.sleep(POLL_S)


async def authorize(
    *,
    settings: Settings,
    database: Database,
    service: ConnectionsService,
    providers: ProviderRegistry,
    cipher: TokenCipher,
    parent_name: str,
    out: TextIO,
    ask: Callable[[str], str],
    tenant_option: str | None = None,
) -> int:
    """Run an operator's sign-in for the configured parent connection `parent_name`; the
    parent is stored (and a replaced grant revoked) through `service`.

    The parent serves one tenant: the file's `tenant`, else `tenant_option` (`--tenant`), else
    the tenant id the operator types when asked.
    """
    base_url = str(settings.public_base_url).rstrip("/")
    tokens = TokenService(providers=providers, connections=database.connections, cipher=cipher)
    signin = SignInService.over(
        database,
        providers=providers,
        cipher=cipher,
        public_base_url=base_url,
        revoke_grant=tokens.revoke_grant,
    )
    operator = operator_owner()
    configured = providers.parents.get(parent_name)
    if configured is None:
        print(messages.CLI_PARENT_NOT_CONFIGURED.format(name=parent_name), file=out)
        return 2
    try:
        tenant = await _tenant_served(configured.tenant, tenant_option, out=out, ask=ask)
    except _NoAnswer:
        return 1
    if tenant is None:
        return 2
    app_key = configured.app
    provider = providers.get(app_key)
    assert provider is not None  # load_registry checked it
    login_id, url = await signin.start_parent(app_key=app_key, operator=operator)
    async with _auth_pages(base_url, signin, out):
        print(
            messages.CLI_PARENT_SIGN_IN_URL.format(app=provider.name, url=url),
            file=out,
            flush=True,
        )
        login = await _wait_for_account(database, login_id)
    if login is None or login.account is None or login.tokens is None:
        print(messages.CLI_PARENT_SIGN_IN_INCOMPLETE, file=out)
        return 1
    print(
        messages.CLI_PARENT_SIGNED_IN.format(app=provider.name, account=login.account.display_name),
        file=out,
        flush=True,
    )
    answer = await _answer(ask, messages.CLI_PARENT_STORE_PROMPT, out)
    if answer is None or answer.strip().lower() not in ("y", "yes"):
        # Someone else's account (a forwarded URL?): its grant is revoked, not just dropped.
        await signin.void(login, VoidReason.REJECTED)
        await signin.close()  # the revocation runs now, not after this command has ended
        print(messages.CLI_PARENT_NOT_STORED, file=out)
        return 1
    parent = await service.store_parent(
        name=parent_name,
        provider=app_key,
        tenant_id=tenant,
        owner=operator,
        account=login.account,
        tokens=login.tokens,
        scopes=login.scopes,
        api_base_url=login.api_base_url,
        actor=Actor.operator(operator.name),
    )
    await database.login_states.complete_parent(login_id)
    # The audit event was written with the parent; record it now, and revoke a replaced grant.
    await service.settle_now(parent.id)
    print(
        messages.CLI_PARENT_STORED.format(
            id=parent.id, app=provider.name, account=login.account.display_name, tenant=tenant
        ),
        file=out,
    )
    return 0


async def _tenant_served(
    configured: str | None, option: str | None, *, out: TextIO, ask: Callable[[str], str]
) -> str | None:
    """The one tenant a parent will serve, or None (explained) when it cannot be settled."""
    option = option.strip() if option else None
    if option is not None and (option == "*" or len(option) > 200):
        print(messages.CLI_PARENT_ONE_TENANT, file=out)
        return None
    if configured is not None:
        if option and option != configured:
            print(
                messages.CLI_PARENT_TENANT_MISMATCH.format(configured=configured, option=option),
                file=out,
            )
            return None
        return configured
    if option:
        return option
    answer = await _answer(ask, messages.CLI_PARENT_TENANT_PROMPT, out)
    if answer is None:
        raise _NoAnswer
    tenant = answer.strip()
    if not tenant or tenant == "*" or len(tenant) > 200:
        print(messages.CLI_PARENT_ONE_TENANT, file=out)
        return None
    return tenant


class _NoAnswer(Exception):
    """A prompt found standard input closed (already told to the operator)."""


async def _answer(ask: Callable[[str], str], prompt: str, out: TextIO) -> str | None:
    """The operator's answer to `prompt`, or None (said on `out`) when standard input is
    closed: a closed stdin answers "no", never with a traceback."""
    try:
        return await asyncio.to_thread(ask, prompt)
    except EOFError:
        print(file=out)  # end the prompt's line
        print(messages.CLI_NO_ANSWER, file=out, flush=True)
        return None


async def list_parents(
    service: ConnectionsService, names: Callable[[str], str], out: TextIO, err: TextIO
) -> int:
    """One line per parent: id, name, tenant, app, account, status, how many runtime children
    it has, and whether it was ever authorized (a parent stored without tokens, e.g. by
    `connections create-parent`, was not: its recipes cannot run as it). The header row goes
    to `err` (see admin.cli)."""
    everything = await service.list_all()
    print(messages.CLI_PARENTS_HEADER, file=err)
    for parent in (c for c in everything if c.kind is ConnectionKind.PARENT):
        children = sum(1 for c in everything if c.parent_id == parent.id)
        authorization = (
            messages.CLI_PARENT_AUTHORIZED
            if parent.tokens is not None
            else messages.CLI_PARENT_NOT_AUTHORIZED
        )
        print(
            "\t".join(
                [
                    parent.id,
                    parent.name or "-",
                    parent.tenant_id or messages.CLI_PARENT_NO_TENANT,
                    names(parent.provider),
                    parent.account_label,
                    parent.status.value,
                    messages.CLI_PARENT_CHILDREN.format(count=children),
                    authorization,
                ]
            ),
            file=out,
        )
    return 0
