"""Running a recipe as the right person.

The runner picks the connection: with "Verify user access at runtime" off, the recipe's parent
connection (credited to its owner); with it on, the invoker's own runtime connection under that
parent — never anyone else's, and never a runtime connection as a parent. It gets a valid token
through the refresh service, performs the action, retries once after a refresh when the app
answers 401, and records who ran what, as whom, and how it ended.

Outcomes are plain data (`recipes.results.RunResult`) for the surface to show: in Teams a result
card, a problem card, or a request to send the invoker a Login card.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
from bson import ObjectId
from pymongo.errors import PyMongoError
from yarl import URL

import messages
from oauth.providers import ProviderRegistry
from oauth.tokens import NeedsSignIn, TokenService, TokenUnavailable
from recipes.model import ActionContext, ActionResult, HttpResponse, Recipe
from recipes.results import Outcome, RunResult
from recipes.templates import (
    TargetError,
    TemplateError,
    render_body,
    render_fields,
    render_link,
    render_target,
    template_values,
)
from storage.audit import AuditLog
from storage.connections import ConnectionStore
from storage.login_states import LIFETIME as SIGN_IN_LIFETIME
from storage.models import (
    Actor,
    Connection,
    ConnectionKind,
    ConnectionStatus,
    Owner,
)
from storage.outbox import drain
from storage.recipe_runs import RecipeRun, RecipeRunStore
from storage.recipe_settings import RecipeSettingsStore

log = logging.getLogger(__name__)
T = TypeVar("T")

RECIPE_RAN = "recipe.ran"
ACTION_TIMEOUT_S = 20.0
# Time beyond the action's own deadline for storing the outcome before a run counts as stranded.
RUN_LEASE_MARGIN = timedelta(seconds=10)
# A runner stops retrying a store write this long before its lease ends.
STORE_SAFETY = timedelta(seconds=2)
# "Last used" is read in days (the list, the console's unused filter): one write per connection
# per this many seconds per process is plenty, and spares the store a write per run.
TOUCH_EVERY_S = 60.0
# Recording a use waits at most this long for the store; a lost one is only a date.
TOUCH_TIMEOUT_S = 5.0
# Beyond this many remembered connections, those touched longer ago than TOUCH_EVERY_S are
# forgotten (they would be written again anyway), so the memory stays bounded.
TOUCHED_KEPT = 10_000


@dataclass(frozen=True)
class RunRequest:
    recipe: Recipe
    arguments: Mapping[str, Any]
    invoker: Owner
    activity_key: str
    conversation: dict[str, Any] = field(default_factory=dict)


class RunLeftToSweeper(Exception):
    """The store did not answer in time to record a step of the run. The run keeps its lease
    and is left to the sweeper, which ends it once, with a message (see recipes/resume.py): its
    runner posts nothing, so the person hears of it exactly once."""


# Pauses between attempts at a store write of a run while the store does not answer.
STORE_RETRY_PAUSES_S = (0.25, 0.5, 1.0, 2.0)


class _TargetRefused(Exception):
    """The request would leave the address the recipe may use: nothing was sent."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class _Unauthorized(Exception):
    """The app's API refused the token even after one refresh."""


class _AppRefused(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _detail(response: HttpResponse) -> str:
    """The app's own error message, short, from common JSON shapes; never request data."""
    body = response.json
    candidates: list[Any] = []
    if isinstance(body, dict):
        candidates += [
            body.get("error_description"),
            body.get("message"),
            body.get("error", {}).get("message") if isinstance(body.get("error"), dict) else None,
            body.get("error"),
        ]
    elif isinstance(body, list) and body and isinstance(body[0], dict):
        candidates += [body[0].get("message"), body[0].get("errorCode")]
    found = next((str(c) for c in candidates if isinstance(c, str) and c.strip()), None)
    text = found or response.text.strip() or f"HTTP {response.status}"
    return f"{text[:300]} (HTTP {response.status})"


@dataclass
class _AuthorizedHttp:
    """Requests to the app with the connection's token; one refresh and retry on a 401."""

    session: aiohttp.ClientSession
    tokens: TokenService
    connection_id: str
    token: str

    async def __call__(self, method: str, url: str | URL, json: Any = None) -> HttpResponse:
        response = await self._send(method, url, json)
        if response.status == 401:
            self.token = await self.tokens.replace_rejected_token(self.connection_id, self.token)
            response = await self._send(method, url, json)
            if response.status == 401:
                raise _Unauthorized(url)
        return response

    async def _send(self, method: str, url: str | URL, json: Any) -> HttpResponse:
        # A URL object (a configured recipe's target, resolved and checked by
        # `templates.render_target`) goes out exactly as it is: aiohttp does not parse it again.
        # A string (from a code recipe) is parsed the way aiohttp always parses strings.
        target = url if isinstance(url, URL) else URL(url)
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        # Never follow a redirect: the token would go wherever the app points.
        async with self.session.request(
            method, target, json=json, headers=headers, allow_redirects=False
        ) as response:
            text = await response.text()
            try:
                parsed = await response.json(content_type=None) if text else None
            except ValueError:
                parsed = None
            return HttpResponse(status=response.status, json=parsed, text=text)


@dataclass
class RecipeRunner:
    providers: ProviderRegistry
    connections: ConnectionStore
    settings: RecipeSettingsStore
    runs: RecipeRunStore
    audit: AuditLog
    tokens: TokenService
    session: aiohttp.ClientSession
    action_timeout_s: float = ACTION_TIMEOUT_S
    # Background writes of `last_used_at`, kept referenced until done (asyncio keeps only weak
    # references to tasks), and when each connection was last touched (loop time).
    _touching: set[asyncio.Task[None]] = field(
        default_factory=set, init=False, repr=False, compare=False
    )
    _touched: dict[str, float] = field(default_factory=dict, init=False, repr=False, compare=False)

    async def run(self, request: RunRequest) -> RunResult:
        recipe = request.recipe
        try:
            verify = await self.settings.verify_user_access(
                recipe.key, default=recipe.verify_user_access
            )
        except PyMongoError as error:  # nothing is stored or sent yet: the person may retry
            log.warning(messages.LOG_RECIPE_FAILED, recipe.key, type(error).__name__)
            return RunResult(Outcome.FAILED, recipe_name=recipe.name, message=messages.TURN_FAILED)
        inputs = {
            name: value
            for name, value in request.arguments.items()
            if name not in recipe.secret_arguments
        }
        sealed = self.tokens.cipher.seal(dict(request.arguments)).model_dump()
        lease_until = self.lease_until()
        chosen_id = str(ObjectId())
        run_id = await self._stored(
            lambda: self.runs.start(
                recipe=recipe.key,
                activity_key=request.activity_key,
                invoker=request.invoker,
                inputs=inputs,
                conversation=request.conversation,
                verify_user_access=verify,
                # Kept until the run ends, so a run stranded by a crash can be resumed.
                sealed_arguments=sealed,
                lease_until=lease_until,
                run_id=chosen_id,
            ),
            until=lease_until,
        )
        if run_id is None:
            log.info(messages.LOG_RECIPE_DUPLICATE, recipe.key)
            return RunResult(Outcome.DUPLICATE, recipe_name=recipe.name)
        result, acted_as = await self._execute(request, verify, run_id)
        if result.outcome is Outcome.SIGN_IN_NEEDED and result.sign_in_parent is not None:
            # Parked until the invoker has signed in; `resume` finishes it.
            parent_id = result.sign_in_parent.id
            await self._stored(
                lambda: self.runs.wait_for_sign_in(
                    run_id,
                    parent_id=parent_id,
                    expires_at=datetime.now(UTC) + SIGN_IN_LIFETIME,
                    sealed_arguments=sealed,
                ),
                until=lease_until,
            )
        else:
            await self._record(run_id, request, result, acted_as, until=lease_until)
        return replace(result, run_id=run_id)

    async def resume(self, run: RecipeRun, recipe: Recipe) -> RunResult:
        """Finish a run that waited for its invoker's sign-in, or was stranded before its action
        was sent (already claimed by the caller)."""
        sealed = run.sealed_arguments
        arguments = self.tokens.cipher.open(sealed) if sealed else {}
        request = RunRequest(
            recipe=recipe,
            arguments=arguments,
            invoker=run.invoker,
            activity_key=run.activity_key,
            conversation=run.conversation,
        )
        lease_until = run.lease_until or self.lease_until()
        result, acted_as = await self._execute(request, run.verify_user_access, run.id)
        # Whatever happens now is final: a second sign-in request would loop.
        await self._record(run.id, request, result, acted_as, until=lease_until)
        return replace(result, sign_in_parent=None, run_id=run.id)

    async def close(self) -> None:
        """Let the last uses being recorded finish (bounded) at shutdown."""
        if self._touching:
            await asyncio.wait(set(self._touching), timeout=TOUCH_TIMEOUT_S)

    def _touch_later(self, connection_id: str) -> None:
        """Record that a run used the connection, in the background: the person's answer never
        waits for it. At most once per connection per TOUCH_EVERY_S in this process."""
        clock = asyncio.get_running_loop().time()
        last = self._touched.get(connection_id)
        if last is not None and clock - last < TOUCH_EVERY_S:
            return
        if len(self._touched) >= TOUCHED_KEPT:
            self._touched = {
                key: at for key, at in self._touched.items() if clock - at < TOUCH_EVERY_S
            }
        self._touched[connection_id] = clock
        task = asyncio.create_task(self._touch(connection_id, datetime.now(UTC)))
        self._touching.add(task)
        task.add_done_callback(self._touching.discard)

    async def _touch(self, connection_id: str, now: datetime) -> None:
        try:
            async with asyncio.timeout(TOUCH_TIMEOUT_S):
                await self.connections.touch_used(connection_id=connection_id, now=now)
        except Exception as error:  # only a date is lost; the run itself succeeded
            # Forgotten, so that the next run of this connection tries again.
            self._touched.pop(connection_id, None)
            log.warning(messages.LOG_TOUCH_USED_FAILED, type(error).__name__)

    def lease_until(self) -> datetime:
        """How long a running run may go without ending before the sweeper takes it over."""
        return datetime.now(UTC) + timedelta(seconds=self.action_timeout_s) + RUN_LEASE_MARGIN

    async def end_waiting(self, run: RecipeRun, *, status: str, message: str) -> bool:
        """Close a run that will not resume or finish (sign-in expired or cancelled, or an
        outcome that cannot be known); with its audit event. False if it had already ended."""
        event = AuditLog.event(
            actor=Actor.person(run.invoker),
            action=RECIPE_RAN,
            details={"recipe": run.recipe, "run_id": run.id, "outcome": status},
        )
        ended = await self.runs.finish(
            run.id, status=status, acted_as=None, result={"message": message}, event=event
        )
        await self._record_events(run.id)
        return ended

    async def _stored(self, write: Callable[[], Awaitable[T]], *, until: datetime) -> T:
        """A store write of the run, tried again while the store does not answer, but only
        while the run's lease lasts (after it the sweeper may take the run over).

        Raises:
            RunLeftToSweeper: the store did not answer in time.
        """
        pauses = iter(STORE_RETRY_PAUSES_S)
        while True:
            try:
                return await write()
            except PyMongoError as error:
                pause = next(pauses, STORE_RETRY_PAUSES_S[-1])
                if datetime.now(UTC) + timedelta(seconds=pause) >= until - STORE_SAFETY:
                    log.warning(messages.LOG_RUN_LEFT_TO_SWEEPER, type(error).__name__)
                    raise RunLeftToSweeper from None
                await asyncio.sleep(pause)

    async def _record_events(self, run_id: str) -> None:
        try:
            await drain(self.runs.collection, ObjectId(run_id), self.audit)
        except PyMongoError:
            log.warning(messages.LOG_SETTLE_DEFERRED)  # the sweep records them

    async def _execute(
        self, request: RunRequest, verify: bool, run_id: str
    ) -> tuple[RunResult, Connection | None]:
        try:
            return await self._run(request, verify, run_id)
        except Exception as error:
            # Never leak a trace to the person; the log has the type only (no payloads).
            log.exception(messages.LOG_RECIPE_FAILED, request.recipe.key, type(error).__name__)
            failed = RunResult(
                Outcome.FAILED, recipe_name=request.recipe.name, message=messages.TURN_FAILED
            )
            return failed, None

    async def _record(
        self,
        run_id: str,
        request: RunRequest,
        result: RunResult,
        acted_as: Connection | None,
        *,
        until: datetime,
    ) -> None:
        identity = None
        if acted_as is not None:
            identity = {
                "connection_id": acted_as.id,
                "kind": acted_as.kind.value,
                "account": acted_as.account_label,
                "owner": acted_as.owner.model_dump(),
            }
        event = AuditLog.event(
            actor=Actor.person(request.invoker),
            action=RECIPE_RAN,
            connection=acted_as,
            details={
                "recipe": request.recipe.key,
                "run_id": run_id,
                "outcome": result.outcome.value,
            },
        )
        await self._stored(
            lambda: self.runs.finish(
                run_id,
                status=result.outcome.value,
                acted_as=identity,
                result={"message": result.message},
                event=event,
            ),
            until=until,
        )
        await self._record_events(run_id)

    async def _run(
        self, request: RunRequest, verify: bool, run_id: str
    ) -> tuple[RunResult, Connection | None]:
        recipe = request.recipe
        configured = self.providers.parents[recipe.parent]
        app_name = self.providers.display_name(configured.app)

        def problem(
            outcome: Outcome, message: str, *, sign_in_parent: Connection | None = None
        ) -> RunResult:
            return RunResult(
                outcome, recipe_name=recipe.name, message=message, sign_in_parent=sign_in_parent
            )

        tenant = request.invoker.tenant_id
        if configured.tenant is not None and configured.tenant != tenant:
            text = messages.RECIPE_OTHER_TENANT.format(recipe=recipe.name, app=app_name)
            return problem(Outcome.PARENT_UNAVAILABLE, text), None
        # Only a parent serving the invoker's own tenant is ever used (see storage.connections).
        parent = await self.connections.find_parent(recipe.parent, tenant_id=tenant)
        if parent is None or parent.kind is not ConnectionKind.PARENT:
            if await self.connections.parent_tenants(recipe.parent) - {tenant, ""}:
                text = messages.RECIPE_OTHER_TENANT.format(recipe=recipe.name, app=app_name)
            else:
                text = messages.RECIPE_PARENT_REMOVED.format(
                    recipe=recipe.name, app=app_name, contact=configured.contact
                )
            return problem(Outcome.PARENT_UNAVAILABLE, text), None
        sign_in = messages.RECIPE_SIGN_IN_NEEDED.format(recipe=recipe.name, app=app_name)
        parent_needs_auth = messages.RECIPE_PARENT_NEEDS_AUTH.format(
            recipe=recipe.name, app=app_name, contact=configured.contact
        )
        if verify:
            connection = await self.connections.find_runtime(
                parent_id=parent.id, owner=request.invoker
            )
            if connection is None or connection.status is not ConnectionStatus.CONNECTED:
                return problem(Outcome.SIGN_IN_NEEDED, sign_in, sign_in_parent=parent), None
        elif parent.tokens is None:
            # Stored but never authorized (e.g. `connections create-parent`): say whom to ask
            # to authorize it, not that it must be authorized "again" or that the run failed.
            text = messages.RECIPE_PARENT_NOT_AUTHORIZED.format(
                recipe=recipe.name, app=app_name, contact=configured.contact
            )
            return problem(Outcome.PARENT_UNAVAILABLE, text), None
        else:
            connection = parent

        # One deadline for the whole action, a token refresh included: a hanging token
        # endpoint must not add its own wait to the recipe's.
        deadline = asyncio.get_running_loop().time() + self.action_timeout_s
        timed_out = problem(Outcome.FAILED, messages.RECIPE_TIMEOUT.format(app=app_name))
        try:
            async with asyncio.timeout_at(deadline):
                token = await self.tokens.access_token(connection.id)
        except NeedsSignIn:
            if verify:
                return problem(Outcome.SIGN_IN_NEEDED, sign_in, sign_in_parent=parent), None
            return problem(Outcome.PARENT_UNAVAILABLE, parent_needs_auth), None
        except TokenUnavailable:
            text = messages.RECIPE_PROVIDER_UNAVAILABLE.format(app=app_name)
            return problem(Outcome.FAILED, text), connection
        except TimeoutError:
            return timed_out, connection

        http = _AuthorizedHttp(self.session, self.tokens, connection.id, token)
        try:
            async with asyncio.timeout_at(deadline):
                action = await self._perform(recipe, request.arguments, connection, http, run_id)
        except TimeoutError:
            return timed_out, connection
        except (_Unauthorized, NeedsSignIn):
            await self.tokens.mark_broken(connection.id, "unauthorized")
            if verify:
                return problem(Outcome.SIGN_IN_NEEDED, sign_in, sign_in_parent=parent), None
            return problem(Outcome.PARENT_UNAVAILABLE, parent_needs_auth), None
        except (TokenUnavailable, aiohttp.ClientError):
            text = messages.RECIPE_PROVIDER_UNAVAILABLE.format(app=app_name)
            return problem(Outcome.FAILED, text), connection
        except _TargetRefused as refused:
            return problem(Outcome.FAILED, refused.detail), connection
        except _AppRefused as refused:
            text = messages.RECIPE_PROVIDER_ERROR.format(app=app_name, detail=refused.detail)
            return problem(Outcome.FAILED, text), connection
        # The app accepted the action with this connection: that is a use worth dating.
        self._touch_later(connection.id)
        succeeded = RunResult(
            Outcome.SUCCEEDED,
            recipe_name=recipe.name,
            verb=recipe.result.verb,
            app_name=app_name,
            acted_as=connection.account_label,
            fields=action.fields,
            link=action.link,
            summary=action.summary,
        )
        return succeeded, connection

    async def _perform(
        self,
        recipe: Recipe,
        arguments: Mapping[str, Any],
        connection: Connection,
        http: _AuthorizedHttp,
        run_id: str,
    ) -> ActionResult:
        if recipe.handler is not None:
            await self.runs.mark_sending(run_id)
            context = ActionContext(
                arguments=dict(arguments),
                access_token=http.token,
                api_base_url=connection.api_base_url,
                http=http,
            )
            return await recipe.handler(context)
        assert recipe.action is not None
        values = template_values(arguments, api_base_url=connection.api_base_url)
        try:
            # Arguments were checked when the message was matched; a run resumed from storage
            # was not, so the target is checked here too, and nothing is sent when it fails.
            url = render_target(recipe.action.url, values)
            body = (
                render_body(recipe.action.body, values) if recipe.action.body is not None else None
            )
        except TargetError as error:
            log.warning(messages.LOG_RECIPE_URL_REFUSED, recipe.key, error)
            app = self.providers.display_name(self.providers.parents[recipe.parent].app)
            raise _TargetRefused(messages.RECIPE_URL_REFUSED.format(app=app)) from None
        except TemplateError as error:
            raise _AppRefused(str(error)) from None
        # The URL object passes through `__call__` to `_send` untouched (see `_send`).
        # From here the action may have reached the app: a crash must never lead to a resend.
        await self.runs.mark_sending(run_id)
        response = await http(recipe.action.method, url, body)
        if response.status >= 400:
            raise _AppRefused(_detail(response))
        return ActionResult(
            fields=render_fields(recipe.result.fields, response.json),
            link=render_link(recipe.result.link, values, response.json)
            if recipe.result.link
            else None,
            summary=None,
        )
