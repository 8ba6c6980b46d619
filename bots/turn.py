"""The per-turn view handlers work with: the context, who is acting, where, and how to reply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botbuilder.core import CardFactory, MessageFactory, TurnContext

from bots.identity import is_personal, owner_of
from storage.models import Owner

Card = dict[str, Any]


@dataclass(frozen=True)
class Turn:
    context: TurnContext
    owner: Owner
    personal: bool

    @classmethod
    def of(cls, context: TurnContext) -> Turn:
        activity = context.activity
        return cls(context=context, owner=owner_of(activity), personal=is_personal(activity))

    async def send_card(self, card: Card) -> None:
        await self.context.send_activity(MessageFactory.attachment(CardFactory.adaptive_card(card)))

    async def send_text(self, text: str) -> None:
        await self.context.send_activity(MessageFactory.text(text))
