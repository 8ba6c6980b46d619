"""The turn entry: from an incoming activity to the route table, and the invoke's answer.

It checks the tenant, bounds the turn's time, makes the project's `Turn` (bots/delivery.py) and
finds the handler in the route table (bots/routes.py): messages to command words and text
matchers, card actions to verbs, other invokes by name. Every invoke is answered here with a
200 (Teams shows "Unable to reach app" for a 501); the `adaptiveCard/action` answer is built as
the JSON Teams reads. Conversation events that say the app was added to or removed from the
conversation (`installationUpdate`, and `conversationUpdate` adding the bot itself) are read into
an `Installation` and go to the route table's event handler; other activity types are
acknowledged and otherwise ignored.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import messages
from bots.activity import IncomingActivity
from bots.connector import ConnectorError
from bots.delivery import ProactiveSender, turn_of
from bots.identity import command_text, mentions_bot, tenant_id_of
from bots.routes import CONVERSATION_UPDATE, INSTALLATION_UPDATE, Routes
from bots.turn import Turn
from bots.welcome_handlers import Change, Installation
from cards.adaptive import ADAPTIVE_CARD_CONTENT_TYPE
from cards.verbs import VERB_KEY
from settings import Settings

log = logging.getLogger(__name__)

ADAPTIVE_CARD_ACTION = "adaptiveCard/action"
MESSAGE = "message"
INVOKE = "invoke"
# How long a turn may take before the person is told to try again (Teams waits about 15 s for
# an invoke; the store and providers are given a few seconds, the reply the rest).
TURN_BUDGET_S = 4.0
# How long telling the person "try again" may take on top (so a dead connector costs at most
# TURN_BUDGET_S + TELL_BUDGET_S, never its own retries again and again).
TELL_BUDGET_S = 2.0
MESSAGE_CONTENT_TYPE = "application/vnd.microsoft.activity.message"
# Longer messages are answered without being read: no command or recipe is that long, and
# splitting a long text into words costs time every other person's turn waits for.
MAX_TEXT_CHARS = 4000
# installationUpdate actions: an install (or an upgrade of one), and an uninstall. An upgrade's
# `remove-upgrade` is no uninstall.
INSTALL_ACTIONS = frozenset({"add", "add-upgrade"})
UNINSTALL_ACTION = "remove"


@dataclass(frozen=True)
class InvokeAnswer:
    """The HTTP answer to an invoke: its status and JSON body (None: no body)."""

    status: int = 200
    body: dict[str, Any] | None = None


def card_action_response(reply: dict[str, Any] | str) -> InvokeAnswer:
    """The invoke answer that replaces the card (a card) or shows a short message (a str)."""
    content_type = MESSAGE_CONTENT_TYPE if isinstance(reply, str) else ADAPTIVE_CARD_CONTENT_TYPE
    return InvokeAnswer(body={"statusCode": 200, "type": content_type, "value": reply})


def _action_of(activity: IncomingActivity) -> tuple[str, dict[str, Any]]:
    """The verb and data of an `adaptiveCard/action` invoke; ("", {}) when malformed."""
    value = activity.value if isinstance(activity.value, dict) else {}
    action = value.get("action") if isinstance(value.get("action"), dict) else {}
    verb = action.get("verb")
    data = action.get("data")
    return (verb if isinstance(verb, str) else "", data if isinstance(data, dict) else {})


def _team_id_of(activity: IncomingActivity) -> str:
    team = (activity.channel_data or {}).get("team")
    team_id = team.get("id") if isinstance(team, dict) else None
    return team_id if isinstance(team_id, str) else ""


def installation_of(activity: IncomingActivity) -> Installation | None:
    """The install facts of a conversation event; None when it is not about the bot itself
    (another member added, a rename, an unknown action)."""
    if activity.type == INSTALLATION_UPDATE:
        if activity.action in INSTALL_ACTIONS:
            change = Change.ADDED
        elif activity.action == UNINSTALL_ACTION:
            change = Change.REMOVED
        else:
            return None
    elif activity.type == CONVERSATION_UPDATE:
        bot_id = activity.recipient.id
        if not bot_id or bot_id not in activity.members_added:
            return None
        change = Change.ADDED
    else:
        return None
    if not activity.conversation.id:
        return None
    return Installation(change, activity.conversation.id, _team_id_of(activity))


class RuntimeConnectionsBot:
    def __init__(self, *, settings: Settings, routes: Routes, proactive: ProactiveSender) -> None:
        self._settings = settings
        self._routes = routes
        self._proactive = proactive

    async def on_turn(self, activity: IncomingActivity) -> InvokeAnswer | None:
        """Handle one authenticated activity; an invoke's answer is returned, not sent."""
        turn = turn_of(activity, self._proactive)
        if not self._settings.tenant_allowed(tenant_id_of(activity)):
            log.info(messages.LOG_TENANT_REFUSED)
            if activity.type == MESSAGE:
                await tell_briefly(turn, messages.TENANT_NOT_ALLOWED)
            return self._answer(activity, messages.TENANT_NOT_ALLOWED)
        try:
            # A stalled store or provider must not hold a turn past Teams' patience.
            async with asyncio.timeout(TURN_BUDGET_S):
                if activity.type == MESSAGE:
                    await self.on_message(activity, turn)
                    return None
                if activity.type == INVOKE:
                    return await self.on_invoke(activity, turn)
                await self.on_event(activity, turn)
                return None
        except TimeoutError:
            log.warning(messages.LOG_TURN_OVER_BUDGET, activity.type, TURN_BUDGET_S)
        except ConnectorError as error:  # expected: the connector logged its host and status
            log.warning(messages.LOG_TURN_REPLY_FAILED, activity.type, error.status or "none")
        except Exception as error:  # the last resort: log without payloads, say so
            log.error(messages.LOG_TURN_ERROR, activity.type, exc_info=error)
        if activity.type == MESSAGE:
            await tell_briefly(turn, messages.TURN_FAILED)
        return self._answer(activity, messages.TURN_FAILED)

    @staticmethod
    def _answer(activity: IncomingActivity, text: str) -> InvokeAnswer | None:
        # An invoke's answer is the HTTP response itself: nothing is sent elsewhere.
        return card_action_response(text) if activity.type == INVOKE else None

    async def on_message(self, activity: IncomingActivity, turn: Turn) -> None:
        value = activity.value
        if isinstance(value, dict) and isinstance(value.get(VERB_KEY), str):
            await self._card_submit(turn, value)
            return
        if not turn.personal and not mentions_bot(activity):
            return  # in a team or group chat, only messages that @mention the bot are for it
        length = len(activity.text or "")
        if length > MAX_TEXT_CHARS:
            log.info(messages.LOG_MESSAGE_TOO_LONG, length, MAX_TEXT_CHARS)
            await turn.send_text(messages.MESSAGE_TOO_LONG.format(limit=MAX_TEXT_CHARS))
            return
        text = command_text(activity)
        handler = self._routes.match_command(text)
        if handler is not None:
            await handler(turn)
            return
        for matcher in self._routes.text_matchers:
            if await matcher(turn, text):
                return
        log.info(messages.LOG_UNMATCHED_TEXT, len(text))
        await turn.send_text(messages.DID_NOT_UNDERSTAND)

    async def _card_submit(self, turn: Turn, value: dict[str, Any]) -> None:
        """Action.Submit (the fallback of every Action.Execute): answer with a new message."""
        verb = value[VERB_KEY]
        handler = self._routes.match_verb(verb)
        if handler is None:
            log.info(messages.LOG_UNKNOWN_VERB, verb[:64])
            await turn.send_text(messages.CARD_ACTION_UNKNOWN)
            return
        data = {key: item for key, item in value.items() if key != VERB_KEY}
        reply = await handler(turn, data)
        if isinstance(reply, str):
            await turn.send_text(reply)
        else:
            await turn.send_card(reply)

    async def on_event(self, activity: IncomingActivity, turn: Turn) -> None:
        """A conversation event: to its handler when it is about the bot's installation."""
        handler = self._routes.match_event(activity.type)
        if handler is None:
            return
        installation = installation_of(activity)
        if installation is not None:
            await handler(turn, installation)

    async def on_invoke(self, activity: IncomingActivity, turn: Turn) -> InvokeAnswer:
        if activity.name != ADAPTIVE_CARD_ACTION:
            invoke_handler = self._routes.match_invoke(activity.name)
            if invoke_handler is None:
                log.info(messages.LOG_UNKNOWN_INVOKE, activity.name[:64])
                return InvokeAnswer()
            try:
                await invoke_handler(turn, activity.value)
            except ConnectorError as error:
                log.warning(messages.LOG_TURN_REPLY_FAILED, activity.type, error.status or "none")
            except Exception:
                log.exception(messages.LOG_TURN_ERROR, activity.type)
            return InvokeAnswer()
        verb, data = _action_of(activity)
        handler = self._routes.match_verb(verb)
        if handler is None:
            log.info(messages.LOG_UNKNOWN_VERB, verb[:64])
            return card_action_response(messages.CARD_ACTION_UNKNOWN)
        try:
            reply = await handler(turn, data)
        except ConnectorError as error:
            log.warning(messages.LOG_TURN_REPLY_FAILED, activity.type, error.status or "none")
            return card_action_response(messages.TURN_FAILED)
        except Exception:
            log.exception(messages.LOG_TURN_ERROR, activity.type)
            return card_action_response(messages.TURN_FAILED)
        return card_action_response(reply)


async def tell_briefly(turn: Turn, text: str) -> None:
    """Tell the person `text`, giving up after TELL_BUDGET_S: the reply path itself may be what
    failed (a connector that refuses or hangs), and its retries must not hold the request."""
    try:
        async with asyncio.timeout(TELL_BUDGET_S):
            await turn.send_text(text)
    except (ConnectorError, TimeoutError):  # said by the connector's log, or plainly late
        log.warning(messages.LOG_COULD_NOT_TELL)
    except Exception:  # the turn is over either way
        log.warning(messages.LOG_COULD_NOT_TELL, exc_info=True)
