"""What handlers work with: who acts, where, and how to answer (no Bot Framework types).

A `Turn` is one activity seen by the project: the acting person (`owner`), whether it came from
their 1:1 chat, and `replies`, the small interface through which everything is said. The Bot
Framework implementation of `Replies` lives in bots/delivery.py; handlers never see the SDK.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import messages
from cards.adaptive import Card
from storage.models import Owner

# A serialized Bot Framework conversation reference: stored with runs and sign-ins, opaque here.
ConversationRef = dict[str, Any]


@dataclass(frozen=True)
class Attachment:
    """A card that is not an Adaptive Card (the Login card: a Bot Framework sign-in card)."""

    content_type: str
    content: dict[str, Any]


# What can be said: a sentence, an Adaptive Card, or another attachment.
Reply = str | Card | Attachment


class Replies(Protocol):
    """How a handler answers; bots/delivery.py implements it for Teams."""

    def reference(self) -> ConversationRef:
        """This conversation's reference, to post into it later."""
        ...

    async def send(self, reply: Reply) -> None:
        """Say `reply` in this conversation."""
        ...

    async def send_privately(self, build: Callable[[ConversationRef], Awaitable[Reply]]) -> bool:
        """Say what `build` makes (given the private chat's reference) in the acting person's
        1:1 chat; False when Teams refuses (the app is not installed for them)."""
        ...

    async def continue_later(self, work: Callable[[Turn], Awaitable[None]]) -> None:
        """Run `work` in this conversation after this turn has ended (for a late result)."""
        ...


@dataclass(frozen=True)
class Turn:
    owner: Owner
    personal: bool
    # The acting person's display name as Teams sent it ("" when it sent none).
    person_name: str
    # "conversation id|activity id": what makes a Teams retry of this activity recognisable.
    activity_key: str
    replies: Replies

    @property
    def greeting_name(self) -> str:
        """How a notice in a shared chat addresses the person."""
        return self.person_name or messages.GREETING_WITHOUT_NAME

    async def send_card(self, card: Card) -> None:
        await self.replies.send(card)

    async def send_text(self, text: str) -> None:
        await self.replies.send(text)
