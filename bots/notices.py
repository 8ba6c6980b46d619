"""Telling people in Teams that a connection broke: the break notice in their 1:1 chat.

The connection's `reach` is the conversation reference its sign-in came from (bots/signin
_handlers.py stores it with the sign-in); it names the Teams service, the bot and the person,
which is all it takes to open (or reuse) their 1:1 chat, wherever the sign-in happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bots.delivery import ProactiveSender
from bots.turn import ConversationRef, Reply
from cards.notices import break_notice_card
from connections.notices import Told
from connections.views import BreakNotice
from storage.models import Owner


@dataclass(frozen=True)
class TeamsNotices:
    proactive: ProactiveSender

    async def tell(self, owner: Owner, reach: dict[str, Any], notice: BreakNotice) -> Told:
        """Post the notice card in the owner's 1:1 chat with the bot."""
        user = reach.get("user")
        user_id = owner.teams_user_id or (user.get("id") if isinstance(user, dict) else "")
        if not user_id or not reach.get("serviceUrl") or not reach.get("bot"):
            return Told.NO_CHAT
        member: dict[str, Any] = {"id": user_id}
        if owner.aad_object_id:
            member["aadObjectId"] = owner.aad_object_id

        async def card(_: ConversationRef) -> Reply:
            return break_notice_card(notice)

        told = await self.proactive.post_privately(reach, member, owner.tenant_id, card)
        return Told.TOLD if told else Told.REFUSED
