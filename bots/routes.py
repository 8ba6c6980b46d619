"""The route table: every command word, card verb, invoke name, text matcher and conversation
event of the Teams surface, and the handler each one reaches, in one place.

Handlers have one of five typed signatures. Command words match case-insensitively on the
whole typed text and always win over text matchers, which are tried in the order listed for
any other text (a sign-in code first, then recipes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bots.connections_handlers import ConnectionsHandlers
from bots.recipe_handlers import RecipeHandlers
from bots.signin_handlers import VERIFY_STATE_INVOKE, SignInHandlers
from bots.turn import Turn
from bots.welcome_handlers import Installation, WelcomeHandlers
from cards import verbs
from cards.adaptive import Card

# Replies in the conversation.
CommandHandler = Callable[[Turn], Awaitable[None]]
# Returns what replaces the card: a new card, or a short text when the card should stay.
VerbHandler = Callable[[Turn, dict[str, Any]], Awaitable[Card | str]]
# Gets the invoke's value; the invoke itself is answered with a 200 by the turn entry.
InvokeHandler = Callable[[Turn, Any], Awaitable[None]]
# Returns True when it handled the text.
TextMatcher = Callable[[Turn, str], Awaitable[bool]]
# Gets the install facts the turn entry read from a conversation event (the app was added to
# or removed from the conversation); answers in the conversation, if at all.
EventHandler = Callable[[Turn, Installation], Awaitable[None]]

# Activity types of conversation events.
CONVERSATION_UPDATE = "conversationUpdate"
INSTALLATION_UPDATE = "installationUpdate"


@dataclass(frozen=True)
class Routes:
    commands: Mapping[str, CommandHandler]
    verbs: Mapping[str, VerbHandler]
    invokes: Mapping[str, InvokeHandler]
    text_matchers: tuple[TextMatcher, ...]
    # Activity type -> handler (both announcements of an install reach the same one).
    events: Mapping[str, EventHandler]

    def match_command(self, text: str) -> CommandHandler | None:
        return self.commands.get(text.strip().casefold())

    def match_verb(self, verb: str) -> VerbHandler | None:
        return self.verbs.get(verb)

    def match_invoke(self, name: str) -> InvokeHandler | None:
        return self.invokes.get(name)

    def match_event(self, activity_type: str) -> EventHandler | None:
        return self.events.get(activity_type)


def route_table(
    connections: ConnectionsHandlers,
    signin: SignInHandlers,
    recipes: RecipeHandlers,
    welcome: WelcomeHandlers,
) -> Routes:
    """The Teams surface's routes."""
    return Routes(
        commands={
            verbs.HELP: connections.help,
            verbs.PERSONAL_CONNECTIONS: connections.personal_connections,
            verbs.CONNECTIONS_ALIAS: connections.personal_connections,
        },
        verbs={
            verbs.SHOW_CONNECTIONS: connections.show_connections,
            verbs.PAGE: connections.page,
            verbs.DISCONNECT: connections.disconnect,
            verbs.DELETE: connections.delete,
            verbs.CONFIRM_DELETE: connections.confirm_delete,
            verbs.CANCEL_DELETE: connections.cancel_delete,
            verbs.RECONNECT: signin.reconnect,
        },
        invokes={VERIFY_STATE_INVOKE: signin.verify_state},
        text_matchers=(signin.typed_code, recipes.typed),
        events={CONVERSATION_UPDATE: welcome.installed, INSTALLATION_UPDATE: welcome.installed},
    )
