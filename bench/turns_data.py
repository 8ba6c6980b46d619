"""What `bench.turns` sends and stores: the bench person, their activities, and the store's data.

The bench person keeps `--connections` runtime connections (one parent each), stored through
the store's own API (`ConnectionStore.create_parent`, `create_runtime`). Other people's
connections (`--others-small`, `--others-large`) are inserted with `insert_many` in batches, as
documents built by the very function `create_runtime` uses (`ConnectionStore._new_document`:
owner, account, status, sealed tokens, `search_terms`), before the collection has its indexes;
the indexes are then built once, with the store's own `ensure_indexes` (and the admin
search's), under a long client timeout (the bot's own client allows 3 s per operation): on the
embedded store that is faster than maintaining every index on each insert (100,000 in about
2.5 minutes). The marker that the search terms were back-filled is written too, as a store that
has run before holds it (every document here has its terms), so the bot does not scan every
connection in the background during the measurement.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymongo
from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection

from cards import verbs
from storage.connection_search import COUNTS_COLLECTION, TERMS_BACKFILLED, ConnectionSearch
from storage.connections import ConnectionStore
from storage.crypto import TokenCipher
from storage.database import make_client
from storage.models import (
    Connection,
    ConnectionKind,
    ConnectionStatus,
    EncryptedTokens,
    Owner,
    ProviderAccount,
)
from tests.support.sandbox import CLIENT_ID, CLIENT_SECRET, SECRET_VARIABLE, issue_tokens

Json = dict[str, Any]

# The person every request comes from.
TENANT_ID = "tenant-bench"
USER_TEAMS_ID = "29:bench-user"
USER_OBJECT_ID = "aad-bench-user"
USER_NAME = "Bench User"
BOT_ID = "28:bench-bot"
ADMIN = Owner(tenant_id=TENANT_ID, aad_object_id="aad-bench-admin", name="Bench Admin")
PERSON = Owner(
    tenant_id=TENANT_ID, aad_object_id=USER_OBJECT_ID, teams_user_id=USER_TEAMS_ID, name=USER_NAME
)
PROVIDERS = ("salesforce", "servicenow", "box", "microsoft_graph", "sandbox")

COMMAND = "personal_connections"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"

# (b) the recipe: acts through the parent connection (verify_user_access = false).
RECIPE_PHRASE = 'sandbox opportunity "Bench deal" 5000'
RECIPE_PARENT = "sandbox_team"
# The sandbox client and secret `issue_tokens` signs in with (tests/support/sandbox.py).
SANDBOX_CLIENT_ID = CLIENT_ID
SANDBOX_CLIENT_SECRET = CLIENT_SECRET
SANDBOX_SECRET_VARIABLE = SECRET_VARIABLE
SANDBOX_REDIRECT = "http://127.0.0.1:3978/auth/callback"
SANDBOX_PARENT_USER = "omar"

# (e) authentication on: the bot's app registration at the sandbox acting as OIDC issuer.
AUTH_APP_ID = "00000000-0000-0000-0000-0000000be4c4"
AUTH_SECRET = "bench-bot-secret"  # noqa: S105 - a throwaway loopback secret
AUTH_ISSUER_TENANT = "bench-bot-tenant"
AUTH_SCOPE = "https://api.botframework.com/.default"

LOAD_TIMEOUT_S = 3600.0  # loading and index builds at 100,000 take minutes on the embedded store
BATCH = 5_000


# --------------------------------------------------------------------------- activities


def teams_message(service_url: str, text: str) -> Json:
    """A 1:1 Teams message as Teams sends it (the shape of tests/support/activities.py)."""
    return {
        "type": "message",
        "id": "activity-in-0",
        "channelId": "msteams",
        "serviceUrl": service_url,
        "timestamp": "2026-11-22T10:00:00.000Z",
        "from": {"id": USER_TEAMS_ID, "aadObjectId": USER_OBJECT_ID, "name": USER_NAME},
        "recipient": {"id": BOT_ID, "name": "Runtime connections"},
        "conversation": {
            "id": f"a:personal-{USER_TEAMS_ID}",
            "conversationType": "personal",
            "tenantId": TENANT_ID,
        },
        "channelData": {"tenant": {"id": TENANT_ID}},
        "locale": "en-US",
        "text": text,
        "textFormat": "plain",
    }


def card_action(service_url: str, connection_id: str) -> Json:
    """Disconnect pressed on a connection's card: an `adaptiveCard/action` invoke
    (tests/support/activities.py `card_action`)."""
    activity = teams_message(service_url, "")
    for key in ("text", "textFormat"):
        activity.pop(key)
    activity |= {
        "type": "invoke",
        "name": "adaptiveCard/action",
        "value": {
            "action": {
                "type": "Action.Execute",
                "verb": verbs.DISCONNECT,
                "data": {verbs.CONNECTION_INPUT: connection_id, verbs.PAGE_KEY: 0},
            },
            "trigger": "manual",
        },
        "replyToId": "activity-card-1",
    }
    return activity


# --------------------------------------------------------------------------- the bot's options


@dataclass
class BotOptions:
    """What a bot process of `bench.turns_roles` serves, passed as JSON on its command line."""

    connections: int = 5
    others: int = 0
    token_key: str = ""
    # (b) the sandbox's API for the recipe; the bot writes APPS_FILE and RECIPES_FILE.
    sandbox_url: str | None = None
    # (e) settings that turn authentication on (app id, secret, metadata URL, authority).
    auth: dict[str, str] = field(default_factory=dict)

    def encode(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def decode(cls, text: str) -> BotOptions:
        return cls(**json.loads(text))


def apps_file_text(sandbox_url: str) -> str:
    """The sandbox as app `sandbox` and the parent `sandbox_team` (tests' write_apps_file)."""
    return (
        "[apps.sandbox]\n"
        'preset = "sandbox"\n'
        f'base_url = "{sandbox_url}"\n'
        f'client_id = "{SANDBOX_CLIENT_ID}"\n'
        f'client_secret_env = "{SANDBOX_SECRET_VARIABLE}"\n'
        f"[parents.{RECIPE_PARENT}]\n"
        'app = "sandbox"\n'
    )


RECIPES_TEXT = f"""
[recipes.sandbox_opportunity]
name = "Sandbox opportunity"
phrase = "sandbox opportunity {{name}} {{amount:number}}"
parent = "{RECIPE_PARENT}"
verify_user_access = false
description = "Create an opportunity in the sandbox app"
[recipes.sandbox_opportunity.action]
method = "POST"
url = "{{connection.api_base_url}}/api/opportunities"
body = {{ name = "{{name}}", amount = "{{amount}}" }}
[recipes.sandbox_opportunity.result]
verb = "Created"
fields = {{ Id = "id", "Created by" = "created_by.email" }}
"""


def write_recipe_files(folder: Path, sandbox_url: str) -> tuple[Path, Path]:
    apps = folder / "apps.toml"
    apps.write_text(apps_file_text(sandbox_url))
    recipes = folder / "recipes.toml"
    recipes.write_text(RECIPES_TEXT)
    return apps, recipes


# --------------------------------------------------------------------------- the store's data


async def store_connections(
    store: ConnectionStore, count: int
) -> tuple[list[Connection], list[str]]:
    """`count` runtime connections for the bench person, one parent each, through the store's
    API; returns the parents and the person's connection ids."""
    parents: list[Connection] = []
    ids: list[str] = []
    for index in range(count):
        provider = PROVIDERS[index % len(PROVIDERS)]
        parent = await store.create_parent(
            provider=provider,
            owner=ADMIN,
            account=ProviderAccount(id=f"admin-{index}", display_name=f"admin@{provider}.example"),
        )
        account = f"bench.user{index}@{provider}.example"
        created = await store.create_runtime(
            parent_id=parent.id,
            owner=PERSON,
            account=ProviderAccount(id=account, display_name=account),
        )
        parents.append(parent)
        ids.append(created.id)
    return parents, ids


async def store_recipe_parent(
    store: ConnectionStore, apps_file: Path, sandbox_url: str, cipher: TokenCipher
) -> None:
    """The recipe's parent connection holding real, valid tokens from the sandbox (consent and
    code exchange as `omar`, tests/support/sandbox.py `issue_tokens`)."""
    tokens = await issue_tokens(apps_file, SANDBOX_REDIRECT, user=SANDBOX_PARENT_USER)
    await store.create_parent(
        provider="sandbox",
        owner=ADMIN,
        account=ProviderAccount(id="user-omar", display_name="omar@sandbox.example"),
        tokens=cipher.seal(tokens.as_record()),
        api_base_url=sandbox_url,
        name=RECIPE_PARENT,
    )


def other_documents(
    parents: list[Connection], count: int, tokens: EncryptedTokens
) -> Iterator[Json]:
    """`count` runtime connections of other people of the bench tenant, as `create_runtime`
    writes them: one per parent and person (the unique index), so each person has several."""
    for index in range(count):
        number, parent = divmod(index, len(parents))
        owner = Owner(
            tenant_id=TENANT_ID,
            aad_object_id=f"aad-other-{number}",
            teams_user_id=f"29:other-{number}",
            name=f"Other Person {number}",
        )
        account = f"other{number}@{parents[parent].provider}.example"
        yield ConnectionStore._new_document(
            kind=ConnectionKind.RUNTIME,
            provider=parents[parent].provider,
            parent_id=ObjectId(parents[parent].id),
            owner=owner,
            account=ProviderAccount(id=account, display_name=account),
            scopes=list(parents[parent].scopes),
            api_base_url=parents[parent].api_base_url,
            tokens=tokens,
            status=ConnectionStatus.CONNECTED,
        )


async def insert_others(
    collection: AsyncCollection[Json], parents: list[Connection], count: int, cipher: TokenCipher
) -> None:
    """Insert other people's connections in batches of BATCH (each with sealed tokens)."""
    tokens = cipher.seal({"access_token": "a" * 40, "refresh_token": "r" * 40, "expires_at": None})
    documents = other_documents(parents, count, tokens)
    while batch := list(itertools.islice(documents, BATCH)):
        await collection.insert_many(batch, ordered=False)


async def prepare_indexes(collection: AsyncCollection[Json]) -> None:
    """The connections' indexes (the store's and the admin search's) and the back-fill marker."""
    await ConnectionStore(collection).ensure_indexes()
    await ConnectionSearch(collection).ensure_indexes()
    await collection.database[COUNTS_COLLECTION].replace_one(
        {"_id": TERMS_BACKFILLED}, {"at": datetime.now(UTC)}, upsert=True
    )


async def populate(
    uri: str, database_name: str, options: BotOptions, *, apps_file: Path | None = None
) -> list[str]:
    """Everything a bot of this run finds in its store; returns the bench person's connection
    ids. Runs before the bot starts (so before the bot's own client builds the indexes)."""
    cipher = TokenCipher([options.token_key])
    client = make_client(uri)
    try:
        with pymongo.timeout(LOAD_TIMEOUT_S):
            collection = client[database_name]["connections"]
            store = ConnectionStore(collection)
            parents, ids = await store_connections(store, options.connections)
            if apps_file is not None and options.sandbox_url:
                await store_recipe_parent(store, apps_file, options.sandbox_url, cipher)
            await insert_others(collection, parents, options.others, cipher)
            await prepare_indexes(collection)
    finally:
        await client.close()
    return ids


async def drop_database(uri: str, database_name: str) -> None:
    """Leave nothing behind in someone's MongoDB (MONGODB_URI)."""
    client = make_client(uri)
    try:
        await client.drop_database(database_name)
    finally:
        await client.close()
