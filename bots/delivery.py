"""Delivering replies through the Bot Framework SDK: the one place that sends anything.

`TeamsReplies` is the `Replies` (bots/turn.py) of one turn: into its conversation, privately
into the person's 1:1 chat, or later, once the turn is over. `ProactiveSender` posts into a
conversation known only by its stored reference (a resumed recipe run). Both turn the
project's replies (a sentence, an Adaptive Card, another attachment) into SDK activities here
and nowhere else, so a faster reply path or the SDK's successor changes this module only.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from botbuilder.core import BotAdapter, CardFactory, MessageFactory, TurnContext
from botbuilder.schema import (
    Activity,
    ChannelAccount,
    ConversationParameters,
    ConversationReference,
)
from botbuilder.schema import Attachment as SdkAttachment
from botframework.connector.models import ErrorResponseException
from msrest.exceptions import ClientRequestError, HttpOperationError

import messages
from bots.identity import is_personal, owner_of, tenant_id_of
from bots.turn import Attachment, ConversationRef, Reply, Turn

log = logging.getLogger(__name__)


def activity_of(reply: Reply) -> Activity:
    """The SDK activity for a reply: a sentence, an Adaptive Card, or another attachment."""
    if isinstance(reply, str):
        return MessageFactory.text(reply)
    if isinstance(reply, Attachment):
        return MessageFactory.attachment(
            SdkAttachment(content_type=reply.content_type, content=reply.content)
        )
    return MessageFactory.attachment(CardFactory.adaptive_card(reply))


def reference_of(context: TurnContext) -> ConversationRef:
    """The serialized reference of the turn's conversation (stored with runs and sign-ins)."""
    return TurnContext.get_conversation_reference(context.activity).serialize()


def turn_of(context: TurnContext, proactive: ProactiveSender) -> Turn:
    """The project's view of an SDK turn."""
    activity = context.activity
    sender = activity.from_property
    return Turn(
        owner=owner_of(activity),
        personal=is_personal(activity),
        person_name=name.strip() if isinstance(name := getattr(sender, "name", None), str) else "",
        activity_key=f"{getattr(activity.conversation, 'id', '')}|{activity.id}",
        replies=TeamsReplies(context, proactive),
    )


class ProactiveSender:
    """Posts into conversations outside of a turn (continue_conversation)."""

    def __init__(self, adapter: BotAdapter, bot_app_id: str) -> None:
        self.adapter = adapter
        self.bot_app_id = bot_app_id

    async def post(self, reference: ConversationRef, reply: Reply) -> None:
        """Post `reply` into the conversation `reference` names."""

        async def send(context: TurnContext) -> None:
            await context.send_activity(activity_of(reply))

        conversation = ConversationReference().deserialize(reference)
        await self.adapter.continue_conversation(conversation, send, self.bot_app_id)

    async def continue_as(
        self,
        reference: ConversationRef,
        person: ChannelAccount | None,
        work: Callable[[Turn], Awaitable[None]],
    ) -> None:
        """Run `work` with a turn in the conversation `reference`, on behalf of `person` (a
        proactive turn has no sender of its own; a private chat needs to know who asked)."""

        async def run(context: TurnContext) -> None:
            if person is not None:
                context.activity.from_property = person
            await work(turn_of(context, self))

        conversation = ConversationReference().deserialize(reference)
        await self.adapter.continue_conversation(conversation, run, self.bot_app_id)


class TeamsReplies:
    """Replies of one Teams turn."""

    def __init__(self, context: TurnContext, proactive: ProactiveSender) -> None:
        self._context = context
        self._proactive = proactive

    def reference(self) -> ConversationRef:
        return reference_of(self._context)

    async def send(self, reply: Reply) -> None:
        await self._context.send_activity(activity_of(reply))

    async def send_privately(self, build: Callable[[ConversationRef], Awaitable[Reply]]) -> bool:
        """Open (or reuse) the sender's 1:1 chat and post what `build` makes for that chat
        (`build` gets the private chat's reference, so what it makes can refer to it).

        Returns:
            False when Teams refuses, typically because the app is not installed for that
            person.
        """
        activity = self._context.activity
        tenant_id = tenant_id_of(activity)
        sender = activity.from_property
        parameters = ConversationParameters(
            is_group=False,
            bot=activity.recipient,
            members=[ChannelAccount(id=sender.id, aad_object_id=sender.aad_object_id)],
            tenant_id=tenant_id or None,
            channel_data={"tenant": {"id": tenant_id}} if tenant_id else None,
        )

        async def post(private: TurnContext) -> None:
            await private.send_activity(activity_of(await build(reference_of(private))))

        try:
            await self._context.adapter.create_conversation(
                self._proactive.bot_app_id,
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

    async def continue_later(self, work: Callable[[Turn], Awaitable[None]]) -> None:
        """Run `work` in this conversation after the turn has ended (its context is gone by
        then), on behalf of the same person."""
        await self._proactive.continue_as(
            self.reference(), self._context.activity.from_property, work
        )
