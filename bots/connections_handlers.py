"""Handlers for `help`, `personal_connections` and the connection card's buttons.

Command handlers reply in the conversation. Verb handlers return what replaces the card: a new
card, or a short text when the card should stay as it is. Every verb acts only for the person
who pressed the button, on their own connections, and only in their 1:1 chat.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import messages
from bots.card_data import chosen_connection, page_of
from bots.turn import Turn
from cards.adaptive import Card
from cards.connections import confirm_delete, connections_picklist
from cards.help import help_card
from connections.service import ChangeReport, ChangeResult, ConnectionsService
from connections.views import ConnectionView
from storage.models import Owner

VerbReply = Card | str


def private_chat_notice(turn: Turn, *, sent: bool) -> str:
    """What stays in a shared chat when the answer went to the person's 1:1 chat."""
    template = messages.SENT_TO_PRIVATE_CHAT if sent else messages.PRIVATE_CHAT_UNAVAILABLE
    return template.format(name=turn.greeting_name)


@dataclass(frozen=True)
class ConnectionsHandlers:
    service: ConnectionsService
    # (usage, description) of each recipe, for the help card.
    recipes_help: tuple[tuple[str, str], ...] = ()

    async def help(self, turn: Turn) -> None:
        # No recipes configured: the card says so rather than promising recipes.
        await turn.send_card(help_card(self.recipes_help))

    async def personal_connections(self, turn: Turn) -> None:
        card = await self._picklist(turn)
        if turn.personal:
            await turn.send_card(card)
            return
        sent = await self._send_privately(turn, card)
        await turn.send_text(private_chat_notice(turn, sent=sent))

    async def show_connections(self, turn: Turn, data: dict[str, Any]) -> VerbReply:
        if turn.personal:
            return await self._picklist(turn)
        sent = await self._send_privately(turn, await self._picklist(turn))
        return private_chat_notice(turn, sent=sent)

    async def page(self, turn: Turn, data: dict[str, Any]) -> VerbReply:
        if not turn.personal:
            return messages.PRIVATE_CHAT_ONLY
        return await self._picklist(turn, page=page_of(data))

    async def disconnect(self, turn: Turn, data: dict[str, Any]) -> VerbReply:
        return await self._act(turn, data, self.service.disconnect)

    async def delete(self, turn: Turn, data: dict[str, Any]) -> VerbReply:
        if not turn.personal:
            return messages.PRIVATE_CHAT_ONLY
        chosen = chosen_connection(data)
        if chosen is None:
            return await self._picklist(
                turn, page=page_of(data), problem=messages.CHOOSE_A_CONNECTION
            )
        view = await self.service.view(turn.owner, chosen)
        if view is None:
            return await self._picklist(
                turn, page=page_of(data), problem=messages.CONNECTION_NOT_FOUND
            )
        return confirm_delete(view, page=page_of(data))

    async def confirm_delete(self, turn: Turn, data: dict[str, Any]) -> VerbReply:
        return await self._act(turn, data, self.service.delete)

    async def cancel_delete(self, turn: Turn, data: dict[str, Any]) -> VerbReply:
        if not turn.personal:
            return messages.PRIVATE_CHAT_ONLY
        return await self._picklist(turn, page=page_of(data), result=messages.DELETE_CANCELLED)

    async def _act(
        self,
        turn: Turn,
        data: dict[str, Any],
        action: Callable[[Owner, str], Awaitable[ChangeReport]],
    ) -> VerbReply:
        """Apply `action` to the chosen connection and answer with the updated list."""
        if not turn.personal:
            return messages.PRIVATE_CHAT_ONLY
        chosen = chosen_connection(data)
        if chosen is None:
            return await self._picklist(
                turn, page=page_of(data), problem=messages.CHOOSE_A_CONNECTION
            )
        outcome = await action(turn.owner, chosen)
        # The updated list comes with the outcome when the action read it (no second read).
        if outcome.result is ChangeResult.NOT_FOUND:
            return await self._picklist(
                turn, page=page_of(data), problem=outcome.message, views=outcome.views
            )
        return await self._picklist(
            turn, page=page_of(data), result=outcome.message, views=outcome.views
        )

    async def _picklist(
        self,
        turn: Turn,
        *,
        page: int = 0,
        result: str | None = None,
        problem: str | None = None,
        views: Sequence[ConnectionView] | None = None,
    ) -> Card:
        if views is None:
            views = await self.service.list_views(turn.owner)
        return connections_picklist(
            views,
            page=page,
            result=result,
            problem=problem,
            has_recipes=bool(self.recipes_help),
        )

    @staticmethod
    async def _send_privately(turn: Turn, card: Card) -> bool:
        async def build(_: Any) -> Card:
            return card

        return await turn.replies.send_privately(build)
