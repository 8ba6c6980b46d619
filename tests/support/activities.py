"""Factories for Teams-shaped activities, as Teams (and the Agents Playground) send them."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

BOT_ID = "28:bot-app"
BOT_NAME = "Runtime connections"
_ids = itertools.count(1)


@dataclass(frozen=True)
class Person:
    teams_id: str
    aad_object_id: str
    name: str
    tenant_id: str = "tenant-contoso"

    @property
    def personal_conversation(self) -> str:
        return f"a:personal-{self.teams_id}"


JANE = Person("29:jane", "aad-jane", "Jane Doe")
OMAR = Person("29:omar", "aad-omar", "Omar Ali")
MALLORY = Person("29:mallory", "aad-mallory", "Mallory", tenant_id="tenant-fabrikam")

CHANNEL_CONVERSATION = "19:general@thread.tacv2;messageid=1"


def _base(
    person: Person, service_url: str, *, kind: str, conversation_id: str | None
) -> dict[str, Any]:
    conversation: dict[str, Any] = {
        "id": conversation_id or person.personal_conversation,
        "conversationType": kind,
        "tenantId": person.tenant_id,
    }
    if kind != "personal":
        conversation["isGroup"] = True
    channel_data: dict[str, Any] = {"tenant": {"id": person.tenant_id}}
    if kind == "channel":
        channel_data |= {"team": {"id": "19:team"}, "channel": {"id": "19:general"}}
    return {
        "id": f"activity-in-{next(_ids)}",
        "channelId": "msteams",
        "serviceUrl": service_url,
        "timestamp": "2026-11-22T10:00:00.000Z",
        "from": {"id": person.teams_id, "aadObjectId": person.aad_object_id, "name": person.name},
        "recipient": {"id": BOT_ID, "name": BOT_NAME},
        "conversation": conversation,
        "channelData": channel_data,
        "locale": "en-US",
    }


def message(
    person: Person,
    service_url: str,
    text: str,
    *,
    kind: str = "personal",
    mention: bool = False,
    conversation_id: str | None = None,
) -> dict[str, Any]:
    activity = _base(person, service_url, kind=kind, conversation_id=conversation_id)
    activity |= {"type": "message", "text": text, "textFormat": "plain"}
    if mention:
        mention_text = f"<at>{BOT_NAME}</at>"
        activity["text"] = f"{mention_text} {text}"
        activity["entities"] = [
            {
                "type": "mention",
                "text": mention_text,
                "mentioned": {"id": BOT_ID, "name": BOT_NAME},
            }
        ]
    return activity


def card_submit(
    person: Person, service_url: str, value: dict[str, Any], *, kind: str = "personal"
) -> dict[str, Any]:
    """What Action.Submit (the fallback of Action.Execute) sends: a message with a value."""
    activity = _base(person, service_url, kind=kind, conversation_id=None)
    activity |= {"type": "message", "value": value, "replyToId": "activity-card-1"}
    return activity


def card_action(
    person: Person,
    service_url: str,
    verb: str,
    data: dict[str, Any] | None = None,
    *,
    kind: str = "personal",
) -> dict[str, Any]:
    """What Action.Execute sends: an `adaptiveCard/action` invoke with verb and data."""
    activity = _base(person, service_url, kind=kind, conversation_id=None)
    activity |= {
        "type": "invoke",
        "name": "adaptiveCard/action",
        "value": {
            "action": {"type": "Action.Execute", "verb": verb, "data": data or {}},
            "trigger": "manual",
        },
        "replyToId": "activity-card-1",
    }
    return activity


def invoke(person: Person, service_url: str, name: str, value: Any = None) -> dict[str, Any]:
    activity = _base(person, service_url, kind="personal", conversation_id=None)
    activity |= {"type": "invoke", "name": name, "value": value}
    return activity


def installation_update(
    person: Person,
    service_url: str,
    action: str = "add",
    *,
    kind: str = "personal",
    conversation_id: str | None = None,
) -> dict[str, Any]:
    """What Teams sends when `person` installs (`add`) or removes (`remove`) the app."""
    activity = _base(person, service_url, kind=kind, conversation_id=conversation_id)
    activity |= {"type": "installationUpdate", "action": action}
    return activity


def conversation_update(
    person: Person,
    service_url: str,
    members_added: list[str] | None = None,
    *,
    kind: str = "personal",
    conversation_id: str | None = None,
) -> dict[str, Any]:
    """A conversationUpdate adding members (by default the bot itself, as on an install)."""
    activity = _base(person, service_url, kind=kind, conversation_id=conversation_id)
    added = [BOT_ID] if members_added is None else members_added
    activity |= {"type": "conversationUpdate", "membersAdded": [{"id": item} for item in added]}
    return activity
