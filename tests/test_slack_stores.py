"""The Slack installation and OAuth state stores on the real (embedded) database.

The first three tests are slack_sdk's own contract tests for its sqlite3 and SQLAlchemy stores
(tests/slack_sdk/oauth/installation_store/test_sqlite3.py), run against the Mongo store
unchanged but for `await`; the rest cover what Bolt relies on beyond them (the latest record
wins, a user's installation carries the latest bot, token rotation) and what this project adds:
tokens sealed at rest, single-use hashed states, and no secret in any log.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import bson
import pytest
from cryptography.fernet import Fernet
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation

from slack.installations import (
    BOT_SECRETS,
    INSTALLATION_SECRETS,
    MongoInstallationStore,
    MongoOAuthStateStore,
)
from storage.crypto import TokenCipher, reencrypt
from storage.database import Database
from storage.models import EncryptedTokens
from tests.conftest import TEST_TOKEN_KEY

CLIENT_ID = "111.222"
T0 = 1_700_000_000.0  # a fixed `installed_at`, so "latest" is by design, not by the clock


def make_store(database: Database, client_id: str = CLIENT_ID) -> MongoInstallationStore:
    return MongoInstallationStore(
        installations=database.db["slack_installations"],
        bots=database.db["slack_bots"],
        cipher=TokenCipher([TEST_TOKEN_KEY]),
        client_id=client_id,
    )


@pytest.fixture
async def store(database: Database) -> MongoInstallationStore:
    installation_store = make_store(database)
    await installation_store.ensure_indexes()
    return installation_store


@pytest.fixture
async def state_store(database: Database) -> MongoOAuthStateStore:
    states = MongoOAuthStateStore(states=database.db["slack_oauth_states"])
    await states.ensure_indexes()
    return states


async def raw_documents(database: Database, *names: str) -> list[dict[str, Any]]:
    return [document for name in names async for document in database.db[name].find()]


def assert_nowhere(secrets: Iterable[str], documents: list[dict[str, Any]]) -> None:
    """No secret in any document: not in its repr, not in its BSON bytes (ciphertext included)."""
    for document in documents:
        raw = bson.encode(document)
        text = repr(document)
        for secret in secrets:
            assert secret not in text
            assert secret.encode() not in raw


# --- slack_sdk's own contract tests -----------------------------------------------------------


async def test_slack_sdk_contract_save_and_find(store: MongoInstallationStore) -> None:
    installation = Installation(
        app_id="A111",
        enterprise_id="E111",
        team_id="T111",
        user_id="U111",
        bot_id="B111",
        bot_token="xoxb-111",
        bot_scopes=["chat:write"],
        bot_user_id="U222",
    )
    await store.async_save(installation)

    # find bots
    assert await store.async_find_bot(enterprise_id="E111", team_id="T111") is not None
    assert await store.async_find_bot(enterprise_id="E111", team_id="T222") is None
    assert await store.async_find_bot(enterprise_id=None, team_id="T111") is None

    # delete bots
    await store.async_delete_bot(enterprise_id="E111", team_id="T222")
    assert await store.async_find_bot(enterprise_id="E111", team_id="T222") is None

    # find installations
    assert await store.async_find_installation(enterprise_id="E111", team_id="T111") is not None
    assert await store.async_find_installation(enterprise_id="E111", team_id="T222") is None
    assert await store.async_find_installation(enterprise_id=None, team_id="T111") is None

    found = await store.async_find_installation(
        enterprise_id="E111", team_id="T111", user_id="U111"
    )
    assert found is not None
    assert (
        await store.async_find_installation(enterprise_id="E111", team_id="T111", user_id="U222")
        is None
    )
    assert (
        await store.async_find_installation(enterprise_id="E111", team_id="T222", user_id="U111")
        is None
    )

    # delete installations
    await store.async_delete_installation(enterprise_id="E111", team_id="T111", user_id="U111")
    assert (
        await store.async_find_installation(enterprise_id="E111", team_id="T111", user_id="U111")
        is None
    )
    assert await store.async_find_installation(enterprise_id="E111", team_id="T111") is None

    # delete all
    await store.async_save(installation)
    await store.async_delete_all(enterprise_id="E111", team_id="T111")
    assert await store.async_find_installation(enterprise_id="E111", team_id="T111") is None
    assert (
        await store.async_find_installation(enterprise_id="E111", team_id="T111", user_id="U111")
        is None
    )
    assert await store.async_find_bot(enterprise_id="E111", team_id="T222") is None


async def test_slack_sdk_contract_org_installation(store: MongoInstallationStore) -> None:
    installation = Installation(
        app_id="AO111",
        enterprise_id="EO111",
        user_id="UO111",
        bot_id="BO111",
        bot_token="xoxb-O111",
        bot_scopes=["chat:write"],
        bot_user_id="UO222",
        is_enterprise_install=True,
    )
    await store.async_save(installation)

    # find bots
    assert await store.async_find_bot(enterprise_id="EO111", team_id=None) is not None
    assert (
        await store.async_find_bot(
            enterprise_id="EO111", team_id="TO222", is_enterprise_install=True
        )
        is not None
    )
    assert await store.async_find_bot(enterprise_id="EO111", team_id="TO222") is None
    assert await store.async_find_bot(enterprise_id=None, team_id="TO111") is None

    # delete bots
    await store.async_delete_bot(enterprise_id="EO111", team_id="TO222")
    assert await store.async_find_bot(enterprise_id="EO111", team_id=None) is not None
    await store.async_delete_bot(enterprise_id="EO111", team_id=None)
    assert await store.async_find_bot(enterprise_id="EO111", team_id=None) is None

    # find installations
    assert await store.async_find_installation(enterprise_id="EO111", team_id=None) is not None
    assert (
        await store.async_find_installation(
            enterprise_id="EO111", team_id="T111", is_enterprise_install=True
        )
        is not None
    )
    assert await store.async_find_installation(enterprise_id="EO111", team_id="T222") is None
    assert await store.async_find_installation(enterprise_id=None, team_id="T111") is None

    assert (
        await store.async_find_installation(enterprise_id="EO111", team_id=None, user_id="UO111")
        is not None
    )
    assert (
        await store.async_find_installation(
            enterprise_id="E111", team_id="T111", is_enterprise_install=True, user_id="U222"
        )
        is None
    )
    assert (
        await store.async_find_installation(enterprise_id=None, team_id="T222", user_id="U111")
        is None
    )

    # delete installations
    await store.async_delete_installation(enterprise_id="E111", team_id=None)
    assert await store.async_find_installation(enterprise_id="E111", team_id=None) is None

    # delete all
    await store.async_save(installation)
    await store.async_delete_all(enterprise_id="E111", team_id=None)
    assert await store.async_find_installation(enterprise_id="E111", team_id=None) is None
    assert (
        await store.async_find_installation(enterprise_id="E111", team_id=None, user_id="U111")
        is None
    )
    assert await store.async_find_bot(enterprise_id=None, team_id="T222") is None


async def test_slack_sdk_contract_token_rotation(store: MongoInstallationStore) -> None:
    installation = Installation(
        app_id="A111",
        enterprise_id="E111",
        team_id="T111",
        user_id="U111",
        bot_id="B111",
        bot_token="xoxe.xoxp-1-initial",
        bot_scopes=["chat:write"],
        bot_user_id="U222",
        bot_refresh_token="xoxe-1-initial",
        bot_token_expires_in=43200,
    )
    await store.async_save(installation)

    bot = await store.async_find_bot(enterprise_id="E111", team_id="T111")
    assert bot is not None
    assert bot.bot_refresh_token == "xoxe-1-initial"

    # Update the existing data (a new `installed_at`: it is a later installation)
    await asyncio.sleep(0.01)
    refreshed_installation = Installation(
        app_id="A111",
        enterprise_id="E111",
        team_id="T111",
        user_id="U111",
        bot_id="B111",
        bot_token="xoxe.xoxp-1-refreshed",
        bot_scopes=["chat:write"],
        bot_user_id="U222",
        bot_refresh_token="xoxe-1-refreshed",
        bot_token_expires_in=43200,
    )
    await store.async_save(refreshed_installation)

    # find bots
    bot = await store.async_find_bot(enterprise_id="E111", team_id="T111")
    assert bot is not None
    assert bot.bot_refresh_token == "xoxe-1-refreshed"
    assert await store.async_find_bot(enterprise_id="E111", team_id="T222") is None
    assert await store.async_find_bot(enterprise_id=None, team_id="T111") is None

    # delete bots
    await store.async_delete_bot(enterprise_id="E111", team_id="T222")
    assert await store.async_find_bot(enterprise_id="E111", team_id="T222") is None

    # find installations
    assert await store.async_find_installation(enterprise_id="E111", team_id="T111") is not None
    assert await store.async_find_installation(enterprise_id="E111", team_id="T222") is None
    assert await store.async_find_installation(enterprise_id=None, team_id="T111") is None
    assert (
        await store.async_find_installation(enterprise_id="E111", team_id="T111", user_id="U111")
        is not None
    )
    assert (
        await store.async_find_installation(enterprise_id="E111", team_id="T111", user_id="U222")
        is None
    )
    assert (
        await store.async_find_installation(enterprise_id="E111", team_id="T222", user_id="U111")
        is None
    )

    # delete installations
    await store.async_delete_installation(enterprise_id="E111", team_id="T111", user_id="U111")
    assert (
        await store.async_find_installation(enterprise_id="E111", team_id="T111", user_id="U111")
        is None
    )
    assert await store.async_find_installation(enterprise_id="E111", team_id="T111") is None

    # delete all
    await store.async_save(installation)
    await store.async_delete_all(enterprise_id="E111", team_id="T111")
    assert await store.async_find_installation(enterprise_id="E111", team_id="T111") is None
    assert (
        await store.async_find_installation(enterprise_id="E111", team_id="T111", user_id="U111")
        is None
    )
    assert await store.async_find_bot(enterprise_id="E111", team_id="T222") is None


# --- installations: what Bolt relies on ---------------------------------------------------------


def workspace_install(**overrides: Any) -> Installation:
    """A full workspace installation: bot and user tokens, rotation, an incoming webhook."""
    values: dict[str, Any] = {
        "app_id": "A111",
        "enterprise_id": "E111",
        "enterprise_name": "Org",
        "enterprise_url": "https://org.enterprise.slack.com/",
        "team_id": "T111",
        "team_name": "Team",
        "bot_token": "xoxb-bot-SECRET-1",
        "bot_id": "B111",
        "bot_user_id": "UB111",
        "bot_scopes": ["chat:write", "commands"],
        "bot_refresh_token": "xoxe-1-bot-refresh-SECRET-1",
        "bot_token_expires_at": 1_900_000_000,
        "user_id": "U111",
        "user_token": "xoxp-user-SECRET-1",
        "user_scopes": ["search:read"],
        "user_refresh_token": "xoxe-1-user-refresh-SECRET-1",
        "user_token_expires_at": 1_900_000_100,
        "incoming_webhook_url": "https://hooks.slack.com/services/T111/B111/WEBHOOK-SECRET-1",
        "incoming_webhook_channel": "#general",
        "incoming_webhook_channel_id": "C111",
        "incoming_webhook_configuration_url": "https://team.slack.com/services/B111",
        "token_type": "bot",
        "installed_at": T0,
    }
    values.update(overrides)
    return Installation(**values)


async def test_workspace_install_round_trips_every_field(store: MongoInstallationStore) -> None:
    """What was saved comes back, field for field (installed_at to the millisecond)."""
    installation = workspace_install(installed_at=T0 + 0.123)
    installation.set_custom_value("plan", "pro")
    await store.async_save(installation)

    found = await store.async_find_installation(enterprise_id="E111", team_id="T111")
    assert found is not None
    assert found.to_dict() == installation.to_dict()
    assert found.bot_scopes == ["chat:write", "commands"]
    assert found.get_custom_value("plan") == "pro"
    by_user = await store.async_find_installation(
        enterprise_id="E111", team_id="T111", user_id="U111"
    )
    assert by_user is not None and by_user.to_dict() == installation.to_dict()

    bot = await store.async_find_bot(enterprise_id="E111", team_id="T111")
    assert bot is not None
    assert bot.to_dict() == installation.to_bot().to_dict()


async def test_enterprise_install_is_found_by_enterprise_alone(
    store: MongoInstallationStore, database: Database
) -> None:
    """An org-wide install is stored without a team and found from any of the org's workspaces;
    a workspace of that org without its own install finds nothing without the flag."""
    installation = workspace_install(
        enterprise_id="E999", team_id=None, is_enterprise_install=True, user_id="U9"
    )
    await store.async_save(installation)
    # Started from a workspace: the team id it carried is not part of the org's record.
    await store.async_save(
        workspace_install(
            enterprise_id="E999",
            team_id="T555",
            is_enterprise_install=True,
            user_id="U8",
            bot_token="xoxb-bot-SECRET-2",
            installed_at=T0 + 10,
        )
    )
    documents = await raw_documents(database, "slack_installations", "slack_bots")
    assert {d["team_id"] for d in documents} == {None}

    for team in (None, "T111", "T555", "T777"):
        found = await store.async_find_installation(
            enterprise_id="E999", team_id=team, is_enterprise_install=True
        )
        assert found is not None and found.user_id == "U8" and found.is_enterprise_install
        bot = await store.async_find_bot(
            enterprise_id="E999", team_id=team, is_enterprise_install=True
        )
        assert bot is not None and bot.bot_token == "xoxb-bot-SECRET-2"
    user = await store.async_find_installation(
        enterprise_id="E999", team_id="T777", user_id="U9", is_enterprise_install=True
    )
    assert user is not None and user.user_id == "U9" and user.bot_token == "xoxb-bot-SECRET-2"
    assert await store.async_find_installation(enterprise_id="E999", team_id="T777") is None

    # Bolt's uninstall handler passes the org's enterprise id and no team for an org install.
    await store.async_delete_all(enterprise_id="E999", team_id=None)
    assert await raw_documents(database, "slack_installations", "slack_bots") == []


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "no-indexes"])
async def test_latest_installation_wins_by_installed_at(database: Database, indexed: bool) -> None:
    """The newest `installed_at` wins, whatever order the saves came in (without the indexes
    too: the order comes from the query's sort, not from an index the server happens to use)."""
    store = make_store(database)
    if indexed:
        await store.ensure_indexes()

    async def latest() -> tuple[str | None, str | None]:
        found = await store.async_find_installation(enterprise_id="E111", team_id="T111")
        bot = await store.async_find_bot(enterprise_id="E111", team_id="T111")
        assert found is not None and bot is not None
        return found.user_id, bot.bot_token

    await store.async_save(
        workspace_install(user_id="U2", bot_token="xoxb-60", installed_at=T0 + 60)
    )
    await store.async_save(workspace_install(user_id="U1", bot_token="xoxb-0", installed_at=T0))
    assert await latest() == ("U2", "xoxb-60")  # saved first, installed last
    await store.async_save(
        workspace_install(user_id="U3", bot_token="xoxb-120", installed_at=T0 + 120)
    )
    assert await latest() == ("U3", "xoxb-120")  # saved last, installed last

    # A user's own latest installation, of two of theirs, saved in either order:
    await store.async_save(
        workspace_install(user_id="U1", user_token="xoxp-u1-b", installed_at=T0 + 5)
    )
    await store.async_save(
        workspace_install(user_id="U1", user_token="xoxp-u1-a", installed_at=T0 + 1)
    )
    mine = await store.async_find_installation(enterprise_id="E111", team_id="T111", user_id="U1")
    assert mine is not None and mine.user_token == "xoxp-u1-b"
    assert mine.bot_token == "xoxb-120"  # and the workspace's latest bot


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "no-indexes"])
async def test_same_millisecond_the_last_saved_wins(database: Database, indexed: bool) -> None:
    store = make_store(database)
    if indexed:
        await store.ensure_indexes()
    for user in ("U1", "U2", "U3"):
        await store.async_save(workspace_install(user_id=user, installed_at=T0))
    latest = await store.async_find_installation(enterprise_id="E111", team_id="T111")
    assert latest is not None and latest.user_id == "U3"
    # Three installations, not one replacing another: a save replaces only the same user's.
    for user in ("U1", "U2", "U3"):
        assert (
            await store.async_find_installation(enterprise_id="E111", team_id="T111", user_id=user)
            is not None
        )


async def test_user_installation_carries_the_latest_bot(store: MongoInstallationStore) -> None:
    """A user's installation comes with the workspace's latest bot token (bolt-python#664), and
    so does a latest installation that has no bot token of its own (a user-only install)."""
    await store.async_save(workspace_install(user_id="U1", bot_token="xoxb-old", installed_at=T0))
    await store.async_save(
        workspace_install(
            user_id="U2",
            bot_token="xoxb-new",
            bot_id="B222",
            bot_refresh_token="xoxe-bot-new",
            bot_token_expires_at=1_950_000_000,
            user_token="xoxp-u2",
            installed_at=T0 + 60,
        )
    )
    u1 = await store.async_find_installation(enterprise_id="E111", team_id="T111", user_id="U1")
    assert u1 is not None
    assert (u1.user_id, u1.user_token) == ("U1", "xoxp-user-SECRET-1")
    assert (u1.bot_token, u1.bot_id, u1.bot_refresh_token, u1.bot_token_expires_at) == (
        "xoxb-new",
        "B222",
        "xoxe-bot-new",
        1_950_000_000,
    )

    # A user-only installation (no bot scopes) is the latest: it gets the bot of the workspace.
    user_only = workspace_install(
        user_id="U3",
        user_token="xoxp-u3",
        bot_token=None,
        bot_id=None,
        bot_user_id=None,
        bot_scopes=[],
        bot_refresh_token=None,
        bot_token_expires_at=None,
        installed_at=T0 + 120,
    )
    await store.async_save(user_only)
    latest = await store.async_find_installation(enterprise_id="E111", team_id="T111")
    assert latest is not None
    assert (latest.user_id, latest.user_token, latest.bot_token) == ("U3", "xoxp-u3", "xoxb-new")
    bot = await store.async_find_bot(enterprise_id="E111", team_id="T111")
    assert bot is not None and bot.bot_token == "xoxb-new"  # the user-only one added no bot


async def test_token_rotation_fields_round_trip_and_a_rotated_copy_replaces(
    store: MongoInstallationStore, database: Database
) -> None:
    """The refresh tokens and expiries come back; Bolt's rotator saves a copy of the found
    installation (same installed_at) with new tokens, which replaces the record."""
    await store.async_save(workspace_install())
    found = await store.async_find_installation(
        enterprise_id="E111", team_id="T111", user_id="U111"
    )
    assert found is not None
    assert found.bot_refresh_token == "xoxe-1-bot-refresh-SECRET-1"
    assert found.bot_token_expires_at == 1_900_000_000
    assert found.user_refresh_token == "xoxe-1-user-refresh-SECRET-1"
    assert found.user_token_expires_at == 1_900_000_100
    raw = await database.db["slack_installations"].find_one()
    assert raw is not None
    assert raw["bot_token_expires_at"] == datetime.fromtimestamp(1_900_000_000, tz=UTC)
    assert raw["user_token_expires_at"] == datetime.fromtimestamp(1_900_000_100, tz=UTC)

    # As slack_sdk's AsyncTokenRotator builds a refreshed installation:
    refreshed = Installation(**found.to_dict_for_copying())
    refreshed.user_token = "xoxe.xoxp-user-ROTATED"
    refreshed.user_refresh_token = "xoxe-1-user-refresh-ROTATED"
    refreshed.user_token_expires_at = 1_900_050_000
    refreshed.bot_token = "xoxe.xoxb-bot-ROTATED"
    refreshed.bot_refresh_token = "xoxe-1-bot-refresh-ROTATED"
    refreshed.bot_token_expires_at = 1_900_040_000
    await store.async_save(refreshed)

    assert await database.db["slack_installations"].count_documents({}) == 1
    assert await database.db["slack_bots"].count_documents({}) == 1
    again = await store.async_find_installation(
        enterprise_id="E111", team_id="T111", user_id="U111"
    )
    assert again is not None
    assert (again.user_token, again.user_refresh_token, again.user_token_expires_at) == (
        "xoxe.xoxp-user-ROTATED",
        "xoxe-1-user-refresh-ROTATED",
        1_900_050_000,
    )
    assert (again.bot_token, again.bot_refresh_token, again.bot_token_expires_at) == (
        "xoxe.xoxb-bot-ROTATED",
        "xoxe-1-bot-refresh-ROTATED",
        1_900_040_000,
    )

    # The bot-only path: find_bot, rotate, save_bot.
    bot = await store.async_find_bot(enterprise_id="E111", team_id="T111")
    assert bot is not None
    refreshed_bot = Bot(**bot.to_dict_for_copying())
    refreshed_bot.bot_token = "xoxe.xoxb-bot-ROTATED-2"
    refreshed_bot.bot_refresh_token = "xoxe-1-bot-refresh-ROTATED-2"
    refreshed_bot.bot_token_expires_at = 1_900_090_000
    await store.async_save_bot(refreshed_bot)
    assert await database.db["slack_bots"].count_documents({}) == 1
    bot = await store.async_find_bot(enterprise_id="E111", team_id="T111")
    assert bot is not None
    assert (bot.bot_token, bot.bot_refresh_token, bot.bot_token_expires_at) == (
        "xoxe.xoxb-bot-ROTATED-2",
        "xoxe-1-bot-refresh-ROTATED-2",
        1_900_090_000,
    )


async def test_save_bot_alone(store: MongoInstallationStore) -> None:
    bot = workspace_install().to_bot()
    await store.async_save_bot(bot)
    found = await store.async_find_bot(enterprise_id="E111", team_id="T111")
    assert found is not None and found.to_dict() == bot.to_dict()
    assert await store.async_find_installation(enterprise_id="E111", team_id="T111") is None


async def test_delete_installation_for_one_user_then_all(store: MongoInstallationStore) -> None:
    await store.async_save(workspace_install(user_id="U1", user_token="xoxp-u1", installed_at=T0))
    await store.async_save(
        workspace_install(user_id="U2", user_token="xoxp-u2", installed_at=T0 + 1)
    )
    await store.async_save(
        workspace_install(team_id="T222", user_id="U1", user_token="xoxp-other", installed_at=T0)
    )

    await store.async_delete_installation(enterprise_id="E111", team_id="T111", user_id="U2")
    assert (
        await store.async_find_installation(enterprise_id="E111", team_id="T111", user_id="U2")
        is None
    )
    u1 = await store.async_find_installation(enterprise_id="E111", team_id="T111", user_id="U1")
    assert u1 is not None and u1.user_token == "xoxp-u1"
    latest = await store.async_find_installation(enterprise_id="E111", team_id="T111")
    assert latest is not None and latest.user_id == "U1"

    await store.async_delete_installation(enterprise_id="E111", team_id="T111")
    assert await store.async_find_installation(enterprise_id="E111", team_id="T111") is None
    # Installations only: the bot stays, and so does the other workspace.
    assert await store.async_find_bot(enterprise_id="E111", team_id="T111") is not None
    other = await store.async_find_installation(enterprise_id="E111", team_id="T222")
    assert other is not None and other.user_token == "xoxp-other"


async def test_delete_bot_removes_only_the_bots(
    store: MongoInstallationStore, database: Database
) -> None:
    await store.async_save(workspace_install(installed_at=T0))
    await store.async_save(workspace_install(installed_at=T0 + 1, bot_token="xoxb-second"))
    await store.async_save(workspace_install(team_id="T222"))
    await store.async_delete_bot(enterprise_id="E111", team_id="T111")
    assert await store.async_find_bot(enterprise_id="E111", team_id="T111") is None
    assert await store.async_find_bot(enterprise_id="E111", team_id="T222") is not None
    assert await database.db["slack_installations"].count_documents({"team_id": "T111"}) == 2


async def test_delete_all_removes_one_workspace(
    store: MongoInstallationStore, database: Database
) -> None:
    await store.async_save(workspace_install(user_id="U1"))
    await store.async_save(workspace_install(user_id="U2", installed_at=T0 + 1))
    await store.async_save(workspace_install(team_id="T222"))
    await store.async_save(
        workspace_install(enterprise_id="E111", team_id=None, is_enterprise_install=True)
    )
    await store.async_delete_all(enterprise_id="E111", team_id="T111")
    assert await store.async_find_installation(enterprise_id="E111", team_id="T111") is None
    assert (
        await store.async_find_installation(enterprise_id="E111", team_id="T111", user_id="U1")
        is None
    )
    assert await store.async_find_bot(enterprise_id="E111", team_id="T111") is None
    left = await raw_documents(database, "slack_installations", "slack_bots")
    assert sorted((d["team_id"] or "") for d in left) == ["", "", "T222", "T222"]


async def test_deletions_are_idempotent(store: MongoInstallationStore, database: Database) -> None:
    # Nothing stored yet: every deletion is a quiet no-op.
    await store.async_delete_bot(enterprise_id="E111", team_id="T111")
    await store.async_delete_installation(enterprise_id="E111", team_id="T111", user_id="U1")
    await store.async_delete_installation(enterprise_id="E111", team_id="T111")
    await store.async_delete_all(enterprise_id="E111", team_id="T111")

    await store.async_save(workspace_install())
    for _ in range(2):
        await store.async_delete_installation(enterprise_id="E111", team_id="T111", user_id="U111")
        await store.async_delete_bot(enterprise_id="E111", team_id="T111")
        await store.async_delete_all(enterprise_id="E111", team_id="T111")
    assert await raw_documents(database, "slack_installations", "slack_bots") == []


async def test_no_clear_token_at_rest(store: MongoInstallationStore, database: Database) -> None:
    """Dump every stored document: tokens, refresh tokens and the webhook URL are sealed (and
    open again with the key); the rest is readable."""
    secrets = {
        "bot_token": "xoxb-bot-SECRET-1",
        "bot_refresh_token": "xoxe-1-bot-refresh-SECRET-1",
        "user_token": "xoxp-user-SECRET-1",
        "user_refresh_token": "xoxe-1-user-refresh-SECRET-1",
        "incoming_webhook_url": "https://hooks.slack.com/services/T111/B111/WEBHOOK-SECRET-1",
    }
    await store.async_save(workspace_install())
    await store.async_save(
        workspace_install(
            enterprise_id="E9", team_id=None, is_enterprise_install=True, installed_at=T0 + 1
        )
    )
    await store.async_save_bot(workspace_install(team_id="T333").to_bot())

    installations = await raw_documents(database, "slack_installations")
    bots = await raw_documents(database, "slack_bots")
    assert len(installations) == 2 and len(bots) == 3
    assert_nowhere([*secrets.values(), "SECRET", "WEBHOOK"], installations + bots)

    cipher = TokenCipher([TEST_TOKEN_KEY])
    for documents, fields in ((installations, INSTALLATION_SECRETS), (bots, BOT_SECRETS)):
        for document in documents:
            for field in fields:
                sealed = EncryptedTokens.model_validate(document[field])
                assert sealed.key_id == cipher.key_id
                assert cipher.open_text(sealed) == secrets[field]
            # What is not secret stays queryable in clear.
            assert document["client_id"] == CLIENT_ID
            assert document["bot_id"] == "B111"
            assert document["bot_scopes"] == "chat:write,commands"
            assert isinstance(document["installed_at"], datetime)
            assert isinstance(document["bot_token_expires_at"], datetime)
    assert {d["user_scopes"] for d in installations} == {"search:read"}
    assert {d["incoming_webhook_channel_id"] for d in installations} == {"C111"}


async def test_key_rotation_with_reencrypt(database: Database) -> None:
    """After a new key is put first, `reencrypt` over the secret fields re-seals them all."""
    old_store = make_store(database)
    await old_store.async_save(workspace_install())
    key = Fernet.generate_key().decode()
    cipher = TokenCipher([key, TEST_TOKEN_KEY])
    installations, bots = database.db["slack_installations"], database.db["slack_bots"]
    assert await reencrypt(installations, cipher, fields=INSTALLATION_SECRETS) == 1
    assert await reencrypt(bots, cipher, fields=BOT_SECRETS) == 1

    new_store = MongoInstallationStore(
        installations=installations, bots=bots, cipher=TokenCipher([key]), client_id=CLIENT_ID
    )
    found = await new_store.async_find_installation(enterprise_id="E111", team_id="T111")
    assert found is not None and found.to_dict() == workspace_install().to_dict()


async def test_client_ids_are_kept_apart(store: MongoInstallationStore, database: Database) -> None:
    installation = workspace_install()
    installation.set_custom_value("client_id", "999.999")  # a custom value cannot clobber it
    await store.async_save(installation)
    other = make_store(database, client_id="999.999")
    assert await other.async_find_installation(enterprise_id="E111", team_id="T111") is None
    assert await other.async_find_bot(enterprise_id="E111", team_id="T111") is None
    await other.async_delete_all(enterprise_id="E111", team_id="T111")
    found = await store.async_find_installation(enterprise_id="E111", team_id="T111")
    assert found is not None and found.get_custom_value("client_id") == "999.999"


async def test_empty_ids_mean_none(store: MongoInstallationStore) -> None:
    """As the sqlite3 store: "" and None are the same (no enterprise, say)."""
    await store.async_save(workspace_install(enterprise_id="", team_id="T111"))
    found = await store.async_find_installation(enterprise_id=None, team_id="T111")
    assert found is not None and found.enterprise_id is None
    assert await store.async_find_bot(enterprise_id="", team_id="T111") is not None


HOSTILE_IDS: list[Any] = [{"$ne": None}, {"$gt": ""}, ["T111"], 111, b"T111"]


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
async def test_non_string_ids_match_nothing(
    store: MongoInstallationStore, database: Database, hostile: Any
) -> None:
    """Ids that are not strings never reach a query as operators: finds give None, deletions
    delete nothing, and nothing raises."""
    await store.async_save(workspace_install())
    assert await store.async_find_installation(enterprise_id=hostile, team_id="T111") is None
    assert await store.async_find_installation(enterprise_id="E111", team_id=hostile) is None
    assert (
        await store.async_find_installation(enterprise_id="E111", team_id="T111", user_id=hostile)
        is None
    )
    assert await store.async_find_bot(enterprise_id="E111", team_id=hostile) is None
    await store.async_delete_bot(enterprise_id=hostile, team_id=hostile)
    await store.async_delete_installation(enterprise_id="E111", team_id="T111", user_id=hostile)
    await store.async_delete_all(enterprise_id="E111", team_id=hostile)
    assert len(await raw_documents(database, "slack_installations", "slack_bots")) == 2


async def test_ensure_indexes_is_repeatable(
    store: MongoInstallationStore, database: Database
) -> None:
    await store.ensure_indexes()
    installations = await database.db["slack_installations"].index_information()
    bots = await database.db["slack_bots"].index_information()
    assert {"latest_by_workspace", "latest_by_user"} <= set(installations)
    assert [k for k, _ in installations["latest_by_user"]["key"]] == [
        "client_id",
        "enterprise_id",
        "team_id",
        "user_id",
        "installed_at",
        "_id",
    ]
    assert "latest_by_workspace" in bots


async def test_store_logs_no_secret(
    store: MongoInstallationStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    installation = workspace_install()
    await store.async_save(installation)
    await store.async_find_installation(enterprise_id="E111", team_id="T111", user_id="U111")
    await store.async_find_bot(enterprise_id="E111", team_id="T111")
    await store.async_delete_all(enterprise_id="E111", team_id="T111")
    assert any(r.name == "slack.installations" for r in caplog.records)
    for secret in ("SECRET", "WEBHOOK"):
        assert secret not in caplog.text
    assert "SECRET" not in repr(store) and TEST_TOKEN_KEY not in repr(store)


# --- OAuth states ------------------------------------------------------------------------------


async def test_slack_sdk_contract_issue_and_consume(state_store: MongoOAuthStateStore) -> None:
    state = await state_store.async_issue()
    assert await state_store.async_consume(state) is True
    assert await state_store.async_consume(state) is False


async def test_issue_takes_and_ignores_arguments(state_store: MongoOAuthStateStore) -> None:
    state = await state_store.async_issue("positional", foo=123, bar="baz")
    assert await state_store.async_consume(state) is True


async def test_states_are_random_url_safe_and_distinct(state_store: MongoOAuthStateStore) -> None:
    states = [await state_store.async_issue() for _ in range(20)]
    assert len(set(states)) == 20
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", state) for state in states)


async def test_unknown_state_is_refused(state_store: MongoOAuthStateStore) -> None:
    await state_store.async_issue()
    assert await state_store.async_consume("never-issued") is False


async def test_expired_state_is_refused(
    state_store: MongoOAuthStateStore, database: Database
) -> None:
    """Expired, even while the TTL monitor has not removed it yet."""
    state = await state_store.async_issue()
    hashed = hashlib.sha256(state.encode()).hexdigest()
    states = database.db["slack_oauth_states"]
    result = await states.update_one(
        {"state_hash": hashed},
        {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}},
    )
    assert result.modified_count == 1
    assert await state_store.async_consume(state) is False
    assert await states.count_documents({}) == 1  # left to the TTL index


async def test_state_expires_in_real_time(database: Database) -> None:
    """The test slack_sdk runs on its SQLAlchemy store, with a short lifetime."""
    short = MongoOAuthStateStore(states=database.db["slack_oauth_states"], expiration_seconds=1)
    state = await short.async_issue()
    await asyncio.sleep(1.2)
    assert await short.async_consume(state) is False


async def test_only_the_hash_is_stored(
    state_store: MongoOAuthStateStore, database: Database
) -> None:
    before = datetime.now(UTC)
    state = await state_store.async_issue()
    [document] = await raw_documents(database, "slack_oauth_states")
    assert set(document) == {"_id", "state_hash", "created_at", "expires_at"}
    assert document["state_hash"] == hashlib.sha256(state.encode()).hexdigest()
    assert_nowhere([state], [document])
    assert document["expires_at"] - document["created_at"] == timedelta(seconds=600)
    assert before - timedelta(seconds=1) <= document["created_at"] <= datetime.now(UTC)
    assert document["created_at"].tzinfo is not None


async def test_fifty_concurrent_consumes_one_wins(
    state_store: MongoOAuthStateStore, database: Database
) -> None:
    state = await state_store.async_issue()
    results = await asyncio.gather(*(state_store.async_consume(state) for _ in range(50)))
    assert results.count(True) == 1
    assert results.count(False) == 49
    assert await database.db["slack_oauth_states"].count_documents({}) == 0


@pytest.mark.parametrize(
    "bad",
    [None, 123, b"bytes", ["state"], {"$ne": None}, "", "x" * 10_000, "\ud800"],
    ids=["none", "int", "bytes", "list", "operator", "empty", "huge", "surrogate"],
)
async def test_bad_state_input_is_false(state_store: MongoOAuthStateStore, bad: Any) -> None:
    live = await state_store.async_issue()
    assert await state_store.async_consume(bad) is False
    # The bad input consumed nothing.
    assert await state_store.async_consume(live) is True


async def test_state_indexes(state_store: MongoOAuthStateStore, database: Database) -> None:
    await state_store.ensure_indexes()  # repeatable
    indexes = await database.db["slack_oauth_states"].index_information()
    assert indexes["by_state"]["unique"] is True
    assert indexes["cleanup"]["expireAfterSeconds"] == 0


def test_state_store_refuses_a_bad_lifetime(database: Database) -> None:
    for bad in (0, -5):
        with pytest.raises(ValueError):
            MongoOAuthStateStore(states=database.db["x"], expiration_seconds=bad)
    with pytest.raises(TypeError):
        MongoOAuthStateStore(states=database.db["x"], expiration_seconds=True)


async def test_state_store_logs_no_state(
    state_store: MongoOAuthStateStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    state = await state_store.async_issue()
    assert await state_store.async_consume(state) is True
    assert await state_store.async_consume(state) is False
    assert await state_store.async_consume(state + "x") is False
    assert state not in caplog.text


async def test_stores_fit_bolt_oauth_settings(
    store: MongoInstallationStore, state_store: MongoOAuthStateStore
) -> None:
    """Bolt's async OAuth settings take both stores as they are."""
    from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings

    settings = AsyncOAuthSettings(
        client_id=CLIENT_ID,
        client_secret="not-a-real-secret",
        scopes=["chat:write"],
        installation_store=store,
        state_store=state_store,
    )
    assert settings.installation_store is store
    assert settings.state_store is state_store
    assert store.logger is not None and state_store.logger is not None
    state = await settings.state_store.async_issue()
    assert await settings.state_store.async_consume(state)
