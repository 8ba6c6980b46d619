"""`python -m admin privileges grant|revoke|list`: who may do what in the admin console.

The first owner is made here (`grant --all`); later, holders of "Manage privileges" can also
grant on the console's Privileges page. A principal is a person (`--user` object id), an Entra
group (`--group` id) or an app role (`--role` value), always within one tenant (`--tenant`).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TextIO

import messages
from storage.audit import AuditLog
from storage.models import Actor
from storage.outbox import drain
from storage.privileges import OWNER_PRIVILEGES, PrincipalKind, Privilege, PrivilegeStore, grant_id

CHOICES = [privilege.value for privilege in Privilege]


def add_parser(topics: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    privileges = topics.add_parser(
        "privileges", help="who may view, edit and delete in the admin console"
    )
    commands = privileges.add_subparsers(dest="command", required=True)
    for name, about in (
        ("grant", "give privileges to a person, group or app role"),
        ("revoke", "take privileges back (all of them when none is named)"),
    ):
        command = commands.add_parser(name, help=about)
        command.add_argument("--tenant", required=True, help="the Entra tenant id")
        who = command.add_mutually_exclusive_group(required=True)
        who.add_argument("--user", help="a person's Entra object id")
        who.add_argument("--group", help="an Entra group id (the ID token's groups claim)")
        who.add_argument("--role", help="an app role value (the ID token's roles claim)")
        # Not `choices=`: with nargs="*" argparse checks the empty default against them.
        command.add_argument(
            "privilege", nargs="*", type=_privilege, help=f"any of: {', '.join(CHOICES)}"
        )
        if name == "grant":
            command.add_argument(
                "--all",
                action="store_true",
                help="every privilege of the tenant (an owner); all_tenants only when named",
            )
            command.add_argument("--name", default="", help="a name to show in lists")
    listing = commands.add_parser("list", help="list grants")
    listing.add_argument("--tenant", help="only this tenant")


def _privilege(value: str) -> Privilege:
    try:
        return Privilege(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            messages.CLI_PRIVILEGE_UNKNOWN.format(value=value, choices=", ".join(CHOICES))
        ) from None


def _principal(arguments: argparse.Namespace) -> tuple[PrincipalKind, str]:
    if arguments.user:
        return PrincipalKind.USER, arguments.user
    if arguments.group:
        return PrincipalKind.GROUP, arguments.group
    return PrincipalKind.ROLE, arguments.role


async def run(
    arguments: argparse.Namespace, store: PrivilegeStore, audit: AuditLog, out: TextIO
) -> int:
    if arguments.command == "list":
        # The header row goes to standard error (see admin.cli): records only on `out`.
        print(messages.CLI_PRIVILEGES_HEADER, file=sys.stderr)
        for grant in await store.list(tenant_id=arguments.tenant):
            held = ", ".join(sorted(p.value for p in grant.privileges)) or messages.CLI_NONE
            print(
                messages.CLI_PRIVILEGE_ROW.format(
                    tenant=grant.tenant_id,
                    kind=grant.kind.value,
                    principal=grant.principal,
                    name=grant.name or "-",
                    privileges=held,
                ),
                file=out,
            )
        return 0
    kind, principal = _principal(arguments)
    actor = Actor.operator(getpass.getuser())
    chosen: list[Privilege] = list(arguments.privilege)
    if arguments.command == "grant":
        if arguments.all:
            chosen = list(OWNER_PRIVILEGES)
        if not chosen:
            print(messages.CLI_PRIVILEGE_NONE_CHOSEN, file=out)
            return 2
        grant = await store.grant(
            tenant_id=arguments.tenant,
            kind=kind,
            principal=principal,
            privileges=chosen,
            actor=actor,
            name=arguments.name,
        )
        await drain(store.collection, grant_id(grant.tenant_id, kind, principal), audit)
        held = ", ".join(sorted(p.value for p in grant.privileges))
        print(messages.CLI_PRIVILEGE_GRANTED.format(principal=principal, privileges=held), file=out)
        return 0
    revoked = await store.revoke(
        tenant_id=arguments.tenant,
        kind=kind,
        principal=principal,
        privileges=chosen or None,
        actor=actor,
    )
    if not revoked:
        print(messages.CLI_PRIVILEGE_NOTHING_TO_REVOKE.format(principal=principal), file=out)
        return 1
    await drain(store.collection, grant_id(arguments.tenant, kind, principal), audit)
    print(messages.CLI_PRIVILEGE_REVOKED.format(principal=principal), file=out)
    return 0
