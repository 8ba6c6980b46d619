"""The incoming activity as the bot reads it: only the fields it uses, from the request's JSON.

The endpoint (bots/endpoint.py) has already checked the body's shape, sizes and required fields;
this reads it once into small frozen records, without a general-purpose model round trip. A
stored conversation reference (the Bot Framework's `ConversationReference` JSON, kept with runs
and sign-ins) is read back into the same records, so a proactive turn looks like any other.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from bots.turn import ConversationRef

Json = dict[str, Any]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _member_ids(value: Any) -> tuple[str, ...]:
    """The ids of a `membersAdded` list (malformed members are skipped)."""
    if not isinstance(value, list):
        return ()
    return tuple(
        member["id"]
        for member in value
        if isinstance(member, dict) and isinstance(member.get("id"), str) and member["id"]
    )


@dataclass(frozen=True, slots=True)
class Account:
    """A person or the bot in a conversation (`from`, `recipient`, a reference's `user`/`bot`)."""

    id: str
    name: str = ""
    aad_object_id: str = ""

    @classmethod
    def of(cls, value: Any) -> Account:
        if not isinstance(value, dict):
            return cls("")
        return cls(
            _text(value.get("id")), _text(value.get("name")), _text(value.get("aadObjectId"))
        )

    def as_json(self) -> Json:
        body: Json = {"id": self.id}
        if self.name:
            body["name"] = self.name
        if self.aad_object_id:
            body["aadObjectId"] = self.aad_object_id
        return body


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    tenant_id: str = ""
    conversation_type: str = ""
    is_group: bool | None = None

    @classmethod
    def of(cls, value: Any) -> Conversation:
        if not isinstance(value, dict):
            return cls("")
        # The SDK's serialized references spell it `tenantID`; Teams sends `tenantId`.
        tenant = value.get("tenantId") or value.get("tenantID")
        is_group = value.get("isGroup")
        return cls(
            _text(value.get("id")),
            _text(tenant),
            _text(value.get("conversationType")),
            is_group if isinstance(is_group, bool) else None,
        )

    def as_json(self) -> Json:
        body: Json = {"id": self.id}
        if self.is_group is not None:
            body["isGroup"] = self.is_group
        if self.conversation_type:
            body["conversationType"] = self.conversation_type
        if self.tenant_id:
            body["tenantId"] = self.tenant_id
        return body


@dataclass(frozen=True, slots=True)
class IncomingActivity:
    """What the bot reads of an activity; a proactive turn's has type `event`."""

    type: str
    id: str
    channel_id: str
    service_url: str
    conversation: Conversation
    sender: Account
    recipient: Account
    name: str = ""
    text: str | None = None
    value: Any = None
    locale: str = ""
    channel_data: Json | None = None
    entities: tuple[Json, ...] = ()
    # conversationUpdate: the ids of the members added.
    members_added: tuple[str, ...] = ()
    # installationUpdate: "add", "remove", "add-upgrade", "remove-upgrade".
    action: str = ""

    @classmethod
    def from_json(cls, body: Json) -> IncomingActivity:
        """Read a checked request body (bots/endpoint.py checked types of ids and names)."""
        channel_data = body.get("channelData")
        entities = body.get("entities")
        text = body.get("text")
        return cls(
            type=_text(body.get("type")),
            id=_text(body.get("id")),
            channel_id=_text(body.get("channelId")),
            service_url=_text(body.get("serviceUrl")),
            conversation=Conversation.of(body.get("conversation")),
            sender=Account.of(body.get("from")),
            recipient=Account.of(body.get("recipient")),
            name=_text(body.get("name")),
            text=text if isinstance(text, str) else None,
            value=body.get("value"),
            locale=_text(body.get("locale")),
            channel_data=channel_data if isinstance(channel_data, dict) else None,
            entities=tuple(item for item in entities if isinstance(item, dict))
            if isinstance(entities, list)
            else (),
            members_added=_member_ids(body.get("membersAdded")),
            action=_text(body.get("action")),
        )

    @classmethod
    def continuing(cls, reference: ConversationRef, person: Account | None) -> IncomingActivity:
        """The activity of a proactive turn in the conversation `reference` names, on behalf of
        `person` (by default the reference's user)."""
        conversation = Conversation.of(reference.get("conversation"))
        channel_data = (
            {"tenant": {"id": conversation.tenant_id}} if conversation.tenant_id else None
        )
        return cls(
            type="event",
            id=str(uuid.uuid4()),
            channel_id=_text(reference.get("channelId")),
            service_url=_text(reference.get("serviceUrl")),
            conversation=conversation,
            sender=person if person is not None else Account.of(reference.get("user")),
            recipient=Account.of(reference.get("bot")),
            name="ContinueConversation",
            locale=_text(reference.get("locale")),
            channel_data=channel_data,
        )

    def reference(self) -> ConversationRef:
        """This conversation's reference, in the Bot Framework's `ConversationReference` JSON."""
        reference: ConversationRef = {
            "activityId": self.id,
            "user": self.sender.as_json(),
            "bot": self.recipient.as_json(),
            "conversation": self.conversation.as_json(),
            "channelId": self.channel_id,
            "serviceUrl": self.service_url,
        }
        if self.locale:
            reference["locale"] = self.locale
        return reference
