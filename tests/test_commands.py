"""Typed commands over real HTTP: help, personal_connections and its alias, 1:1 and channels."""

from __future__ import annotations

import pytest

import messages
from tests.conftest import RunningBot
from tests.support import activities
from tests.support.activities import CHANNEL_CONVERSATION, JANE, OMAR
from tests.support.card_schema import assert_valid_card
from tests.support.data import runtime


def choice_titles(card: dict) -> list[str]:
    for element in card["body"]:
        if element.get("type") == "Input.ChoiceSet":
            return [choice["title"] for choice in element["choices"]]
    return []


@pytest.mark.parametrize(
    "typed", ["personal_connections", "  Personal_Connections  ", "CONNECTIONS", "connections"]
)
async def test_personal_connections_lists_only_my_runtime_connections(
    bot: RunningBot, typed: str
) -> None:
    """The command and its alias, any case, spaces ignored, list the sender's connections only."""
    await runtime(bot.database, JANE, "salesforce", "jane@contoso.com")
    await runtime(bot.database, OMAR, "box", "omar@contoso.com")

    status, _ = await bot.post(activities.message(JANE, bot.service_url, typed))

    assert status == 200
    [reply] = bot.connector.in_conversation(JANE.personal_conversation)
    assert reply.card is not None
    assert_valid_card(reply.card)
    assert choice_titles(reply.card) == ["Salesforce — jane@contoso.com (Connected)"]
    assert "admin@" not in str(reply.card)  # parents never appear in a person's list


async def test_empty_list_says_where_connections_come_from(bot: RunningBot) -> None:
    """With no connections the card says they appear when a recipe first asks to sign in."""
    await bot.post(activities.message(JANE, bot.service_url, "personal_connections"))

    [reply] = bot.connector.sent
    assert reply.card is not None
    assert messages.CONNECTIONS_EMPTY in str(reply.card)
    assert "actions" not in reply.card


async def test_help_card_has_personal_accounts_button(bot: RunningBot) -> None:
    """`help` answers with a help card whose Personal accounts button opens the list."""
    await runtime(bot.database, JANE, "box", "jane@box.example")
    await bot.post(activities.message(JANE, bot.service_url, "help"))

    [reply] = bot.connector.sent
    assert reply.card is not None
    assert_valid_card(reply.card)
    [button] = reply.card["actions"]
    assert button["title"] == "Personal accounts"

    status, body = await bot.post(
        activities.card_action(JANE, bot.service_url, button["verb"], button["data"])
    )
    assert status == 200
    assert body["type"] == "application/vnd.microsoft.card.adaptive"
    assert choice_titles(body["value"]) == ["Box — jane@box.example (Connected)"]


async def test_unknown_text_gets_a_hint(bot: RunningBot) -> None:
    """Anything else gets a friendly "I didn't understand" that points to help."""
    await bot.post(activities.message(JANE, bot.service_url, "make me a sandwich"))

    [reply] = bot.connector.sent
    assert reply.text == messages.DID_NOT_UNDERSTAND
    assert "help" in reply.text


async def test_mention_in_channel_sends_list_privately_with_notice(bot: RunningBot) -> None:
    """An @mention in a channel: the list goes to the 1:1 chat, a notice stays in the channel."""
    await runtime(bot.database, JANE, "salesforce", "jane@contoso.com")

    status, _ = await bot.post(
        activities.message(
            JANE,
            bot.service_url,
            "personal_connections",
            kind="channel",
            mention=True,
            conversation_id=CHANNEL_CONVERSATION,
        )
    )

    assert status == 200
    [created] = bot.connector.created_conversations
    assert [member["id"] for member in created["members"]] == [JANE.teams_id]
    assert created["channelData"]["tenant"]["id"] == JANE.tenant_id
    [private] = bot.connector.in_conversation(f"a:private-{JANE.teams_id}")
    assert choice_titles(private.card) == ["Salesforce — jane@contoso.com (Connected)"]
    [notice] = bot.connector.in_conversation(CHANNEL_CONVERSATION)
    assert notice.card is None
    assert "private chat" in notice.text
    assert "jane@contoso.com" not in notice.text


async def test_mention_in_group_chat_when_app_not_installed_explains_how(bot: RunningBot) -> None:
    """If the 1:1 chat can't be opened, the notice says how to install the app; nothing leaks."""
    await runtime(bot.database, JANE, "salesforce", "jane@contoso.com")
    bot.connector.uninstalled_users.add(JANE.teams_id)

    await bot.post(
        activities.message(
            JANE,
            bot.service_url,
            "connections",
            kind="groupChat",
            mention=True,
            conversation_id="19:group-chat",
        )
    )

    [notice] = bot.connector.sent
    assert notice.conversation_id == "19:group-chat"
    assert "Install me" in notice.text
    assert "jane@contoso.com" not in str(notice.activity)


async def test_channel_message_without_mention_is_ignored(bot: RunningBot) -> None:
    """In a channel, only messages that @mention the bot are for it."""
    status, _ = await bot.post(
        activities.message(
            JANE, bot.service_url, "connections", kind="channel", conversation_id="19:c"
        )
    )
    assert status == 200
    assert bot.connector.sent == []


async def test_help_by_mention_in_channel_answers_there(bot: RunningBot) -> None:
    """`help` holds nothing private, so it is answered in the channel itself."""
    await bot.post(
        activities.message(
            JANE, bot.service_url, "help", kind="channel", mention=True, conversation_id="19:c"
        )
    )
    [reply] = bot.connector.sent
    assert reply.conversation_id == "19:c"
    assert reply.card is not None and reply.card["body"][0]["text"] == messages.HELP_TITLE


async def test_foreign_tenant_is_refused_politely_and_changes_nothing(
    start_bot: object,
) -> None:
    """A tenant outside ALLOWED_TENANT_IDS gets a refusal; its card actions change nothing."""
    bot = await start_bot(allowed_tenant_ids="tenant-contoso")  # type: ignore[operator]
    outsider = activities.Person("29:eve", "aad-eve", "Eve", tenant_id="tenant-fabrikam")
    connection = await runtime(bot.database, outsider, "box", "eve@fabrikam.example")

    await bot.post(activities.message(outsider, bot.service_url, "personal_connections"))
    status, body = await bot.post(
        activities.card_action(
            outsider, bot.service_url, "disconnect", {"connection_id": connection.id}
        )
    )

    [reply] = bot.connector.sent
    assert reply.text == messages.TENANT_NOT_ALLOWED
    assert status == 200 and body["value"] == messages.TENANT_NOT_ALLOWED
    stored = await bot.database.connections.get(connection.id)
    assert stored is not None and stored.status.value == "connected"
    assert await bot.database.audit.for_connection(connection.id) == []
