"""The welcome when the app is installed (issue #15, item 1), over real HTTP.

Teams announces a personal install twice (`installationUpdate` and `conversationUpdate`),
retries activities and may deliver them to several processes: the person gets one welcome card
per install, with the Personal accounts button; a team or group chat gets one short notice, once
ever. Other members joining, removals and refused tenants get nothing.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from pymongo.errors import ServerSelectionTimeoutError

import messages
from cards import verbs
from cards.welcome import shared_welcome_card, welcome_card
from storage import protocols
from storage.welcomes import WelcomeStore
from tests import test_store_protocols
from tests.conftest import RunningBot, StartBot
from tests.support import activities
from tests.support.activities import BOT_ID, CHANNEL_CONVERSATION, JANE, OMAR
from tests.support.card_reading import action, choices, texts
from tests.support.card_schema import assert_valid_card
from tests.support.data import runtime

CARD = "application/vnd.microsoft.card.adaptive"


async def post_ok(bot: RunningBot, activity: dict[str, object]) -> None:
    status, _ = await bot.post(activity)
    assert status == 200


def welcomes_to(bot: RunningBot, conversation_id: str) -> list[dict[str, object]]:
    return [
        sent.card
        for sent in bot.connector.in_conversation(conversation_id)
        if sent.card is not None
    ]


async def test_personal_install_is_welcomed_once_with_the_personal_accounts_button(
    bot: RunningBot,
) -> None:
    """installationUpdate add: one card; the conversationUpdate of the same install and a retry
    of either activity: nothing more."""
    install = activities.installation_update(JANE, bot.service_url, "add")
    await post_ok(bot, install)

    [card] = welcomes_to(bot, JANE.personal_conversation)
    assert messages.WELCOME_TEXT in texts(card)
    assert messages.WELCOME_HELP in texts(card)
    button = action(card, messages.HELP_PERSONAL_ACCOUNTS)
    assert button["type"] == "Action.Execute" and button["verb"] == verbs.SHOW_CONNECTIONS
    assert button["fallback"]["data"] == {verbs.VERB_KEY: verbs.SHOW_CONNECTIONS}

    await post_ok(bot, activities.conversation_update(JANE, bot.service_url))
    await post_ok(bot, install)  # Teams retries the same activity
    await post_ok(bot, activities.installation_update(JANE, bot.service_url, "add-upgrade"))
    assert len(bot.connector.sent) == 1

    [record] = await bot.database.welcomes.collection.find({"kind": "welcome"}).to_list()
    assert record["tenant_id"] == JANE.tenant_id
    assert record["conversation_id"] == JANE.personal_conversation
    assert record["scope"] == "personal" and record["welcomed_at"] is not None


async def test_conversation_update_first_then_installation_update(bot: RunningBot) -> None:
    await post_ok(bot, activities.conversation_update(JANE, bot.service_url))
    await post_ok(bot, activities.installation_update(JANE, bot.service_url, "add"))
    assert len(welcomes_to(bot, JANE.personal_conversation)) == 1


async def test_concurrent_deliveries_welcome_exactly_once(bot: RunningBot) -> None:
    """Both announcements and their retries at once (several processes): one welcome."""
    install = activities.installation_update(JANE, bot.service_url, "add")
    joined = activities.conversation_update(JANE, bot.service_url)
    results = await asyncio.gather(*(bot.post(item) for item in [install, joined] * 4))
    assert [status for status, _ in results] == [200] * 8
    assert len(bot.connector.sent) == 1


async def test_reinstall_after_remove_is_welcomed_again(bot: RunningBot) -> None:
    url = bot.service_url
    await post_ok(bot, activities.installation_update(JANE, url, "add"))
    remove = activities.installation_update(JANE, url, "remove")
    await post_ok(bot, remove)
    assert len(bot.connector.sent) == 1  # a removal says nothing

    await post_ok(bot, activities.installation_update(JANE, url, "add"))
    await post_ok(bot, activities.conversation_update(JANE, url))
    assert len(welcomes_to(bot, JANE.personal_conversation)) == 2

    await post_ok(bot, remove)  # a retried removal does not end the new install
    await post_ok(bot, activities.conversation_update(JANE, url))
    assert len(bot.connector.sent) == 2


async def test_other_members_and_removals_get_nothing(bot: RunningBot) -> None:
    url = bot.service_url
    await post_ok(bot, activities.conversation_update(JANE, url, [OMAR.teams_id]))
    await post_ok(
        bot,
        activities.conversation_update(
            JANE, url, [OMAR.teams_id], kind="channel", conversation_id=CHANNEL_CONVERSATION
        ),
    )
    await post_ok(bot, activities.conversation_update(JANE, url, []))
    removed = activities.conversation_update(JANE, url, [])
    removed["membersRemoved"] = [{"id": BOT_ID}]
    await post_ok(bot, removed)
    await post_ok(bot, activities.installation_update(JANE, url, "remove"))
    await post_ok(bot, activities.installation_update(JANE, url, "remove-upgrade"))
    assert bot.connector.sent == []


async def test_team_install_posts_one_notice_in_the_channel(bot: RunningBot) -> None:
    """A team: one notice in the channel, once ever (its channels and a reinstall included),
    naming no one's connections."""
    url = bot.service_url
    await runtime(bot.database, JANE, "box", "jane@contoso.com")

    def installed(person: activities.Person, action: str = "add") -> dict[str, object]:
        return activities.installation_update(
            person, url, action, kind="channel", conversation_id=CHANNEL_CONVERSATION
        )

    await post_ok(bot, installed(JANE))

    [sent] = bot.connector.sent
    assert sent.conversation_id == CHANNEL_CONVERSATION
    assert sent.card is not None and messages.WELCOME_TEAM_TEXT in texts(sent.card)
    assert "jane@contoso.com" not in str(sent.activity)
    assert "actions" not in sent.card

    await post_ok(
        bot,
        activities.conversation_update(
            JANE, url, kind="channel", conversation_id=CHANNEL_CONVERSATION
        ),
    )
    await post_ok(bot, installed(OMAR))
    await post_ok(
        bot,
        activities.conversation_update(JANE, url, kind="channel", conversation_id="19:other"),
    )
    await post_ok(bot, installed(JANE, "remove"))
    await post_ok(bot, installed(JANE))
    assert len(bot.connector.sent) == 1


async def test_group_chat_is_welcomed_once(bot: RunningBot) -> None:
    chat = "19:chat@thread.v2"
    url = bot.service_url
    await post_ok(
        bot, activities.conversation_update(JANE, url, kind="groupChat", conversation_id=chat)
    )
    await post_ok(
        bot,
        activities.installation_update(OMAR, url, "add", kind="groupChat", conversation_id=chat),
    )
    [sent] = bot.connector.sent
    assert sent.conversation_id == "19:chat@thread.v2"
    assert sent.card is not None and messages.WELCOME_TEAM_TEXT in texts(sent.card)


async def test_refused_tenant_gets_no_welcome(start_bot: StartBot) -> None:
    bot = await start_bot(allowed_tenant_ids="tenant-fabrikam")
    await post_ok(bot, activities.installation_update(JANE, bot.service_url, "add"))
    await post_ok(bot, activities.conversation_update(JANE, bot.service_url))
    assert bot.connector.sent == []
    assert await bot.database.welcomes.collection.count_documents({}) == 0


async def test_store_failure_sends_nothing_and_answers_200(
    bot: RunningBot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Better silent than twice: no welcome when it cannot be recorded, and no traceback."""

    async def failing(*_: object, **__: object) -> bool:
        raise ServerSelectionTimeoutError("no server")

    monkeypatch.setattr(bot.database.welcomes, "claim", failing)
    caplog.set_level(logging.INFO)
    await post_ok(bot, activities.installation_update(JANE, bot.service_url, "add"))
    assert bot.connector.sent == []
    assert any(
        record.getMessage() == messages.LOG_WELCOME_STORE_FAILED % "ServerSelectionTimeoutError"
        for record in caplog.records
    )
    assert not [record for record in caplog.records if record.exc_info]


def test_cards_validate() -> None:
    assert_valid_card(welcome_card())
    assert_valid_card(shared_welcome_card())


async def test_the_button_opens_the_connections_list(bot: RunningBot) -> None:
    """Pressing Personal accounts (Action.Execute, and its Action.Submit fallback) opens the
    person's connections picklist."""
    await runtime(bot.database, JANE, "box", "jane@contoso.com")
    await post_ok(bot, activities.installation_update(JANE, bot.service_url, "add"))
    [card] = welcomes_to(bot, JANE.personal_conversation)
    button = action(card, messages.HELP_PERSONAL_ACCOUNTS)

    status, body = await bot.post(
        activities.card_action(JANE, bot.service_url, button["verb"], button["data"])
    )
    assert status == 200 and body["type"] == CARD
    assert_valid_card(body["value"])
    assert body["value"]["body"][0]["text"] == messages.CONNECTIONS_TITLE
    assert choices(body["value"]) == ["Box — jane@contoso.com (Connected)"]

    bot.connector.clear()
    await post_ok(bot, activities.card_submit(JANE, bot.service_url, button["fallback"]["data"]))
    [sent] = bot.connector.sent
    assert sent.card is not None and choices(sent.card) == ["Box — jane@contoso.com (Connected)"]


def test_the_welcome_store_implements_its_protocol() -> None:
    test_store_protocols.test_store_implements_its_protocol(protocols.WelcomeRecords, WelcomeStore)
