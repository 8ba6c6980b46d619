"""The application factory: routes and lifecycle, nothing else.

`create_app(settings)` builds the aiohttp application; the database, the HTTP session, the
adapter and the bot are made in a cleanup context when the app starts and closed when it stops.
Run `python app.py` to serve the bot on http://localhost:3978/api/messages.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from botbuilder.integration.aiohttp import CloudAdapter

import background
import messages
from bots.auth import TeamsBotAuthentication
from bots.bot import RuntimeConnectionsBot, on_turn_error
from bots.connections_handlers import ConnectionsHandlers
from bots.endpoint import messages_endpoint
from bots.recipe_handlers import RecipeHandlers, conversation_reporter
from bots.router import Router
from bots.signin_handlers import LoginCardSender, SignInHandlers
from connections.service import ConnectionsService
from connections.settle import ConnectionSettler
from oauth.pages import sign_in_routes
from oauth.providers import AppsConfigError, ProviderRegistry, load_registry
from oauth.signin import SignInService
from oauth.tokens import TokenService
from recipes.config import RecipesConfigError, load_recipes
from recipes.model import BUILTIN_COMMANDS, RecipeBook
from recipes.resume import RunResumer
from recipes.runner import RecipeRunner
from settings import Settings, SettingsError, load_settings
from storage.crypto import TokenCipher
from storage.database import Database, open_database
from storage.embedded import StoreUnavailable
from storage.outbox import drain_all
from storage.token_keys import TokenKeyError, load_token_cipher

log = logging.getLogger("runtime_connections")

SETTINGS_KEY = web.AppKey("settings", Settings)
DATABASE_KEY = web.AppKey("database", Database)
ADAPTER_KEY = web.AppKey("adapter", CloudAdapter)
BOT_KEY = web.AppKey("bot", RuntimeConnectionsBot)
SIGNIN_KEY = web.AppKey("signin", SignInService)
LOGIN_CARDS_KEY = web.AppKey("login_cards", LoginCardSender)
TOKENS_KEY = web.AppKey("tokens", TokenService)
RECIPES_KEY = web.AppKey("recipes", RecipeBook)
RESUMER_KEY = web.AppKey("resumer", RunResumer)


class PathOnlyAccessLogger(AbstractAccessLogger):
    """Access log without query strings: sign-in URLs carry states and codes there."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %.1fms',
            request.remote,
            request.method,
            request.path,
            response.status,
            time * 1000,
        )


def build_router(
    database: Database,
    settings: Settings,
    signin: SignInService,
    login_cards: LoginCardSender,
    settler: ConnectionSettler,
    recipes: RecipeHandlers,
    resumer: RunResumer,
) -> Router:
    router = Router()
    service = ConnectionsService(
        store=database.connections,
        audit=database.audit,
        names=signin.providers.display_name,
        settler=settler,
    )
    ConnectionsHandlers(
        service=service,
        bot_app_id=settings.app_id or "",
        recipes_help=tuple(recipes.help_entries()),
    ).register(router)
    SignInHandlers(
        signin=signin, login_cards=login_cards, connections=service, resumer=resumer
    ).register(router)
    recipes.register(router)
    return router


def load_recipe_book(settings: Settings, providers: ProviderRegistry) -> RecipeBook:
    """The recipes file (none: no recipes); code recipes can be added to the book later."""
    if settings.recipes_file is None:
        return RecipeBook(parent_names=providers.parents, reserved_phrases=BUILTIN_COMMANDS)
    return load_recipes(
        settings.recipes_file, parent_names=providers.parents, reserved_phrases=BUILTIN_COMMANDS
    )


def load_providers(settings: Settings) -> ProviderRegistry:
    return load_registry(settings.apps_file)


def load_cipher(settings: Settings) -> TokenCipher:
    return load_token_cipher(
        configured_keys=settings.encryption_keys,
        data_dir=settings.data_dir,
        production=settings.auth_enabled,
    )


STORE_LOST_GRACE_S = 1.0


def _exit_for_a_restart(reason: str) -> None:
    # A plain SystemExit (not aiohttp's GracefulExit, which run_app swallows): run_app still
    # cleans up (closes the sites, runs the cleanup contexts), then the exception ends the
    # process with status 1 and prints the reason to stderr.
    raise SystemExit(reason)


@asynccontextmanager
async def _exit_when_store_is_lost(database: Database) -> AsyncIterator[None]:
    """While the bot runs: if the embedded store is gone for good, stop with exit status 1.

    /healthz answers 503 with the reason during a short grace period first, so that a
    probing process manager sees why; then the bot shuts down cleanly and exits non-zero.
    """

    async def watch() -> None:
        reason = await database.wait_store_lost()
        log.critical(messages.LOG_STORE_LOST_EXITING, reason)
        await asyncio.sleep(STORE_LOST_GRACE_S)
        asyncio.get_running_loop().call_soon(_exit_for_a_restart, reason)

    watcher = asyncio.create_task(watch(), name="store-lost-watcher")
    try:
        yield
    finally:
        await background.stop(watcher)


async def _bot_lifecycle(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    providers = load_providers(settings)
    book = load_recipe_book(settings, providers)
    cipher = load_cipher(settings)
    async with (
        open_database(
            mongodb_uri=settings.mongodb_uri.get_secret_value() if settings.mongodb_uri else None,
            database_name=settings.database_name,
            data_dir=settings.data_dir,
            embedded_command=settings.embedded_mongodb_command,
        ) as database,
        aiohttp.ClientSession() as session,
        _exit_when_store_is_lost(database),
    ):
        if settings.auth_enabled:
            log.info(messages.LOG_AUTH_ON, settings.app_id, settings.app_type)
        else:
            log.warning(messages.LOG_AUTH_OFF)
        adapter = CloudAdapter(TeamsBotAuthentication(settings, session))
        adapter.on_turn_error = on_turn_error
        tokens = TokenService(providers=providers, connections=database.connections, cipher=cipher)
        signin = SignInService.over(
            database,
            providers=providers,
            cipher=cipher,
            public_base_url=str(settings.public_base_url),
            revoke_grant=tokens.revoke_grant,
        )
        login_cards = LoginCardSender(signin=signin, bot_app_id=settings.app_id or "")
        settler = ConnectionSettler(
            store=database.connections, audit=database.audit, revoke_grant=tokens.revoke_grant
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
        recipe_handlers = RecipeHandlers(
            book=book,
            runner=runner,
            login_cards=login_cards,
            bot_app_id=settings.app_id or "",
            acknowledge_after_s=settings.recipe_acknowledge_after_s,
        )
        resumer = RunResumer(
            runner=runner,
            runs=database.recipe_runs,
            book=book,
            report=conversation_reporter(adapter, settings.app_id or ""),
            leases=database.leases,
            also_sweep=(
                signin.sweep,
                settler.sweep,
                functools.partial(
                    drain_all,
                    [
                        database.recipe_runs.collection,
                        database.recipe_settings.collection,
                        database.login_states.collection,
                    ],
                    database.audit,
                ),
            ),
        )
        router = build_router(
            database, settings, signin, login_cards, settler, recipe_handlers, resumer
        )
        bot = RuntimeConnectionsBot(settings=settings, router=router)
        app[SIGNIN_KEY] = signin
        app[TOKENS_KEY] = tokens
        app[LOGIN_CARDS_KEY] = login_cards
        app[DATABASE_KEY] = database
        app[ADAPTER_KEY] = adapter
        app[BOT_KEY] = bot
        app[RECIPES_KEY] = book
        app[RESUMER_KEY] = resumer
        sweeper = (
            asyncio.create_task(resumer.sweep_forever(settings.signin_sweep_s))
            if settings.signin_sweep_s > 0
            else None
        )
        try:
            yield
        finally:
            if sweeper is not None:
                await background.stop(sweeper)
            await recipe_handlers.close()
            await settler.close()
            await signin.close()


async def _post_messages(request: web.Request) -> web.StreamResponse:
    app = request.app
    handler = messages_endpoint(app[ADAPTER_KEY], app[BOT_KEY].on_turn)
    return await handler(request)


async def _healthz(request: web.Request) -> web.Response:
    """The process is alive, and so is its embedded store (or one is coming back)."""
    lost = request.app[DATABASE_KEY].store_lost()
    if lost is not None:
        return web.json_response({"status": "store lost", "reason": lost}, status=503)
    return web.json_response({"status": "alive"})


async def _readyz(request: web.Request) -> web.Response:
    """The database answers a ping; answered within 2 s whatever the database does."""
    if await request.app[DATABASE_KEY].ping(timeout_s=1.5):
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "database unreachable"}, status=503)


def create_app(settings: Settings) -> web.Application:
    """Build the bot's web application for these settings."""
    app = web.Application()
    app[SETTINGS_KEY] = settings
    app.cleanup_ctx.append(_bot_lifecycle)
    app.router.add_post("/api/messages", _post_messages)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_routes(sign_in_routes(SIGNIN_KEY))
    return app


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"Cannot start: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    log.info(messages.LOG_LISTENING, settings.host, settings.port)
    try:
        web.run_app(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            access_log_class=PathOnlyAccessLogger,
            print=None,
        )
    except (StoreUnavailable, AppsConfigError, RecipesConfigError, TokenKeyError) as error:
        print(f"Cannot start: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
