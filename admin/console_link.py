"""`python -m admin console-link`: a one-time sign-in link to the admin console.

Only when the console has no identity provider (`Settings.console_sign_in == "link"`): with
Entra ID or another OpenID Connect issuer configured, administrators sign in there and this
command refuses. The link works once, for ten minutes; the console serves it only to browsers
on this machine. Only the token's hash is stored; creating a link is audited.
"""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TextIO

import messages
from settings import Settings
from storage.admin_signins import COLLECTION, AdminSignInStore
from storage.database import Database
from storage.models import Actor

COMMAND = "console-link"
LINK_CREATED = "console.link_created"


def add_parser(topics: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    topics.add_parser(
        COMMAND,
        help="print a one-time sign-in link to the admin console (only when it has no "
        "identity provider; it works once, for 10 minutes, from this machine)",
    )


def refusal(settings: Settings) -> str | None:
    """The sentence refusing a link when the console signs in with an identity provider."""
    mode = settings.console_sign_in
    if mode == "link":
        return None
    return messages.CLI_CONSOLE_LINK_REFUSED.format(
        method=messages.CONSOLE_SIGN_IN_METHODS[mode], url=_console_url(settings)
    )


async def run(
    settings: Settings,
    database: Callable[[], AbstractAsyncContextManager[Database]],
    out: TextIO,
    err: TextIO,
) -> int:
    """Store a link and print it; exit status 2 (and a sentence) outside link mode.

    Args:
        settings: the bot's settings (sign-in mode, PUBLIC_BASE_URL).
        database: opens the database the command line uses (opened only to store a link).
        out: where the link goes.
        err: where a refusal goes.
    """
    refused = refusal(settings)
    if refused is not None:
        print(refused, file=err)
        return 2
    async with database() as opened:
        store = AdminSignInStore(opened.db[COLLECTION])
        await store.ensure_indexes()
        token = await store.create_link()
        await opened.audit.record(
            actor=Actor.operator(getpass.getuser()), action=LINK_CREATED, details={}
        )
    print(f"{_console_url(settings)}link?token={token}", file=out)
    print(messages.CLI_CONSOLE_LINK_NOTE, file=out)
    return 0


def _console_url(settings: Settings) -> str:
    return f"{str(settings.public_base_url).rstrip('/')}/admin/"
