"""Delivering replies: the one place that sends anything into a Teams conversation.

`TeamsReplies` is the `Replies` (bots/turn.py) of one turn: into its conversation, privately
into the person's 1:1 chat, or later, once the turn is over. `ProactiveSender` posts into a
conversation known only by its stored reference (a resumed recipe run). Both turn the
project's replies (a sentence, an Adaptive Card, another attachment) into the Bot Framework's
activity JSON here and nowhere else, and post it through the connector (bots/connector.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import messages
from bots.activity import Account, IncomingActivity
from bots.connector import Connector, ConnectorError
from bots.identity import is_personal, owner_of, tenant_id_of
from bots.turn import Attachment, ConversationRef, Reply, Turn
from cards.adaptive import ADAPTIVE_CARD_CONTENT_TYPE

log = logging.getLogger(__name__)

Json = dict[str, Any]

# Replies are answered to in the thread of these activities (others start a new message).
_REPLIED_TO = frozenset({"message", "invoke"})


def activity_json(reply: Reply) -> Json:
    """The message activity for a reply: a sentence, an Adaptive Card, or another attachment."""
    if isinstance(reply, str):
        return {"type": "message", "text": reply, "inputHint": "acceptingInput"}
    if isinstance(reply, Attachment):
        attachment = {"contentType": reply.content_type, "content": reply.content}
    else:
        attachment = {"contentType": ADAPTIVE_CARD_CONTENT_TYPE, "content": reply}
    return {
        "type": "message",
        "attachmentLayout": "list",
        "attachments": [attachment],
        "inputHint": "acceptingInput",
    }


def addressed(body: Json, reference: ConversationRef, reply_to_id: str = "") -> Json:
    """`body` from the bot to the reference's user, in its conversation (as the connector
    expects every activity to say)."""
    body["channelId"] = reference.get("channelId", "")
    body["serviceUrl"] = reference.get("serviceUrl", "")
    body["conversation"] = reference.get("conversation", {})
    body["from"] = reference.get("bot", {})
    body["recipient"] = reference.get("user", {})
    if reference.get("locale"):
        body["locale"] = reference["locale"]
    if reply_to_id:
        body["replyToId"] = reply_to_id
    return body


def turn_of(activity: IncomingActivity, proactive: ProactiveSender) -> Turn:
    """The project's view of an activity."""
    return Turn(
        owner=owner_of(activity),
        personal=is_personal(activity),
        person_name=activity.sender.name.strip(),
        activity_key=f"{activity.conversation.id}|{activity.id}",
        replies=TeamsReplies(activity, proactive),
    )


class ProactiveSender:
    """Posts into conversations, in a turn or outside of one, through the connector."""

    def __init__(self, connector: Connector) -> None:
        self.connector = connector

    async def post(self, reference: ConversationRef, reply: Reply, reply_to_id: str = "") -> None:
        """Post `reply` into the conversation `reference` names.

        Raises:
            ConnectorError: the connector refused it or did not answer.
        """
        conversation = reference.get("conversation")
        conversation_id = conversation.get("id") if isinstance(conversation, dict) else None
        service_url = reference.get("serviceUrl")
        if not isinstance(conversation_id, str) or not isinstance(service_url, str):
            raise ConnectorError(None, "the reference names no conversation")
        body = addressed(activity_json(reply), reference, reply_to_id)
        await self.connector.send(service_url, conversation_id, body, reply_to_id)

    async def post_privately(
        self,
        reference: ConversationRef,
        member: Json,
        tenant_id: str,
        build: Callable[[ConversationRef], Awaitable[Reply]],
    ) -> bool:
        """Open (or reuse) the 1:1 chat between the bot of `reference` and `member` (on the
        reference's service) and post what `build` makes for it.

        Returns:
            False when Teams refuses, typically because the app is not installed for that
            person.
        """
        parameters: Json = {"isGroup": False, "bot": reference.get("bot", {}), "members": [member]}
        if tenant_id:
            parameters["tenantId"] = tenant_id
            parameters["channelData"] = {"tenant": {"id": tenant_id}}
        try:
            created = await self.connector.create_conversation(
                str(reference.get("serviceUrl", "")), parameters
            )
            conversation_id = created.get("id")
            if not isinstance(conversation_id, str) or not conversation_id:
                raise ConnectorError(None, "no conversation id in the answer")
            conversation: Json = {
                "id": conversation_id,
                "isGroup": False,
                "conversationType": "personal",
            }
            if tenant_id:
                conversation["tenantId"] = tenant_id
            private: ConversationRef = {
                **reference,
                "user": reference.get("user") or member,
                "activityId": str(created.get("activityId") or ""),
                "conversation": conversation,
            }
            await self.post(private, await build(private))
        except ConnectorError as error:
            log.info(messages.LOG_PRIVATE_CHAT_FAILED, error.status or "no answer")
            return False
        return True

    async def continue_as(
        self,
        reference: ConversationRef,
        person: Account | None,
        work: Callable[[Turn], Awaitable[None]],
    ) -> None:
        """Run `work` with a turn in the conversation `reference`, on behalf of `person` (a
        proactive turn has no sender of its own; a private chat needs to know who asked)."""
        await work(turn_of(IncomingActivity.continuing(reference, person), self))


class TeamsReplies:
    """Replies of one Teams turn."""

    def __init__(self, activity: IncomingActivity, proactive: ProactiveSender) -> None:
        self._activity = activity
        self._proactive = proactive

    def reference(self) -> ConversationRef:
        return self._activity.reference()

    async def send(self, reply: Reply) -> None:
        activity = self._activity
        reply_to = activity.id if activity.type in _REPLIED_TO else ""
        await self._proactive.post(activity.reference(), reply, reply_to)

    async def send_privately(self, build: Callable[[ConversationRef], Awaitable[Reply]]) -> bool:
        """Open (or reuse) the sender's 1:1 chat and post what `build` makes for that chat
        (`build` gets the private chat's reference, so what it makes can refer to it).

        Returns:
            False when Teams refuses, typically because the app is not installed for that
            person.
        """
        activity = self._activity
        member: Json = {"id": activity.sender.id}
        if activity.sender.aad_object_id:
            member["aadObjectId"] = activity.sender.aad_object_id
        return await self._proactive.post_privately(
            activity.reference(), member, tenant_id_of(activity), build
        )

    async def continue_later(self, work: Callable[[Turn], Awaitable[None]]) -> None:
        """Run `work` in this conversation after the turn has ended, on behalf of the same
        person."""
        await self._proactive.continue_as(self.reference(), self._activity.sender, work)
