"""The admin console's connections page at a small and a large number of stored connections.

    python -m bench.console [--small 1000] [--large 100000] [--repeats 15] [--warmups 2]

The requirement: the connections page may not take more than 1.5x as long with 100,000 stored
runtime connections as with 1,000.

What it does, all on 127.0.0.1 in this one process (the store is its child):
  1. Starts the embedded store (secantusd-py, in memory), or uses MONGODB_URI when set (a fresh
     database, dropped at the end). Stores five parent connections (three in tenant "contoso",
     two in "fabrikam"), an administrator of contoso holding every privilege of their tenant
     (OWNER_PRIVILEGES: not all_tenants, so every query carries the tenant filter) and a
     console session for them, used as the `rc_console` cookie.
  2. Loads `--small` runtime connections shaped as `storage/connections.py` writes them (owner,
     account, provider and parent, status 70% connected / 20% disconnected / 10% needs
     sign-in, encrypted tokens on connected ones, last used or never), 80% in contoso and 20% in
     fabrikam, their ObjectId times spread evenly over the last two years, each person holding
     one to three (one per parent at most, as the unique index demands).
  3. Starts the bot's real application (`app.create_app`) on a free port and, over real HTTP
     with one keep-alive aiohttp session, requests each case `--warmups` times, then
     `--repeats` rounds visiting every case once (so background work of the app lands on all
     cases alike), each request timed from sending to the last byte of the page:
       (a) the first page                  /admin/connections
       (b) a status                        ?status=connected
       (c) an app                          ?app=salesforce
       (d) an older page                   the first page's "Older »" link, followed once
       (e) a person                        ?person=<full name of a person of the small set>
     Then one more request per case with every store command recorded, and each of those
     commands run again under `explain` (executionStats) to count the documents it examined.
  4. Stops the application, adds `--large` - `--small` connections to the same database, and
     repeats 3 with a freshly started application.

Counts by status (storage/connection_search.py): a small set is counted live at each request; a
large one shows a stored summary that the application recounts in the background (a fresh
process may first show "Counting…"). Before timing, the benchmark reloads the first page until
the counts are shown, so the large run measures the steady state; the output says how they were
served and how long that took. If they are not shown within 90 s, it says why (the failing
answers), removes the stored summaries (what a gradual growth would have rewritten) and warms
again: that warning is a finding in itself. Summaries are recounted in the background once they
are older than 60 s: if that happens during the timed rounds it is part of the steady state,
and the output lists the background store work seen while timing.

Reading the output:
  - The table gives p50 and p90 (nearest rank) in ms per case at each size, and the ratio of the
    p50s (large / small). A verdict line per case follows: "OK (≤ 1.5x)" or "OVER 1.5x" (printed
    with a multiplication sign). The exit status is 0 when every ratio is within 1.5, 1 when
    one is not, 2 when the run failed.
  - "rows" is how many connections the page showed; "older" whether it had an "Older »" link.
    A page stops reading after storage/windowed.py's EXAMINED_PER_PAGE documents and then shows
    what it found (possibly nothing) with an "Older »" link.
  - "Store work per page": queries sent, documents the store examined (explain's
    totalDocsExamined, summed) and the store's time, for the one recorded request per case.
    For a case over 1.5x, the queries are listed by shape with the index each one used.
  - A warning says when processes outside the run took more than 15% of a core while timing
    (the same rule as bench.turns): figures are then disturbed; run again on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import html
import json
import math
import os
import random
import re
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pymongo
from aiohttp import web
from bson import ObjectId
from pymongo import monitoring

from app import create_app
from bench.turns import (
    HOST,
    OTHERS_WARNING_PERCENT,
    cpu_seconds,
    descendants,
    free_port,
    machine_busy_seconds,
)
from settings import Settings, load_settings
from storage.admin_sessions import Administrator
from storage.connection_search import COUNTS_COLLECTION, LIVE_COUNT_LIMIT
from storage.crypto import TokenCipher
from storage.database import Database, open_database
from storage.embedded import MEMORY, EmbeddedMongo
from storage.models import Actor, ConnectionKind, ConnectionStatus, Owner, ProviderAccount
from storage.privileges import OWNER_PRIVILEGES, PrincipalKind
from storage.search_terms import SEARCH_TERMS, terms_of
from storage.token_keys import new_key
from storage.windowed import EXAMINED_PER_PAGE

Document = dict[str, Any]

LIMIT_RATIO = 1.5
CONTOSO = "contoso"
FABRIKAM = "fabrikam"
FABRIKAM_SHARE = 0.2
HISTORY = timedelta(days=730)
BATCH = 5_000
PROGRESS_EVERY = 4 * BATCH
SEED = 20_260_101
COOKIE = "rc_console"
ADMIN = Administrator(tenant_id=CONTOSO, object_id="bench-admin", name="Bench Admin")
APP_FILTER = "salesforce"
STATUS_FILTER = ConnectionStatus.CONNECTED.value
SETTLE_DEADLINE_S = 600.0
STUCK_AFTER_S = 90.0
SETTLE_POLL_S = 0.5
REQUEST_TIMEOUT_S = 120.0
STORE_TIMEOUT_S = 120.0  # the bench's own store calls (loading, explain)
PAGE_PATH = "/admin/connections"
GOLDEN = (math.sqrt(5) - 1) / 2  # spreads the i-th connection's time evenly at every prefix

# (tenant, name, provider, account, API base URL)
PARENTS = (
    (CONTOSO, "sales_team", "salesforce", "sales@contoso.com", "https://contoso.my.salesforce.com"),
    (CONTOSO, "it_desk", "servicenow", "itdesk@contoso.com", "https://contoso.service-now.com"),
    (CONTOSO, "team_files", "box", "files@contoso.com", "https://api.box.com"),
    (
        FABRIKAM,
        "sales_team",
        "salesforce",
        "sales@fabrikam.com",
        "https://fabrikam.my.salesforce.com",
    ),
    (FABRIKAM, "graph", "microsoft_graph", "admin@fabrikam.com", "https://graph.microsoft.com"),
)
_FIRST_NAMES = (
    "Ada Alan Amara Anders Aoife Arjun Beatriz Bjorn Carmen Chidi Dara Dmitri Elena Emeka "
    "Fatima Felix Greta Hamid Hana Ingrid Isaac Jamal Jia Jonas Kaito Karin Leila Lucas Maeve "
    "Mateo Mira Nadia Niko Olga Omar Priya Quentin Rafael Rosa Samir Sofia Tariq Thea Umar "
    "Valeria Wen Yara Zoltan"
)
FIRST_NAMES = tuple(_FIRST_NAMES.split())
_LAST_NAMES = (
    "Abara Berg Castillo Dubois Eriksen Ferreira Gallagher Haddad Ibarra Jansen Kowalski "
    "Lindqvist Moreau Nakamura Okafor Petrov Quinn Rahman Santos Tanaka Ueda Varga Whitfield "
    "Xavier Yilmaz Zhang Achebe Brennan Costa Dimitrov Esposito Fischer Gupta Horvath Iyer "
    "Jovanovic Kaur Laine Mwangi Novak Osei Park Rossi Silva Takahashi Umarov Vasquez Weber"
)
LAST_NAMES = tuple(_LAST_NAMES.split())
MIDDLE_INITIALS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Case:
    key: str
    label: str


CASES = (
    Case("first", "(a) first page"),
    Case("status", f"(b) status={STATUS_FILTER}"),
    Case("app", f"(c) app={APP_FILTER}"),
    Case("older", "(d) older page (Older » once)"),
    Case("person", "(e) person=<a name>"),
)


class BenchError(RuntimeError):
    """The run could not measure what it should (a page failed, the counts never came)."""


# --------------------------------------------------------------------------- the population


@dataclass(frozen=True)
class Parent:
    id: ObjectId
    tenant_id: str
    provider: str
    api_base_url: str


@dataclass(frozen=True)
class Person:
    owner: Owner
    email: str
    parents: tuple[Parent, ...]  # the parents this person has a connection under


def person_name(index: int) -> str:
    """A distinct "First M. Last" per index; none is part of another."""
    first = FIRST_NAMES[index % len(FIRST_NAMES)]
    rest = index // len(FIRST_NAMES)
    last = LAST_NAMES[rest % len(LAST_NAMES)]
    rest //= len(LAST_NAMES)
    middle = MIDDLE_INITIALS[rest % len(MIDDLE_INITIALS)]
    cycle = rest // len(MIDDLE_INITIALS)
    # Past every combination the initial gets a number: no name holds another one.
    return f"{first} {middle}{cycle + 1 if cycle else ''}. {last}"


class Population:
    """Runtime connection documents as `ConnectionStore.create_runtime` writes them, made in
    one deterministic sequence: the first N of a large run are the documents of a small run."""

    def __init__(
        self, parents: Sequence[Parent], tokens: Document, *, end: datetime, seed: int = SEED
    ) -> None:
        self._by_tenant: dict[str, list[Parent]] = {}
        for parent in parents:
            self._by_tenant.setdefault(parent.tenant_id, []).append(parent)
        self._tokens = tokens
        self._end = end
        self._random = random.Random(seed)  # noqa: S311 - test data, not secrets
        self._prefix = self._random.randbytes(3)
        self._people = 0
        self._pending: list[tuple[Person, Parent]] = []
        self.count = 0
        self.people: list[Person] = []
        self.connections_of: Counter[str] = Counter()  # by owner.aad_object_id

    def _new_person(self) -> None:
        index = self._people
        self._people += 1
        tenant = FABRIKAM if self._random.random() < FABRIKAM_SHARE else CONTOSO
        name = person_name(index)
        first, middle, last = name.split(" ")[:3]
        email = f"{first}.{middle.rstrip('.')}.{last}".lower() + f"{index}@{tenant}.com"
        owner = Owner(
            tenant_id=tenant,
            aad_object_id=str(uuid.UUID(int=self._random.getrandbits(128), version=4)),
            teams_user_id="29:1" + self._random.randbytes(24).hex(),
            name=name,
        )
        available = self._by_tenant[tenant]
        chosen = self._random.sample(available, self._random.randint(1, len(available)))
        person = Person(owner=owner, email=email, parents=tuple(chosen))
        self.people.append(person)
        self._pending += [(person, parent) for parent in chosen]

    def _created_at(self, index: int) -> datetime:
        fraction = ((index + 1) * GOLDEN) % 1.0
        return self._end - HISTORY * fraction

    def _document(self, index: int, person: Person, parent: Parent) -> Document:
        created = self._created_at(index)
        draw = self._random.random()
        status = (
            ConnectionStatus.CONNECTED
            if draw < 0.7
            else ConnectionStatus.DISCONNECTED
            if draw < 0.9
            else ConnectionStatus.NEEDS_REAUTH
        )
        updated = created + (self._end - created) * self._random.random() * 0.5
        used: datetime | None = None
        if self._random.random() < 0.75:
            used = updated + (self._end - updated) * self._random.random()
        seconds = int(created.timestamp()).to_bytes(4, "big")
        object_id = ObjectId(seconds + self._prefix + index.to_bytes(5, "big"))
        account_id = f"{parent.provider}-{self._random.getrandbits(60):015x}"
        document: Document = {
            "_id": object_id,
            "kind": ConnectionKind.RUNTIME.value,
            "provider": parent.provider,
            "owner": person.owner.model_dump(),
            "account": ProviderAccount(id=account_id, display_name=person.email).model_dump(),
            "status": status.value,
            "scopes": [],
            "tokens": self._tokens if status is ConnectionStatus.CONNECTED else None,
            "api_base_url": parent.api_base_url,
            "refresh_lease_until": None,
            "version": 1,
            "created_at": created,
            "updated_at": updated,
            "last_used_at": used,
            "parent_id": parent.id,
        }
        # What the store writes with every connection (storage/search_terms.py).
        document[SEARCH_TERMS] = terms_of(document["owner"], document["account"])
        if status is ConnectionStatus.CONNECTED and used is not None:
            document["last_refreshed_at"] = used
        if status is ConnectionStatus.NEEDS_REAUTH:
            document["last_error"] = {"code": "invalid_grant", "at": updated}
        return document

    def take(self, count: int) -> Iterator[Document]:
        for _ in range(count):
            if not self._pending:
                self._new_person()
            person, parent = self._pending.pop(0)
            self.connections_of[person.owner.aad_object_id] += 1
            yield self._document(self.count, person, parent)
            self.count += 1

    async def load(self, database: Database, count: int) -> None:
        """Insert `count` more connections in batches of BATCH."""
        collection = database.connections.collection
        pending = self.take(count)
        began = time.monotonic()
        done = 0
        while batch := [document for _, document in zip(range(BATCH), pending, strict=False)]:
            # The database's client bounds each operation to 3 s (README, "When things fail");
            # a batch of BATCH documents may take longer on a busy machine.
            with pymongo.timeout(STORE_TIMEOUT_S):
                await collection.insert_many(batch)
            done += len(batch)
            if done % PROGRESS_EVERY == 0 and done < count:
                elapsed = time.monotonic() - began
                print(f"    {done:,} of {count:,} in {elapsed:.0f} s", flush=True)


def searched_person(population: Population) -> Person:
    """A contoso person of the small run, taken from the middle of its history."""
    contoso = [p for p in population.people if p.owner.tenant_id == CONTOSO]
    if not contoso:
        raise BenchError("the small run holds no contoso person to search for")
    return contoso[len(contoso) // 2]


# --------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class World:
    parents: list[Parent]
    session_id: str
    tokens: Document


async def build_world(database: Database, key: str) -> World:
    parents: list[Parent] = []
    for tenant, name, provider, account, api_base_url in PARENTS:
        stored = await database.connections.create_parent(
            provider=provider,
            owner=Owner(tenant_id=tenant, aad_object_id=f"{tenant}-owner", name="Parent Owner"),
            account=ProviderAccount(id=account, display_name=account),
            api_base_url=api_base_url,
            tenant_id=tenant,
            name=name,
        )
        parents.append(Parent(ObjectId(stored.id), tenant, provider, api_base_url))
    await database.privileges.grant(
        tenant_id=ADMIN.tenant_id,
        kind=PrincipalKind.USER,
        principal=ADMIN.object_id,
        privileges=OWNER_PRIVILEGES,
        actor=Actor.operator("bench.console"),
    )
    session_id, _ = await database.admin_sessions.start(ADMIN)
    # A token record of the real size, sealed with the application's key.
    sealed = TokenCipher([key]).seal(
        {
            "access_token": "00D" + "x" * 109,
            "refresh_token": "5Aep" + "y" * 83,
            "token_type": "Bearer",
            "expires_at": (datetime.now(UTC) + timedelta(hours=2)).isoformat(),
        }
    )
    return World(parents=parents, session_id=session_id, tokens=sealed.model_dump())


# --------------------------------------------------------------------------- store commands


@dataclass
class StoreCommand:
    name: str
    command: Document
    collection: str
    duration_ms: float = math.nan
    explained: Document | None = None
    failure: str | None = None  # the command failed (a timeout, say)


class StoreCommands(monitoring.CommandListener):
    """Every command sent to the bench database while recording (registered before any client
    exists, so the application's client reports to it too)."""

    def __init__(self, database_name: str) -> None:
        self._database = database_name
        self._recording: dict[int, StoreCommand] | None = None
        self._order: list[StoreCommand] = []

    def record(self) -> None:
        self._recording = {}
        self._order = []

    def stop(self) -> list[StoreCommand]:
        self._recording = None
        return [command for command in self._order if not math.isnan(command.duration_ms)]

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self._recording is None or event.database_name != self._database:
            return
        command = copy.deepcopy(dict(event.command))
        name = event.command_name
        entry = StoreCommand(name, command, str(command.get(name, "")))
        self._recording[event.request_id] = entry
        self._order.append(entry)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if self._recording is not None and event.request_id in self._recording:
            self._recording.pop(event.request_id).duration_ms = event.duration_micros / 1000

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        if self._recording is not None and event.request_id in self._recording:
            entry = self._recording.pop(event.request_id)
            entry.duration_ms = event.duration_micros / 1000
            entry.failure = type(event.failure).__name__ if event.failure else "failed"


EXPLAINABLE = ("find", "aggregate", "count")


def _explainable(command: Document) -> Document:
    return {
        key: value
        for key, value in command.items()
        if not key.startswith("$") and key not in ("lsid", "txnNumber", "maxTimeMS")
    }


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            yield key, inner
            yield from _walk(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _walk(inner)


def docs_examined(explained: Document | None) -> int:
    """totalDocsExamined of an explained command (an aggregate repeats its `$cursor` stage's
    figure at the top: counted once)."""
    if explained is None:
        return 0
    stats = explained.get("executionStats")
    if isinstance(stats, Mapping) and "totalDocsExamined" in stats:
        return int(stats["totalDocsExamined"])
    return sum(int(v) for k, v in _walk(explained.get("stages", [])) if k == "totalDocsExamined")


def plan_of(explained: Document | None) -> str:
    if explained is None:
        return "-"
    for key, value in _walk(explained):
        if key == "winningPlan":
            for inner_key, inner in _walk(value):
                if inner_key == "indexName":
                    return str(inner)
            return "COLLSCAN" if "COLLSCAN" in json.dumps(value, default=str) else "no index"
    return "?"


async def explain(database: Database, commands: list[StoreCommand]) -> None:
    for command in commands:
        if command.name not in EXPLAINABLE:
            continue
        with pymongo.timeout(STORE_TIMEOUT_S):
            command.explained = await database.db.command(
                "explain", _explainable(command.command), verbosity="executionStats"
            )


def _keys(query: Any) -> str:
    if not isinstance(query, Mapping):
        return "?"
    parts = []
    for key, value in query.items():
        if key == "_id" and isinstance(value, Mapping) and "$gte" in value:
            parts.append("_id range")
        elif key in ("$or", "$and"):
            parts.append(f"{key}[{', '.join(_keys(clause) for clause in value)}]")
        elif isinstance(value, Mapping) and "$regex" in value:
            parts.append(f"{key} ~ regex")
        elif key == "kind":
            parts.append(f"kind={value}")
        else:
            parts.append(key)
    return "{" + ", ".join(parts) + "}"


def shape(command: StoreCommand) -> str:
    """What a command does, without its values (one line per kind of query)."""
    body = command.command
    if command.name == "aggregate":
        pipeline = body.get("pipeline") or []
        stages = [next(iter(stage)) for stage in pipeline]
        first = pipeline[0].get("$match") if pipeline else None
        text = f"aggregate {command.collection} $match {_keys(first)}"
        facet = next((stage["$facet"] for stage in pipeline if "$facet" in stage), None)
        if facet is not None:
            residual = [s["$match"] for s in facet.get("found", []) if "$match" in s]
            text += " + $facet" + (f" (residual {_keys(residual[0])})" if residual else "")
        return text + "".join(f" + {name}" for name in stages[1:] if name != "$facet")
    if command.name == "find":
        return f"find {command.collection} {_keys(body.get('filter', {}))}"
    if command.name == "count":
        return f"count {command.collection} {_keys(body.get('query', {}))}"
    return f"{command.name} {command.collection}"


@dataclass(frozen=True)
class StoreWork:
    commands: list[StoreCommand]

    @property
    def queries(self) -> int:
        return len(self.commands)

    @property
    def examined(self) -> int:
        return sum(docs_examined(command.explained) for command in self.commands)

    @property
    def store_ms(self) -> float:
        return sum(command.duration_ms for command in self.commands)

    def by_shape(self) -> list[tuple[str, int, int, float]]:
        """(shape [index], commands, documents examined, store ms), most examined first."""
        groups: dict[str, list[StoreCommand]] = {}
        for command in self.commands:
            key = f"{shape(command)} [{plan_of(command.explained)}]"
            groups.setdefault(key, []).append(command)
        rows = [
            (
                key,
                len(group),
                sum(docs_examined(c.explained) for c in group),
                sum(c.duration_ms for c in group),
            )
            for key, group in groups.items()
        ]
        return sorted(rows, key=lambda row: (-row[2], -row[3]))


# --------------------------------------------------------------------------- measuring


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


@dataclass
class CaseResult:
    url: str
    latencies_ms: list[float] = field(default_factory=list)
    rows: int = 0
    older: bool = False
    work: StoreWork | None = None
    page_ms: float = math.nan  # the recorded request's own time

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 0.5)

    @property
    def p90(self) -> float:
        return percentile(self.latencies_ms, 0.9)


@dataclass
class SizeResult:
    size: int
    load_s: float
    cases: dict[str, CaseResult]
    counts: str  # how the counts box was served
    others_percent: float
    background: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Page:
    status: int
    text: str
    elapsed_ms: float

    @property
    def rows(self) -> int:
        return len(re.findall(r'<input type="checkbox" name="id"', self.text))

    @property
    def older_url(self) -> str | None:
        found = re.search(r'<a href="([^"]+)" rel="next">', self.text)
        return html.unescape(found.group(1)) if found else None

    @property
    def counts_shown(self) -> bool:
        return 'aria-label="By status"' in self.text

    @property
    def counted_at(self) -> str | None:
        found = re.search(r'<li class="hint">(counted [^<]*)</li>', self.text)
        return html.unescape(found.group(1)) if found else None


async def get(http: aiohttp.ClientSession, url: str) -> Page:
    began = time.perf_counter()
    async with http.get(url, allow_redirects=False) as response:
        text = await response.text()
    elapsed = (time.perf_counter() - began) * 1000
    if response.status != 200:
        title = re.search(r"<title>([^<]*)</title>", text)
        said = html.unescape(title.group(1)) if title else text[:120]
        raise BenchError(f"GET {url} answered {response.status} ({said!r})")
    return Page(response.status, text, elapsed)


def make_settings(uri: str, database_name: str, key: str, data_dir: str, port: int) -> Settings:
    # Explicit values win over the environment, so a developer's app id (authentication on)
    # or tenant allow list cannot leak into the run.
    return load_settings(
        _env_file=None,
        mongodb_uri=uri,
        database_name=database_name,
        token_encryption_keys=key,
        host=HOST,
        port=port,
        log_level="WARNING",
        data_dir=data_dir,
        app_id="",
        allowed_tenant_ids="",
    )


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[str]:
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, HOST, settings.port).start()
        yield f"http://{HOST}:{settings.port}"
    finally:
        await runner.cleanup()


async def settle(http: aiohttp.ClientSession, size: int, database: Database) -> str:
    """Reload the first page until it shows the counts by status; say how they were served.

    If it cannot within STUCK_AFTER_S, the summaries the small run stored are taken to be what
    holds it (a summary's stored total decides whether a set is counted live, and a live count
    that outlasts the store client's limit never rewrites it): the benchmark says so, removes
    them, as a gradual growth would have replaced them, and tries again.
    """
    try:
        return await _settle(http, size, STUCK_AFTER_S)
    except BenchError as stuck:
        print(
            f"  warning: at {size:,} the page did not show its counts within {STUCK_AFTER_S:g} s "
            f"({stuck}); removing the stored summaries ({COUNTS_COLLECTION}) and trying again",
            flush=True,
        )
        removed = await database.db[COUNTS_COLLECTION].delete_many({})
        shown = await _settle(http, size, SETTLE_DEADLINE_S)
        return (
            f"{shown}, but only after the benchmark removed the {removed.deleted_count} stored "
            f"summaries: with those the small run left, every page failed for {STUCK_AFTER_S:g} s "
            f"({stuck})"
        )


async def _settle(http: aiohttp.ClientSession, size: int, deadline_s: float) -> str:
    began = time.monotonic()
    failures: list[str] = []
    while True:
        try:
            page: Page | None = await get(http, PAGE_PATH)
        except BenchError as error:
            # A fresh process measures the collection inside its first request, which may
            # outlast the store client's 3 s bound on a busy machine; the next one goes on.
            failures.append(str(error))
            page = None
        if page is not None and page.counts_shown:
            waited = time.monotonic() - began
            failed = f" ({len(failures)} failed request(s) first)" if failures else ""
            if page.counted_at is None:
                return "counted live at each request" + failed
            return (
                f"stored summary ({page.counted_at}), shown {waited:.1f} s after the first "
                f"request{failed}"
            )
        if time.monotonic() - began > deadline_s:
            last = f"; the last: {failures[-1]}" if failures else ""
            raise BenchError(
                f"the counts by status never came at {size:,} connections, "
                f"{len(failures)} request(s) failed{last}"
            )
        await asyncio.sleep(SETTLE_POLL_S)


def case_urls(person: Person, older: str) -> dict[str, str]:
    return {
        "first": PAGE_PATH,
        "status": f"{PAGE_PATH}?{urlencode({'status': STATUS_FILTER})}",
        "app": f"{PAGE_PATH}?{urlencode({'app': APP_FILTER})}",
        "older": older,
        "person": f"{PAGE_PATH}?{urlencode({'person': person.owner.name})}",
    }


BACKGROUND_SHAPES = {
    "recount (count_by window)": lambda c: (
        c.name == "aggregate"
        and any("$group" in stage for stage in c.command.get("pipeline", []))
        and "_id" in (c.command.get("pipeline") or [{}])[0].get("$match", {})
    ),
    "collection size (count)": lambda c: c.name == "count",
    "settlement sweep (find $or)": lambda c: (
        c.name == "find" and "$or" in c.command.get("filter", {}) and c.collection == "connections"
    ),
}


def classify_background(commands: list[StoreCommand]) -> Counter[str]:
    found: Counter[str] = Counter()
    for command in commands:
        for label, test in BACKGROUND_SHAPES.items():
            if test(command):
                found[label] += 1
                found[f"{label} ms"] += round(command.duration_ms)
                if command.failure:
                    found[f"{label} failed"] += 1
    return found


async def measure_size(
    *,
    size: int,
    load_s: float,
    settings: Settings,
    session_id: str,
    person: Person,
    database: Database,
    listener: StoreCommands,
    warmups: int,
    repeats: int,
) -> SizeResult:
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    headers = {"Cookie": f"{COOKIE}={session_id}"}
    async with (
        serving(settings) as base_url,
        aiohttp.ClientSession(base_url, headers=headers, timeout=timeout) as http,
    ):
        print(f"  at {size:,}: warming until the counts by status are shown …", flush=True)
        counts = await settle(http, size, database)
        older = (await get(http, PAGE_PATH)).older_url
        if older is None:
            raise BenchError(f"the first page at {size:,} connections has no Older link")
        urls = case_urls(person, older)
        results = {case.key: CaseResult(url=urls[case.key]) for case in CASES}
        for _ in range(warmups):
            for case in CASES:
                await get(http, urls[case.key])

        ours = [os.getpid(), *descendants(os.getpid())]
        print(f"  at {size:,}: timing {repeats} rounds of {len(CASES)} cases …", flush=True)
        listener.record()
        machine_before = machine_busy_seconds()
        cpu_before = sum(map(cpu_seconds, ours))
        began = time.monotonic()
        for _ in range(repeats):
            for case in CASES:
                page = await get(http, urls[case.key])
                result = results[case.key]
                result.latencies_ms.append(page.elapsed_ms)
                result.rows, result.older = page.rows, page.older_url is not None
        wall = time.monotonic() - began
        used = sum(map(cpu_seconds, ours)) - cpu_before
        others = max(100 * (machine_busy_seconds() - machine_before - used) / wall, 0.0)
        background = classify_background(listener.stop())

        for case in CASES:
            listener.record()
            page = await get(http, urls[case.key])
            commands = listener.stop()
            await explain(database, commands)
            results[case.key].work = StoreWork(commands)
            results[case.key].page_ms = page.elapsed_ms
    return SizeResult(
        size=size,
        load_s=load_s,
        cases=results,
        counts=counts,
        others_percent=others,
        background=background,
    )


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class Options:
    small: int
    large: int
    repeats: int
    warmups: int


@dataclass
class Run:
    store: str
    person: Person | None = None
    person_connections: int = 0
    sizes: list[SizeResult] = field(default_factory=list)


async def run(options: Options) -> Run:
    external_uri = os.environ.get("MONGODB_URI") or None
    database_name = f"bench_console_{uuid.uuid4().hex[:12]}"
    listener = StoreCommands(database_name)
    monitoring.register(listener)  # before any client: the application's reports to it too
    key = new_key()
    result = Run(store="MONGODB_URI" if external_uri else "embedded secantusd-py, in memory")
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
        data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-console-"))
        world = await build_world(database, key)
        population = Population(world.parents, world.tokens, end=datetime.now(UTC))
        for size in (options.small, options.large):
            adding = size - population.count
            print(f"loading {adding:,} runtime connections (to {size:,}) …", flush=True)
            began = time.monotonic()
            await population.load(database, adding)
            load_s = time.monotonic() - began
            print(f"  loaded in {load_s:.1f} s", flush=True)
            if result.person is None:
                result.person = searched_person(population)
            settings = make_settings(uri, database_name, key, data_dir, free_port())
            result.sizes.append(
                await measure_size(
                    size=size,
                    load_s=load_s,
                    settings=settings,
                    session_id=world.session_id,
                    person=result.person,
                    database=database,
                    listener=listener,
                    warmups=options.warmups,
                    repeats=options.repeats,
                )
            )
        assert result.person is not None
        result.person_connections = population.connections_of[result.person.owner.aad_object_id]
    return result


# --------------------------------------------------------------------------- report


def _ms(value: float) -> str:
    return f"{value:,.1f}"


def verdict(ratio: float) -> str:
    return f"OK (≤ {LIMIT_RATIO}×)" if ratio <= LIMIT_RATIO else f"OVER {LIMIT_RATIO}×"


def report(result: Run, options: Options) -> bool:
    """Print the tables; True when every case is within the limit."""
    small, large = result.sizes
    person = result.person
    assert person is not None
    print()
    print(
        f"bench.console: /admin/connections as a contoso administrator (every privilege of the "
        f"tenant), store: {result.store}"
    )
    print(
        f"(e) searches {person.owner.name!r}, a contoso person with "
        f"{result.person_connections} connection(s) stored in the small run."
    )
    for sized in result.sizes:
        print(f"at {sized.size:,} connections: counts by status {sized.counts}")
    print()
    head_small, head_large = f"{small.size:,}", f"{large.size:,}"
    print(
        f"{'case':<32} {head_small + ' p50':>12} {'p90':>8} {head_large + ' p50':>14} "
        f"{'p90':>8} {'ratio':>7}   rows, older link at {head_small} / {head_large}"
    )
    ratios: dict[str, float] = {}
    for case in CASES:
        a, b = small.cases[case.key], large.cases[case.key]
        ratios[case.key] = b.p50 / a.p50
        print(
            f"{case.label:<32} {_ms(a.p50):>12} {_ms(a.p90):>8} {_ms(b.p50):>14} "
            f"{_ms(b.p90):>8} {ratios[case.key]:>6.2f}×   "
            f"{a.rows}{', older' if a.older else ''} / {b.rows}{', older' if b.older else ''}"
        )
    print("(ms, median and 90th percentile of the timed requests; ratio of the medians)")
    print()
    for case in CASES:
        print(f"{case.label}: {verdict(ratios[case.key])}")

    print()
    print("Store work per page (one recorded request per case; documents examined by explain):")
    print(
        f"{'case':<32} {'queries':>8} {'examined':>9} {'store ms':>9}"
        f" {'queries':>9} {'examined':>9} {'store ms':>9}"
    )
    print(f"{'':<32} {'at ' + head_small:>28} {'at ' + head_large:>29}")
    for case in CASES:
        cells = []
        for sized in (small, large):
            work = sized.cases[case.key].work
            assert work is not None
            cells.append(f"{work.queries:>8} {work.examined:>9,} {_ms(work.store_ms):>9}")
        print(f"{case.label:<32} {cells[0]} {cells[1]:>29}")
    for case in CASES:
        if ratios[case.key] <= LIMIT_RATIO:
            continue
        print()
        print(f"{case.label}, over the limit: its queries by shape [index used]")
        for sized in (small, large):
            work = sized.cases[case.key].work
            assert work is not None
            print(
                f"  at {sized.size:,}: {work.queries} queries, {work.examined:,} documents "
                f"examined, {_ms(work.store_ms)} ms in the store of a "
                f"{_ms(sized.cases[case.key].page_ms)} ms page"
            )
            for text, count, examined, store_ms in work.by_shape():
                print(f"    {count:>3} × {text}: {examined:,} examined, {_ms(store_ms)} ms")

    print()
    for sized in result.sizes:
        background = sized.background
        labels = [label for label in BACKGROUND_SHAPES if background[label]]
        if labels:
            seen = ", ".join(
                f"{background[label]} {label} ({background[label + ' ms']:,} ms"
                + (
                    f", {background[label + ' failed']} failed"
                    if background[label + " failed"]
                    else ""
                )
                + ")"
                for label in labels
            )
            print(f"Background store work while timing at {sized.size:,}: {seen}.")
        else:
            print(f"No background store work while timing at {sized.size:,}.")
    print()
    print(
        f"Method: a fresh application per size on the same database, {options.warmups} warm-up "
        f"request(s) per case, then {options.repeats} rounds of the five cases, one request at "
        "a time over one keep-alive connection on 127.0.0.1; access log off. The client, the "
        f"application and the store share this machine's {len(os.sched_getaffinity(0))} CPU(s)."
    )
    for sized in result.sizes:
        if sized.others_percent > OTHERS_WARNING_PERCENT:
            print(
                f"warning: other processes took {sized.others_percent:.0f}% of a core while "
                f"timing at {sized.size:,}: these figures are disturbed, run again on a quiet "
                "machine"
            )
    return all(ratio <= LIMIT_RATIO for ratio in ratios.values())


# --------------------------------------------------------------------------- command line


def parse_arguments(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.console",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--small", type=int, default=1_000, help="connections, first run")
    parser.add_argument("--large", type=int, default=100_000, help="connections, second run")
    parser.add_argument("--repeats", type=int, default=15, help="timed requests per case")
    parser.add_argument("--warmups", type=int, default=2, help="warm-up requests per case")
    arguments = parser.parse_args(argv)
    if not 0 < arguments.small < arguments.large:
        parser.error("--small must be at least 1 and below --large")
    if arguments.small < 2 * 51:
        parser.error("--small must be at least 102 (an older page needs two pages of contoso)")
    if arguments.repeats < 1 or arguments.warmups < 0:
        parser.error("--repeats must be at least 1 and --warmups at least 0")
    return Options(arguments.small, arguments.large, arguments.repeats, arguments.warmups)


def main(argv: list[str]) -> int:
    options = parse_arguments(argv)
    print(
        f"bench.console: {options.small:,} then {options.large:,} stored runtime connections; "
        f"LIVE_COUNT_LIMIT {LIVE_COUNT_LIMIT:,}, EXAMINED_PER_PAGE {EXAMINED_PER_PAGE:,}",
        flush=True,
    )
    try:
        result = asyncio.run(run(options))
    except BenchError as error:
        print(f"bench.console failed: {error}", file=sys.stderr)
        return 2
    return 0 if report(result, options) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
