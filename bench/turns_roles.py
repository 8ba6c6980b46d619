"""The child processes of `bench.turns`: `python -m bench.turns_roles <role> ...`.

- `_connector`: the Bot Framework connector's reply routes on loopback, counting each reply by
  kind (text, a card with N choices, a card's first lines).
- `_bot --kind stock|ours`: the stock echo bot (bench/stock_echo_bot.py) or this bot's real
  application (`app.create_app`) on its own store, plus `GET /_bench/stats`: what the process
  built and sent, counted in the process (see `BotCounters`).
- `_load`: the closed-loop load generator (a Teams message, or a card action invoke whose HTTP
  answer must be a card); JSON events on stdout for the parent.
- `_sandbox`: the sandbox OAuth2 provider (its API for the recipe, or over HTTPS the OpenID
  Connect issuer the bot gets its own token from).
- `_store`: a store holding the bench person's connections, for `python app.py --workers N`
  (prints its URI and database name as one JSON line).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import math
import os
import signal
import ssl
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from pymongo import monitoring

from bench.turns_data import (
    CARD_CONTENT_TYPE,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_REDIRECT,
    SANDBOX_SECRET_VARIABLE,
    TENANT_ID,
    BotOptions,
    card_action,
    drop_database,
    populate,
    teams_message,
    write_recipe_files,
)
from bench.turns_procs import HOST
from settings import Settings, load_settings

STATS_PATH = "/_bench/stats"
AUTHORIZATION_VARIABLE = "BENCH_AUTHORIZATION"

Json = dict[str, Any]


async def wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def serve_until_signalled(app: web.Application, port: int) -> None:
    """Serve `app` on loopback until SIGTERM/SIGINT, then run its cleanup (stores stop cleanly)."""
    # No access log in either bot: a log line per turn would be measured, not the bot.
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, HOST, port).start()
        await wait_for_signal()
    finally:
        await runner.cleanup()


# --------------------------------------------------------------------------- role: connector


@dataclass
class ConnectorSink:
    """The Bot Framework connector's reply routes, answering `{"id": ...}` and counting replies
    by kind, so the run shows what each bot really answered."""

    kinds: Counter[str] = field(default_factory=Counter)
    _ids: Iterator[int] = field(default_factory=itertools.count)

    async def reply(self, request: web.Request) -> web.Response:
        self.kinds[reply_kind(json.loads(await request.read()))] += 1
        return web.json_response({"id": f"reply-{next(self._ids)}"})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(dict(self.kinds))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v3/conversations/{conversation}/activities", self.reply)
        app.router.add_post("/v3/conversations/{conversation}/activities/{activity}", self.reply)
        app.router.add_get(STATS_PATH, self.stats)
        return app


def reply_kind(activity: Any) -> str:
    """ "text", "Adaptive Card with N choices" (the picklist) or a card's first two lines."""
    if not isinstance(activity, dict):
        return "not an activity"
    for attachment in activity.get("attachments") or []:
        if attachment.get("contentType") == CARD_CONTENT_TYPE:
            content = attachment.get("content")
            choices = _count_choices(content)
            if choices:
                return f"Adaptive Card with {choices} choices"
            return f"Adaptive Card {' / '.join(_first_texts(content))!r}"
    return "text" if activity.get("text") else f"{activity.get('type')} without text"


def _count_choices(element: Any) -> int:
    if isinstance(element, list):
        return sum(_count_choices(item) for item in element)
    if not isinstance(element, dict):
        return 0
    if element.get("type") == "Input.ChoiceSet":
        return len(element.get("choices") or [])
    return sum(_count_choices(value) for value in element.values())


def _first_texts(card: Any, count: int = 2, width: int = 48) -> list[str]:
    body = card.get("body") if isinstance(card, dict) else None
    texts = [
        str(element.get("text"))[:width]
        for element in body or []
        if isinstance(element, dict) and element.get("type") == "TextBlock"
    ]
    return texts[:count]


async def run_connector(port: int) -> None:
    await serve_until_signalled(ConnectorSink().app(), port)


# --------------------------------------------------------------------------- role: bot


@dataclass
class BotCounters:
    """What a bot process builds and asks for, counted in the process without touching the
    product: constructions (wrapped `__init__`s) and the database commands sent (a pymongo
    `CommandListener`, registered before any client exists; heartbeats are not commands)."""

    built: Counter[str] = field(default_factory=Counter)
    commands: Counter[str] = field(default_factory=Counter)

    def count_constructions(self, cls: type[Any], name: str) -> None:
        """Wrap `cls.__init__` so every instance built (by a library or by us) is counted."""
        original: Callable[..., None] = cls.__init__
        built = self.built
        built[name] = 0  # shown even before the first one

        def counting_init(instance: Any, *args: Any, **kwargs: Any) -> None:
            built[name] += 1
            original(instance, *args, **kwargs)

        cls.__init__ = counting_init  # type: ignore[method-assign]

    def snapshot(self) -> Json:
        return {"built": dict(self.built), "commands": dict(self.commands), "pid": os.getpid()}


class CommandCounter(monitoring.CommandListener):
    def __init__(self, commands: Counter[str]) -> None:
        self._commands = commands

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self._commands[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


COUNTERS = BotCounters()


def start_counting(kind: str) -> None:
    """Before any adapter, session or database client exists, so the first ones count too.
    The SDK's clients are counted in the stock bot only: this bot does not import the SDK."""
    if kind == "stock":
        from botframework.connector.aio import ConnectorClient
        from botframework.connector.token_api.aio import TokenApiClient

        COUNTERS.count_constructions(ConnectorClient, "ConnectorClient")
        COUNTERS.count_constructions(TokenApiClient, "TokenApiClient")
    COUNTERS.count_constructions(aiohttp.ClientSession, "ClientSession")
    monitoring.register(CommandCounter(COUNTERS.commands))


async def run_stock_bot(port: int) -> None:
    from bench.stock_echo_bot import create_app

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(COUNTERS.snapshot())

    app = create_app()
    app.router.add_get(STATS_PATH, stats)
    await serve_until_signalled(app, port)


def our_settings(
    uri: str, database_name: str, port: int, data_dir: Path, options: BotOptions
) -> Settings:
    """The bot's settings: explicit values win over the environment, so a developer's
    MicrosoftAppId (auth on, every unsigned request a 401) or tenant list cannot leak in."""
    values: dict[str, Any] = {
        "mongodb_uri": uri,
        "database_name": database_name,
        "host": HOST,
        "port": port,
        "public_base_url": f"http://{HOST}:{port}",
        "log_level": "WARNING",
        "data_dir": data_dir,
        "app_id": "",
        "allowed_tenant_ids": "",
        "token_encryption_keys": options.token_key,
        "apps_file": None,
        "recipes_file": None,
    }
    if options.sandbox_url:
        apps_file, recipes_file = write_recipe_files(data_dir, options.sandbox_url)
        values |= {"apps_file": apps_file, "recipes_file": recipes_file}
        os.environ[SANDBOX_SECRET_VARIABLE] = SANDBOX_CLIENT_SECRET
    if options.auth:
        values |= {"allowed_tenant_ids": TENANT_ID, **options.auth}
    return load_settings(_env_file=None, **values)


@contextlib.asynccontextmanager
async def bench_store(options: BotOptions) -> AsyncIterator[tuple[str, str, Path, float]]:
    """The store a bot of this run finds, populated: (URI, database, scratch folder, seconds
    it took to load). The embedded store, unless MONGODB_URI names one."""
    from storage.embedded import MEMORY, EmbeddedMongo

    external_uri = os.environ.get("MONGODB_URI") or None
    database_name = f"bench_turns_{uuid.uuid4().hex[:12]}"
    async with contextlib.AsyncExitStack() as stack:
        uri = external_uri or await stack.enter_async_context(
            EmbeddedMongo(command="secantusd-py", storage=MEMORY)
        )
        if external_uri:
            stack.push_async_callback(drop_database, uri, database_name)
        # Whatever the app keeps on disk goes to a scratch folder, not the work tree's ./data.
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-turns-")))
        yield uri, database_name, data_dir, time.monotonic()


async def run_our_bot(port: int, options: BotOptions) -> None:
    from app import WIRING_KEY, served_app

    async with bench_store(options) as (uri, database_name, data_dir, began):
        settings = our_settings(uri, database_name, port, data_dir, options)
        ids = await populate(uri, database_name, options, apps_file=settings.apps_file)
        loaded_s = time.monotonic() - began

        async def stats(request: web.Request) -> web.Response:
            wiring = request.app[WIRING_KEY]
            tokens = wiring.bot_tokens
            return web.json_response(
                COUNTERS.snapshot()
                | {
                    "posts": wiring.connector.posts,
                    "retries": wiring.connector.retries,
                    "token_requests": tokens.requests if tokens is not None else None,
                    "connections": ids,
                    "loaded_s": loaded_s,
                }
            )

        app = served_app(settings)
        app.router.add_get(STATS_PATH, stats)
        await serve_until_signalled(app, port)


async def run_floor_bot(port: int, options: BotOptions) -> None:
    from bench.floor_bot import POSTS_KEY, create_app

    async with bench_store(options) as (uri, database_name, _, began):
        ids = await populate(uri, database_name, options)
        loaded_s = time.monotonic() - began
        app = create_app(uri, database_name)

        async def stats(request: web.Request) -> web.Response:
            snapshot = COUNTERS.snapshot()
            counts = {"posts": app[POSTS_KEY]["count"], "retries": 0, "token_requests": None}
            return web.json_response(snapshot | counts | {"connections": ids, "loaded_s": loaded_s})

        app.router.add_get(STATS_PATH, stats)
        await serve_until_signalled(app, port)


async def run_bot(kind: str, port: int, options: BotOptions) -> None:
    start_counting(kind)
    if kind == "stock":
        await run_stock_bot(port)
    elif kind == "floor":
        await run_floor_bot(port, options)
    else:
        await run_our_bot(port, options)


# --------------------------------------------------------------------------- role: store


async def run_store(options: BotOptions) -> None:
    """A store with the bench person's connections for `python app.py --workers N`."""
    from storage.embedded import MEMORY, EmbeddedMongo

    external_uri = os.environ.get("MONGODB_URI") or None
    database_name = f"bench_turns_{uuid.uuid4().hex[:12]}"
    async with contextlib.AsyncExitStack() as stack:
        uri = external_uri or await stack.enter_async_context(
            EmbeddedMongo(command="secantusd-py", storage=MEMORY)
        )
        if external_uri:
            stack.push_async_callback(drop_database, uri, database_name)
        await populate(uri, database_name, options)
        print(json.dumps({"uri": uri, "database": database_name}), flush=True)
        await wait_for_signal()


# --------------------------------------------------------------------------- role: sandbox


def run_sandbox(arguments: argparse.Namespace) -> None:
    """The sandbox provider until SIGTERM (it keeps nothing worth a clean stop)."""
    from werkzeug.serving import make_server

    from sandbox import DEFAULT_SCOPES, SandboxClient, SandboxConfig, create_app

    client = SandboxClient(
        arguments.client_id,
        arguments.client_secret,
        redirect_uris=(SANDBOX_REDIRECT,),
        scopes=tuple(arguments.scope or DEFAULT_SCOPES),
    )
    config = SandboxConfig(clients=(client,), oidc_tenant=arguments.issuer_tenant)
    context = None
    if arguments.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(arguments.tls_cert, arguments.tls_key)
    # werkzeug logs every request at INFO: that would be measured too.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server(
        HOST, arguments.port, create_app(config), threaded=True, ssl_context=context
    )
    server.serve_forever()


# --------------------------------------------------------------------------- role: load


def emit(event: str, **values: Any) -> None:
    print(json.dumps({"event": event, **values}), flush=True)


@dataclass
class Request:
    """What each turn of the load generator sends, and how its HTTP answer is judged."""

    template: Json
    expect_card: bool

    def body(self, activity_id: str) -> bytes:
        # Workers share one template: nothing awaits between setting the id and dumping.
        self.template["id"] = activity_id
        return json.dumps(self.template).encode()

    def judge(self, status: int, body: bytes) -> str:
        if not 200 <= status < 300:
            return f"HTTP {status}"
        if self.expect_card:
            try:
                answer = json.loads(body)
            except ValueError:
                return "answer not JSON"
            if not isinstance(answer, dict) or answer.get("type") != CARD_CONTENT_TYPE:
                return "answer not a card"
        return "ok"


def request_of(arguments: argparse.Namespace) -> Request:
    if arguments.request == "card":
        return Request(card_action(arguments.service_url, arguments.connection_id), True)
    return Request(teams_message(arguments.service_url, arguments.text), False)


async def read_go() -> None:
    """Wait for the parent's "go" line on stdin (it has read every counter by then)."""
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def generate_load(
    url: str,
    request: Request,
    *,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    go: Callable[[], Awaitable[None]] = read_go,
) -> None:
    """Closed loop: `concurrency` workers each POST a turn and wait for its answer.

    After the warm-up every worker finishes its turn in flight and waits: with the bot idle the
    parent reads its counters ("measuring"), then says go; the window opens and lasts
    `duration_s`, after which no turn starts, and once the last one in flight has finished the
    bot is idle again for the parent's second reading ("result"). So the counters' growth
    belongs to exactly the turns served since go (`ok_since_window`, the tail included).
    """
    loop = asyncio.get_running_loop()
    warm_until = loop.time() + warmup_s
    measure_until = math.inf  # set when the parent says go
    idle = asyncio.Barrier(concurrency + 1)
    started = asyncio.Event()
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    served = Counter[str]()
    headers = {"Content-Type": "application/json"}
    if os.environ.get(AUTHORIZATION_VARIABLE):
        headers["Authorization"] = os.environ[AUTHORIZATION_VARIABLE]

    async def one_turn(session: aiohttp.ClientSession, activity_id: str) -> tuple[str, float]:
        body = request.body(activity_id)
        began = loop.time()
        try:
            async with session.post(url, data=body, headers=headers) as response:
                outcome = request.judge(response.status, await response.read())
        except (aiohttp.ClientError, TimeoutError) as error:
            outcome = type(error).__name__
        if outcome == "ok":
            served["measured" if started.is_set() else "warm-up"] += 1
        return outcome, (loop.time() - began) * 1000

    async def worker(session: aiohttp.ClientSession, number: int) -> None:
        sequence = itertools.count()
        while loop.time() < warm_until:
            await one_turn(session, f"bench-{number}-{next(sequence)}")
        await idle.wait()
        await started.wait()
        while loop.time() < measure_until:
            outcome, latency_ms = await one_turn(session, f"bench-{number}-{next(sequence)}")
            # A turn counts when it *completes* inside the window, the usual closed-loop rule.
            if loop.time() < measure_until:
                if outcome == "ok":
                    latencies.append(round(latency_ms, 3))
                else:
                    errors[outcome] += 1

    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        workers = [asyncio.create_task(worker(session, n)) for n in range(concurrency)]
        await idle.wait()
        emit("measuring")
        await go()
        measure_until = loop.time() + duration_s
        started.set()
        await asyncio.gather(*workers)
    emit(
        "result",
        window_s=duration_s,
        latencies_ms=latencies,
        errors=dict(errors),
        ok_total=served.total(),
        ok_since_window=served["measured"],
    )


# --------------------------------------------------------------------------- command line


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.turns_roles (internal)")
    parser.add_argument("role", choices=["_connector", "_bot", "_load", "_sandbox", "_store"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--kind", choices=["stock", "floor", "ours"])
    parser.add_argument("--options", default="{}", help="BotOptions as JSON")
    parser.add_argument("--url")
    parser.add_argument("--service-url")
    parser.add_argument("--request", choices=["message", "card"], default="message")
    parser.add_argument("--text", default="")
    parser.add_argument("--connection-id", default="")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--client-id", default=SANDBOX_CLIENT_ID)
    parser.add_argument("--client-secret", default=SANDBOX_CLIENT_SECRET)
    parser.add_argument("--scope", action="append")
    parser.add_argument("--issuer-tenant")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)
    logging.basicConfig(level=logging.WARNING)
    if arguments.role == "_connector":
        asyncio.run(run_connector(arguments.port))
    elif arguments.role == "_bot":
        options = BotOptions.decode(arguments.options)
        asyncio.run(run_bot(arguments.kind, arguments.port, options))
    elif arguments.role == "_store":
        asyncio.run(run_store(BotOptions.decode(arguments.options)))
    elif arguments.role == "_sandbox":
        run_sandbox(arguments)
    else:
        asyncio.run(
            generate_load(
                arguments.url,
                request_of(arguments),
                concurrency=arguments.concurrency,
                warmup_s=arguments.warmup,
                duration_s=arguments.duration,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
