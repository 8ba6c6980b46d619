"""The operator command line for connections: list, create (for development) and delete.

    python -m admin connections list [--kind parent|runtime]
    python -m admin connections create-parent --provider box --account admin@contoso.com
    python -m admin connections create-runtime --parent ID --tenant T --user OBJECT_ID \\
        --name "Jane Doe" --account jane@contoso.com [--status connected]
    python -m admin connections delete ID
    python -m admin parents authorize NAME [--tenant TENANT_ID]
    python -m admin parents list
    python -m admin parents delete ID
    python -m admin recipes list
    python -m admin recipes toggle KEY on|off
    python -m admin tokens new-key
    python -m admin tokens reencrypt
    python -m admin console-link

It uses MONGODB_URI when set; otherwise the embedded server of a running bot (found through the
data folder) or, when no bot runs, its own embedded server on the same data folder. Every change
is audited with the operator's login name as the actor. Connections are read and changed only
through the same connections service as the bot: a delete revokes the tokens at the provider (a
failure is audited) and is audited.

The data folder: DATA_DIR (default `data`) is read exactly as the bot reads it, relative to the
current directory (the bot's `app.py` does not resolve it against its own location either). So
that a command run from another directory never silently starts a new, empty store, the command
line refuses, with a sentence and exit status 2, when MONGODB_URI is not set and the data folder
does not exist: run it from the bot's folder, set DATA_DIR (or MONGODB_URI), or create the
folder on purpose to start a new store.

Tables (`connections list`, `parents list`, `recipes list`, `privileges list`) print one record
a line, tab-separated, on standard output; their header row goes to standard error, so that
scripts reading standard output see records only while a person at a terminal sees both.

Prompts (`parents authorize`) read standard input; when it is closed (no answer), the command
does nothing more, says so, and exits with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TextIO

from pymongo.errors import PyMongoError

import messages
from admin import console_link, parents, privileges
from connections.service import ConnectionsService
from connections.settle import ConnectionSettler
from oauth.providers import AppsConfigError, ProviderRegistry, display_name, load_registry
from oauth.tokens import TokenService
from recipes import BUILTIN_COMMANDS, RecipesConfigError, load_recipes
from settings import Settings, SettingsError, load_settings
from storage.connections import ConnectionExists, ParentNotFound
from storage.crypto import TokenCipher, reencrypt
from storage.database import Database, make_client, open_database
from storage.embedded import MEMORY, StoreUnavailable, running_server_uri
from storage.models import (
    Actor,
    Connection,
    ConnectionKind,
    ConnectionStatus,
    Owner,
    ProviderAccount,
)
from storage.outbox import drain
from storage.token_keys import TokenKeyError, cipher_for, new_key

# An operator's own parents are owned by "operator:<login>" (see `admin.parents.operator_owner`).
OPERATOR_PREFIX = "operator:"


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Database]:
    uri = settings.mongodb_uri.get_secret_value() if settings.mongodb_uri else None
    if uri is None:
        candidate = running_server_uri(settings.data_dir)
        if candidate and await _answers(candidate):
            uri = candidate
    async with open_database(
        mongodb_uri=uri,
        database_name=settings.database_name,
        data_dir=settings.data_dir,
        embedded_command=settings.embedded_mongodb_command,
    ) as database:
        yield database


async def _answers(uri: str) -> bool:
    client = make_client(uri, serverSelectionTimeoutMS=1000)
    try:
        await client.admin.command("ping")
    except PyMongoError:
        return False
    finally:
        await client.close()
    return True


def header(line: str, err: TextIO | None = None) -> None:
    """A table's header row, on standard error (see the module docstring)."""
    print(line, file=err or sys.stderr)


def owner_label(owner: Owner) -> str:
    """Who owns a connection, as a listing shows it: "operator LOGIN" for an operator's parent,
    else the name and <tenant/object id>, leaving out what is empty (never "- </operator>")."""
    if owner.aad_object_id == "operator" or owner.aad_object_id.startswith(OPERATOR_PREFIX):
        login = owner.aad_object_id[len(OPERATOR_PREFIX) :] or owner.name
        return messages.CLI_OWNER_OPERATOR.format(login=login).strip()
    ids = "/".join(part for part in (owner.tenant_id, owner.aad_object_id) if part)
    if owner.name and ids:
        return f"{owner.name} <{ids}>"
    return owner.name or ids or "-"


def _row(connection: Connection) -> str:
    who = owner_label(connection.owner)
    parent = connection.parent_id or "-"
    return "\t".join(
        [
            connection.id,
            connection.kind.value,
            display_name(connection.provider),
            connection.account_label,
            connection.status.value,
            parent,
            who,
        ]
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m admin", description=__doc__.split("\n")[0])
    topics = parser.add_subparsers(dest="topic", required=True)
    connections = topics.add_parser("connections", help="parent and runtime connections")
    commands = connections.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", help="list connections")
    listing.add_argument("--kind", choices=["parent", "runtime"])

    parent = commands.add_parser("create-parent", help="store a parent connection (development)")
    parent.add_argument("--provider", required=True)
    parent.add_argument("--account", required=True, help="the account name at the provider")
    parent.add_argument(
        "--tenant", required=True, help="the one tenant id whose people may use this parent"
    )
    parent.add_argument("--user", default="operator", help="the owner's Entra object id")
    parent.add_argument("--name", default="", help="the owner's display name")
    parent.add_argument("--api-base-url")

    runtime = commands.add_parser(
        "create-runtime", help="store a person's runtime connection (development)"
    )
    runtime.add_argument("--parent", required=True, help="the parent connection id")
    runtime.add_argument("--tenant", required=True, help="the person's tenant id")
    runtime.add_argument("--user", required=True, help="the person's Entra object id")
    runtime.add_argument("--teams-user", default="", help="the person's Teams user id")
    runtime.add_argument("--name", default="", help="the person's display name")
    runtime.add_argument("--account", required=True, help="the account name at the provider")
    runtime.add_argument(
        "--status", choices=[status.value for status in ConnectionStatus], default="connected"
    )

    delete = commands.add_parser("delete", help="delete a connection (a parent keeps its children)")
    delete.add_argument("id")

    parents = topics.add_parser("parents", help="parent connections (a recipe's default account)")
    parent_commands = parents.add_subparsers(dest="command", required=True)
    authorize = parent_commands.add_parser(
        "authorize", help="sign in to an app and store the account as a parent connection"
    )
    authorize.add_argument("name", help="a parent configured in APPS_FILE [parents]")
    authorize.add_argument(
        "--tenant",
        help="the tenant id the parent serves, when APPS_FILE does not fix it (asked otherwise)",
    )
    parent_commands.add_parser("list", help="list parent connections and their children")
    remove = parent_commands.add_parser(
        "delete", help="delete a parent connection (its runtime connections stay stored)"
    )
    remove.add_argument("id")

    recipes = topics.add_parser("recipes", help='recipes and their "Verify user access" setting')
    recipe_commands = recipes.add_subparsers(dest="command", required=True)
    recipe_commands.add_parser(
        "list", help="each recipe's setting in the database and in the recipes file"
    )
    toggle = recipe_commands.add_parser(
        "toggle", help='turn "Verify user access at runtime" on or off (next run, no restart)'
    )
    toggle.add_argument("key")
    toggle.add_argument("value", choices=["on", "off"])

    privileges.add_parser(topics)
    console_link.add_parser(topics)

    tokens = topics.add_parser("tokens", help="token encryption keys")
    token_commands = tokens.add_subparsers(dest="command", required=True)
    token_commands.add_parser("new-key", help="print a new key for TOKEN_ENCRYPTION_KEYS")
    token_commands.add_parser(
        "reencrypt", help="re-encrypt stored tokens with the first key of TOKEN_ENCRYPTION_KEYS"
    )
    return parser


# Every encrypted value the store holds, by collection.
ENCRYPTED_FIELDS = {
    "connections": ("tokens",),
    "login_states": ("verifier", "tokens"),
}


async def _reencrypt(settings: Settings, out: TextIO) -> int:
    cipher = cipher_for(settings)
    async with _database(settings) as database:
        for collection, fields in ENCRYPTED_FIELDS.items():
            changed = await reencrypt(database.db[collection], cipher, fields=fields)
            print(
                messages.CLI_REENCRYPTED.format(
                    collection=collection, changed=changed, key_id=cipher.key_id
                ),
                file=out,
            )
    return 0


async def _parents(
    arguments: argparse.Namespace, settings: Settings, out: TextIO, ask: Callable[[str], str]
) -> int:
    providers = load_registry(settings.apps_file)
    async with _database(settings) as database:
        if arguments.command == "list":
            return await parents.list_parents(
                _records(database), providers.display_name, out, sys.stderr
            )
        cipher = cipher_for(settings)
        if arguments.command == "delete":
            async with _service(database, providers, cipher) as service:
                deleted = await service.delete_as_operator(
                    Actor.operator(getpass.getuser()), arguments.id, kind=ConnectionKind.PARENT
                )
            if deleted is None:
                print(messages.CLI_PARENT_NOT_FOUND.format(id=arguments.id), file=out)
                return 1
            print(messages.CLI_PARENT_DELETED.format(id=arguments.id), file=out)
            return 0
        async with _service(database, providers, cipher) as service:
            return await parents.authorize(
                settings=settings,
                database=database,
                service=service,
                providers=providers,
                cipher=cipher,
                parent_name=arguments.name,
                out=out,
                ask=ask,
                tenant_option=arguments.tenant,
            )


@asynccontextmanager
async def _service(
    database: Database, providers: ProviderRegistry, cipher: TokenCipher
) -> AsyncIterator[ConnectionsService]:
    """The connections service the bot uses, so an operator's change revokes and audits alike;
    the command waits (bounded) for the revocation before it ends."""
    tokens = TokenService(providers=providers, connections=database.connections, cipher=cipher)
    settler = ConnectionSettler(
        store=database.connections, audit=database.audit, revoke_grant=tokens.revoke_grant
    )
    try:
        yield ConnectionsService(
            store=database.connections,
            audit=database.audit,
            names=providers.display_name,
            settler=settler,
            providers=providers,
        )
    finally:
        await settler.close()


def _records(database: Database) -> ConnectionsService:
    """The connections service without revocation at the provider: for listing, and for
    creating development records (they hold no tokens). Creations are audited at once."""
    return ConnectionsService(store=database.connections, audit=database.audit)


async def _recipes(arguments: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    providers = load_registry(settings.apps_file)
    book = (
        load_recipes(
            settings.recipes_file,
            parent_names=providers.parents,
            reserved_phrases=BUILTIN_COMMANDS,
        )
        if settings.recipes_file
        else None
    )
    file_defaults = {recipe.key: recipe.verify_user_access for recipe in book or ()}
    async with _database(settings) as database:
        store = database.recipe_settings
        stored = await store.all()
        if arguments.command == "list":
            header(messages.CLI_RECIPES_HEADER)
            for key in sorted(set(file_defaults) | set(stored)):
                in_db = stored.get(key)
                in_file = file_defaults.get(key)
                note = ""
                if in_file is None:
                    note = "\t" + messages.CLI_RECIPE_NOT_IN_FILE
                elif in_db is not None and in_db != in_file:
                    note = "\t" + messages.CLI_RECIPE_DIFFERS
                shown_db = "-" if in_db is None else ("on" if in_db else "off")
                shown_file = "-" if in_file is None else ("on" if in_file else "off")
                print(
                    messages.CLI_RECIPE_ROW.format(
                        key=key, database=shown_db, file=shown_file, note=note
                    ),
                    file=out,
                )
            return 0
        if arguments.key not in file_defaults and arguments.key not in stored:
            print(messages.CLI_RECIPE_NOT_FOUND.format(key=arguments.key), file=out)
            return 1
        value = arguments.value == "on"
        event = database.audit.event(
            actor=Actor.operator(getpass.getuser()),
            action="recipe.setting_changed",
            details={"recipe": arguments.key, "verify_user_access": value},
        )
        await store.set_verify_user_access(
            arguments.key, value, changed_by=f"operator:{getpass.getuser()}", event=event
        )
        await drain(store.collection, arguments.key, database.audit)
        print(
            messages.CLI_RECIPE_TOGGLED.format(key=arguments.key, value=arguments.value), file=out
        )
        return 0


async def _run(
    arguments: argparse.Namespace, settings: Settings, out: TextIO, ask: Callable[[str], str]
) -> int:
    if arguments.topic == "recipes":
        return await _recipes(arguments, settings, out)
    if arguments.topic == "tokens":
        return await _reencrypt(settings, out)
    if arguments.topic == "parents":
        return await _parents(arguments, settings, out, ask)
    if arguments.topic == console_link.COMMAND:
        return await console_link.run(settings, lambda: _database(settings), out, sys.stderr)
    if arguments.topic == "privileges":
        async with _database(settings) as database:
            return await privileges.run(arguments, database.privileges, database.audit, out)
    actor = Actor.operator(getpass.getuser())
    async with _database(settings) as database:
        records = _records(database)
        if arguments.command == "list":
            kind = ConnectionKind(arguments.kind) if arguments.kind else None
            header(messages.CLI_CONNECTIONS_HEADER)
            for connection in await records.list_all(kind=kind):
                print(_row(connection), file=out)
            return 0
        if arguments.command == "create-parent":
            created = await records.create_parent(
                provider=arguments.provider,
                owner=Owner(
                    tenant_id=arguments.tenant, aad_object_id=arguments.user, name=arguments.name
                ),
                account=ProviderAccount(id=arguments.account, display_name=arguments.account),
                api_base_url=arguments.api_base_url,
                tenant_id=arguments.tenant,
                actor=actor,
            )
        elif arguments.command == "create-runtime":
            try:
                created = await records.create_runtime(
                    parent_id=arguments.parent,
                    owner=Owner(
                        tenant_id=arguments.tenant,
                        aad_object_id=arguments.user,
                        teams_user_id=arguments.teams_user,
                        name=arguments.name,
                    ),
                    account=ProviderAccount(id=arguments.account, display_name=arguments.account),
                    status=ConnectionStatus(arguments.status),
                    actor=actor,
                )
            except ParentNotFound:
                print(
                    messages.CLI_PARENT_NOT_FOR_TENANT.format(
                        parent=arguments.parent, tenant=arguments.tenant
                    ),
                    file=sys.stderr,
                )
                return 1
            except ConnectionExists:
                print(messages.CLI_RUNTIME_EXISTS, file=sys.stderr)
                return 1
        else:
            providers = load_registry(settings.apps_file)
            async with _service(database, providers, cipher_for(settings)) as service:
                deleted = await service.delete_as_operator(actor, arguments.id)
            if deleted is None:
                print(messages.CLI_CONNECTION_NOT_FOUND.format(id=arguments.id), file=out)
                return 0
            print(messages.CLI_CONNECTION_DELETED.format(row=_row(deleted)), file=out)
            return 0
        print(_row(created), file=out)
        return 0


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO = sys.stdout,
    ask: Callable[[str], str] = input,
) -> int:
    arguments = _parser().parse_args(argv)
    if arguments.topic == "tokens" and arguments.command == "new-key":
        print(new_key(), file=out)
        return 0
    try:
        settings = load_settings()
        missing = _missing_data_folder(settings)
        if missing is not None:
            print(missing, file=sys.stderr)
            return 2
        return asyncio.run(_run(arguments, settings, out, ask))
    except (
        SettingsError,
        StoreUnavailable,
        TokenKeyError,
        AppsConfigError,
        RecipesConfigError,
        ValueError,
    ) as error:
        print(messages.CLI_CANNOT_RUN.format(error=error), file=sys.stderr)
        return 2


def _missing_data_folder(settings: Settings) -> str | None:
    """Why the command must not run on this data folder (it does not exist and no MONGODB_URI
    is set: an empty store would be made silently), or None."""
    if settings.mongodb_uri is not None or str(settings.data_dir) == MEMORY:
        return None
    if settings.data_dir.is_dir():
        return None
    return messages.CLI_DATA_DIR_MISSING.format(path=settings.data_dir.absolute(), cwd=Path.cwd())
