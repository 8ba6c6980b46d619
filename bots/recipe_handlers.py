"""Recipes in Teams: matching typed text to a recipe, running it, and answering.

A run that takes longer than a moment is acknowledged at once and its result posted into the
same conversation when it is done, so Teams' patience is never spent. A Teams retry of the same
activity never runs the action twice (the runner keys runs by activity). When the run needs the
person's own connection, the Login card goes to their 1:1 chat.

Run results are plain data (`recipes.results.RunResult`), rendered here as cards with
`cards.recipes.run_result_card`. `conversation_reporter` is the Teams side of the resumer's
`report` callback (`recipes.resume.RunResumer`): it posts a resumed or ended run's result into
the conversation the run came from.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from botbuilder.core import BotAdapter, CardFactory, MessageFactory, TurnContext
from botbuilder.schema import ConversationReference

import background
import messages
from bots.router import Router
from bots.signin_handlers import LoginCardSender
from bots.turn import Turn
from cards.recipes import run_result_card
from recipes.matching import Match, MatchProblem, match
from recipes.model import RecipeBook
from recipes.results import Outcome, RunResult
from recipes.resume import Report
from recipes.runner import RecipeRunner, RunLeftToSweeper, RunRequest

log = logging.getLogger(__name__)

ACKNOWLEDGE_AFTER_S = 2.0


@dataclass
class RecipeHandlers:
    book: RecipeBook
    runner: RecipeRunner
    login_cards: LoginCardSender
    bot_app_id: str
    acknowledge_after_s: float = ACKNOWLEDGE_AFTER_S
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    def register(self, router: Router) -> None:
        router.text(self.typed)

    def help_entries(self) -> list[tuple[str, str]]:
        return [(recipe.usage(), recipe.description or recipe.name) for recipe in self.book]

    async def typed(self, turn: Turn, text: str) -> bool:
        found = match(self.book, text)
        if found is None:
            return False
        if isinstance(found, MatchProblem):
            await turn.send_text(found.message)
            return True
        assert isinstance(found, Match)
        await self._run(turn, found)
        return True

    async def _run(self, turn: Turn, found: Match) -> None:
        activity = turn.context.activity
        request = RunRequest(
            recipe=found.recipe,
            arguments=found.arguments,
            invoker=turn.owner,
            activity_key=f"{activity.conversation.id}|{activity.id}",
            conversation=TurnContext.get_conversation_reference(activity).serialize(),
        )
        task = asyncio.create_task(self.runner.run(request))
        done, _ = await asyncio.wait({task}, timeout=self.acknowledge_after_s)
        if done and not isinstance(task.exception(), RunLeftToSweeper):
            await self._answer(turn.context, task.result())
            return
        await turn.send_text(messages.RECIPE_WORKING.format(recipe=found.recipe.name))
        reference = TurnContext.get_conversation_reference(activity)
        adapter = turn.context.adapter
        owner = turn.owner

        async def post_later() -> None:
            try:
                result = await task
            except RunLeftToSweeper:
                return  # the sweeper ends the run and tells the person, once

            async def answer(context: TurnContext) -> None:
                # The proactive turn has no sender; the Login card needs to know who asked.
                context.activity.from_property = activity.from_property
                await self._answer(context, result, owner=owner)

            try:
                await adapter.continue_conversation(reference, answer, self.bot_app_id)
            except Exception:  # the result is recorded; only telling the person failed
                log.exception(messages.LOG_COULD_NOT_TELL)

        later = asyncio.create_task(post_later())
        self._background.add(later)
        later.add_done_callback(self._background.discard)

    async def _answer(self, context: TurnContext, result: RunResult, owner: Any = None) -> None:
        if result.outcome is Outcome.DUPLICATE:
            return
        card = run_result_card(result)
        if card is not None:
            await context.send_activity(MessageFactory.attachment(CardFactory.adaptive_card(card)))
        if result.outcome is Outcome.SIGN_IN_NEEDED and result.sign_in_parent is not None:
            await self.login_cards.send(
                context,
                owner=owner or Turn.of(context).owner,
                parent=result.sign_in_parent,
                run_id=result.run_id,
            )

    async def close(self) -> None:
        await background.stop(*self._background)


def conversation_reporter(adapter: BotAdapter, bot_app_id: str) -> Report:
    """The Teams side of `RunResumer.report`: posts a run's result (its card, else its
    sentence), or a sentence, into the conversation whose serialized reference is given, as a
    proactive message through `adapter`."""

    async def report(conversation: dict[str, Any], outcome: RunResult | str) -> None:
        reference = ConversationReference().deserialize(conversation)
        card = None if isinstance(outcome, str) else run_result_card(outcome)
        text = outcome if isinstance(outcome, str) else outcome.message

        async def send(context: TurnContext) -> None:
            if card is not None:
                await context.send_activity(
                    MessageFactory.attachment(CardFactory.adaptive_card(card))
                )
            elif text:
                await context.send_activity(MessageFactory.text(text))

        await adapter.continue_conversation(reference, send, bot_app_id)

    return report
