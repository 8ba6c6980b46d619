"""Soak: several real bot processes on one database under mixed load for a fixed time.

    python -m bench.soak [--seconds 60] [--clients 16] [--processes 2] [--warmup 10]

Starts, all on 127.0.0.1: the sandbox OAuth2 provider (a thread, as `sandbox.demo` does), the
embedded MongoDB-wire store (or `MONGODB_URI` when set; a fresh database either way), a
loopback Bot Framework connector that records every reply, and `--processes` real bot
processes (`python app.py`, authentication off, sweeper every second) sharing that database.
It stores a parent connection `sandbox_team` with real sandbox tokens (user omar) and, for
each client, a person with a runtime sandbox connection holding real tokens.

Then `--clients` closed-loop clients, each a different person, run for `--seconds`, sending
each request to the next process in turn and repeating:
  list (`personal_connections`) -> Disconnect (card action) -> recipe (`sandbox opportunity`,
  setting off, so it acts as the parent) -> list -> Delete (confirmation card) -> Confirm ->
  re-create the connection through the store (fresh sandbox tokens) -> recipe.

Errors: a transport failure or a non-200 answer; an invoke answer that is not a card with the
expected line ("Disconnected …", "Deleted …", the confirmation); a list that sent no card; any
reply saying "something went wrong"; a recipe without its result card in the end; an audit
log that does not hold exactly one `connection.disconnected` / `connection.deleted` event per
"Disconnected …" / "Deleted …" answer (polled until equal, for the sweeper, within a deadline).
RSS (VmRSS) of each bot process is sampled after the warm-up and at the end of the load.

Prints per-kind requests, errors, p50/p95/p99, and RSS growth; exits 1 when there was any
error or a process's RSS grew by 10% or more.

With `--store-faults` the store (embedded, on disk, supervised by this process) is stopped with
SIGSTOP for 6 s a third of the way in, and killed with SIGKILL two thirds in. The rules then:
every request answered within 5 s (the normal answer, or "try again in a moment", which counts
as a press that may or may not have made its change); the store restarted by its supervisor;
after the load, every record whole (a Disconnected or deleted connection holds no tokens, a
Connected one does), every outbox drained and the audit log exactly as above.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.fernet import Fernet
from pydantic import AliasChoices
from pymongo.errors import PyMongoError

import messages
from cards import verbs
from settings import Settings
from storage.connections import ConnectionExists
from storage.crypto import TokenCipher
from storage.database import Database, open_database
from storage.embedded import MEMORY, EmbeddedMongo
from storage.models import Owner, ProviderAccount
from tests.support import activities
from tests.support.activities import Person
from tests.support.connector import ConnectorServer
from tests.support.sandbox import (
    CLIENT_SECRET,
    SECRET_VARIABLE,
    issue_tokens,
    run_sandbox,
    sandbox_for_bot,
    write_apps_file,
)

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
CARD = "application/vnd.microsoft.card.adaptive"
RSS_LIMIT_PERCENT = 10.0
RSS_SAMPLE_S = 5.0
REQUEST_TIMEOUT_S = 15.0  # Teams' patience
AUDIT_DEADLINE_S = 30.0
RESULTS_DEADLINE_S = 30.0
ANSWER_LIMIT_S = 5.0  # with --store-faults: every answer, whatever the store does
STALL_S = 6.0
RESTART_DEADLINE_S = 20.0
RECREATE_DEADLINE_S = 30.0
ADMIN = Owner(tenant_id="tenant-contoso", aad_object_id="aad-soak-admin", name="Soak Admin")
PARENT_ACCOUNT = "omar@sandbox.example"
RESULT_LINE = f"Created in Sandbox as {PARENT_ACCOUNT}"
KINDS = ("list", "disconnect", "delete", "confirm_delete", "recipe", "recreate (store)")

RECIPES = """
[recipes.sandbox_opportunity]
name = "Sandbox opportunity"
phrase = "sandbox opportunity {name} {amount:number}"
parent = "sandbox_team"
verify_user_access = false
description = "Create an opportunity in the sandbox app"
[recipes.sandbox_opportunity.action]
method = "POST"
url = "{connection.api_base_url}/api/opportunities"
body = { name = "{name}", amount = "{amount}" }
[recipes.sandbox_opportunity.result]
verb = "Created"
fields = { Id = "id", "Created by" = "created_by.email" }
"""


def settings_variables() -> list[str]:
    """Every environment variable the bot's settings read (so none leaks in from the shell)."""
    names: list[str] = []
    for name, spec in Settings.model_fields.items():
        aliases = spec.validation_alias
        names += [str(a) for a in aliases.choices] if isinstance(aliases, AliasChoices) else [name]
    return names


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


@dataclass
class Tally:
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    answered: Counter[tuple[str, str]] = field(default_factory=Counter)  # (action, connection)
    # Presses that failed (already counted as errors): the change may still have been made.
    unanswered: Counter[tuple[str, str]] = field(default_factory=Counter)
    recipes_ok: int = 0
    # With --store-faults: answers that said "try again in a moment", per kind.
    try_again: Counter[str] = field(default_factory=Counter)

    def error(self, kind: str, what: str) -> None:
        self.errors[kind] += 1
        self.examples.setdefault(f"{kind}: {what[:60]}", what[:400])


@dataclass
class Soak:
    ports: list[int]
    database: Database
    connector: ConnectorServer
    cipher: TokenCipher
    apps_file: Path
    redirect_uri: str
    parent_id: str
    sandbox_url: str
    faults: bool = False
    tally: Tally = field(default_factory=Tally)

    async def new_connection(self, person: Person) -> str:
        tokens = await issue_tokens(self.apps_file, self.redirect_uri, user="jane")
        connection = await self.database.connections.create_runtime(
            parent_id=self.parent_id,
            owner=owner_of(person),
            account=ProviderAccount(id=person.aad_object_id, display_name=account_of(person)),
            tokens=self.cipher.seal(tokens.as_record()),
            api_base_url=self.sandbox_url,
        )
        return connection.id


def owner_of(person: Person) -> Owner:
    return Owner(
        tenant_id=person.tenant_id,
        aad_object_id=person.aad_object_id,
        teams_user_id=person.teams_id,
        name=person.name,
    )


def account_of(person: Person) -> str:
    return f"{person.aad_object_id}@sandbox.example"


def card_json(body: Any) -> str | None:
    """The invoke answer's card as JSON text, or None when the answer is not a card."""
    if not isinstance(body, dict) or body.get("statusCode") != 200 or body.get("type") != CARD:
        return None
    return json.dumps(body.get("value"), ensure_ascii=False)


async def client(
    soak: Soak, session: aiohttp.ClientSession, number: int, person: Person, until: float
) -> None:
    """One person, closed loop, until the monotonic time `until`."""
    loop = asyncio.get_running_loop()
    tally = soak.tally
    url = soak.connector.service_url
    conversation = person.personal_conversation
    label = f"Sandbox ({account_of(person)})"
    connection_id = await soak.new_connection(person)
    sequence = number
    opportunity = 0

    async def post(kind: str, activity: dict[str, Any]) -> tuple[bool, Any, int]:
        nonlocal sequence
        port = soak.ports[sequence % len(soak.ports)]
        sequence += 1
        mark = len(soak.connector.sent)
        began = loop.time()
        try:
            async with session.post(
                f"http://{HOST}:{port}/api/messages", json=activity
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            tally.error(kind, f"{type(error).__name__}: {error}")
            return False, None, mark
        waited = loop.time() - began
        tally.latencies_ms.setdefault(kind, []).append(waited * 1000)
        if soak.faults and waited > ANSWER_LIMIT_S:
            tally.error(kind, f"answered after {waited:.1f} s (limit {ANSWER_LIMIT_S:g} s)")
        if status != 200:
            tally.error(kind, f"HTTP {status}: {text}")
            return False, None, mark
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        return True, body, mark

    def replies_since(mark: int) -> list[str]:
        return [
            json.dumps(sent.activity, ensure_ascii=False)
            for sent in soak.connector.sent[mark:]
            if sent.conversation_id == conversation
        ]

    def try_again(kind: str, answer: Any) -> bool:
        """With --store-faults, an answer saying "try again in a moment" is counted, not an
        error: a reply of a message (`answer` the replies) or the answer of an invoke."""
        if not soak.faults:
            return False
        if isinstance(answer, list):  # a plain text reply, not a card quoting the sentence
            texts = [json.loads(reply) for reply in answer]
            said = any(
                not reply.get("attachments") and reply.get("text") == messages.TURN_FAILED
                for reply in texts
            )
        else:
            said = isinstance(answer, dict) and answer.get("value") == messages.TURN_FAILED
        if said:
            tally.try_again[kind] += 1
        return said

    def told_already(card: str | None, sentence: str, change: tuple[str, str]) -> bool:
        """With --store-faults, "already disconnected" / "was deleted" is the truth after an
        earlier press that was answered "try again" but made its change."""
        said = sentence.format(label=label)
        return soak.faults and card is not None and said in card and tally.unanswered[change] > 0

    def deleted_late(connection_id: str) -> bool:
        """With --store-faults, a Confirm answered "try again" (or not at all) may make its
        change only once the store runs again, after this client looked: the connection is then
        rightly missing from the list, "not in your list", with no confirmation card."""
        return soak.faults and tally.unanswered["connection.deleted", connection_id] > 0

    async def gone(connection_id: str) -> bool:
        """Whether the connection is gone (read by this bench, retried over a store fault)."""
        deadline = loop.time() + (RECREATE_DEADLINE_S if soak.faults else 0)
        while True:
            try:
                return await soak.database.connections.get(connection_id) is None
            except Exception:
                if loop.time() >= deadline:
                    raise
                await asyncio.sleep(0.2)  # the store is stopped or restarting: ask again

    async def recreate() -> str:
        deadline = loop.time() + (RECREATE_DEADLINE_S if soak.faults else 0)
        while True:
            try:
                return await soak.new_connection(person)
            except ConnectionExists:
                # An earlier attempt was stored but its answer was lost in the fault: use it.
                existing = await soak.database.connections.find_runtime(
                    parent_id=soak.parent_id, owner=owner_of(person)
                )
                if existing is None:
                    raise
                return existing.id
            except Exception:
                if loop.time() >= deadline:
                    raise
                await asyncio.sleep(0.2)  # the store is stopped or restarting: try again

    async def recipe() -> None:
        nonlocal opportunity
        opportunity += 1
        text = f'sandbox opportunity "Soak {number}-{opportunity}" {opportunity}'
        ok, _, mark = await post("recipe", activities.message(person, url, text))
        if ok and not try_again("recipe", replies_since(mark)):
            tally.recipes_ok += 1

    while loop.time() < until:
        # list
        ok, _, mark = await post("list", activities.message(person, url, "personal_connections"))
        listed = replies_since(mark)
        if (
            ok
            and not any(CARD in reply and account_of(person) in reply for reply in listed)
            and not try_again("list", listed)
            and not deleted_late(connection_id)
        ):
            tally.error("list", f"no picklist with {label}: {listed}")
        # Disconnect
        data = {verbs.CONNECTION_INPUT: connection_id, verbs.PAGE_KEY: 0}
        ok, body, _ = await post(
            "disconnect", activities.card_action(person, url, verbs.DISCONNECT, data)
        )
        card = card_json(body)
        if not ok or card is None or messages.DISCONNECTED.format(label=label) not in card:
            tally.unanswered["connection.disconnected", connection_id] += 1
        if (
            try_again("disconnect", body)
            or told_already(
                card, messages.ALREADY_DISCONNECTED, ("connection.disconnected", connection_id)
            )
            or (deleted_late(connection_id) and card and messages.CONNECTION_NOT_FOUND in card)
        ):
            pass
        elif ok and (card is None or messages.DISCONNECTED.format(label=label) not in card):
            tally.error("disconnect", f"unexpected answer: {body}")
        elif ok:
            tally.answered["connection.disconnected", connection_id] += 1
        await recipe()
        if loop.time() >= until:
            break
        ok, _, mark = await post("list", activities.message(person, url, "connections"))
        listed = replies_since(mark)
        if (
            ok
            and not any(CARD in reply and account_of(person) in reply for reply in listed)
            and not try_again("list", listed)
            and not deleted_late(connection_id)
        ):
            tally.error("list", f"no picklist with {label}: {listed}")
        # Delete: the confirmation card, then its Confirm button.
        ok, body, _ = await post("delete", activities.card_action(person, url, verbs.DELETE, data))
        confirm = None
        if ok and isinstance(body, dict) and card_json(body) is not None:
            actions = body["value"].get("actions") or []
            confirm = next((a for a in actions if a.get("verb") == verbs.CONFIRM_DELETE), None)
        if (
            ok
            and confirm is None
            and not try_again("delete", body)
            and not deleted_late(connection_id)
        ):
            tally.error("delete", f"no confirmation card: {body}")
        if confirm is not None:
            ok, body, _ = await post(
                "confirm_delete",
                activities.card_action(person, url, confirm["verb"], confirm.get("data")),
            )
            card = card_json(body)
            if not ok or card is None or messages.DELETED.format(label=label) not in card:
                tally.unanswered["connection.deleted", connection_id] += 1
            if try_again("confirm_delete", body) or told_already(
                card, messages.ALREADY_DELETED, ("connection.deleted", connection_id)
            ):
                pass
            elif ok and (card is None or messages.DELETED.format(label=label) not in card):
                tally.error("confirm_delete", f"unexpected answer: {body}")
            elif ok:
                tally.answered["connection.deleted", connection_id] += 1
        # Re-create the person's connection through the store, when it is gone.
        try:
            missing = await gone(connection_id)
        except Exception as error:  # counted and shown; the soak goes on without this client
            tally.error("recreate (store)", f"{type(error).__name__}: {error}")
            return
        if missing:
            began = loop.time()
            try:
                connection_id = await recreate()
            except Exception as error:  # counted and shown; the soak goes on
                tally.error("recreate (store)", f"{type(error).__name__}: {error}")
                return
            tally.latencies_ms.setdefault("recreate (store)", []).append(
                (loop.time() - began) * 1000
            )
        await recipe()


async def wait_ready(session: aiohttp.ClientSession, port: int, process: Any, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"bot on {port} exited with {process.returncode}; see {log}")
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.get(
                f"http://{HOST}:{port}/readyz", timeout=aiohttp.ClientTimeout(total=1)
            ) as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.05)  # readiness probe interval
    raise RuntimeError(f"bot on {port} did not become ready")


async def audit_counts(database: Database) -> Counter[tuple[str, str]]:
    found: Counter[tuple[str, str]] = Counter()
    cursor = database.db["audit_events"].find(
        {"action": {"$in": ["connection.disconnected", "connection.deleted"]}},
        {"action": 1, "connection_id": 1},
    )
    async for event in cursor:
        found[event["action"], str(event.get("connection_id"))] += 1
    return found


RECIPE_NAME = "Sandbox opportunity"
# With --store-faults a run may also end as not done, or as unknown (told by the sweeper).
OTHER_ENDS = (
    messages.RECIPE_FAILED_TITLE.format(recipe=RECIPE_NAME),
    messages.RECIPE_OUTCOME_UNKNOWN.split("{app}")[0].format(recipe=RECIPE_NAME),
)


def result_cards(connector: ConnectorServer, *, faults: bool = False) -> int:
    """How many recipe runs have ended with a message to the person."""
    ends = (RESULT_LINE, *OTHER_ENDS) if faults else (RESULT_LINE,)
    return sum(
        1
        for sent in connector.sent
        if any(end in json.dumps(sent.activity, ensure_ascii=False) for end in ends)
    )


async def drop_quietly(database: Database, name: str) -> None:
    """Leave nothing behind in someone's MongoDB; a failure here says so but is not the soak's
    verdict (which is printed by then)."""
    try:
        await database.client.drop_database(name)
    except PyMongoError as error:
        print(f"could not drop the database {name}: {type(error).__name__}", flush=True)


async def run(arguments: argparse.Namespace, workdir: Path) -> int:
    n = arguments.processes
    ports = [free_port() for _ in range(n)]
    base_url = f"http://{HOST}:{ports[0]}"
    redirect_uri = f"{base_url}/auth/callback"
    external_uri = os.environ.get("MONGODB_URI") or None
    name = f"soak_{uuid.uuid4().hex[:12]}"
    key = Fernet.generate_key().decode()
    os.environ[SECRET_VARIABLE] = CLIENT_SECRET
    processes: list[asyncio.subprocess.Process] = []
    async with contextlib.AsyncExitStack() as stack:
        sandbox = stack.enter_context(run_sandbox(sandbox_for_bot(ports[0])))
        # Faults need a store process to stop and kill, and data that outlives it.
        store = EmbeddedMongo(
            command="secantusd-py",
            storage=workdir / "store" if arguments.store_faults else MEMORY,
        )
        uri = external_uri or await stack.enter_async_context(store)
        database = await stack.enter_async_context(
            open_database(mongodb_uri=uri, database_name=name, data_dir=MEMORY)
        )
        if external_uri:  # an embedded store goes with its folder; nothing to drop
            stack.push_async_callback(drop_quietly, database, name)
        connector = ConnectorServer()
        await connector.start()
        stack.push_async_callback(connector.close)
        apps_file = write_apps_file(workdir / "apps.toml", sandbox, contact="Soak Admin")
        recipes_file = workdir / "recipes.toml"
        recipes_file.write_text(RECIPES)
        cipher = TokenCipher([key])
        parent_tokens = await issue_tokens(apps_file, redirect_uri, user="omar")
        parent = await database.connections.create_parent(
            provider="sandbox",
            owner=ADMIN,
            account=ProviderAccount(id="user-omar", display_name=PARENT_ACCOUNT),
            tokens=cipher.seal(parent_tokens.as_record()),
            api_base_url=sandbox.base_url,
            name="sandbox_team",
        )
        base_env = {k: v for k, v in os.environ.items() if k not in set(settings_variables())}
        base_env |= {
            "MONGODB_URI": uri,
            "DATABASE_NAME": name,
            "APPS_FILE": str(apps_file),
            "RECIPES_FILE": str(recipes_file),
            "PUBLIC_BASE_URL": base_url,
            "TOKEN_ENCRYPTION_KEYS": key,
            SECRET_VARIABLE: CLIENT_SECRET,
            "HOST": HOST,
            "LOG_LEVEL": "WARNING",
            "SIGNIN_SWEEP_SECONDS": "1",
        }

        async def stop_bots() -> None:
            for process in processes:
                if process.returncode is None:
                    process.send_signal(signal.SIGINT)
            for process in processes:
                try:
                    await asyncio.wait_for(process.wait(), 30)
                except TimeoutError:
                    process.kill()
                    await process.wait()

        stack.push_async_callback(stop_bots)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        session = await stack.enter_async_context(
            aiohttp.ClientSession(
                timeout=timeout, connector=aiohttp.TCPConnector(limit=arguments.clients * 2)
            )
        )
        logs = []
        for index, port in enumerate(ports):
            log = workdir / f"bot-{index}.log"
            logs.append(log)
            data_dir = workdir / f"data-{index}"
            with log.open("wb") as out:
                processes.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        str(REPO / "app.py"),
                        env={**base_env, "PORT": str(port), "DATA_DIR": str(data_dir)},
                        cwd=workdir,
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=out,
                        stderr=out,
                    )
                )
            await wait_ready(session, port, processes[-1], log)

        soak = Soak(
            ports,
            database,
            connector,
            cipher,
            apps_file,
            redirect_uri,
            parent_id=parent.id,
            sandbox_url=sandbox.base_url,
            faults=arguments.store_faults,
        )
        kept = "on disk" if arguments.store_faults else "memory"
        where = "MONGODB_URI" if external_uri else f"embedded secantusd-py ({kept})"
        print(
            f"bench.soak: {arguments.clients} clients, {n} bot processes on one database "
            f"({where}), {arguments.seconds:g} s ({arguments.warmup:g} s warm-up)"
            + (", store stopped and killed under load" if arguments.store_faults else ""),
            flush=True,
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        until = started + arguments.seconds
        people = [
            Person(f"29:soak-{i}", f"aad-soak-{i}", f"Soak Person {i}")
            for i in range(arguments.clients)
        ]
        load = asyncio.gather(*(client(soak, session, i, p, until) for i, p in enumerate(people)))
        series: list[list[int]] = []

        async def sample_rss() -> None:
            while True:
                series.append([rss_kib(p.pid) for p in processes])
                await asyncio.sleep(RSS_SAMPLE_S)

        sampler = asyncio.create_task(sample_rss())
        faults = (
            asyncio.create_task(inject_store_faults(store, soak.tally, started, arguments.seconds))
            if arguments.store_faults
            else None
        )
        await asyncio.sleep(arguments.warmup)
        rss_before = [rss_kib(p.pid) for p in processes]
        await load
        if faults is not None:
            await faults
        rss_after = [rss_kib(p.pid) for p in processes]
        sampler.cancel()
        for index in range(n):
            trace = " ".join(f"{sample[index] / 1024:.0f}" for sample in series)
            print(f"bot process {index} RSS every {RSS_SAMPLE_S:g} s (MiB): {trace}")
        elapsed = loop.time() - started
        tally = soak.tally

        # Every recipe that was answered posts its result card (some after "Working on …").
        # With store faults, a run the store left to the sweeper ends after its lease.
        faults = arguments.store_faults
        deadline = loop.time() + RESULTS_DEADLINE_S * (2 if faults else 1)
        while result_cards(connector, faults=faults) < tally.recipes_ok and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)  # polling the recorded replies
        results = result_cards(connector, faults=faults)
        if results != tally.recipes_ok:
            statuses: Counter[str] = Counter()
            async for run in database.db["recipe_runs"].find({}, {"status": 1}):
                statuses[str(run.get("status"))] += 1
            tally.error(
                "recipe",
                f"{results} ends told for {tally.recipes_ok} recipe runs; "
                f"runs stored by status: {dict(statuses)}",
            )
        failed = [
            sent.activity
            for sent in connector.sent
            if "something went wrong" in json.dumps(sent.activity, ensure_ascii=False).lower()
            and not (
                arguments.store_faults
                and messages.TURN_FAILED in json.dumps(sent.activity, ensure_ascii=False)
            )
        ]
        for activity in failed:
            tally.error("replies", f"something went wrong: {activity.get('text')}")

        # The audit log: exactly one event per Disconnect / Delete answered as done. A press
        # whose answer failed or said "try again" may or may not have made its change: it may
        # add one event, never more.
        def mismatches(found: Counter[tuple[str, str]]) -> list[str]:
            problems = []
            for change in set(found) | set(tally.answered):
                least = tally.answered[change]
                most = least + tally.unanswered[change]
                if not least <= found[change] <= most:
                    problems.append(f"{change}: {found[change]} events, expected {least}..{most}")
            return problems

        deadline = loop.time() + AUDIT_DEADLINE_S
        found = await audit_counts(database)
        while mismatches(found) and loop.time() < deadline:
            await asyncio.sleep(0.2)  # polling the audit log while the sweeper moves events
            found = await audit_counts(database)
        wrong = mismatches(found)
        audit_ok = not wrong
        if wrong:
            tally.error("audit", f"{len(wrong)} changes with the wrong events: {wrong[:3]}")
        for index, process in enumerate(processes):
            if process.returncode is not None:
                tally.error("processes", f"bot {index} exited with {process.returncode}")
        if arguments.store_faults:
            for problem in await broken_records(database):
                tally.error("records", problem)
            if tally.try_again:
                print(f'answered "try again in a moment": {dict(tally.try_again)}')

        return report(arguments, tally, elapsed, rss_before, rss_after, found, audit_ok, logs)
    return 2  # unreachable: the block returns


async def inject_store_faults(
    store: EmbeddedMongo, tally: Tally, started: float, seconds: float
) -> None:
    """SIGSTOP the store for STALL_S a third of the way in, SIGKILL it two thirds in, and
    check that its supervisor brings it back."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(started + seconds / 3 - loop.time(), 0))
    pid = store.pid
    assert pid is not None
    print(f"store: SIGSTOP for {STALL_S:g} s", flush=True)
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(STALL_S)
    finally:
        os.kill(pid, signal.SIGCONT)
    print("store: SIGCONT", flush=True)
    await asyncio.sleep(max(started + 2 * seconds / 3 - loop.time(), 0))
    pid = store.pid
    assert pid is not None
    print("store: SIGKILL", flush=True)
    os.kill(pid, signal.SIGKILL)
    deadline = loop.time() + RESTART_DEADLINE_S
    while store.pid in (pid, None) and store.lost is None and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)  # polling the supervisor's state
    if store.pid in (pid, None):
        tally.error("store", f"not restarted within {RESTART_DEADLINE_S:g} s: {store.lost}")
    else:
        print(f"store: restarted by its supervisor (process {store.pid})", flush=True)


async def broken_records(database: Database) -> list[str]:
    """What is half-written once the load and the reconciler are done: connections whose tokens
    disagree with their status, and outboxes still holding events (polled for the sweeper)."""
    problems: list[str] = []
    async for record in database.db["connections"].find({}):
        has_tokens = bool(record.get("tokens"))
        label = f"connection {record['_id']} ({record.get('kind')}, {record.get('status')})"
        if record.get("kind") == "deleted":
            if has_tokens:
                problems.append(f"{label}: deleted but holds tokens")
        elif record.get("status") == "disconnected" and has_tokens:
            problems.append(f"{label}: disconnected but holds tokens")
        elif record.get("status") == "connected" and not has_tokens:
            problems.append(f"{label}: connected without tokens")
    deadline = asyncio.get_running_loop().time() + AUDIT_DEADLINE_S
    while True:
        pending = [
            f"{name}: {count} records with audit events not yet recorded"
            for name in ("connections", "login_states", "recipe_runs", "recipe_settings")
            if (count := await database.db[name].count_documents({"outbox.0": {"$exists": True}}))
        ]
        if not pending or asyncio.get_running_loop().time() >= deadline:
            return problems + pending
        await asyncio.sleep(0.2)  # polling while the sweeper records the events


def report(
    arguments: argparse.Namespace,
    tally: Tally,
    elapsed: float,
    rss_before: list[int],
    rss_after: list[int],
    audit: Counter[tuple[str, str]],
    audit_ok: bool,
    logs: list[Path],
) -> int:
    print()
    print(f"{'kind':<18}{'requests':>9}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    total = 0
    for kind in KINDS:
        values = tally.latencies_ms.get(kind, [])
        total += len(values) if kind != "recreate (store)" else 0
        print(
            f"{kind:<18}{len(values):>9}{tally.errors.get(kind, 0):>8}"
            f"{percentile(values, 0.50):>9.1f}{percentile(values, 0.95):>9.1f}"
            f"{percentile(values, 0.99):>9.1f}"
        )
    everything = [v for k, vs in tally.latencies_ms.items() if k != "recreate (store)" for v in vs]
    errors = sum(tally.errors.values())
    print(
        f"{'all bot requests':<18}{total:>9}{errors:>8}{percentile(everything, 0.50):>9.1f}"
        f"{percentile(everything, 0.95):>9.1f}{percentile(everything, 0.99):>9.1f}"
    )
    print(f"\n{total} bot requests in {elapsed:.1f} s ({total / elapsed:.1f}/s), {errors} errors")
    if tally.errors:
        print(f"errors by kind: {dict(tally.errors)}")
        for example in list(tally.examples.values())[:10]:
            print(f"  e.g. {example}")
    disconnected = sum(v for (a, _), v in tally.answered.items() if a == "connection.disconnected")
    deleted = sum(v for (a, _), v in tally.answered.items() if a == "connection.deleted")
    print(
        f"audit log: {disconnected} Disconnected / {deleted} Deleted answers; "
        f"{sum(v for (a, _), v in audit.items() if a == 'connection.disconnected')} "
        f"connection.disconnected / "
        f"{sum(v for (a, _), v in audit.items() if a == 'connection.deleted')} "
        f"connection.deleted events: {'complete, one each' if audit_ok else 'MISMATCH'}"
    )
    growth = []
    for index, (before, after) in enumerate(zip(rss_before, rss_after, strict=True)):
        percent = 100 * (after - before) / before
        growth.append(percent)
        print(
            f"bot process {index}: RSS {before / 1024:.1f} MiB after warm-up -> "
            f"{after / 1024:.1f} MiB at the end ({percent:+.1f}%)"
        )
    worst = max(growth)
    print(f"RSS growth: {worst:+.1f}% (largest of {len(growth)}; limit {RSS_LIMIT_PERCENT:g}%)")
    failed = errors > 0 or worst >= RSS_LIMIT_PERCENT
    if failed:
        for log in logs:
            # The log's own lines (what was logged, and each exception's last line), not the
            # frames of its tracebacks: the last 40 of them.
            lines = [
                line
                for line in log.read_text(errors="replace").splitlines()
                if line.strip() and not line.startswith((" ", "Traceback", "\t"))
            ]
            if lines:
                print(f"\n--- {log.name}, last {min(len(lines), 40)} lines ---")
                print("\n".join(lines[-40:]))
    print("FAIL" if failed else "PASS")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (people)")
    parser.add_argument("--processes", type=int, default=2, help="bot processes on one database")
    parser.add_argument(
        "--warmup", type=float, default=None, help="seconds before the first RSS sample"
    )
    parser.add_argument(
        "--store-faults",
        action="store_true",
        help="stop (SIGSTOP) and kill (SIGKILL) the embedded store under load",
    )
    arguments = parser.parse_args(argv)
    if arguments.store_faults and os.environ.get("MONGODB_URI"):
        parser.error("--store-faults stops and kills the embedded store: unset MONGODB_URI")
    if arguments.warmup is None:
        arguments.warmup = min(10.0, arguments.seconds / 6)
    if (
        arguments.seconds <= 0
        or arguments.clients < 1
        or arguments.processes < 1
        or not 0 <= arguments.warmup < arguments.seconds
    ):
        parser.error("--seconds > 0, --clients >= 1, --processes >= 1, 0 <= --warmup < --seconds")
    # The sandbox runs in this process: no access log line per request on the terminal.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as workdir:
        status = asyncio.run(run(arguments, Path(workdir)))
    print(f"run time {time.monotonic() - began:.1f} s (start-up, load, checks and shutdown)")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
