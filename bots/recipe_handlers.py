"""Recipes in Teams: matching typed text to a recipe, running it, and answering.

A run that takes longer than a moment is acknowledged at once and its result posted into the
same conversation when it is done, so Teams' patience is never spent. A Teams retry of the same
activity never runs the action twice (the runner keys runs by activity). When the run needs the
person's own connection, the Login card goes to their 1:1 chat.

Run results are plain data (`recipes.results.RunResult`), rendered here as cards with
`cards.recipes.run_result_card`. `result_reporter` is the Teams side of the resumer's
`report` callback (`recipes.resume.RunResumer`): it posts a resumed or ended run's result into
the conversation the run came from.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import background
import messages
from bots.signin_handlers import LoginCardSender
from bots.turn import ConversationRef, Reply, Turn
from cards.recipes import run_result_card
from recipes.matching import Match, MatchProblem, match
from recipes.model import RecipeBook
from recipes.results import Outcome, RunResult
from recipes.resume import Report
from recipes.runner import RecipeRunner, RunLeftToSweeper, RunRequest
from storage.models import Owner

log = logging.getLogger(__name__)

ACKNOWLEDGE_AFTER_S = 2.0
# Posts a reply into a conversation known by its reference (bots/delivery.ProactiveSender.post).
Post = Callable[[ConversationRef, Reply], Awaitable[None]]


@dataclass
class RecipeHandlers:
    book: RecipeBook
    runner: RecipeRunner
    login_cards: LoginCardSender
    acknowledge_after_s: float = ACKNOWLEDGE_AFTER_S
    _background: set[asyncio.Task[None]] = field(default_factory=set)

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
        request = RunRequest(
            recipe=found.recipe,
            arguments=found.arguments,
            invoker=turn.owner,
            activity_key=turn.activity_key,
            conversation=turn.replies.reference(),
        )
        task = asyncio.create_task(self.runner.run(request))
        done, _ = await asyncio.wait({task}, timeout=self.acknowledge_after_s)
        if done and not isinstance(task.exception(), RunLeftToSweeper):
            await self._answer(turn, task.result(), owner=turn.owner)
            return
        await turn.send_text(messages.RECIPE_WORKING.format(recipe=found.recipe.name))
        owner = turn.owner

        async def post_later() -> None:
            try:
                result = await task
            except RunLeftToSweeper:
                return  # the sweeper ends the run and tells the person, once

            async def answer(later: Turn) -> None:
                await self._answer(later, result, owner=owner)

            try:
                await turn.replies.continue_later(answer)
            except Exception:  # the result is recorded; only telling the person failed
                log.exception(messages.LOG_COULD_NOT_TELL)

        later = asyncio.create_task(post_later())
        self._background.add(later)
        later.add_done_callback(self._background.discard)

    async def _answer(self, turn: Turn, result: RunResult, *, owner: Owner) -> None:
        if result.outcome is Outcome.DUPLICATE:
            return
        card = run_result_card(result)
        if card is not None:
            await turn.send_card(card)
        if result.outcome is Outcome.SIGN_IN_NEEDED and result.sign_in_parent is not None:
            # A later turn is proactive: the person is the one who asked, not whoever Teams
            # names in it.
            await self.login_cards.send(
                turn, owner=owner, parent=result.sign_in_parent, run_id=result.run_id
            )

    async def close(self) -> None:
        await background.stop(*self._background)


def result_reporter(post: Post) -> Report:
    """The Teams side of `RunResumer.report`: a run's result card (else its sentence), or a
    sentence, posted into the conversation the run came from."""

    async def report(conversation: ConversationRef, outcome: RunResult | str) -> None:
        if isinstance(outcome, str):
            await post(conversation, outcome)
            return
        card = run_result_card(outcome)
        if card is not None:
            await post(conversation, card)
        elif outcome.message:
            await post(conversation, outcome.message)

    return report
