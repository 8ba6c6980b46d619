"""Who sent an activity, from which tenant, in which kind of conversation, and what they typed.

Teams and Entra ids are opaque strings. A person is (tenant id, Entra object id); when a channel
sends no object id (e.g. a local emulator), the channel's user id stands in, prefixed so it can
never collide with a real object id.
"""

from __future__ import annotations

import re
from typing import Any

from bots.activity import IncomingActivity
from storage.models import Owner

# Ids in another surface's namespace (a Slack person is `slack:<id>`, slack/identity.py): no
# Teams activity carries them, so one that does is kept apart, never taken for that person.
_OTHER_SURFACES = ("slack:",)


def _own(value: str) -> str:
    return f"teams:{value}" if value.startswith(_OTHER_SURFACES) else value


_AT_TAG = re.compile(r"<at>.*?</at>", re.IGNORECASE | re.DOTALL)
_SPACES = re.compile(r"\s+")


def tenant_id_of(activity: IncomingActivity) -> str:
    channel_data = activity.channel_data
    if channel_data is not None:
        tenant = channel_data.get("tenant")
        if isinstance(tenant, dict) and isinstance(tenant.get("id"), str) and tenant["id"]:
            return _own(str(tenant["id"]))
    return _own(activity.conversation.tenant_id)


def owner_of(activity: IncomingActivity) -> Owner:
    sender = activity.sender
    return Owner(
        tenant_id=tenant_id_of(activity),
        aad_object_id=_own(sender.aad_object_id) or f"channel-user:{sender.id}",
        teams_user_id=sender.id,
        name=sender.name,
    )


def is_personal(activity: IncomingActivity) -> bool:
    """True in a 1:1 chat with the bot (Teams says `personal`; other channels say not group)."""
    conversation = activity.conversation
    if conversation.conversation_type:
        return conversation.conversation_type == "personal"
    return not conversation.is_group


def _mentions_of_bot(activity: IncomingActivity) -> list[dict[str, Any]]:
    """The properties of the well-formed mention entities that name the bot (the recipient).

    Entities come from the request body: any of them may lack `mentioned`, carry it as a
    string, or have no type at all; those are not mentions of the bot.
    """
    recipient_id = activity.recipient.id
    if not recipient_id:
        return []
    found = []
    for entity in activity.entities:
        if entity.get("type") != "mention":
            continue
        mentioned = entity.get("mentioned")
        if isinstance(mentioned, dict) and mentioned.get("id") == recipient_id:
            found.append(entity)
    return found


def mentions_bot(activity: IncomingActivity) -> bool:
    return bool(_mentions_of_bot(activity))


def command_text(activity: IncomingActivity) -> str:
    """The typed text without the bot's @mention, trimmed, with runs of spaces folded.

    The mention is removed as plain text (the SDK's `remove_mention_text` turns it into a
    regular expression and fails on malformed entities).
    """
    text = activity.text or ""
    for properties in _mentions_of_bot(activity):
        mention = properties.get("text")
        if isinstance(mention, str) and mention:
            text = text.replace(mention, " ")
    text = _AT_TAG.sub(" ", text)
    return _SPACES.sub(" ", text).strip()
