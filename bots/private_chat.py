"""Sending something only the acting person may see into their 1:1 chat with the bot.

Used when a command about personal connections comes from a channel or group chat: the private
content goes to the person's 1:1 chat (proactively) and only a short notice stays in public.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from botbuilder.core import CardFactory, MessageFactory, TurnContext
from botbuilder.schema import Attachment, ChannelAccount, ConversationParameters
from botframework.connector.models import ErrorResponseException
from msrest.exceptions import ClientRequestError, HttpOperationError

import messages
from bots.identity import tenant_id_of
from bots.turn import Card

log = logging.getLogger(__name__)


async def send_card_privately(context: TurnContext, card: Card, *, bot_app_id: str) -> bool:
    """Open (or reuse) the sender's 1:1 chat and post the Adaptive Card there.

    Returns:
        False when Teams refuses, typically because the app is not installed for that person.
    """

    async def build(private_context: TurnContext) -> Attachment:
        return CardFactory.adaptive_card(card)

    return await send_attachment_privately(context, build, bot_app_id=bot_app_id)


async def send_attachment_privately(
    context: TurnContext,
    build: Callable[[TurnContext], Awaitable[Attachment]],
    *,
    bot_app_id: str,
) -> bool:
    """Open (or reuse) the sender's 1:1 chat and post what `build` makes for that chat.

    `build` gets the private chat's turn context, so what it makes can refer to that chat.

    Returns:
        False when Teams refuses, typically because the app is not installed for that person.
    """
    activity = context.activity
    tenant_id = tenant_id_of(activity)
    sender = activity.from_property
    parameters = ConversationParameters(
        is_group=False,
        bot=activity.recipient,
        members=[ChannelAccount(id=sender.id, aad_object_id=sender.aad_object_id)],
        tenant_id=tenant_id or None,
        channel_data={"tenant": {"id": tenant_id}} if tenant_id else None,
    )

    async def post(private_context: TurnContext) -> None:
        await private_context.send_activity(MessageFactory.attachment(await build(private_context)))

    try:
        await context.adapter.create_conversation(
            bot_app_id,
            post,
            parameters,
            activity.channel_id,
            activity.service_url,
            None,
        )
    except (ErrorResponseException, HttpOperationError, ClientRequestError) as error:
        log.info(messages.LOG_PRIVATE_CHAT_FAILED, type(error).__name__)
        return False
    return True


def private_chat_notice(context: TurnContext, *, sent: bool) -> str:
    name = (context.activity.from_property.name or "").strip() or "Hi"
    template = messages.SENT_TO_PRIVATE_CHAT if sent else messages.PRIVATE_CHAT_UNAVAILABLE
    return template.format(name=name)
