"""Sign-in in Teams: sending Login cards, the Reconnect button, and verifying the code.

`LoginCardSender.send` is what the recipe handlers call ("this person, this parent connection, this
run to resume"): the Login card always goes to the person's 1:1 chat, with a notice in the
channel when the request came from one. Verification arrives as Teams' `signin/verifyState`
invoke or as the 6-digit code typed in the 1:1 chat.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import messages
from bots.card_data import chosen_connection, page_of
from bots.turn import Attachment, ConversationRef, Reply, Turn
from cards import verbs
from cards.connections import connections_picklist
from cards.notices import notice_answered_card
from cards.signin import login_card
from connections.service import ConnectionsService, Reconnect, ReconnectPlan
from oauth.signin import (
    SignInService,
    Verification,
    VerifyResult,
    looks_like_code,
)
from recipes.resume import RunResumer
from storage.models import Connection, Owner

log = logging.getLogger(__name__)

VERIFY_STATE_INVOKE = "signin/verifyState"


@dataclass(frozen=True)
class LoginCardSender:
    signin: SignInService

    async def send(
        self, turn: Turn, *, owner: Owner, parent: Connection, run_id: str | None = None
    ) -> bool:
        """Send `owner` a Login card for `parent`'s app in their 1:1 chat.

        Returns:
            False when the 1:1 chat could not be reached (the channel is told how to fix it).
        """
        provider = self.signin.provider_for(parent)
        app_name = provider.name if provider else parent.provider

        async def card_for(conversation: ConversationRef) -> Reply:
            # The sign-in remembers the chat its card is in: the code is checked there.
            url = await self.signin.start(
                owner=owner, parent=parent, conversation=conversation, run_id=run_id
            )
            card = login_card(app_name=app_name, start_url=url)
            return Attachment(content_type=card["contentType"], content=card["content"])

        if turn.personal:
            await turn.replies.send(await card_for(turn.replies.reference()))
            return True
        sent = await turn.replies.send_privately(card_for)
        notice = (
            messages.LOGIN_CARD_SENT_PRIVATELY.format(name=turn.greeting_name, app=app_name)
            if sent
            else messages.PRIVATE_CHAT_UNAVAILABLE.format(name=turn.greeting_name)
        )
        await turn.send_text(notice)
        return sent


@dataclass(frozen=True)
class SignInHandlers:
    signin: SignInService
    login_cards: LoginCardSender
    connections: ConnectionsService
    # Resumes or ends the recipe runs that waited for a sign-in.
    resumer: RunResumer | None = None

    async def reconnect(self, turn: Turn, data: dict[str, Any]) -> dict[str, Any] | str:
        if not turn.personal:
            return messages.PRIVATE_CHAT_ONLY
        page = page_of(data)
        chosen = chosen_connection(data)
        views = await self.connections.list_views(turn.owner)
        if chosen is None:
            return connections_picklist(views, page=page, problem=messages.CHOOSE_A_CONNECTION)
        plan = await self.connections.reconnect(
            turn.owner,
            chosen,
            can_sign_in=lambda parent: self.signin.provider_for(parent) is not None,
        )
        if data.get(verbs.FROM_NOTICE_KEY) is True and plan.outcome is not Reconnect.NOT_FOUND:
            return await self._answer_notice(turn, plan)
        if plan.outcome is Reconnect.NOT_FOUND:
            return connections_picklist(views, page=page, problem=messages.CONNECTION_NOT_FOUND)
        if plan.outcome is Reconnect.NOT_NEEDED:
            return connections_picklist(
                views, page=page, result=messages.RECONNECT_NOT_NEEDED.format(label=plan.label)
            )
        if plan.outcome is Reconnect.APP_NOT_CONFIGURED:
            problem = messages.RECONNECT_APP_NOT_CONFIGURED.format(
                label=plan.label, app=plan.app_name
            )
            return connections_picklist(views, page=page, problem=problem)
        if plan.outcome is Reconnect.NOT_POSSIBLE or plan.parent is None:
            return connections_picklist(
                views, page=page, problem=messages.RECONNECT_NOT_POSSIBLE.format(label=plan.label)
            )
        await self.login_cards.send(turn, owner=turn.owner, parent=plan.parent)
        return connections_picklist(
            views, page=page, result=messages.RECONNECT_SENT.format(app=plan.app_name)
        )

    async def _answer_notice(self, turn: Turn, plan: ReconnectPlan) -> dict[str, Any]:
        """Reconnect pressed on a break notice: the notice keeps naming the account and says
        what happened, instead of turning into the whole list."""
        if plan.outcome is Reconnect.READY and plan.parent is not None:
            await self.login_cards.send(turn, owner=turn.owner, parent=plan.parent)
            result = messages.RECONNECT_SENT.format(app=plan.app_name)
        elif plan.outcome is Reconnect.NOT_NEEDED:
            result = messages.RECONNECT_NOT_NEEDED.format(label=plan.label)
        elif plan.outcome is Reconnect.APP_NOT_CONFIGURED:
            result = messages.RECONNECT_APP_NOT_CONFIGURED.format(
                label=plan.label, app=plan.app_name
            )
        else:
            result = messages.RECONNECT_NOT_POSSIBLE.format(label=plan.label)
        return notice_answered_card(plan.label, result)

    async def verify_state(self, turn: Turn, value: Any) -> None:
        state = value.get("state") if isinstance(value, dict) else None
        if not isinstance(state, str):
            return
        if not turn.personal:
            # A code counts only in the person's own 1:1 chat, like a typed one.
            await turn.send_text(messages.SIGNIN_CODE_PRIVATE_CHAT_ONLY)
            return
        result = await self.signin.verify(owner=turn.owner, code=state.strip())
        await self._tell(turn, result)

    async def typed_code(self, turn: Turn, text: str) -> bool:
        if not turn.personal or not looks_like_code(text):
            return False
        result = await self.signin.verify(owner=turn.owner, code=text)
        if result.outcome is Verification.NOTHING_PENDING:
            return False
        await self._tell(turn, result)
        return True

    async def _tell(self, turn: Turn, result: VerifyResult) -> None:
        if result.outcome is Verification.CONNECTED and result.connection is not None:
            account = result.connection.account_label
            await turn.send_text(
                messages.SIGNIN_CONNECTED.format(app=result.app_name, account=account)
            )
            if self.resumer is not None and result.connection.parent_id is not None:
                await self.resumer.after_sign_in(turn.owner, result.connection.parent_id)
        elif result.outcome is Verification.ALREADY_USED and result.login is not None:
            account = result.login.account.display_name if result.login.account else ""
            await turn.send_text(
                messages.SIGNIN_ALREADY_USED.format(app=result.app_name, account=account)
            )
        elif result.outcome is Verification.WRONG_CODE:
            await turn.send_text(messages.SIGNIN_WRONG_CODE)
            if self.resumer is not None:
                await self.resumer.abandon(turn.owner)
        elif result.outcome is Verification.CANCELLED:
            await turn.send_text(messages.SIGNIN_CANCELLED)
            if self.resumer is not None:
                await self.resumer.abandon(turn.owner)
