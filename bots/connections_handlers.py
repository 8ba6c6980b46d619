"""Handlers for `help`, `personal_connections` and the connection card's buttons.

Command handlers reply in the conversation. Verb handlers return what replaces the card: a new
card, or a short text when the card should stay as it is. Every verb acts only for the person
who pressed the button, on their own connections, and only in their 1:1 chat.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import messages
from bots.private_chat import private_chat_notice, send_card_privately
from bots.router import Router
from bots.turn import Card, Turn
from cards import verbs
from cards.connections import confirm_delete, connections_picklist
from cards.help import help_card
from connections.service import ConnectionsService, Outcome, Result
from storage.models import Owner

VerbReply = Card | str


# No one has this many pages; a bigger number is only clamped to the last page anyway.
_MAX_PAGE = 1_000_000


def _page(data: dict[str, Any]) -> int:
    """The page a card action asks for: a whole number from the card's data, else 0.

    The data comes from the request body, so it may be any JSON: a float such as 1e999 (inf)
    or NaN, a huge or negative number, a string, null, a list or an object.
    """
    value = data.get(verbs.PAGE_KEY, 0)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0
    try:
        page = int(value)
    except (ValueError, OverflowError):  # NaN, inf, "x", or more digits than int() reads
        return 0
    return min(max(page, 0), _MAX_PAGE)


def _chosen_connection(data: dict[str, Any]) -> str | None:
    value = data.get(verbs.CONNECTION_INPUT)
    return value.strip() if isinstance(value, str) and value.strip() else None


@dataclass(frozen=True)
class ConnectionsHandlers:
    service: ConnectionsService
    bot_app_id: str
    # (usage, description) of each recipe, for the help card.
    recipes_help: tuple[tuple[str, str], ...] = ()

    def register(self, router: Router) -> None:
        router.command(verbs.HELP, handler=self.help)
        router.command(
            verbs.PERSONAL_CONNECTIONS, verbs.CONNECTIONS_ALIAS, handler=self.personal_connections
        )
        router.verb(verbs.SHOW_CONNECTIONS, self.show_connections)
        router.verb(verbs.PAGE, self.page)
        router.verb(verbs.DISCONNECT, self.disconnect)
        router.verb(verbs.DELETE, self.delete)
        router.verb(verbs.CONFIRM_DELETE, self.confirm_delete)
        router.verb(verbs.CANCEL_DELETE, self.cancel_delete)

    async def help(self, turn: Turn) -> None:
        await turn.send_card(help_card(self.recipes_help))

    async def personal_connections(self, turn: Turn) -> None:
        card = await self._picklist(turn)
        if turn.personal:
            await turn.send_card(card)
            return
        sent = await send_card_privately(turn.context, card, bot_app_id=self.bot_app_id)
        await turn.send_text(private_chat_notice(turn.context, sent=sent))

    async def show_connections(self, turn: Turn, data: dict[str, Any]) -> VerbReply:
        if turn.personal:
            return await self._picklist(turn)
        card = await self._picklist(turn)
        sent = await send_card_privately(turn.context, card, bot_app_id=self.bot_app_id)
        return private_chat_notice(turn.context, sent=sent)

    async def page(self, turn: Turn, data: dict[str, Any]) -> VerbReply:
        if not turn.personal:
            return messages.PRIVATE_CHAT_ONLY
        return await self._picklist(turn, page=_page(data))

    async def disconnect(self, turn: Turn, data: dict[str, Any]) -> VerbReply:
        return await self._act(turn, data, self.service.disconnect)

    async def delete(self, turn: Turn, data: dict[str, Any]) -> VerbReply:
        if not turn.personal:
            return messages.PRIVATE_CHAT_ONLY
        chosen = _chosen_connection(data)
        if chosen is None:
            return await self._picklist(
                turn, page=_page(data), problem=messages.CHOOSE_A_CONNECTION
            )
        view = await self.service.view(turn.owner, chosen)
        if view is None:
            return await self._picklist(
                turn, page=_page(data), problem=messages.CONNECTION_NOT_FOUND
            )
        return confirm_delete(view, page=_page(data))

    async def confirm_delete(self, turn: Turn, data: dict[str, Any]) -> VerbReply:
        return await self._act(turn, data, self.service.delete)

    async def cancel_delete(self, turn: Turn, data: dict[str, Any]) -> VerbReply:
        if not turn.personal:
            return messages.PRIVATE_CHAT_ONLY
        return await self._picklist(turn, page=_page(data), result=messages.DELETE_CANCELLED)

    async def _act(
        self,
        turn: Turn,
        data: dict[str, Any],
        action: Callable[[Owner, str], Awaitable[Outcome]],
    ) -> VerbReply:
        """Apply `action` to the chosen connection and answer with the updated list."""
        if not turn.personal:
            return messages.PRIVATE_CHAT_ONLY
        chosen = _chosen_connection(data)
        if chosen is None:
            return await self._picklist(
                turn, page=_page(data), problem=messages.CHOOSE_A_CONNECTION
            )
        outcome = await action(turn.owner, chosen)
        if outcome.result is Result.NOT_FOUND:
            return await self._picklist(turn, page=_page(data), problem=outcome.message)
        return await self._picklist(turn, page=_page(data), result=outcome.message)

    async def _picklist(
        self,
        turn: Turn,
        *,
        page: int = 0,
        result: str | None = None,
        problem: str | None = None,
    ) -> Card:
        views = await self.service.list_views(turn.owner)
        return connections_picklist(views, page=page, result=result, problem=problem)
