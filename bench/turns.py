"""Turns per second, latency, CPU and round trips per turn: the stock echo bot against this bot.

    python -m bench.turns [--duration 10] [--warmup 3] [--concurrency 16] [--concurrency-low 4]
                          [--connections 5] [--others-small 1000] [--others-large 100000]
                          [--workers 2] [--only stock,floor,ours,recipe,workers,list,auth]
                          [--profile DIR] [--no-pin] [--allow-busy]

One run measures, one pass after the other, each pass a closed loop (N conversations, each
POSTing a Teams-shaped activity and waiting for the answer; a warm-up, then a fixed window):

  [stock@16], [stock@4]  the baseline: the stock botbuilder echo bot (bench/stock_echo_bot.py,
                         the SDK samples' shape), authentication off;
  [floor@16], [floor@4]  the floor (bench/floor_bot.py): the same list turn with only the parts
                         it cannot do without (aiohttp's server, one `find` through the
                         product's own PyMongo client, a 5-choice card as a dict, one POST on a
                         shared session): what this machine and these libraries allow at best;
  [ours@16], [ours@4]    this bot's real application (`app.create_app`) answering
                         `personal_connections` for a person with five runtime connections;
  [card]                 (a) Disconnect pressed on one of them: an `adaptiveCard/action` invoke
                         whose HTTP answer must be a card (nothing goes to the connector); the
                         first press disconnects it, the others find it Disconnected already;
  [recipe]               (b) the recipe phrase `sandbox opportunity "Bench deal" 5000`, run
                         through the parent connection (valid tokens from the sandbox provider,
                         its API over HTTP); the reply is the result card;
  [workers]              (c) `python app.py --workers 2` (serving.py) serving personal_connections;
  [list-small],          (d) personal_connections at the low concurrency with 1,000 and 100,000
  [list-large]           connections of other people stored (the bench person keeps 5);
  [auth]                 (e) personal_connections with authentication on: channel tokens signed
                         by a local key served as OpenID metadata, the bot's own token from the
                         sandbox as OpenID Connect issuer over HTTPS (BOT_TOKEN_AUTHORITY).

Every part is its own process on 127.0.0.1 (`bench/turns_roles.py`): the bot, a loopback Bot
Framework connector both bots reply to, the load generator, the sandbox provider, and each
bot's store. With two or more CPUs the bot gets the first CPU to itself and everything else
shares the rest, so figures are per bot core; with --workers the bot's processes may use every
CPU (the others stay where they were).

Per pass it prints turns/s, p50/p99, and per turn: the bot's CPU milliseconds (its process's
CPU seconds over the window), connector clients built (aiohttp `ClientSession`s in this bot,
the SDK's `ConnectorClient`s in the stock bot, counted by wrapping their constructors), posts the
connector received, the bot's token requests (and, with authentication on, those the issuer
received), and database round trips (a pymongo `CommandListener` in the bot process). The load
generator lets the turns in flight finish before the window opens and after it closes, and the
counters are read at both moments, so they belong to exactly the window's turns. [workers] adds
its turns/s per worker and its ratio to [ours@16]; [list-large] is judged against [list-small].
Then the ratios to the stock bot from the same run (turns/s, p99, CPU per turn stock/ours), this
bot against the floor (what the product's own code adds), and the targets of issue #14 as
PASS/FAIL/SKIP, each with the floor's own figure beside it.

If processes outside the run took more than 15% of a core during a measured window, it stops and
prints why instead of the figures (exit 3); `--allow-busy` prints them marked UNRELIABLE. Exit 0
when every target passes, 1 when one fails. `--profile DIR` samples each bot process during its
window with py-spy (`pip install py-spy`) and prints where its CPU goes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import ssl
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.fernet import Fernet

from bench.turns_data import (
    AUTH_APP_ID,
    AUTH_ISSUER_TENANT,
    AUTH_SCOPE,
    AUTH_SECRET,
    COMMAND,
    RECIPE_PHRASE,
    BotOptions,
)
from bench.turns_procs import (
    HOST,
    OTHERS,
    REPO,
    Child,
    CpuWindow,
    cpu_seconds,
    descendants,
    free_port,
    get_json,
    machine_busy_seconds,
    pin,
    start_child,
    start_role,
    wait_until_serving,
)
from bench.turns_report import (
    OTHERS_WARNING_PERCENT,
    PROFILE_RATE,
    LoadResult,
    Measured,
    floor_lines,
    pass_lines,
    ratio_lines,
    summarize_profile,
    verdict_lines,
    verdicts,
)
from bench.turns_roles import AUTHORIZATION_VARIABLE, STATS_PATH
from tests.support.tls import LocalTls, make_tls
from tests.support.tokens import SigningKeyServer

# bench/console.py measures with these.
__all__ = [
    "HOST",
    "OTHERS_WARNING_PERCENT",
    "cpu_seconds",
    "descendants",
    "free_port",
    "machine_busy_seconds",
    "main",
]

SESSIONS = ("stock", "floor", "ours", "recipe", "workers", "list", "auth")
LOAD_START_TIMEOUT_S = 3600.0  # a bot loading 100,000 connections starts after minutes
EXIT_FAILED, EXIT_USAGE, EXIT_BUSY = 1, 2, 3

Json = dict[str, Any]


@dataclass(frozen=True)
class Plan:
    duration_s: float
    warmup_s: float
    concurrency: int
    concurrency_low: int
    connections: int
    others_small: int
    others_large: int
    workers: int
    sessions: tuple[str, ...]
    bot_cpus: set[int] | None
    side_cpus: set[int] | None
    profile_dir: Path | None
    workdir: Path
    cores: int
    allow_busy: bool
    token_key: str = field(default_factory=lambda: Fernet.generate_key().decode())

    def options(self, **changes: Any) -> BotOptions:
        return BotOptions(connections=self.connections, token_key=self.token_key, **changes)


@dataclass(frozen=True)
class PassSpec:
    """One measured pass: what the load generator sends, how hard, and whose CPU is the bot's."""

    key: str
    title: str
    concurrency: int
    request: str = "message"  # or "card": Disconnect on the person's first connection
    text: str = COMMAND
    bot_groups: tuple[str, ...] = ("bot",)


@dataclass
class Rig:
    """What every pass of the run shares: the plan, an HTTP client and the connector."""

    plan: Plan
    http: aiohttp.ClientSession
    sink: Child
    sink_url: str
    results: dict[str, Measured] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    stopping: list[asyncio.Task[None]] = field(default_factory=list)

    def stop_later(self, *children: Child) -> None:
        """Stop `children`, one after the other, while the next processes start (a bot with
        its store takes seconds); `stopped` waits for them before the next window opens."""

        async def stop_in_order() -> None:
            for child in children:
                await child.stop()

        self.stopping.append(asyncio.create_task(stop_in_order()))

    async def stopped(self) -> None:
        stopping, self.stopping = self.stopping, []
        await asyncio.gather(*stopping)

    @property
    def service_url(self) -> str:
        return self.sink_url + "/"

    def busy_refusal(self) -> str | None:
        """Why the figures cannot be printed (a window disturbed), unless --allow-busy."""
        busy = [run for run in self.results.values() if run.busy]
        if not busy or self.plan.allow_busy:
            return None
        run = busy[0]
        return (
            f"processes outside the run took {run.others_percent:.0f}% of a core during the "
            f"measured window of [{run.key}] (limit {OTHERS_WARNING_PERCENT}%): the figures "
            "would be disturbed, so none are printed. Run again on a quiet machine, or pass "
            "--allow-busy to print them marked UNRELIABLE."
        )


@dataclass
class Bot:
    """A bot process serving, with its store's processes (the bot's children)."""

    child: Child
    url: str
    store_pids: list[int]
    stats: Json


# --------------------------------------------------------------------------- one pass


def _delta(after: Json, before: Json, *path: str) -> int | None:
    for key in path:
        after, before = after.get(key) or {}, before.get(key) or {}
    if not isinstance(after, int | float) or isinstance(after, bool):
        return None
    return int(after - (before if isinstance(before, int | float) else 0))


async def _snapshot(rig: Rig, stats_url: str | None, sandbox_url: str | None) -> Json:
    """The counters of the bot, the connector and the sandbox's API, at one moment."""
    snapshot: Json = {"sink": await get_json(rig.http, rig.sink_url + STATS_PATH)}
    if stats_url:
        snapshot["bot"] = await get_json(rig.http, stats_url)
    if sandbox_url:
        snapshot["sandbox"] = await get_json(rig.http, sandbox_url + "/_stats")
    return snapshot


def _counted(measured: Measured, before: Json, after: Json) -> None:
    """Fill in the counters' growth over the window."""
    replies = Counter(after["sink"])
    replies.subtract(before["sink"])
    measured.replies = +replies
    measured.posts = sum(measured.replies.values())
    if "bot" in after:
        bot_after, bot_before = after["bot"], before["bot"]
        stock = "ConnectorClient" in bot_after["built"]
        kind = "ConnectorClient" if stock else "ClientSession"
        measured.client_kind = "SDK ConnectorClient" if stock else "aiohttp ClientSession"
        measured.clients = _delta(bot_after, bot_before, "built", kind) or 0
        measured.clients_in_process = int(bot_after["built"].get(kind, 0))
        commands = Counter(bot_after["commands"])
        commands.subtract(bot_before["commands"])
        measured.commands = +commands
        measured.token_requests = _delta(bot_after, bot_before, "token_requests")
    if "sandbox" in after:
        measured.sandbox_actions = _delta(after, before, "sandbox", "api.opportunities") or 0


def _load_arguments(rig: Rig, spec: PassSpec, bot_url: str, connection_id: str) -> list[str]:
    plan = rig.plan
    arguments = ["--url", bot_url + "/api/messages", "--service-url", rig.service_url]
    arguments += ["--request", spec.request, "--text", spec.text, "--connection-id", connection_id]
    arguments += ["--concurrency", str(spec.concurrency), "--warmup", str(plan.warmup_s)]
    return [*arguments, "--duration", str(plan.duration_s)]


async def measure_pass(
    rig: Rig,
    spec: PassSpec,
    bot_url: str,
    watched: dict[str, list[int]],
    *,
    stats_url: str | None = None,
    sandbox_url: str | None = None,
    connection_id: str = "",
    load_env: dict[str, str] | None = None,
    profile_pid: int | None = None,
) -> Measured:
    """Run the load generator once against `bot_url`, measuring the window."""
    plan = rig.plan
    await rig.stopped()  # nothing from an earlier session may run during the window
    print(f"measuring [{spec.key}] {spec.title} ...", flush=True)
    load = await start_role(
        "_load",
        plan.workdir,
        *_load_arguments(rig, spec, bot_url, connection_id),
        name=f"load-{spec.key}",
        stdout_pipe=True,
        stdin_pipe=True,
        env={**os.environ, **(load_env or {})},
    )
    spy: asyncio.subprocess.Process | None = None
    try:
        pin(load.pid, plan.side_cpus)
        groups = {**watched, "connector": [rig.sink.pid], "load generator": [load.pid]}
        window = CpuWindow({**groups, "this script": [os.getpid()]})
        profile = _profile_path(plan, spec) if profile_pid else None
        before: Json = {}
        measured: Measured | None = None
        assert load.process.stdout is not None
        async for line in load.process.stdout:
            event = json.loads(line)
            if event["event"] == "measuring":
                if profile is not None and profile_pid is not None:
                    spy = await start_profiler(profile_pid, profile, plan)
                    window.watched = {**window.watched, "profiler": [spy.pid]}
                window.open()
                before = await _snapshot(rig, stats_url, sandbox_url)
                await _say_go(load)
            elif event["event"] == "result":
                wall, used = window.close()
                after = await _snapshot(rig, stats_url, sandbox_url)
                measured = _measured(spec, event, wall, used, profile)
                _counted(measured, before, after)
        await load.process.wait()
        if measured is None:
            raise RuntimeError(f"the load generator gave no result:\n{load.tail()}")
        if spy is not None:
            await spy.wait()
        measured.notes += _saturation_note(plan, measured)
        rig.results[spec.key] = measured
        return measured
    finally:
        if spy is not None and spy.returncode is None:
            spy.terminate()
            await spy.wait()
        await load.stop()


def _saturation_note(plan: Plan, measured: Measured) -> list[str]:
    """A note when the shared CPU, not the bot, was the limit of a single-process pass."""
    if not plan.side_cpus or measured.bot_groups != ("bot",):
        return []
    shared = sum(
        measured.percent(name)
        for name in measured.cpu_s
        if name not in ("bot", OTHERS) and not math.isnan(measured.percent(name))
    )
    if measured.percent("bot") >= 90 or shared < 90 * len(plan.side_cpus):
        return []
    return [
        f"the shared CPU was saturated ({shared:.0f}%) while the bot used "
        f"{measured.percent('bot'):.0f}% of its own: turns/s and latency understate this bot "
        "(its CPU per turn does not)"
    ]


async def _say_go(load: Child) -> None:
    assert load.process.stdin is not None
    load.process.stdin.write(b"go\n")
    await load.process.stdin.drain()


def _measured(
    spec: PassSpec, event: Json, wall: float, used: dict[str, float], profile: Path | None
) -> Measured:
    load = LoadResult(
        window_s=float(event["window_s"]),
        latencies_ms=list(event["latencies_ms"]),
        errors=Counter(event["errors"]),
        ok_total=int(event["ok_total"]),
        ok_since_window=int(event["ok_since_window"]),
    )
    return Measured(
        key=spec.key,
        title=spec.title,
        concurrency=spec.concurrency,
        load=load,
        wall_s=wall,
        cpu_s=used,
        bot_groups=spec.bot_groups,
        profile=profile,
    )


def _profile_path(plan: Plan, spec: PassSpec) -> Path | None:
    if plan.profile_dir is None:
        return None
    return plan.profile_dir / f"{spec.key.replace('@', '-at-')}.txt"


async def start_profiler(pid: int, output: Path, plan: Plan) -> asyncio.subprocess.Process:
    """py-spy, sampling the bot without pausing it, for the measured window."""
    executable = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with (plan.workdir / "py-spy.log").open("ab") as log:
        spy = await asyncio.create_subprocess_exec(
            executable,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, math.floor(plan.duration_s))),
            "--rate",
            str(PROFILE_RATE),
            "--nonblocking",
            # Only the thread holding the GIL: that is where this process's CPU goes, and idle
            # thread-pool workers are not counted as busy.
            "--gil",
            "--format",
            "raw",
            "--output",
            str(output),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    pin(spy.pid, plan.side_cpus)
    return spy


# --------------------------------------------------------------------------- a bot process


@asynccontextmanager
async def running_bot(
    rig: Rig,
    name: str,
    kind: str,
    options: BotOptions,
    *,
    env: dict[str, str] | None = None,
    start_timeout_s: float = 120.0,
) -> AsyncIterator[Bot]:
    """A bot process of `bench.turns_roles`, serving and pinned, for the block's duration."""
    plan = rig.plan
    port = free_port()
    url = f"http://{HOST}:{port}"
    arguments = ["--kind", kind, "--port", str(port), "--options", options.encode()]
    child = await start_role("_bot", plan.workdir, *arguments, name=f"bot-{name}", env=env)
    try:
        stats = await wait_until_serving(
            rig.http, url + STATS_PATH, child, timeout_s=start_timeout_s
        )
        store_pids = descendants(child.pid)
        pin(child.pid, plan.bot_cpus)
        for pid in store_pids:
            pin(pid, plan.side_cpus)
        yield Bot(child, url, store_pids, stats)
    finally:
        rig.stop_later(child)


def _watched(bot: Bot) -> dict[str, list[int]]:
    # With MONGODB_URI the store is not a child: its CPU shows under "other processes".
    return {"bot": [bot.child.pid], "store": bot.store_pids}


async def measure_bot_passes(
    rig: Rig, bot: Bot, specs: list[PassSpec], **options: Any
) -> list[Measured]:
    found = []
    for spec in specs:
        found.append(
            await measure_pass(
                rig,
                spec,
                bot.url,
                _watched(bot),
                stats_url=bot.url + STATS_PATH,
                profile_pid=bot.child.pid,
                **options,
            )
        )
        if rig.busy_refusal():
            break
    return found


# --------------------------------------------------------------------------- the sessions


async def _at_both_concurrencies(rig: Rig, kind: str, title: str) -> None:
    """One bot of `kind`, measured at the high then the low concurrency (`{n}` in `title`)."""
    plan = rig.plan
    specs = [
        PassSpec(f"{kind}@{n}", title.format(n=n), n)
        for n in (plan.concurrency, plan.concurrency_low)
    ]
    async with running_bot(rig, kind, kind, plan.options()) as bot:
        await measure_bot_passes(rig, bot, specs)


async def stock_session(rig: Rig) -> None:
    await _at_both_concurrencies(
        rig, "stock", "stock echo bot (bench/stock_echo_bot.py), {n} conversations"
    )


async def floor_session(rig: Rig) -> None:
    """The floor (bench/floor_bot.py): the same turn with only the parts it cannot do without."""
    await _at_both_concurrencies(
        rig,
        "floor",
        "floor (bench/floor_bot.py): parse, one find, a card, one POST, {n} conversations",
    )


async def ours_session(rig: Rig) -> None:
    """personal_connections at both concurrencies, then (a) Disconnect on the same bot."""
    plan = rig.plan
    title = f"personal_connections ({plan.connections} connections), {{n}} conversations"
    high, low = plan.concurrency, plan.concurrency_low
    specs = [PassSpec(f"ours@{n}", title.format(n=n), n) for n in (high, low)]
    card = PassSpec(
        "card",
        f"(a) card action Disconnect (adaptiveCard/action invoke) on one connection, {high} "
        "conversations (Disconnected by the first press: the others find it so)",
        high,
        request="card",
    )
    async with running_bot(rig, "ours", "ours", plan.options()) as bot:
        await measure_bot_passes(rig, bot, specs)
        if rig.busy_refusal():
            return
        [connection_id, *_] = bot.stats["connections"]
        await measure_bot_passes(rig, bot, [card], connection_id=connection_id)


@asynccontextmanager
async def sandbox_process(
    rig: Rig, name: str, *arguments: str, tls: LocalTls | None = None
) -> AsyncIterator[tuple[Child, str, ssl.SSLContext | None]]:
    """The sandbox provider in its own process: (child, base URL, client TLS context)."""
    port = free_port()
    extra = ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)] if tls else []
    child = await start_role(
        "_sandbox", rig.plan.workdir, "--port", str(port), *arguments, *extra, name=name
    )
    scheme = "https" if tls else "http"
    context = ssl.create_default_context(cafile=str(tls.ca_bundle)) if tls else None
    url = f"{scheme}://{HOST}:{port}"
    try:
        await wait_until_serving(rig.http, url + "/_stats", child, **_tls(context))
        yield child, url, context
    finally:
        rig.stop_later(child)


def _tls(context: ssl.SSLContext | None) -> dict[str, Any]:
    return {"ssl": context} if context is not None else {}


async def recipe_session(rig: Rig) -> None:
    """(b) the recipe phrase, acting through the parent connection at the sandbox's API."""
    plan = rig.plan
    spec = PassSpec(
        "recipe",
        f"(b) recipe {RECIPE_PHRASE!r} against the sandbox API, {plan.concurrency} conversations",
        plan.concurrency,
        text=RECIPE_PHRASE,
    )
    async with (
        sandbox_process(rig, "sandbox") as (sandbox, url, _),
        running_bot(rig, "recipe", "ours", plan.options(sandbox_url=url)) as bot,
    ):
        watched = {**_watched(bot), "sandbox": [sandbox.pid]}
        await measure_pass(
            rig,
            spec,
            bot.url,
            watched,
            stats_url=bot.url + STATS_PATH,
            sandbox_url=url,
            profile_pid=bot.child.pid,
        )


async def auth_session(rig: Rig) -> None:
    """(e) authentication on: signed channel tokens in, the bot's own token from an issuer."""
    plan = rig.plan
    spec = PassSpec(
        "auth",
        f"(e) personal_connections, authentication on, {plan.concurrency} conversations",
        plan.concurrency,
    )
    tls = make_tls(plan.workdir / "tls")
    client = ["--client-id", AUTH_APP_ID, "--client-secret", AUTH_SECRET, "--scope", AUTH_SCOPE]
    keys = SigningKeyServer()
    await keys.start()
    try:
        async with sandbox_process(
            rig, "issuer", *client, "--issuer-tenant", AUTH_ISSUER_TENANT, tls=tls
        ) as (_, issuer_url, context):
            auth = {
                "app_id": AUTH_APP_ID,
                "app_password": AUTH_SECRET,
                "openid_metadata_url": keys.metadata_url,
                "bot_token_authority": f"{issuer_url}/{AUTH_ISSUER_TENANT}",
            }
            env = {**os.environ, "REQUESTS_CA_BUNDLE": str(tls.ca_bundle)}
            token = keys.token(audience=AUTH_APP_ID, service_url=rig.service_url)
            async with running_bot(rig, "auth", "ours", plan.options(auth=auth), env=env) as bot:
                [measured] = await measure_bot_passes(
                    rig, bot, [spec], load_env={AUTHORIZATION_VARIABLE: f"Bearer {token}"}
                )
                issued = await get_json(rig.http, issuer_url + "/_stats", **_tls(context))
                measured.issuer_token_requests = int(issued.get("token.client_credentials", 0))
    finally:
        await keys.close()


async def list_session(rig: Rig) -> None:
    """(d) personal_connections at the low concurrency, others' connections stored."""
    plan = rig.plan
    for key, others in (("list-small", plan.others_small), ("list-large", plan.others_large)):
        spec = PassSpec(
            key,
            f"(d) personal_connections with {others:,} connections of other people stored, "
            f"{plan.concurrency_low} conversations",
            plan.concurrency_low,
        )
        print(f"loading {others:,} connections of other people for [{key}] ...", flush=True)
        options = plan.options(others=others)
        async with running_bot(
            rig, key, "ours", options, start_timeout_s=LOAD_START_TIMEOUT_S
        ) as bot:
            measured = await measure_bot_passes(rig, bot, [spec])
            loaded = float(bot.stats.get("loaded_s") or 0)
            for run in measured:
                run.notes.append(f"stored and indexed in {loaded:.0f} s before the bot started")
        if rig.busy_refusal():
            return


# --------------------------------------------------------------------------- (c) workers


def workers_unavailable() -> str | None:
    """Why `python app.py --workers N` cannot run here (None: it can)."""
    serving, app = REPO / "serving.py", REPO / "app.py"
    if not serving.exists() or "def run_supervisor" not in serving.read_text():
        return "serving.py (python app.py --workers N) is not in this tree yet"
    if "--workers" not in app.read_text():
        return "app.py has no --workers option yet"
    return None


def app_environment(uri: str, database: str, port: int, plan: Plan) -> dict[str, str]:
    """`python app.py`'s environment: none of the developer's settings, the bench's store."""
    from settings import Settings

    names = {name.casefold() for name in Settings.model_fields}
    for spec in Settings.model_fields.values():
        choices = getattr(spec.validation_alias, "choices", ())
        names |= {str(choice).casefold() for choice in choices}
    env = {key: value for key, value in os.environ.items() if key.casefold() not in names}
    data_dir = plan.workdir / "workers-data"
    data_dir.mkdir(exist_ok=True)
    return env | {
        "MONGODB_URI": uri,
        "DATABASE_NAME": database,
        "HOST": HOST,
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "DATA_DIR": str(data_dir),
        "TOKEN_ENCRYPTION_KEYS": plan.token_key,
    }


async def wait_for_workers(rig: Rig, url: str, supervisor: Child, count: int) -> list[int]:
    """The workers' pids, once each has answered /healthz (each probe a new connection)."""
    seen: set[int] = set()
    deadline = time.monotonic() + 120
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as probe:
        while len(seen) < count:
            if supervisor.process.returncode is not None:
                raise RuntimeError(f"app.py --workers exited:\n{supervisor.tail()}")
            try:
                async with probe.get(url + "/healthz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                    seen.add(int(r.headers.get("X-Process-Id", "0")))
            except (aiohttp.ClientError, TimeoutError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(seen)} of {count} workers answered:\n{supervisor.tail()}")
            await asyncio.sleep(0.05)  # a readiness poll's interval
    return sorted(seen - {0})


async def workers_session(rig: Rig) -> None:
    """(c) personal_connections from `python app.py --workers N` on one port."""
    plan = rig.plan
    reason = workers_unavailable()
    if reason:
        rig.skipped["workers"] = reason
        print(f"(c) --workers skipped: {reason}", flush=True)
        return
    store = await start_role(
        "_store", plan.workdir, "--options", plan.options().encode(), stdout_pipe=True
    )
    supervisor: Child | None = None
    try:
        assert store.process.stdout is not None
        line = await asyncio.wait_for(store.process.stdout.readline(), 120)
        if not line:
            raise RuntimeError(f"the store did not start:\n{store.tail()}")
        found = json.loads(line)
        port = free_port()
        env = app_environment(found["uri"], found["database"], port, plan)
        command = [str(REPO / "app.py"), "--workers", str(plan.workers)]
        supervisor = await start_child("workers", plan.workdir, command, env=env, cwd=plan.workdir)
        await _measure_workers(rig, store, supervisor, f"http://{HOST}:{port}")
    finally:
        rig.stop_later(*filter(None, [supervisor, store]))  # the workers before their store


async def _measure_workers(rig: Rig, store: Child, supervisor: Child, url: str) -> None:
    plan = rig.plan
    every_cpu = (plan.bot_cpus or set()) | (plan.side_cpus or set())
    pin(supervisor.pid, every_cpu)
    workers = await wait_for_workers(rig, url, supervisor, plan.workers)
    for pid in workers:
        pin(pid, every_cpu)
    store_pids = [store.pid, *descendants(store.pid)]
    for pid in store_pids:
        pin(pid, plan.side_cpus)
    groups = tuple(f"worker {number}" for number in range(1, len(workers) + 1))
    spec = PassSpec(
        "workers",
        f"(c) personal_connections, python app.py --workers {plan.workers}, "
        f"{plan.concurrency} conversations",
        plan.concurrency,
        bot_groups=groups,
    )
    watched = dict(zip(groups, ([pid] for pid in workers), strict=True))
    watched |= {"supervisor": [supervisor.pid], "store": store_pids}
    measured = await measure_pass(rig, spec, url, watched)
    measured.notes.append(_workers_note(rig, measured, len(workers)))


def _workers_note(rig: Rig, measured: Measured, workers: int) -> str:
    one = rig.results.get(f"ours@{rig.plan.concurrency}")
    per_worker = measured.load.turns_per_s / workers
    ratio = (
        f"{measured.load.turns_per_s / one.load.turns_per_s:.2f}× the one-worker figure"
        if one and one.load.turns_per_s
        else "no one-worker figure"
    )
    pinned = "any CPU" if rig.plan.bot_cpus else "any CPU (nothing pinned)"
    return (
        f"{workers} workers: {per_worker:.1f} turns/s per worker; {ratio} "
        f"of this run ([ours@{rig.plan.concurrency}], one process on its own CPU). The "
        f"workers could use {pinned}; the load generator, the connector and the store stayed "
        "on their CPU, so the workers shared it with them."
    )


# --------------------------------------------------------------------------- the run


SESSION_RUNNERS: dict[str, Callable[[Rig], Awaitable[None]]] = {
    "stock": stock_session,
    "floor": floor_session,
    "ours": ours_session,
    "recipe": recipe_session,
    "workers": workers_session,
    "list": list_session,
    "auth": auth_session,
}


async def orchestrate(plan: Plan) -> Rig:
    """Every session of the plan, in order; stops at the first disturbed window (unless
    --allow-busy)."""
    port = free_port()
    sink = await start_role("_connector", plan.workdir, "--port", str(port))
    try:
        async with aiohttp.ClientSession() as http:
            rig = Rig(plan, http, sink, f"http://{HOST}:{port}")
            await wait_until_serving(http, rig.sink_url + STATS_PATH, sink)
            pin(sink.pid, plan.side_cpus)
            try:
                for name in plan.sessions:
                    await SESSION_RUNNERS[name](rig)
                    if rig.busy_refusal():
                        break
            finally:
                await rig.stopped()
            return rig
    finally:
        await sink.stop()


def report(rig: Rig) -> int:
    """Print every pass, the ratios and the targets; the exit status."""
    plan = rig.plan
    runs = rig.results
    unreliable = any(run.busy for run in runs.values())
    print()
    if unreliable:
        print("UNRELIABLE: processes outside the run took CPU during a measured window")
        print(f"(more than {OTHERS_WARNING_PERCENT}% of a core); printed because of --allow-busy.")
        print()
    for run in runs.values():
        print("\n".join(pass_lines(run)))
        print()
    for key, reason in rig.skipped.items():
        print(f"[{key}] skipped: {reason}")
    low, high = plan.concurrency_low, plan.concurrency
    print("\n".join(ratio_lines(runs, lambda n: runs.get(f"stock@{n}"))))
    print()
    against_floor = floor_lines(runs)
    if against_floor:
        print("\n".join(against_floor))
        print()
    found = verdicts(runs, low, high, (plan.others_small, plan.others_large))
    print("Targets (issue #14)" + (", UNRELIABLE:" if unreliable else ":"))
    print("\n".join(verdict_lines(found)))
    print()
    print_method(plan)
    for run in runs.values():
        if run.profile is not None:
            print()
            print(f"Profile of [{run.key}] (py-spy, raw stacks in {run.profile}):")
            print(summarize_profile(run.profile, plan.duration_s))
    return EXIT_FAILED if any(v.passed is False for v in found) else 0


def print_method(plan: Plan) -> None:
    print(f"Method: closed loop, {plan.warmup_s:g} s warm-up then {plan.duration_s:g} s measured")
    print("per pass; all processes on 127.0.0.1; no access log (app.py's, with --workers, is")
    print("below its LOG_LEVEL=WARNING).")
    if plan.bot_cpus:
        print(
            f"CPU: {plan.cores} cores. Each bot had CPU {_cpus(plan.bot_cpus)} to itself; the "
            "load generator, the connector, the stores, the sandbox and this script shared CPU "
            f"{_cpus(plan.side_cpus)} (with --workers the workers could use every CPU)."
        )
        print("So the figures are per bot core, and the load generator still competes with the")
        print("connector and the store for its core: when that core is near 100% above, the")
        print("figures understate the bot.")
    else:
        print(
            f"CPU: {plan.cores} core(s), nothing pinned: the load generator, the connector and the "
            "store compete with the bot for CPU, so the figures understate the bot."
        )


def _cpus(cpus: set[int] | None) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus or ()))


# --------------------------------------------------------------------------- command line


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.turns", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per pass")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per pass")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent conversations")
    parser.add_argument(
        "--concurrency-low", type=int, default=4, help="the low concurrency (p99, list latency)"
    )
    parser.add_argument(
        "--connections", type=int, default=5, help="runtime connections of the bench person"
    )
    parser.add_argument("--others-small", type=int, default=1000, help="(d) others, small case")
    parser.add_argument("--others-large", type=int, default=100_000, help="(d) others, large case")
    parser.add_argument("--workers", type=int, default=2, help="(c) python app.py --workers N")
    parser.add_argument(
        "--only",
        default=",".join(SESSIONS),
        help=f"sessions, comma separated: {', '.join(SESSIONS)}",
    )
    parser.add_argument("--profile", type=Path, metavar="DIR", help="sample each bot with py-spy")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--allow-busy",
        action="store_true",
        help="print the figures even when other processes disturbed a window (marked UNRELIABLE)",
    )
    arguments = parser.parse_args(argv)
    sessions = [name.strip() for name in arguments.only.split(",") if name.strip()]
    if not sessions or any(name not in SESSIONS for name in sessions):
        parser.error(f"--only takes some of: {', '.join(SESSIONS)}")
    arguments.sessions = tuple(name for name in SESSIONS if name in sessions)
    if arguments.duration <= 0 or arguments.warmup < 0:
        parser.error("--duration must be > 0 and --warmup >= 0")
    if min(arguments.concurrency, arguments.concurrency_low, arguments.connections) < 1:
        parser.error("--concurrency, --concurrency-low and --connections must be >= 1")
    if min(arguments.others_small, arguments.others_large) < 0 or arguments.workers < 2:
        parser.error("--others-* must be >= 0 and --workers >= 2")
    return arguments


def cpu_plan(no_pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """The bot's CPU and everyone else's; None when there are too few CPUs or pinning is off."""
    cpus = sorted(os.sched_getaffinity(0))
    if no_pin or len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


def _profile_dir(requested: Path) -> Path | None:
    """The folder for py-spy's stacks; None (after saying why) without py-spy."""
    if not (shutil.which("py-spy") or (Path(sys.executable).parent / "py-spy").exists()):
        print("--profile needs py-spy: pip install py-spy", file=sys.stderr)
        return None
    requested.mkdir(parents=True, exist_ok=True)
    return requested.resolve()


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)
    profile_dir = _profile_dir(arguments.profile) if arguments.profile else None
    if arguments.profile and profile_dir is None:
        return EXIT_USAGE
    cores = len(os.sched_getaffinity(0))
    bot_cpus, side_cpus = cpu_plan(arguments.no_pin)
    pin(os.getpid(), side_cpus)
    with tempfile.TemporaryDirectory(prefix="bench-turns-") as workdir:
        plan = Plan(
            duration_s=arguments.duration,
            warmup_s=arguments.warmup,
            concurrency=arguments.concurrency,
            concurrency_low=arguments.concurrency_low,
            connections=arguments.connections,
            others_small=arguments.others_small,
            others_large=arguments.others_large,
            workers=arguments.workers,
            sessions=arguments.sessions,
            bot_cpus=bot_cpus,
            side_cpus=side_cpus,
            profile_dir=profile_dir,
            workdir=Path(workdir),
            cores=cores,
            allow_busy=arguments.allow_busy,
        )
        store = "MONGODB_URI" if os.environ.get("MONGODB_URI") else "embedded secantusd-py, memory"
        print(f"bench.turns: sessions {', '.join(plan.sessions)}; store: {store}", flush=True)
        rig = asyncio.run(orchestrate(plan))
        refusal = rig.busy_refusal()
        if refusal:
            print()
            print(f"bench.turns refuses to print the figures: {refusal}")
            return EXIT_BUSY
        return report(rig)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
