"""The turn entry: the Bot Framework activity handler, from an SDK turn to the route table.

It checks the tenant, bounds the turn's time, makes the project's `Turn` (bots/delivery.py) and
finds the handler in the route table (bots/routes.py): messages to command words and text
matchers, card actions to verbs, other invokes by name. Every invoke is answered here with a
200 (Teams shows "Unable to reach app" for a 501), and the `adaptiveCard/action` response is an
msrest model, which is what the adapter can serialize.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from botbuilder.core import ActivityHandler, TurnContext
from botbuilder.schema import Activity, ActivityTypes, InvokeResponse
from msrest.serialization import Model

import messages
from bots.delivery import ProactiveSender, turn_of
from bots.identity import command_text, mentions_bot, tenant_id_of
from bots.routes import Routes
from bots.turn import Turn
from cards.adaptive import ADAPTIVE_CARD_CONTENT_TYPE
from cards.verbs import VERB_KEY
from settings import Settings

log = logging.getLogger(__name__)

ADAPTIVE_CARD_ACTION = "adaptiveCard/action"
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


class CardActionResponse(Model):
    """The `adaptiveCard/action` response body. The SDK's AdaptiveCardInvokeResponse types
    `value` as a dict, which cannot carry the text of a message response."""

    _attribute_map = {  # noqa: RUF012 - msrest reads this class attribute
        "status_code": {"key": "statusCode", "type": "int"},
        "type": {"key": "type", "type": "str"},
        "value": {"key": "value", "type": "object"},
    }

    def __init__(self, *, status_code: int, type: str, value: Any) -> None:
        super().__init__()
        self.status_code = status_code
        self.type = type
        self.value = value


def card_action_response(reply: dict[str, Any] | str) -> InvokeResponse:
    """The invoke response that replaces the card (a card) or shows a short message (a str)."""
    content_type = MESSAGE_CONTENT_TYPE if isinstance(reply, str) else ADAPTIVE_CARD_CONTENT_TYPE
    return InvokeResponse(
        status=200, body=CardActionResponse(status_code=200, type=content_type, value=reply)
    )


def _action_of(activity: Activity) -> tuple[str, dict[str, Any]]:
    """The verb and data of an `adaptiveCard/action` invoke; ("", {}) when malformed."""
    value = activity.value if isinstance(activity.value, dict) else {}
    action = value.get("action") if isinstance(value.get("action"), dict) else {}
    verb = action.get("verb")
    data = action.get("data")
    return (verb if isinstance(verb, str) else "", data if isinstance(data, dict) else {})


class RuntimeConnectionsBot(ActivityHandler):
    def __init__(self, *, settings: Settings, routes: Routes, proactive: ProactiveSender) -> None:
        self._settings = settings
        self._routes = routes
        self._proactive = proactive

    async def on_turn(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        if not self._settings.tenant_allowed(tenant_id_of(activity)):
            log.info(messages.LOG_TENANT_REFUSED)
            await self._refuse(turn_context)
            return
        try:
            # A stalled store or provider must not hold a turn past Teams' patience.
            async with asyncio.timeout(TURN_BUDGET_S):
                await super().on_turn(turn_context)
        except TimeoutError:
            log.warning(messages.LOG_TURN_OVER_BUDGET, activity.type, TURN_BUDGET_S)
            await self._try_again(turn_context)

    async def _try_again(self, context: TurnContext) -> None:
        activity = context.activity
        if activity.type == ActivityTypes.invoke:
            # The invoke's answer is the HTTP response itself: nothing is sent elsewhere.
            await self._send_invoke_response(context, card_action_response(messages.TURN_FAILED))
        elif activity.type == ActivityTypes.message:
            await tell_briefly(context, messages.TURN_FAILED)

    async def _refuse(self, context: TurnContext) -> None:
        activity = context.activity
        if activity.type == ActivityTypes.message:
            await context.send_activity(messages.TENANT_NOT_ALLOWED)
        elif activity.type == ActivityTypes.invoke:
            await self._send_invoke_response(
                context, card_action_response(messages.TENANT_NOT_ALLOWED)
            )

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        turn = turn_of(turn_context, self._proactive)
        value = activity.value
        if isinstance(value, dict) and isinstance(value.get(VERB_KEY), str):
            await self._card_submit(turn, value)
            return
        if not turn.personal and not mentions_bot(activity):
            return  # in a team or group chat, only messages that @mention the bot are for it
        length = len(activity.text) if isinstance(activity.text, str) else 0
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

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        activity = turn_context.activity
        if activity.name != ADAPTIVE_CARD_ACTION:
            invoke_handler = self._routes.match_invoke(activity.name or "")
            if invoke_handler is None:
                log.info(messages.LOG_UNKNOWN_INVOKE, (activity.name or "")[:64])
                return InvokeResponse(status=200)
            try:
                await invoke_handler(turn_of(turn_context, self._proactive), activity.value)
            except Exception:
                log.exception(messages.LOG_TURN_ERROR, activity.type)
            return InvokeResponse(status=200)
        verb, data = _action_of(activity)
        handler = self._routes.match_verb(verb)
        if handler is None:
            log.info(messages.LOG_UNKNOWN_VERB, verb[:64])
            return card_action_response(messages.CARD_ACTION_UNKNOWN)
        try:
            reply = await handler(turn_of(turn_context, self._proactive), data)
        except Exception:
            log.exception(messages.LOG_TURN_ERROR, activity.type)
            return card_action_response(messages.TURN_FAILED)
        return card_action_response(reply)

    @staticmethod
    async def _send_invoke_response(context: TurnContext, response: InvokeResponse) -> None:
        await context.send_activity(Activity(type=ActivityTypes.invoke_response, value=response))


async def tell_briefly(context: TurnContext, text: str) -> None:
    """Tell the person `text`, giving up after TELL_BUDGET_S: the reply path itself may be what
    failed (a connector that refuses or hangs), and its retries must not hold the request."""
    try:
        async with asyncio.timeout(TELL_BUDGET_S):
            await context.send_activity(text)
    except Exception:  # TimeoutError included: the turn is over either way
        log.warning(messages.LOG_COULD_NOT_TELL, exc_info=True)


async def on_turn_error(context: TurnContext, error: Exception) -> None:
    """The adapter's last resort: log without payloads and tell the person something went wrong."""
    log.error(messages.LOG_TURN_ERROR, context.activity.type, exc_info=error)
    if context.activity.type == ActivityTypes.message:
        await tell_briefly(context, messages.TURN_FAILED)
