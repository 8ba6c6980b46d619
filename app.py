"""The application factory: routes and lifecycle, nothing else.

`create_app(settings)` builds the aiohttp application; the running bot (wiring.py: database,
services, the Teams surface) is built in a cleanup context when the app starts and closed when
it stops.
Run `python app.py` to serve the bot on http://localhost:3978/api/messages;
`python app.py --workers N` (or WORKERS=N) serves it from N processes (serving.py).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import NoReturn

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

import background
import messages
import serving
from console.parts import CONSOLE_KEY
from console.web import console_app
from oauth.pages import sign_in_routes
from oauth.signin import SignInService
from settings import Settings, SettingsError, load_settings, worker_count
from slack.surface import SLACK_ROUTES
from storage.database import Database
from wiring import START_ERRORS, Wiring, wired

log = logging.getLogger("runtime_connections")

SETTINGS_KEY = web.AppKey("settings", Settings)
WIRING_KEY = web.AppKey("wiring", Wiring)
DATABASE_KEY = web.AppKey("database", Database)
SIGNIN_KEY = web.AppKey("signin", SignInService)


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
    async with (
        wired(app[SETTINGS_KEY]) as wiring,
        _exit_when_store_is_lost(wiring.database),
    ):
        app[WIRING_KEY] = wiring
        app[DATABASE_KEY] = wiring.database
        app[SIGNIN_KEY] = wiring.signin
        app[CONSOLE_KEY] = wiring.console
        yield


async def _post_messages(request: web.Request) -> web.StreamResponse:
    return await request.app[WIRING_KEY].receive(request)


async def _healthz(request: web.Request) -> web.Response:
    """The process is alive, and so is its embedded store (or one is coming back)."""
    # Which process answered: with several workers on one port, tests and the supervisor
    # (serving.py) tell them apart by it.
    headers = {"X-Process-Id": str(os.getpid())}
    lost = request.app[DATABASE_KEY].store_lost()
    if lost is not None:
        return web.json_response(
            {"status": "store lost", "reason": lost}, status=503, headers=headers
        )
    return web.json_response({"status": "alive"}, headers=headers)


async def _readyz(request: web.Request) -> web.Response:
    """The database answers a ping; answered within 2 s whatever the database does."""
    if await request.app[DATABASE_KEY].ping(timeout_s=1.5):
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "database unreachable"}, status=503)


async def _freeze_start_up(app: web.Application) -> None:
    # What start-up built lives as long as the process: the cyclic garbage collector need not
    # walk it again on each full collection (a pause of about 90 ms here otherwise).
    gc.freeze()


def served_app(settings: Settings) -> web.Application:
    """`create_app` as a process serves it: the start-up's objects frozen once it is done.
    (Only for a process that serves one app for its life: tests build many in one process.)"""
    app = create_app(settings)
    app.on_startup.append(_freeze_start_up)  # after the bot's own start-up (cleanup_ctx)
    return app


def create_app(settings: Settings) -> web.Application:
    """Build the bot's web application for these settings."""
    app = web.Application()
    app[SETTINGS_KEY] = settings
    app.cleanup_ctx.append(_bot_lifecycle)
    app.router.add_post("/api/messages", _post_messages)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_routes(sign_in_routes(SIGNIN_KEY))
    if settings.slack_enabled:
        # Slack's requests go to the running Slack surface (slack/surface.py).
        for method, path in SLACK_ROUTES:
            app.router.add_route(method, path, _slack)
    app.router.add_get("/admin", _to_console)
    app.add_subapp("/admin/", console_app())
    return app


async def _slack(request: web.Request) -> web.StreamResponse:
    slack = request.app[WIRING_KEY].slack
    if slack is None:
        raise web.HTTPNotFound()
    return await slack.handle(request)


async def _to_console(request: web.Request) -> web.Response:
    return web.Response(status=308, headers={"Location": "/admin/"})


def configure_logging(level: str, *, with_process_id: bool = False) -> None:
    process = " [%(process)d]" if with_process_id else ""
    logging.basicConfig(
        level=level, format=f"%(asctime)s %(levelname)s{process} %(name)s: %(message)s"
    )


class _ArgumentError(Exception):
    """A command line argparse refused; the message is its reason."""


class _Arguments(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _ArgumentError(message)


def _workers_option(argv: Sequence[str] | None) -> int | None:
    """`--workers N` from the command line, if given.

    Raises:
        SettingsError: a bad command line or value, as one sentence.
    """
    parser = _Arguments(prog="python app.py", description="Serve the bot.")
    parser.add_argument(
        "--workers",
        metavar="N",
        help="processes serving the port, 1 to 64 (default: WORKERS, else one per usable core "
        "with authentication on, 1 locally)",
    )
    try:
        options = parser.parse_args(argv)
    except _ArgumentError as error:
        raise SettingsError(messages.ARGUMENTS_INVALID.format(error=error)) from None
    if options.workers is None:
        return None
    try:
        workers = worker_count(options.workers)
    except ValueError:
        workers = None
    if workers is None:
        raise SettingsError(messages.WORKERS_OPTION_INVALID.format(value=options.workers))
    return workers


def main(argv: Sequence[str] | None = None) -> int:
    try:
        # Set only in a worker process that serving.py's supervisor started.
        handoff = serving.take_worker_handoff()
        workers_option = _workers_option(argv)
        settings = load_settings()
    except (SettingsError, serving.ServingError) as error:
        print(messages.START_FAILED.format(error=error), file=sys.stderr)
        return 2
    workers = workers_option or settings.workers or serving.default_workers(settings)
    configure_logging(settings.log_level, with_process_id=handoff is not None or workers > 1)
    try:
        if handoff is not None:
            serving.run_worker(served_app(settings), handoff, access_log_class=PathOnlyAccessLogger)
        elif workers > 1:
            return serving.run_supervisor(
                settings,
                workers=workers,
                worker_command=[sys.executable, os.path.abspath(__file__)],
            )
        else:
            app = served_app(settings)
            phase: list[str] = []

            async def started(_app: web.Application) -> None:
                phase.append("started")  # the last startup step: next, the sites listen

            def listening(_banner: str) -> None:
                # aiohttp calls `print` once the sites listen (after the startup, which opens
                # the database): "Listening on" then means the bot really serves.
                phase.append("listening")
                log.info(messages.LOG_LISTENING, settings.host, settings.port)

            app.on_startup.append(started)
            try:
                web.run_app(
                    app,
                    host=settings.host,
                    port=settings.port,
                    access_log_class=PathOnlyAccessLogger,
                    print=listening,
                )
            except OSError as error:
                if phase != ["started"]:
                    raise
                # Started, but the sites could not listen (the port is taken, the address is
                # not this machine's): one sentence, as the supervisor (serving.py) says it.
                reason = os.strerror(error.errno) if error.errno else str(error)
                raise serving.ServingError(
                    messages.LISTEN_FAILED.format(
                        host=settings.host, port=settings.port, reason=reason
                    )
                ) from None
    except (*START_ERRORS, serving.ServingError) as error:
        print(messages.START_FAILED.format(error=error), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
