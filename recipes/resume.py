"""Runs that waited for a sign-in: resumed after it, or ended when it is cancelled or expires;
and runs stranded by a stopped process: taken over once.

Resuming happens in whichever process verified the sign-in, and its result goes to the
conversation the run came from through `report`, a callback of the surface (in Teams a
proactive message, see `bots.recipe_handlers.result_reporter`), so the person never
retypes the command. Every waiting run is claimed with a conditional update before anything
happens to it, so it resumes or ends exactly once, however many times a code is repeated and
however many processes sweep.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import messages
from recipes.model import RecipeBook
from recipes.results import RunResult
from recipes.runner import RecipeRunner, RunLeftToSweeper
from storage.leases import LeaseStore
from storage.models import Owner
from storage.recipe_runs import RUNNING, RecipeRun, RecipeRunStore

log = logging.getLogger(__name__)

SWEEPER_LEASE = "signin-expiry-sweeper"

# Post this result, or this sentence, to the conversation whose serialized reference is given.
Report: TypeAlias = Callable[[dict[str, Any], RunResult | str], Awaitable[None]]


@dataclass
class RunResumer:
    runner: RecipeRunner
    runs: RecipeRunStore
    book: RecipeBook
    report: Report
    leases: LeaseStore
    # More clean-up that must run once per round across processes (expired sign-in grants,
    # revocations and audit events left to finish).
    also_sweep: tuple[Callable[[], Awaitable[int]], ...] = ()
    holder: str = field(default_factory=lambda: uuid.uuid4().hex)

    async def after_sign_in(self, owner: Owner, parent_id: str) -> int:
        """Resume the person's runs waiting on that parent, oldest first. Returns how many."""
        resumed = 0
        for waiting in await self.runs.waiting_for(owner=owner, parent_id=parent_id):
            run = await self.runs.claim_waiting(
                waiting.id, to=RUNNING, lease_until=self.runner.lease_until()
            )
            if run is None:
                continue  # another delivery of the code got it first
            recipe = self.book.get(run.recipe)
            if recipe is None:
                await self.runner.end_waiting(
                    run, status="failed", message=messages.RECIPE_RECIPE_GONE
                )
                await self.report(run.conversation, messages.RECIPE_RECIPE_GONE)
                continue
            try:
                result = await self.runner.resume(run, recipe)
            except RunLeftToSweeper:
                continue  # claimed and leased: the sweeper takes it over when the lease ends
            await self.report(run.conversation, result)
            resumed += 1
        return resumed

    async def abandon(self, owner: Owner) -> int:
        """End the person's waiting runs after a cancelled or failed sign-in."""
        ended = 0
        for waiting in await self.runs.waiting_for(owner=owner):
            run = await self.runs.claim_waiting(waiting.id, to="cancelled")
            if run is None:
                continue
            message = messages.RECIPE_SIGN_IN_ABANDONED.format(recipe=self._name(run))
            await self.runner.end_waiting(run, status="cancelled", message=message)
            await self.report(run.conversation, message)
            ended += 1
        return ended

    async def sweep_once(self, *, lease_for: timedelta = timedelta(seconds=25)) -> int:
        """End the runs whose sign-in was not completed in time; one process per round."""
        now = datetime.now(UTC)
        if not await self.leases.take(
            SWEEPER_LEASE, holder=self.holder, until=now + lease_for, now=now
        ):
            return 0
        for job in self.also_sweep:
            try:
                await job()
            except Exception:  # one failed job must not stop the others
                log.exception(messages.LOG_SWEEP_JOB_FAILED)
        ended = 0
        for waiting in await self.runs.expired_waiting(now=now):
            run = await self.runs.claim_waiting(waiting.id, to="expired")
            if run is None:
                continue
            message = messages.RECIPE_SIGN_IN_EXPIRED.format(recipe=self._name(run))
            await self.runner.end_waiting(run, status="expired", message=message)
            await self.report(run.conversation, message)
            ended += 1
        return ended + await self._take_over_stranded(now)

    async def _take_over_stranded(self, now: datetime) -> int:
        """Runs whose process died mid-run: resume exactly once those whose action was never
        sent; end once, telling the person, those whose action may have been sent."""
        handled = 0
        for stranded in await self.runs.stranded(now=now):
            run = await self.runs.claim_stranded(
                stranded.id, holder=self.holder, until=self.runner.lease_until(), now=now
            )
            if run is None:
                continue  # another process took it
            handled += 1
            recipe = self.book.get(run.recipe)
            if run.action_sent_at is None and recipe is not None:
                log.info(messages.LOG_RUN_RESUMED_AFTER_CRASH, run.recipe)
                try:
                    result = await self.runner.resume(run, recipe)
                except RunLeftToSweeper:
                    continue  # a later round takes it over again
                await self.report(run.conversation, result)
                continue
            message = self._unknown_outcome(run)
            if await self.runner.end_waiting(run, status="unknown", message=message):
                await self.report(run.conversation, message)
        return handled

    def _unknown_outcome(self, run: RecipeRun) -> str:
        recipe = self.book.get(run.recipe)
        if recipe is None:
            return messages.RECIPE_RECIPE_GONE
        parent = self.runner.providers.parents.get(recipe.parent)
        app = self.runner.providers.display_name(parent.app) if parent else recipe.parent
        contact = parent.contact if parent else messages.RECIPE_CONTACT_UNKNOWN
        return messages.RECIPE_OUTCOME_UNKNOWN.format(recipe=recipe.name, app=app, contact=contact)

    async def sweep_forever(self, interval_s: float) -> None:
        while True:
            try:
                await self.sweep_once(lease_for=timedelta(seconds=interval_s * 0.9))
            except Exception:  # one failed round must not stop the sweeper
                log.exception(messages.LOG_SWEEP_FAILED)
            await asyncio.sleep(interval_s)

    def _name(self, run: RecipeRun) -> str:
        recipe = self.book.get(run.recipe)
        return recipe.name if recipe else run.recipe
