"""Building the running bot from its settings: the one place where the rooms are put together.

`wired(settings)` opens the database and an HTTP session, builds the services (tokens, sign-in,
connections, recipes), the Teams surface (its handlers, route table, authentication, connector
and sender), starts the sweeper, and closes everything in order when the bot stops. `app.py`
serves what it yields.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

import background
import messages
from bots.auth import ChannelAuthentication
from bots.bot import RuntimeConnectionsBot
from bots.bot_token import BotTokens, bot_tokens
from bots.connections_handlers import ConnectionsHandlers
from bots.connector import Connector
from bots.delivery import ProactiveSender
from bots.endpoint import messages_endpoint
from bots.notices import TeamsNotices
from bots.recipe_handlers import RecipeHandlers, result_reporter
from bots.routes import route_table
from bots.signin_handlers import LoginCardSender, SignInHandlers
from bots.welcome_handlers import WelcomeHandlers
from connections.keep_alive import KeepAlive
from connections.notices import BreakNotices, Told
from connections.service import ConnectionsService
from connections.settle import ConnectionSettler
from console.parts import ConsoleParts
from console.signin import ConsoleSignIn
from oauth.providers import AppsConfigError, ProviderRegistry, load_registry
from oauth.signin import SignInService
from oauth.tokens import TokenService
from recipes.config import RecipesConfigError, load_recipes
from recipes.model import BUILTIN_COMMANDS, RecipeBook
from recipes.resume import RunResumer
from recipes.runner import RecipeRunner
from settings import Settings
from slack.surface import SURFACE as SLACK
from slack.surface import SlackSurface, slack_surface
from storage.audit_search import AuditSearch
from storage.connection_search import ConnectionSearch
from storage.database import Database, open_database
from storage.embedded import StoreUnavailable
from storage.outbox import drain_all
from storage.token_keys import TokenKeyError, cipher_for

log = logging.getLogger("runtime_connections")

# What stops the start with a sentence for the operator (exit status 2), not a traceback.
START_ERRORS: tuple[type[Exception], ...] = (
    StoreUnavailable,
    AppsConfigError,
    RecipesConfigError,
    TokenKeyError,
)


@dataclass(frozen=True)
class Wiring:
    """The running bot's parts that the web application and the tests reach."""

    database: Database
    signin: SignInService
    tokens: TokenService
    login_cards: LoginCardSender
    book: RecipeBook
    resumer: RunResumer
    proactive: ProactiveSender
    connector: Connector
    # The bot's own token source (None with authentication off).
    bot_tokens: BotTokens | None
    authentication: ChannelAuthentication
    console: ConsoleParts
    # Telling people their connection broke; keeping connections alive.
    notices: BreakNotices
    keep_alive: KeepAlive
    # The Slack surface (None without Slack settings).
    slack: SlackSurface | None
    # The POST /api/messages handler.
    receive: Callable[[web.Request], Awaitable[web.StreamResponse]]


def load_recipe_book(settings: Settings, providers: ProviderRegistry) -> RecipeBook:
    """The recipes file (none: no recipes); code recipes can be added to the book here."""
    if settings.recipes_file is None:
        return RecipeBook(parent_names=providers.parents, reserved_phrases=BUILTIN_COMMANDS)
    return load_recipes(
        settings.recipes_file, parent_names=providers.parents, reserved_phrases=BUILTIN_COMMANDS
    )


@asynccontextmanager
async def wired(settings: Settings) -> AsyncIterator[Wiring]:
    """The bot, built and running, for as long as the context lasts."""
    providers = load_registry(settings.apps_file)
    book = load_recipe_book(settings, providers)
    cipher = cipher_for(settings)
    async with (
        open_database(
            mongodb_uri=settings.mongodb_uri.get_secret_value() if settings.mongodb_uri else None,
            database_name=settings.database_name,
            data_dir=settings.data_dir,
            embedded_command=settings.embedded_mongodb_command,
        ) as database,
        aiohttp.ClientSession() as session,
    ):
        if settings.auth_enabled:
            log.info(messages.LOG_AUTH_ON, settings.app_id, settings.app_type)
        else:
            log.warning(messages.LOG_AUTH_OFF)
        # Services: what may be done, for every surface.
        tokens = TokenService(providers=providers, connections=database.connections, cipher=cipher)
        signin = SignInService.over(
            database,
            providers=providers,
            cipher=cipher,
            public_base_url=str(settings.public_base_url),
            revoke_grant=tokens.revoke_grant,
        )
        notices = BreakNotices(
            store=database.connections, audit=database.audit, providers=providers
        )
        tokens.on_break = notices.tell_soon
        settler = ConnectionSettler(
            store=database.connections,
            audit=database.audit,
            revoke_grant=tokens.revoke_grant,
            tell_notice=notices.tell_one,
        )
        connections = ConnectionsService(
            store=database.connections,
            audit=database.audit,
            names=providers.display_name,
            settler=settler,
            providers=providers,
        )
        await database.recipe_settings.seed(
            {recipe.key: recipe.verify_user_access for recipe in book}
        )
        runner = RecipeRunner(
            providers=providers,
            connections=database.connections,
            settings=database.recipe_settings,
            runs=database.recipe_runs,
            audit=database.audit,
            tokens=tokens,
            session=session,
            action_timeout_s=settings.recipe_timeout_s,
        )
        # The Teams surface.
        authentication = ChannelAuthentication(settings, session)
        own_token = bot_tokens(settings)
        connector = Connector(session, own_token)
        proactive = ProactiveSender(connector)
        teams_notices = TeamsNotices(proactive).tell
        teams_report = result_reporter(proactive.post)
        slack: SlackSurface | None = None

        async def tell(owner: Any, reach: dict[str, Any], notice: Any) -> Any:
            if reach.get("surface") == SLACK:
                return await slack.tell(owner, reach, notice) if slack else Told.NO_CHAT
            return await teams_notices(owner, reach, notice)

        async def report(conversation: dict[str, Any], outcome: Any) -> None:
            if conversation.get("surface") == SLACK:
                if slack is not None:
                    await slack.report(conversation, outcome)
                return
            await teams_report(conversation, outcome)

        notices.tell = tell
        keep_alive = KeepAlive(
            providers=providers,
            store=database.connections,
            tokens=tokens,
            leases=database.leases,
            interval_s=settings.keep_alive_s or 300.0,
        )
        resumer = RunResumer(
            runner=runner,
            runs=database.recipe_runs,
            book=book,
            report=report,
            leases=database.leases,
            also_sweep=(
                signin.sweep,
                settler.sweep,
                notices.sweep,
                functools.partial(
                    drain_all,
                    [
                        database.recipe_runs.collection,
                        database.recipe_settings.collection,
                        database.login_states.collection,
                        database.privileges.collection,
                    ],
                    database.audit,
                ),
            ),
        )
        # The admin console.
        search = ConnectionSearch(database.connections.collection)
        audit_search = AuditSearch(database.audit.collection)
        await search.ensure_indexes()
        await audit_search.ensure_indexes()
        search.start_backfill()
        console = ConsoleParts(
            settings=settings,
            signin=ConsoleSignIn(settings, database.admin_signins, cipher),
            sessions=database.admin_sessions,
            privileges=database.privileges,
            connections=connections,
            search=search,
            audit=database.audit,
            audit_search=audit_search,
            recipe_settings=database.recipe_settings,
            book=book,
            app_name=providers.display_name,
            app_keys=tuple(sorted(providers.providers)),
        )
        login_cards = LoginCardSender(signin=signin)
        recipe_handlers = RecipeHandlers(
            book=book,
            runner=runner,
            login_cards=login_cards,
            acknowledge_after_s=settings.recipe_acknowledge_after_s,
        )
        routes = route_table(
            ConnectionsHandlers(
                service=connections, recipes_help=tuple(recipe_handlers.help_entries())
            ),
            SignInHandlers(
                signin=signin, login_cards=login_cards, connections=connections, resumer=resumer
            ),
            recipe_handlers,
            WelcomeHandlers(welcomes=database.welcomes),
        )
        bot = RuntimeConnectionsBot(settings=settings, routes=routes, proactive=proactive)
        if settings.slack_enabled:
            slack = slack_surface(
                settings,
                database=database,
                cipher=cipher,
                connections=connections,
                signin=signin,
                book=book,
                runner=runner,
                resumer=resumer,
                recipes_help=tuple(recipe_handlers.help_entries()),
            )
            await slack.ensure_indexes()
        sweeper = (
            asyncio.create_task(resumer.sweep_forever(settings.signin_sweep_s))
            if settings.signin_sweep_s > 0
            else None
        )
        keeper = (
            asyncio.create_task(keep_alive.run_forever()) if settings.keep_alive_s > 0 else None
        )
        try:
            yield Wiring(
                database=database,
                signin=signin,
                tokens=tokens,
                login_cards=login_cards,
                book=book,
                resumer=resumer,
                proactive=proactive,
                connector=connector,
                bot_tokens=own_token,
                authentication=authentication,
                console=console,
                notices=notices,
                keep_alive=keep_alive,
                slack=slack,
                receive=messages_endpoint(authentication, bot.on_turn),
            )
        finally:
            await background.stop(sweeper, keeper)
            await authentication.close()
            if own_token is not None:
                await own_token.close()
            await search.close()
            await console.signin.close()
            await recipe_handlers.close()
            if slack is not None:
                await slack.close()
            await runner.close()
            await settler.close()
            await notices.close()
            await signin.close()
