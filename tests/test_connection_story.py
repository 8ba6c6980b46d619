"""The record tells its story (issue #15 item 4): since when a connection is signed out in the
person's list, last used / last refreshed / last error in the admin console, and a recipe run
dating its use of the connection."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId

from cards.connections import connections_picklist, short_date
from connections.service import view_of
from connections.views import BlockedConnectionView, ConnectionView, blocked
from oauth.client import TokenSet
from storage.crypto import TokenCipher
from storage.database import Database
from storage.models import Connection, ConnectionStatus, ProviderAccount
from storage.privileges import Privilege
from tests.conftest import TEST_TOKEN_KEY, RunningBot, StartBot
from tests.console.support import sign_in, stored_parent, stored_runtime
from tests.support import activities
from tests.support.activities import JANE
from tests.support.card_reading import choices
from tests.support.card_schema import assert_valid_card
from tests.support.data import ADMIN, owner, runtime
from tests.support.sandbox import RunningSandbox, issue_tokens
from tests.support.waiting import eventually
from tests.test_first_run import RECIPES as FIRST_RUN_RECIPES

TODAY = date(2026, 12, 5)
# Words a provider might send with a refusal: never shown to the person.
RAW = "AADSTS70008: The provided grant has expired due to it being revoked <script>"


def view(status: str, since: datetime | None) -> ConnectionView:
    return ConnectionView(
        id="a" * 24, app_name="Box", account="jane@contoso.com", status=status, since=since
    )


async def set_fields(database: Database, connection_id: str, **fields: Any) -> None:
    await database.db["connections"].update_one({"_id": ObjectId(connection_id)}, {"$set": fields})


# --- The person's list -------------------------------------------------------------------------


def test_signed_out_choices_say_since_when() -> None:
    """A signed-out connection reads "Needs sign-in since 3 Dec" / "Disconnected since 3 Dec";
    a connected one only "Connected"."""
    listed = [
        view("needs_reauth", datetime(2026, 12, 3, 9, 30, tzinfo=UTC)),
        view("disconnected", datetime(2026, 11, 28, tzinfo=UTC)),
        view("connected", None),
    ]
    card = connections_picklist(listed, today=TODAY)
    assert_valid_card(card)
    assert choices(card) == [
        "Box — jane@contoso.com (Needs sign-in since 3 Dec)",
        "Box — jane@contoso.com (Disconnected since 28 Nov)",
        "Box — jane@contoso.com (Connected)",
    ]


def test_dates_show_the_year_only_when_it_is_not_this_one() -> None:
    """Day and short month this year; day, short month and year in another; UTC days."""
    assert short_date(datetime(2026, 1, 9, tzinfo=UTC), TODAY) == "9 Jan"
    assert short_date(datetime(2025, 12, 3, tzinfo=UTC), TODAY) == "3 Dec 2025"
    assert short_date(datetime(2027, 2, 1, tzinfo=UTC), TODAY) == "1 Feb 2027"
    # 00:30 on 1 Jan in UTC+2 is still 31 Dec in UTC.
    east = timezone(timedelta(hours=2))
    assert short_date(datetime(2026, 1, 1, 0, 30, tzinfo=east), TODAY) == "31 Dec 2025"
    card = connections_picklist(
        [view("needs_reauth", datetime(2024, 3, 7, tzinfo=UTC))], today=TODAY
    )
    assert choices(card) == ["Box — jane@contoso.com (Needs sign-in since 7 Mar 2024)"]


async def test_view_dates_each_status_from_the_record(database: Database) -> None:
    """Needs sign-in is dated by its last error, Disconnected by its last change, Connected not
    at all; a blocked view keeps the date."""
    box = await runtime(database, JANE, "box", "jane@contoso.com")
    refused = datetime(2025, 12, 3, 10, 4, tzinfo=UTC)
    changed = datetime(2025, 12, 4, tzinfo=UTC)
    assert view_of(box).since is None

    assert await database.connections.mark_needs_reauth(connection_id=box.id)
    await set_fields(database, box.id, **{"last_error.at": refused, "updated_at": changed})
    needs = await database.connections.get(box.id)
    assert needs is not None and view_of(needs).since == refused
    marked = blocked(view_of(needs))
    assert isinstance(marked, BlockedConnectionView) and marked.since == refused
    assert not marked.can_reconnect

    await database.connections.disconnect_for_owner(connection_id=box.id, owner=owner(JANE))
    gone = await database.connections.get(box.id)
    assert gone is not None and gone.status is ConnectionStatus.DISCONNECTED
    assert view_of(gone).since == gone.updated_at and gone.updated_at > changed


async def test_list_over_http_says_needs_sign_in_since_without_the_providers_words(
    bot: RunningBot,
) -> None:
    """`personal_connections` shows "Needs sign-in since <day>" for a refused connection; the
    stored error code (here a provider's own words) never reaches the card."""
    box = await runtime(bot.database, JANE, "box", "jane@contoso.com")
    assert await bot.database.connections.mark_needs_reauth(connection_id=box.id, error_code=RAW)
    last_year = datetime.now(UTC).year - 1
    await set_fields(bot.database, box.id, **{"last_error.at": datetime(last_year, 12, 3, 8)})

    await bot.post(activities.message(JANE, bot.service_url, "personal_connections"))

    [reply] = bot.connector.in_conversation(JANE.personal_conversation)
    assert reply.card is not None
    assert choices(reply.card) == [
        f"Box — jane@contoso.com (Needs sign-in since 3 Dec {last_year})"
    ]
    shown = json.dumps(reply.card, ensure_ascii=False)
    assert "AADSTS" not in shown and "revoked" not in shown and "<script>" not in shown


# --- The admin console -------------------------------------------------------------------------


async def test_console_shows_last_used_refreshed_and_the_last_error_in_plain_words(
    bot: RunningBot,
) -> None:
    """Each row shows last used, last refreshed, and the last error as words and time (the
    code too); an unknown code is named as a code. The CSV carries code and time apart."""
    admin = await sign_in(bot.client, bot.database, privileges=[Privilege.VIEW_CONNECTIONS])
    parent = await stored_parent(bot.database)
    jane = await stored_runtime(bot.database, parent, "jane")
    omar = await stored_runtime(bot.database, parent, "omar")
    zoe = await stored_runtime(bot.database, parent, "zoe")
    assert await bot.database.connections.mark_needs_reauth(connection_id=jane.id)
    await set_fields(
        bot.database,
        jane.id,
        **{
            "last_error.at": datetime(2025, 12, 3, 10, 4, tzinfo=UTC),
            "last_used_at": datetime(2025, 12, 1, 9, 0, tzinfo=UTC),
            "last_refreshed_at": datetime(2025, 11, 30, 7, 15, tzinfo=UTC),
        },
    )
    # Connected again since: its last error still tells what last went wrong.
    await set_fields(
        bot.database,
        omar.id,
        last_error={"code": "unauthorized", "at": datetime(2025, 10, 2, 16, 45, tzinfo=UTC)},
    )
    await set_fields(
        bot.database,
        zoe.id,
        last_error={"code": "mystery_code", "at": datetime(2025, 9, 1, 12, 0, tzinfo=UTC)},
    )

    status, page, _ = await admin.get("/admin/connections")

    assert status == 200
    assert (
        "Last error 3 Dec 2025, 10:04 UTC: the app refused the saved sign-in (invalid_grant)"
        in page
    )
    assert '<td data-label="Last used">1 Dec 2025, 09:00 UTC</td>' in page
    assert '<td data-label="Last refreshed">30 Nov 2025, 07:15 UTC</td>' in page
    assert (
        "Last error 2 Oct 2025, 16:45 UTC: the app refused the access token (unauthorized)" in page
    )
    assert "Last error 1 Sep 2025, 12:00 UTC: error code mystery_code" in page

    status, text, _ = await admin.get("/admin/connections.csv")
    assert status == 200
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(text))}
    assert rows[jane.id]["last_error"] == "the app refused the saved sign-in (invalid_grant)"
    assert rows[jane.id]["last_error_code"] == "invalid_grant"
    assert rows[jane.id]["last_error_at"] == "2025-12-03T10:04:00+00:00"
    assert rows[jane.id]["last_used_at"] == "2025-12-01T09:00:00+00:00"
    assert rows[omar.id]["last_error_code"] == "unauthorized"


# --- A recipe run dates its use of the connection ----------------------------------------------

# The same one-recipe book as the first-run tests (a run as the parent, no sign-in).
RECIPES = FIRST_RUN_RECIPES


class Recipes:
    """A bot with one recipe against the sandbox app, and its parent connection."""

    def __init__(self, bot: RunningBot, sandbox: RunningSandbox, parent: Connection) -> None:
        self.bot = bot
        self.sandbox = sandbox
        self.parent = parent
        self.cipher = TokenCipher([TEST_TOKEN_KEY])

    async def tokens_for(self, user: str) -> TokenSet:
        assert self.bot.settings.apps_file is not None
        redirect = f"{str(self.bot.settings.public_base_url).rstrip('/')}/auth/callback"
        return await issue_tokens(self.bot.settings.apps_file, redirect, user=user)

    async def run(self, text: str) -> None:
        status, _ = await self.bot.post(activities.message(JANE, self.bot.service_url, text))
        assert status == 200

    async def last_used(self, connection_id: str) -> datetime | None:
        connection = await self.bot.database.connections.get(connection_id)
        assert connection is not None
        return connection.last_used_at


@pytest.fixture
async def recipes(
    start_bot: StartBot, sandbox: RunningSandbox, apps_file: Path, bot_port: int, tmp_path: Path
) -> AsyncIterator[Recipes]:
    file = tmp_path / "recipes.toml"
    file.write_text(RECIPES)
    bot = await start_bot(
        port=bot_port,
        apps_file=str(apps_file),
        recipes_file=str(file),
        public_base_url=f"http://127.0.0.1:{bot_port}",
    )
    made = Recipes(bot, sandbox, parent=None)  # type: ignore[arg-type]
    made.parent = await bot.database.connections.create_parent(
        provider="sandbox",
        owner=ADMIN,
        account=ProviderAccount(id="user-omar", display_name="omar@sandbox.example"),
        tokens=made.cipher.seal((await made.tokens_for("omar")).as_record()),
        api_base_url=sandbox.base_url,
        name="sandbox_team",
    )
    yield made


async def test_a_recipe_run_records_that_it_used_the_parent(recipes: Recipes) -> None:
    """A run that acted through the parent connection sets the parent's last_used_at (after the
    answer), without a token refresh."""
    assert await recipes.last_used(recipes.parent.id) is None
    before = datetime.now(UTC)

    await recipes.run('sandbox opportunity "Dated" 5')

    assert [o["name"] for o in recipes.sandbox.state.opportunities] == ["Dated"]
    used = await eventually(lambda: recipes.last_used(recipes.parent.id))
    assert before <= used <= datetime.now(UTC)
    assert recipes.sandbox.stats().get("token.refresh_token", 0) == 0


async def test_a_recipe_run_records_that_it_used_the_persons_connection(
    recipes: Recipes,
) -> None:
    """With "Verify user access at runtime" on, the person's own connection is dated."""
    database = recipes.bot.database
    await database.recipe_settings.set_verify_user_access(
        "sandbox_opportunity", True, changed_by="test"
    )
    tokens = await recipes.tokens_for("jane")
    jane = await database.connections.create_runtime(
        parent_id=recipes.parent.id,
        owner=owner(JANE),
        account=ProviderAccount(id="user-jane", display_name="jane@sandbox.example"),
        tokens=recipes.cipher.seal(tokens.as_record()),
        api_base_url=recipes.sandbox.base_url,
    )
    long_ago = datetime(2025, 1, 2, tzinfo=UTC)
    await set_fields(database, jane.id, last_used_at=long_ago)

    await recipes.run('sandbox opportunity "As Jane" 5')

    async def moved() -> datetime | None:
        used = await recipes.last_used(jane.id)
        return used if used is not None and used > long_ago else None

    used = await eventually(moved)
    assert used.date() == datetime.now(UTC).date()


async def test_touch_used_only_moves_forward_and_changes_nothing_else(database: Database) -> None:
    """touch_used sets last_used_at only to a later time, and nothing else of the record (no
    version, no updated_at, no audit event)."""
    box = await runtime(database, JANE, "box", "jane@contoso.com")
    store = database.connections
    records = database.db["connections"]
    before = await records.find_one({"_id": ObjectId(box.id)})
    noon = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    assert await store.touch_used(connection_id=box.id, now=noon)
    assert not await store.touch_used(connection_id=box.id, now=noon - timedelta(minutes=1))
    after = await records.find_one({"_id": ObjectId(box.id)})
    assert before is not None and after is not None and after["last_used_at"] == noon
    assert {**after, "last_used_at": None} == {**before, "last_used_at": None}
    assert await store.touch_used(connection_id=box.id, now=noon + timedelta(minutes=1))
    assert not await store.touch_used(connection_id="not-an-id", now=noon)
    assert not await store.touch_used(connection_id=str(ObjectId()), now=noon)
