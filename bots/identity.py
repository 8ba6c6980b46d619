"""Who sent an activity, from which tenant, in which kind of conversation, and what they typed.

Teams and Entra ids are opaque strings. A person is (tenant id, Entra object id); when a channel
sends no object id (e.g. a local emulator), the channel's user id stands in, prefixed so it can
never collide with a real object id.
"""

from __future__ import annotations

import re
from typing import Any

from botbuilder.schema import Activity

from storage.models import Owner

_AT_TAG = re.compile(r"<at>.*?</at>", re.IGNORECASE | re.DOTALL)
_SPACES = re.compile(r"\s+")


def tenant_id_of(activity: Activity) -> str:
    channel_data: Any = activity.channel_data
    if isinstance(channel_data, dict):
        tenant = channel_data.get("tenant")
        if isinstance(tenant, dict) and isinstance(tenant.get("id"), str) and tenant["id"]:
            return str(tenant["id"])
    conversation = activity.conversation
    return str(conversation.tenant_id) if conversation and conversation.tenant_id else ""


def owner_of(activity: Activity) -> Owner:
    sender = activity.from_property
    user_id = str(sender.id) if sender and sender.id else ""
    object_id = str(sender.aad_object_id) if sender and sender.aad_object_id else ""
    return Owner(
        tenant_id=tenant_id_of(activity),
        aad_object_id=object_id or f"channel-user:{user_id}",
        teams_user_id=user_id,
        name=str(sender.name) if sender and sender.name else "",
    )


def is_personal(activity: Activity) -> bool:
    """True in a 1:1 chat with the bot (Teams says `personal`; other channels say not group)."""
    conversation = activity.conversation
    if conversation is None:
        return False
    kind = conversation.conversation_type
    if kind:
        return str(kind) == "personal"
    return not conversation.is_group


def _mentions_of_bot(activity: Activity) -> list[dict[str, Any]]:
    """The properties of the well-formed mention entities that name the bot (the recipient).

    Entities come from the request body: any of them may lack `mentioned`, carry it as a
    string, or have no type at all; those are not mentions of the bot.
    """
    recipient_id = activity.recipient.id if activity.recipient else None
    if not recipient_id:
        return []
    found = []
    for entity in activity.entities or []:
        properties = getattr(entity, "additional_properties", None)
        if getattr(entity, "type", None) != "mention" or not isinstance(properties, dict):
            continue
        mentioned = properties.get("mentioned")
        if isinstance(mentioned, dict) and mentioned.get("id") == recipient_id:
            found.append(properties)
    return found


def mentions_bot(activity: Activity) -> bool:
    return bool(_mentions_of_bot(activity))


def command_text(activity: Activity) -> str:
    """The typed text without the bot's @mention, trimmed, with runs of spaces folded.

    The mention is removed as plain text (the SDK's `remove_mention_text` turns it into a
    regular expression and fails on malformed entities).
    """
    text = activity.text if isinstance(activity.text, str) else ""
    for properties in _mentions_of_bot(activity):
        mention = properties.get("text")
        if isinstance(mention, str) and mention:
            text = text.replace(mention, " ")
    text = _AT_TAG.sub(" ", text)
    return _SPACES.sub(" ", text).strip()
