"""The welcome when the app is installed: once per install in a person's 1:1 chat, once ever
in a team or group chat.

The turn entry (bots/bot.py) reads the install facts from `installationUpdate` and
`conversationUpdate` activities into an `Installation`; the handler records the welcome first
(storage/welcomes.py) and sends it only when its record won, so the two announcements of one
install, Teams' retries and several processes send it once. A store that fails means no
welcome: better silent than twice.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from pymongo.errors import PyMongoError

import messages
from bots.turn import Turn
from cards.welcome import shared_welcome_card, welcome_card
from storage.protocols import WelcomeRecords

log = logging.getLogger(__name__)


class Change(enum.Enum):
    ADDED = "added"
    REMOVED = "removed"


@dataclass(frozen=True)
class Installation:
    """The app was added to or removed from a conversation (from either announcement)."""

    change: Change
    # Where: the conversation, and for a team its id (one welcome for all its channels).
    conversation_id: str
    team_id: str = ""


def place_of(turn: Turn, installation: Installation) -> tuple[str, str]:
    """The welcome's place key and its scope: a person's 1:1 chat, or a team or group chat."""
    tenant = turn.owner.tenant_id
    if turn.personal:
        return f"personal|{tenant}|{installation.conversation_id}", "personal"
    if installation.team_id:
        return f"team|{tenant}|{installation.team_id}", "team"
    return f"chat|{tenant}|{installation.conversation_id}", "chat"


@dataclass(frozen=True)
class WelcomeHandlers:
    welcomes: WelcomeRecords

    async def installed(self, turn: Turn, installation: Installation) -> None:
        place, scope = place_of(turn, installation)
        try:
            if installation.change is Change.REMOVED:
                # Only a 1:1 chat is welcomed again after a reinstall; a team or chat once ever.
                if turn.personal and await self.welcomes.end_generation(
                    place, removal=turn.activity_key
                ):
                    log.info(messages.LOG_INSTALL_REMOVED)
                return
            won = await self.welcomes.claim(
                place,
                tenant_id=turn.owner.tenant_id,
                conversation_id=installation.conversation_id,
                scope=scope,
            )
        except PyMongoError as error:  # expected when the store is down: said, no traceback
            log.warning(messages.LOG_WELCOME_STORE_FAILED, type(error).__name__)
            return
        if not won:
            return
        await turn.send_card(welcome_card() if turn.personal else shared_welcome_card())
        log.info(messages.LOG_WELCOMED, scope)
