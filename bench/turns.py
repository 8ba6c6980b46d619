"""Turns per second and latency: a stock botbuilder echo bot against our `personal_connections`.

    python -m bench.turns [--duration 10] [--warmup 3] [--concurrency 16] [--connections 5]
                          [--bots stock,ours] [--profile DIR] [--no-pin]

In one run, one after the other, it measures
  (a) the stock echo bot in `bench/stock_echo_bot.py` (the SDK samples' shape), and
  (b) this bot's real application (`app.create_app`) answering `personal_connections` for a person
      with five runtime connections, on its own embedded store (or `MONGODB_URI` when set).
Every part is a separate process on 127.0.0.1: the bot under test, a loopback Bot Framework
connector that both bots reply to, and a closed-loop load generator (N workers, each POSTing a
Teams-shaped message and waiting for the answer; warm-up, then a fixed number of seconds). A
turn's latency therefore includes the bot's reply reaching the connector. With two or more
CPUs the bot gets the first CPU to itself and everything else shares the rest, so the figures
are per bot core. The CPU each process used in the window is printed, so a saturated load
core shows, and so does CPU taken by processes outside the run (a warning says when).

The bot process counts the `ConnectorClient`s (and `TokenApiClient`s) the SDK builds, by
wrapping their constructors in the benchmark's own launcher. `--profile DIR` samples the bot
during the measured window with py-spy (`pip install py-spy`) and prints where its CPU goes.
Internal roles (`_connector`, `_bot`, `_load`) are this same module run as child processes.
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
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
BOTS = {
    "stock": "(a) stock echo bot (bench/stock_echo_bot.py)",
    "ours": "(b) personal_connections (app.create_app)",
}
STATS_PATH = "/_bench/stats"
PROFILE_RATE = 250  # py-spy samples per second
OTHERS_WARNING_PERCENT = 15  # CPU used by processes outside the run, in % of one core
# The load generator's result is one JSON line holding every latency: ~10 bytes a turn.
RESULT_LINE_LIMIT = 1 << 24

# The person every request comes from; (b) stores their runtime connections before the run.
TENANT_ID = "tenant-bench"
USER_TEAMS_ID = "29:bench-user"
USER_OBJECT_ID = "aad-bench-user"
USER_NAME = "Bench User"
BOT_ID = "28:bench-bot"
PROVIDERS = ("salesforce", "servicenow", "box", "microsoft_graph", "sandbox")
COMMAND = "personal_connections"

Json = dict[str, Any]


# --------------------------------------------------------------------------- shared helpers


def teams_message(service_url: str, text: str) -> Json:
    """A 1:1 Teams message as Teams sends it (the shape of tests/support/activities.py)."""
    return {
        "type": "message",
        "id": "activity-in-0",
        "channelId": "msteams",
        "serviceUrl": service_url,
        "timestamp": "2026-11-22T10:00:00.000Z",
        "from": {"id": USER_TEAMS_ID, "aadObjectId": USER_OBJECT_ID, "name": USER_NAME},
        "recipient": {"id": BOT_ID, "name": "Runtime connections"},
        "conversation": {
            "id": f"a:personal-{USER_TEAMS_ID}",
            "conversationType": "personal",
            "tenantId": TENANT_ID,
        },
        "channelData": {"tenant": {"id": TENANT_ID}},
        "locale": "en-US",
        "text": text,
        "textFormat": "plain",
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


async def serve_until_signalled(app: web.Application, port: int) -> None:
    """Serve `app` on loopback until SIGTERM/SIGINT, then run its cleanup (stores stop cleanly)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # No access log in either bot: a log line per turn would be measured, not the bot.
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, HOST, port).start()
        await stop.wait()
    finally:
        await runner.cleanup()


# --------------------------------------------------------------------------- role: connector


@dataclass
class ConnectorSink:
    """The Bot Framework connector's reply routes, answering `{"id": ...}` and counting replies.

    Each reply is classified ("text" or "card, N choices") so the run can show that (b) really
    answered with its picklist of every stored connection.
    """

    kinds: Counter[str] = field(default_factory=Counter)
    _ids: Iterator[int] = field(default_factory=itertools.count)

    async def reply(self, request: web.Request) -> web.Response:
        self.kinds[_reply_kind(json.loads(await request.read()))] += 1
        return web.json_response({"id": f"reply-{next(self._ids)}"})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(dict(self.kinds))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v3/conversations/{conversation}/activities", self.reply)
        app.router.add_post("/v3/conversations/{conversation}/activities/{activity}", self.reply)
        app.router.add_get(STATS_PATH, self.stats)
        return app


def _reply_kind(activity: Any) -> str:
    if not isinstance(activity, dict):
        return "not an activity"
    for attachment in activity.get("attachments") or []:
        if attachment.get("contentType") == "application/vnd.microsoft.card.adaptive":
            return f"Adaptive Card with {_count_choices(attachment.get('content'))} choices"
    return "text" if activity.get("text") else f"{activity.get('type')} without text"


def _count_choices(element: Any) -> int:
    if isinstance(element, list):
        return sum(_count_choices(item) for item in element)
    if not isinstance(element, dict):
        return 0
    if element.get("type") == "Input.ChoiceSet":
        return len(element.get("choices") or [])
    return sum(_count_choices(value) for value in element.values())


async def run_connector(port: int) -> None:
    await serve_until_signalled(ConnectorSink().app(), port)


# --------------------------------------------------------------------------- role: bot


# Constructions counted in the bot process; the product code is not touched.
BUILT: Counter[str] = Counter()


def count_constructions(cls: type[Any], name: str) -> None:
    """Wrap `cls.__init__` so every instance built (by the SDK or by us) is counted."""
    original: Callable[..., None] = cls.__init__

    def counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
        BUILT[name] += 1
        original(self, *args, **kwargs)

    cls.__init__ = counting_init  # type: ignore[method-assign]


async def bot_stats(request: web.Request) -> web.Response:
    return web.json_response({**BUILT, "pid": os.getpid()})


async def run_stock_bot(port: int) -> None:
    from bench.stock_echo_bot import create_app

    app = create_app()
    app.router.add_get(STATS_PATH, bot_stats)
    await serve_until_signalled(app, port)


async def run_our_bot(port: int, connections: int) -> None:
    from app import create_app
    from settings import load_settings
    from storage.database import open_database
    from storage.embedded import MEMORY, EmbeddedMongo

    external_uri = os.environ.get("MONGODB_URI") or None
    database_name = f"bench_turns_{uuid.uuid4().hex[:12]}"
    async with contextlib.AsyncExitStack() as stack:
        uri = external_uri or await stack.enter_async_context(
            EmbeddedMongo(command="secantusd-py", storage=MEMORY)
        )
        database = await stack.enter_async_context(
            open_database(mongodb_uri=uri, database_name=database_name, data_dir=MEMORY)
        )
        if external_uri:
            # Unwinds before the client closes: leave nothing behind in someone's MongoDB.
            stack.push_async_callback(database.client.drop_database, database_name)
        await store_connections(database, connections)
        # Whatever the app keeps on disk goes to a scratch folder, not the work tree's ./data.
        data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-turns-bot-"))
        # Explicit values win over the environment, so a developer's MicrosoftAppId (auth on,
        # every unsigned request a 401) or tenant allow list cannot leak into the run.
        settings = load_settings(
            _env_file=None,
            mongodb_uri=uri,
            database_name=database_name,
            host=HOST,
            port=port,
            log_level="WARNING",
            data_dir=data_dir,
            app_id="",
            allowed_tenant_ids="",
        )
        app = create_app(settings)
        app.router.add_get(STATS_PATH, bot_stats)
        await serve_until_signalled(app, port)


async def store_connections(database: Any, count: int) -> None:
    """Store `count` runtime connections for the bench user through the store's own API."""
    from storage.models import Owner, ProviderAccount

    admin = Owner(tenant_id=TENANT_ID, aad_object_id="aad-bench-admin", name="Bench Admin")
    person = Owner(
        tenant_id=TENANT_ID,
        aad_object_id=USER_OBJECT_ID,
        teams_user_id=USER_TEAMS_ID,
        name=USER_NAME,
    )
    for index in range(count):
        provider = PROVIDERS[index % len(PROVIDERS)]
        parent = await database.connections.create_parent(
            provider=provider,
            owner=admin,
            account=ProviderAccount(id=f"admin-{index}", display_name=f"admin@{provider}.example"),
        )
        account = f"bench.user{index}@{provider}.example"
        await database.connections.create_runtime(
            parent_id=parent.id,
            owner=person,
            account=ProviderAccount(id=account, display_name=account),
        )


async def run_bot(kind: str, port: int, connections: int) -> None:
    from botframework.connector.aio import ConnectorClient
    from botframework.connector.token_api.aio import TokenApiClient

    # Before any adapter exists, so the very first client is counted too.
    count_constructions(ConnectorClient, "ConnectorClient")
    count_constructions(TokenApiClient, "TokenApiClient")
    if kind == "stock":
        await run_stock_bot(port)
    else:
        await run_our_bot(port, connections)


# --------------------------------------------------------------------------- role: load


@dataclass
class LoadResult:
    """What the load generator saw; latencies are of turns that completed in the window."""

    window_s: float
    latencies_ms: list[float]
    errors: Counter[str]
    ok_total: int  # warm-up and the tail included: every turn the bot served in the run

    @property
    def turns_per_s(self) -> float:
        return len(self.latencies_ms) / self.window_s

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return math.nan
        return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


def emit(event: str, **values: Any) -> None:
    print(json.dumps({"event": event, **values}), flush=True)


async def generate_load(
    url: str, service_url: str, *, concurrency: int, warmup_s: float, duration_s: float
) -> None:
    """Closed loop: `concurrency` workers each POST a turn and wait for its answer, until the
    warm-up and the measured window are over. Prints JSON events for the parent process."""
    template = teams_message(service_url, COMMAND)
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from = start + warmup_s
    measure_until = measure_from + duration_s
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    served = 0
    headers = {"Content-Type": "application/json"}

    async def worker(session: aiohttp.ClientSession, number: int) -> None:
        nonlocal served
        for sequence in itertools.count():
            if loop.time() >= measure_until:
                return
            # Workers share one template: nothing awaits between setting the id and dumping.
            template["id"] = f"bench-{number}-{sequence}"
            body = json.dumps(template).encode()
            began = loop.time()
            outcome = "ok"
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if not 200 <= response.status < 300:
                        outcome = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as error:
                outcome = type(error).__name__
            finished = loop.time()
            if outcome == "ok":
                served += 1
            # A turn counts when it *completes* inside the window, the usual closed-loop rule.
            if measure_from <= finished < measure_until:
                if outcome == "ok":
                    latencies.append(round((finished - began) * 1000, 3))
                else:
                    errors[outcome] += 1

    async def announce_window() -> None:
        await asyncio.sleep(warmup_s)
        emit("measuring")

    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        announcer = asyncio.create_task(announce_window())
        await asyncio.gather(*(worker(session, n) for n in range(concurrency)))
        await announcer
    emit(
        "result",
        window_s=duration_s,
        latencies_ms=latencies,
        errors=dict(errors),
        ok_total=served,
    )


# --------------------------------------------------------------------------- processes, CPUs


def _threads(pid: int) -> list[int]:
    try:
        return [int(name) for name in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return [pid]


def pin(pid: int, cpus: set[int] | None) -> None:
    """Pin every thread of `pid` (threads made later inherit it from their creator)."""
    if not cpus:
        return
    for thread in _threads(pid):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(thread, cpus)


def descendants(pid: int) -> list[int]:
    """Child processes of `pid`, recursively (the embedded store is the bot's child)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat_fields(int(entry))
            if stat:
                parents.setdefault(int(stat[1]), []).append(int(entry))
    found: list[int] = []
    pending = [pid]
    while pending:
        children = parents.get(pending.pop(), [])
        found += children
        pending += children
    return found


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: [state, ppid, ...]; [] if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def machine_busy_seconds() -> float:
    """CPU time all cores spent busy since boot (the first line of /proc/stat)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return math.nan
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    guest = sum(fields[8:10])  # already counted in user and nice
    return (sum(fields) - idle - guest) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the whole process (all its threads)."""
    fields = _stat_fields(pid)
    if not fields:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Child:
    """A child process started by this run, with the file its output goes to."""

    name: str
    process: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def stop(self) -> None:
        if self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 15)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def start_child(
    name: str, workdir: Path, *arguments: str, stdout_pipe: bool = False
) -> Child:
    log = workdir / f"{name}.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.turns",
            *arguments,
            cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if stdout_pipe else output,
            stderr=output,
            limit=RESULT_LINE_LIMIT,
        )
    return Child(name, process, log)


async def get_json(session: aiohttp.ClientSession, url: str) -> Json:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
        response.raise_for_status()
        return dict(await response.json())


async def wait_until_serving(session: aiohttp.ClientSession, url: str, child: Child) -> Json:
    deadline = time.monotonic() + 60
    while True:
        if child.process.returncode is not None:
            raise RuntimeError(
                f"{child.name} exited with {child.process.returncode}:\n{child.tail()}"
            )
        try:
            return await get_json(session, url)
        except (aiohttp.ClientError, TimeoutError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} did not start:\n{child.tail()}") from None
        await asyncio.sleep(0.05)  # a readiness poll's interval


# --------------------------------------------------------------------------- orchestration


@dataclass
class BotRun:
    kind: str
    load: LoadResult
    built: Json
    replies: Counter[str]
    cpu_percent: dict[str, float]
    profile: Path | None = None


@dataclass
class Plan:
    duration_s: float
    warmup_s: float
    concurrency: int
    connections: int
    bot_cpus: set[int] | None
    side_cpus: set[int] | None
    profile_dir: Path | None
    workdir: Path
    cores: int


async def measure_bot(
    kind: str, plan: Plan, session: aiohttp.ClientSession, sink: Child, sink_url: str
) -> BotRun:
    port = free_port()
    bot_url = f"http://{HOST}:{port}"
    arguments = ["_bot", "--kind", kind, "--port", str(port), "--connections"]
    bot = await start_child(f"bot-{kind}", plan.workdir, *arguments, str(plan.connections))
    load: Child | None = None
    spy: asyncio.subprocess.Process | None = None
    try:
        await wait_until_serving(session, bot_url + STATS_PATH, bot)
        store_pids = descendants(bot.pid)
        pin(bot.pid, plan.bot_cpus)
        for pid in store_pids:
            pin(pid, plan.side_cpus)
        replies_before = Counter(await get_json(session, sink_url + STATS_PATH))

        load = await start_child(
            f"load-{kind}",
            plan.workdir,
            "_load",
            "--url",
            bot_url + "/api/messages",
            "--service-url",
            sink_url + "/",
            "--concurrency",
            str(plan.concurrency),
            "--warmup",
            str(plan.warmup_s),
            "--duration",
            str(plan.duration_s),
            stdout_pipe=True,
        )
        pin(load.pid, plan.side_cpus)
        watched = {"bot": [bot.pid], "store": store_pids, "connector": [sink.pid]}
        watched["load generator"] = [load.pid]
        watched["this script"] = [os.getpid()]
        cpu_before: dict[str, float] = {}
        machine_before = 0.0
        window_began = 0.0
        cpu_percent: dict[str, float] = {}
        result: Json = {}
        profile = plan.profile_dir / f"{kind}.txt" if plan.profile_dir else None
        assert load.process.stdout is not None
        async for line in load.process.stdout:
            event = json.loads(line)
            if event["event"] == "measuring":
                if profile is not None:
                    spy = await start_profiler(bot.pid, profile, plan)
                    watched["profiler"] = [spy.pid]
                window_began = time.monotonic()
                machine_before = machine_busy_seconds()
                cpu_before = {name: sum(map(cpu_seconds, pids)) for name, pids in watched.items()}
            elif event["event"] == "result":
                wall = time.monotonic() - window_began
                for name, pids in watched.items():
                    used = sum(map(cpu_seconds, pids)) - cpu_before.get(name, 0.0)
                    cpu_percent[name] = 100 * used / wall if pids else math.nan
                # Whatever else ran on the machine meanwhile took CPU from the run.
                ours = sum(value for value in cpu_percent.values() if not math.isnan(value))
                machine = 100 * (machine_busy_seconds() - machine_before) / wall
                external_store = kind == "ours" and not store_pids
                others = "other processes" + (" (MONGODB_URI's too)" if external_store else "")
                cpu_percent[others] = max(machine - ours, 0.0)
                result = event
        await load.process.wait()
        if not result:
            raise RuntimeError(f"the load generator gave no result:\n{load.tail()}")
        built = await get_json(session, bot_url + STATS_PATH)
        replies = Counter(await get_json(session, sink_url + STATS_PATH))
        replies.subtract(replies_before)
        if spy is not None:
            await spy.wait()
        return BotRun(
            kind=kind,
            load=LoadResult(
                window_s=float(result["window_s"]),
                latencies_ms=list(result["latencies_ms"]),
                errors=Counter(result["errors"]),
                ok_total=int(result["ok_total"]),
            ),
            built=built,
            replies=+replies,
            cpu_percent=cpu_percent,
            profile=profile,
        )
    finally:
        if spy is not None and spy.returncode is None:
            spy.terminate()
            await spy.wait()
        if load is not None:
            await load.stop()
        await bot.stop()


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


async def orchestrate(plan: Plan, kinds: list[str]) -> list[BotRun]:
    sink_port = free_port()
    sink_url = f"http://{HOST}:{sink_port}"
    sink = await start_child("connector", plan.workdir, "_connector", "--port", str(sink_port))
    runs: list[BotRun] = []
    try:
        async with aiohttp.ClientSession() as session:
            await wait_until_serving(session, sink_url + STATS_PATH, sink)
            pin(sink.pid, plan.side_cpus)
            for kind in kinds:
                print(f"measuring {BOTS[kind]} ...", flush=True)
                runs.append(await measure_bot(kind, plan, session, sink, sink_url))
    finally:
        await sink.stop()
    return runs


# --------------------------------------------------------------------------- report


def report(runs: list[BotRun], plan: Plan) -> None:
    print()
    for run in runs:
        load = run.load
        errors = sum(load.errors.values())
        print(BOTS[run.kind])
        print(
            f"  turns/s {load.turns_per_s:8.1f}   p50 {load.percentile(0.50):7.1f} ms   "
            f"p99 {load.percentile(0.99):7.1f} ms   "
            f"({len(load.latencies_ms)} turns in {load.window_s:g} s, {errors} errors)"
        )
        if errors:
            print(f"  errors: {dict(load.errors)}")
        print(
            "  ConnectorClient instances built during the run: "
            f"{run.built.get('ConnectorClient', 0)} (for {load.ok_total} turns, warm-up "
            f"included; TokenApiClient instances: {run.built.get('TokenApiClient', 0)})"
        )
        replies = ", ".join(f"{count} {kind}" for kind, count in sorted(run.replies.items()))
        print(f"  replies received by the connector: {replies or 'none'}")
        cpu = ", ".join(
            f"{name} {value:.0f}%"
            for name, value in run.cpu_percent.items()
            if not math.isnan(value)
        )
        print(f"  CPU used in the measured window (100% = one core): {cpu}")
        others = max(
            (v for k, v in run.cpu_percent.items() if k.startswith("other processes")),
            default=0.0,
        )
        if others > OTHERS_WARNING_PERCENT:
            print(
                f"  warning: other processes took {others:.0f}% of a core meanwhile: these "
                "figures are disturbed, run again on a quiet machine"
            )
    by_kind = {run.kind: run.load for run in runs}
    if {"stock", "ours"} <= by_kind.keys() and by_kind["stock"].latencies_ms:
        stock, ours = by_kind["stock"], by_kind["ours"]
        print()
        print(
            f"ratio b/a: turns/s {ours.turns_per_s / stock.turns_per_s:.2f}x, "
            f"p99 latency {ours.percentile(0.99) / stock.percentile(0.99):.2f}x "
            f"(p50 {ours.percentile(0.50) / stock.percentile(0.50):.2f}x)"
        )
    print()
    print(f"Method: closed loop, {plan.concurrency} workers, {plan.warmup_s:g} s warm-up, then")
    print(f"{plan.duration_s:g} s measured per bot; all processes on 127.0.0.1; access logs off.")
    if plan.bot_cpus:
        print(
            f"CPU: {plan.cores} cores. The bot had CPU {_cpus(plan.bot_cpus)} to itself; the "
            "load generator, the connector, the store and this script shared CPU "
            f"{_cpus(plan.side_cpus)}."
        )
        print("So the figures are per bot core, and the load generator still competes with the")
        print("connector and the store for its core: when that core is near 100% above, the")
        print("figures understate the bot.")
    else:
        print(
            f"CPU: {plan.cores} core(s), nothing pinned: the load generator, the connector and the "
            "store compete with the bot for CPU, so the figures understate the bot."
        )
    for run in runs:
        if run.profile is not None:
            print()
            print(f"Profile of {BOTS[run.kind]} (py-spy, raw stacks in {run.profile}):")
            print(summarize_profile(run.profile, plan.duration_s))


def _cpus(cpus: set[int] | None) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus or ()))


# Where a frame's file lives, to attribute CPU to a library (first match wins).
AREAS = (
    ("msrest/serialization", "msrest serialization (activities in and out)"),
    ("msrest/", "msrest (clients, pipeline, retry policy)"),
    ("requests/", "requests + urllib3 + http.client (reply POST)"),
    ("urllib3/", "requests + urllib3 + http.client (reply POST)"),
    ("http/client", "requests + urllib3 + http.client (reply POST)"),
    ("socket.py", "requests + urllib3 + http.client (reply POST)"),
    ("pymongo/", "pymongo + bson"),
    ("bson/", "pymongo + bson"),
    ("pydantic", "pydantic"),
    ("aiohttp/", "aiohttp"),
    ("asyncio/", "asyncio"),
    ("selectors.py", "asyncio"),
    ("concurrent/", "thread pool"),
    ("threading.py", "thread pool"),
    ("botbuilder/", "botbuilder"),
    ("core/", "botbuilder"),
    ("botframework/", "botframework connector"),
    ("connector/", "botframework connector"),
    ("json/", "json"),
)
PROJECT_FILES = ("bots/", "cards/", "connections/", "storage/", "oauth/", "app.py", "bench/")

# Stages of a turn, each the inclusive time of one function (a frame name prefix).
STAGES = (
    ("ConnectorClient built", "ConnectorClient.__init__ (connector/aio/"),
    ("TokenApiClient built", "TokenApiClient.__init__ (connector/token_api/aio/"),
    ("  of which msrest ClientRetryPolicy built", "ClientRetryPolicy.__init__ (msrest/"),
    ("incoming activity deserialized (msrest)", "Model.deserialize (msrest/"),
    ("reply serialized (msrest Serializer.body)", "Serializer.body (msrest/"),
    ("reply POSTed with requests (thread pool)", "Session.request (requests/"),
    ("connections listed (pymongo + pydantic)", "ConnectionsService.list_views ("),
    ("picklist card built", "connections_picklist (cards/"),
)


def _frame_location(frame: str) -> str:
    """ "send (requests/sessions.py:701)" -> "requests/sessions.py" """
    return frame.rpartition(" (")[2].rstrip(")").rsplit(":", 1)[0]


def _frame_area(frame: str) -> str:
    location = _frame_location(frame)
    for needle, area in AREAS:
        if needle in location:
            return area
    if location.startswith(PROJECT_FILES):
        return "this project's code"
    return f"other ({location.split('/')[0]})"


def _strip_line_number(frame: str) -> str:
    # One row per function, not per line.
    head, _, _ = frame.rpartition(" (")
    return f"{head} ({_frame_location(frame)})" if head else frame


def summarize_profile(path: Path, duration_s: float, top: int = 10) -> str:
    """Where the bot's CPU went, from py-spy's collapsed stacks (GIL holder only)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return "  (no profile written: is py-spy allowed to attach here?)"
    total = 0
    by_area: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_strip_line_number(frame) for frame in stack.split(";") if frame]
        if not frames:
            continue
        total += count
        by_area[_frame_area(frames[-1])] += count
        by_function[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "  (no samples)"
    expected = duration_s * PROFILE_RATE
    out = [
        f"  {total} samples with the GIL held (of ~{expected:.0f} taken: the GIL was busy "
        f"{100 * total / expected:.0f}% of the window). Shares below are of those samples.",
        "  Stages of a turn (inclusive):",
    ]
    for label, prefix in STAGES:
        count = sum(n for frame, n in inclusive.items() if frame.startswith(prefix))
        out.append(f"    {100 * count / total:5.1f}%  {label}")
    out.append("  Self time by library:")
    out += [f"    {100 * n / total:5.1f}%  {area}" for area, n in by_area.most_common(top)]
    out.append("  Self time by function:")
    out += [f"    {100 * n / total:5.1f}%  {name}" for name, n in by_function.most_common(top)]
    return "\n".join(out)


# --------------------------------------------------------------------------- command line


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.turns", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per bot")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per bot")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent workers")
    parser.add_argument(
        "--connections", type=int, default=5, help="runtime connections stored for the user (b)"
    )
    parser.add_argument(
        "--bots", default="stock,ours", help="which bots, comma separated: stock, ours"
    )
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="sample each bot with py-spy into DIR"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    arguments = parser.parse_args(argv)
    kinds = [kind.strip() for kind in arguments.bots.split(",") if kind.strip()]
    if not kinds or any(kind not in BOTS for kind in kinds):
        parser.error("--bots takes stock, ours or both")
    if arguments.duration <= 0 or arguments.warmup < 0 or arguments.concurrency < 1:
        parser.error("--duration must be > 0, --warmup >= 0 and --concurrency >= 1")
    arguments.kinds = kinds
    return arguments


def cpu_plan(no_pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """The bot's CPU and everyone else's; None when there are too few CPUs or pinning is off."""
    cpus = sorted(os.sched_getaffinity(0))
    if no_pin or len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)
    if arguments.profile is not None:
        if not (shutil.which("py-spy") or (Path(sys.executable).parent / "py-spy").exists()):
            print("--profile needs py-spy: pip install py-spy", file=sys.stderr)
            return 2
        arguments.profile.mkdir(parents=True, exist_ok=True)
        arguments.profile = arguments.profile.resolve()
    cores = len(os.sched_getaffinity(0))
    bot_cpus, side_cpus = cpu_plan(arguments.no_pin)
    pin(os.getpid(), side_cpus)
    with tempfile.TemporaryDirectory(prefix="bench-turns-") as workdir:
        plan = Plan(
            duration_s=arguments.duration,
            warmup_s=arguments.warmup,
            concurrency=arguments.concurrency,
            connections=arguments.connections,
            bot_cpus=bot_cpus,
            side_cpus=side_cpus,
            profile_dir=arguments.profile,
            workdir=Path(workdir),
            cores=cores,
        )
        store = "MONGODB_URI" if os.environ.get("MONGODB_URI") else "embedded secantusd-py, memory"
        print(
            f"bench.turns: message {COMMAND!r} from one person with {plan.connections} runtime "
            f"connections; store for (b): {store}"
        )
        runs = asyncio.run(orchestrate(plan, arguments.kinds))
        report(runs, plan)
    return 0


def run_role(argv: list[str]) -> int:
    """The child processes: `_connector`, `_bot` and `_load`."""
    parser = argparse.ArgumentParser(prog="python -m bench.turns (internal)")
    parser.add_argument("role", choices=["_connector", "_bot", "_load"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--kind", choices=sorted(BOTS))
    parser.add_argument("--connections", type=int, default=5)
    parser.add_argument("--url")
    parser.add_argument("--service-url")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=10.0)
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if arguments.role == "_connector":
        asyncio.run(run_connector(arguments.port))
    elif arguments.role == "_bot":
        asyncio.run(run_bot(arguments.kind, arguments.port, arguments.connections))
    else:
        asyncio.run(
            generate_load(
                arguments.url,
                arguments.service_url,
                concurrency=arguments.concurrency,
                warmup_s=arguments.warmup,
                duration_s=arguments.duration,
            )
        )
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        sys.exit(run_role(sys.argv[1:]))
    sys.exit(main(sys.argv[1:]))
