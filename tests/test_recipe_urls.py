"""Recipe arguments stay inside their place in the URL, over real HTTP against the sandbox.

`{connection.api_base_url}/api/opportunities/{id}/summary` with id `..` would be resolved by the
HTTP client to `/api/summary`, every opportunity's total, and sent with the connection's token:
the parent's (setting off) or the invoker's own (setting on). The sandbox logs the raw target of
every request it receives and counts calls to `/api/summary`; each test checks what was (and was
never) sent, in every position a template allows: path segment, query value, JSON body value,
result link. See `recipes.templates` for the rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

import messages
from recipes.config import RecipesConfigError, load_recipes
from recipes.model import BUILTIN_COMMANDS
from recipes.templates import TargetError, render_target, template_values
from storage.crypto import TokenCipher
from storage.models import Connection, ProviderAccount
from tests.conftest import TEST_TOKEN_KEY, RunningBot, StartBot
from tests.support import activities
from tests.support.activities import JANE
from tests.support.data import ADMIN, owner
from tests.support.sandbox import RunningSandbox, authorize, issue_tokens

RECIPES = """
[recipes.opportunity_summary]
name = "Opportunity summary"
phrase = "summary of {id}"
parent = "sandbox_team"
[recipes.opportunity_summary.action]
method = "GET"
url = "{connection.api_base_url}/api/opportunities/{id}/summary"
[recipes.opportunity_summary.result]
verb = "Read"
fields = { Name = "name", Count = "count" }

[recipes.opportunity_in_currency]
name = "Opportunity in a currency"
phrase = "convert {id} to {currency}"
parent = "sandbox_team"
[recipes.opportunity_in_currency.action]
method = "GET"
url = "{connection.api_base_url}/api/opportunities/{id}/summary?currency={currency}"
[recipes.opportunity_in_currency.result]
verb = "Read"
fields = { Name = "name", Count = "count" }

[recipes.sandbox_opportunity]
name = "Sandbox opportunity"
phrase = "sandbox opportunity {name} {amount:number}"
parent = "sandbox_team"
[recipes.sandbox_opportunity.action]
method = "POST"
url = "{connection.api_base_url}/api/opportunities"
body = { name = "{name}", amount = "{amount}" }
[recipes.sandbox_opportunity.result]
verb = "Created"
fields = { Id = "id" }
link = "{connection.api_base_url}/view/{response.name}"
"""

SEEDED = "opp-seed"
SUMMARY_PATH = f"/api/opportunities/{SEEDED}/summary"

# What a person could type for an argument that must not act as "." or "..": the plain forms,
# percent-encoded (any case, partly, twice), fullwidth and two-dot-leader forms, with white
# space or invisible characters around, with a path parameter, or as part of a path.
DOT_VALUES = [
    "..",
    ".",
    "%2e%2e",
    "%2E.",
    ".%2e",
    "%252e%252e",
    "\uff0e\uff0e",  # fullwidth full stops
    "\u2025",  # two-dot leader
    " .. ",
    "\u200b..\u200b",  # zero-width spaces
    "..;x",
    "../summary",
    "..\\summary",
    "%2e%2e%2fsummary",
]


def _typed(value: str) -> str:
    return f'"{value}"'


@dataclass
class World:
    bot: RunningBot
    sandbox: RunningSandbox
    cipher: TokenCipher
    parent: Connection
    session: aiohttp.ClientSession

    async def set_verify(self, key: str, verify: bool) -> None:
        await self.bot.database.recipe_settings.set_verify_user_access(
            key, verify, changed_by="test"
        )

    async def connect_jane(self) -> None:
        assert self.bot.settings.apps_file is not None
        redirect = f"{str(self.bot.settings.public_base_url).rstrip('/')}/auth/callback"
        tokens = await issue_tokens(self.bot.settings.apps_file, redirect, user="jane")
        await self.bot.database.connections.create_runtime(
            parent_id=self.parent.id,
            owner=owner(JANE),
            account=ProviderAccount(id="user-jane", display_name="jane@sandbox.example"),
            tokens=self.cipher.seal(tokens.as_record()),
            api_base_url=self.sandbox.base_url,
        )

    async def run(self, text: str) -> str:
        """Jane types `text` in her 1:1 chat; returns what the bot sent back, as JSON text."""
        self.bot.connector.clear()
        status, _ = await self.bot.post(activities.message(JANE, self.bot.service_url, text))
        assert status == 200
        return self.shown()

    def shown(self) -> str:
        return json.dumps([s.activity for s in self.bot.connector.sent], ensure_ascii=False)

    def api_requests(self) -> list[str]:
        """The raw request targets (path and query, as received) of every /api call so far."""
        with self.sandbox.state.lock:
            return [target for _, target in self.sandbox.state.requests if "/api/" in target]

    def summary_calls(self) -> int:
        return self.sandbox.stats().get("api.summary", 0)

    def forget_requests(self) -> None:
        with self.sandbox.state.lock:
            self.sandbox.state.requests.clear()

    async def sign_in_and_verify(self, url: str) -> None:
        """Jane's browser part of the sign-in, then the code back through verifyState."""
        async with self.session.get(url, allow_redirects=False) as response:
            provider_url = response.headers["Location"]
        callback = await authorize(self.session, provider_url, user="jane")
        parts = urlsplit(callback)
        target = self.bot.client.make_url(f"{parts.path}?{parts.query}")
        async with self.session.get(target, allow_redirects=False) as response:
            assert response.status == 303
        async with self.session.get(self.bot.client.make_url("/auth/done")) as response:
            page = await response.text()
        found = re.search(r'id="code">(\d{6})<', page)
        assert found, page
        status, _ = await self.bot.post(
            activities.invoke(JANE, self.bot.service_url, "signin/verifyState", {"state": found[1]})
        )
        assert status == 200

    async def runs(self) -> list[dict[str, Any]]:
        """Every stored recipe run, oldest first."""
        cursor = self.bot.database.db["recipe_runs"].find({}).sort("started_at", 1)
        return [run async for run in cursor]

    def login_urls(self) -> list[str]:
        return [
            attachment["content"]["buttons"][0]["value"]
            for sent in self.bot.connector.sent
            for attachment in sent.activity.get("attachments") or []
            if attachment["contentType"] == "application/vnd.microsoft.card.signin"
        ]


@pytest.fixture
async def world(
    start_bot: StartBot,
    sandbox: RunningSandbox,
    apps_file: Path,
    bot_port: int,
    tmp_path: Path,
) -> AsyncIterator[World]:
    recipes = tmp_path / "recipes.toml"
    recipes.write_text(RECIPES)
    base_url = f"http://127.0.0.1:{bot_port}"
    bot = await start_bot(
        port=bot_port,
        apps_file=str(apps_file),
        recipes_file=str(recipes),
        public_base_url=base_url,
        signin_sweep_s=0,
    )
    cipher = TokenCipher([TEST_TOKEN_KEY])
    parent_tokens = await issue_tokens(apps_file, f"{base_url}/auth/callback", user="omar")
    parent = await bot.database.connections.create_parent(
        provider="sandbox",
        owner=ADMIN,
        account=ProviderAccount(id="user-omar", display_name="omar@sandbox.example"),
        tokens=cipher.seal(parent_tokens.as_record()),
        api_base_url=sandbox.base_url,
        name="sandbox_team",
    )
    with sandbox.state.lock:
        sandbox.state.opportunities.append(
            {
                "id": SEEDED,
                "name": "Seeded",
                "amount": 10,
                "created_by": {"sub": "user-alex", "email": "alex@sandbox.example"},
            }
        )
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield World(bot, sandbox, cipher, parent, session)


def _acting_as(verify: bool) -> str:
    return "jane@sandbox.example" if verify else "omar@sandbox.example"


@pytest.mark.parametrize("verify", [False, True], ids=["parent", "runtime"])
async def test_dot_segments_in_a_path_argument_are_refused_and_nothing_is_sent(
    world: World, verify: bool
) -> None:
    """An argument in a URL path that reads as `.` or `..` in any encoding gets "expected …" with
    an example and sends nothing, with the parent's or the invoker's own connection; an ordinary
    value reaches exactly its own path."""
    await world.set_verify("opportunity_summary", verify)
    if verify:
        await world.connect_jane()

    for value in DOT_VALUES:
        shown = await world.run(f"summary of {_typed(value)}")
        assert "id can't be" in shown, (value, shown)
        assert "Example: summary of" in shown
        assert "did not accept" not in shown

    assert world.api_requests() == []
    assert world.summary_calls() == 0
    shown = await world.run(f"summary of {SEEDED}")
    assert f"Read in Sandbox as {_acting_as(verify)}" in shown
    assert world.api_requests() == [SUMMARY_PATH]
    assert world.summary_calls() == 0


@pytest.mark.parametrize("verify", [False, True], ids=["parent", "runtime"])
async def test_dot_segments_in_a_query_argument_are_refused_too(world: World, verify: bool) -> None:
    """An argument used in a URL's query is refused the same way (APIs often read a path from a
    query value); nothing is sent, and ordinary values arrive percent-encoded in the query."""
    await world.set_verify("opportunity_in_currency", verify)
    if verify:
        await world.connect_jane()

    for value in DOT_VALUES:
        shown = await world.run(f"convert {SEEDED} to {_typed(value)}")
        assert "currency can't be" in shown, (value, shown)
        assert "Example: convert" in shown

    assert world.api_requests() == []
    shown = await world.run(f'convert {SEEDED} to "euro / ..."')
    assert f"Read in Sandbox as {_acting_as(verify)}" in shown
    assert world.api_requests() == [f"{SUMMARY_PATH}?currency=euro%20%2F%20..."]
    assert world.summary_calls() == 0


@pytest.mark.parametrize("verify", [False, True], ids=["parent", "runtime"])
async def test_body_values_are_sent_verbatim_and_links_stay_in_place(
    world: World, verify: bool
) -> None:
    """Values used only in the JSON body cannot move the URL: they are sent verbatim, as JSON
    strings, whatever dots or encodings they hold. A result link filled in from the app's
    response is left out when that response value would lead it out of its path."""
    await world.set_verify("sandbox_opportunity", verify)
    if verify:
        await world.connect_jane()

    for value in DOT_VALUES:
        shown = await world.run(f"sandbox opportunity {_typed(value)} 5")
        assert f"Created in Sandbox as {_acting_as(verify)}" in shown, (value, shown)
        assert "Action.OpenUrl" not in shown, (value, shown)  # /view/.. would be /
    shown = await world.run("sandbox opportunity Acme 5")
    assert f'"url": "{world.sandbox.base_url}/view/Acme"' in shown

    created = [o for o in world.sandbox.state.opportunities if o["id"] != SEEDED]
    assert [o["name"] for o in created] == [*DOT_VALUES, "Acme"]
    assert all(isinstance(o["name"], str) and o["amount"] == 5 for o in created)
    assert {o["created_by"]["email"] for o in created} == {_acting_as(verify)}
    assert world.api_requests() == ["/api/opportunities"] * (len(DOT_VALUES) + 1)
    assert world.summary_calls() == 0


@pytest.mark.parametrize("verify", [False, True], ids=["parent", "runtime"])
async def test_resumed_runs_are_checked_again_before_anything_is_sent(
    world: World, verify: bool
) -> None:
    """A run resumed from storage (stored before this check, or altered there) did not pass
    matching: its URL is checked again after it is built and resolved as the HTTP client would,
    and when it would leave the path its template fixes, or holds a dot segment, nothing is
    sent and the run fails with a clear message. A query value cannot move the URL: it goes out
    exactly as built."""
    await world.set_verify("opportunity_summary", True)
    await world.set_verify("opportunity_in_currency", True)
    tampered: list[tuple[str, dict[str, Any]]] = [
        ("summary of placeholder", {"id": ".."}),  # /api/summary: leaves the fixed prefix
        ("summary of placeholder", {"id": "."}),  # /api/opportunities/summary: a dot segment
        ("summary of placeholder", {"id": "%2e%2e"}),  # %252e%252e: decodes to ..
        ("convert placeholder to X", {"id": SEEDED, "currency": ".."}),  # query: harmless
    ]
    for text, _ in tampered:
        await world.run(text)
    runs = await world.runs()
    assert [run["status"] for run in runs] == ["waiting_for_sign_in"] * len(tampered)
    for run, (_, arguments) in zip(runs, tampered, strict=True):
        await world.bot.database.db["recipe_runs"].update_one(
            {"_id": run["_id"]},
            {
                "$set": {
                    "sealed_arguments": world.cipher.seal(arguments).model_dump(),
                    "verify_user_access": verify,
                }
            },
        )
    world.forget_requests()

    await world.sign_in_and_verify(world.login_urls()[-1])

    refused = messages.RECIPE_URL_REFUSED.format(app="Sandbox")
    assert world.shown().count(json.dumps(refused)[1:-1]) == 3
    assert f"Read in Sandbox as {_acting_as(verify)}" in world.shown()
    assert world.api_requests() == [f"{SUMMARY_PATH}?currency=.."]
    assert world.summary_calls() == 0
    assert [run["status"] for run in await world.runs()] == [
        "failed",
        "failed",
        "failed",
        "succeeded",
    ]


@pytest.mark.parametrize(
    "url",
    [
        "{connection.api_base_url}/api/../summary",
        "{connection.api_base_url}/api/./opportunities/{id}",
        "{connection.api_base_url}/api/%2E%2E/summary/{id}",
        "https://api.example.com/v1/../admin/{id}",
    ],
)
def test_templates_with_a_dot_segment_of_their_own_are_refused(tmp_path: Path, url: str) -> None:
    """A URL template whose own text has a `.` or `..` path segment stops the start, naming the
    recipe: its target would not be the path it shows."""
    path = tmp_path / "recipes.toml"
    path.write_text(
        "[recipes.r]\n"
        'name = "R"\n'
        'phrase = "show record {id}"\n'
        'parent = "team"\n'
        "[recipes.r.action]\n"
        'method = "GET"\n'
        f'url = "{url}"\n'
    )
    with pytest.raises(RecipesConfigError, match=r"recipes\.r\.action\.url: has a \. or \.\."):
        load_recipes(path, parent_names={"team"}, reserved_phrases=BUILTIN_COMMANDS)


GRAPH = "https://graph.microsoft.com/v1.0"


@pytest.mark.parametrize(
    ("template", "value"),
    [
        ("{connection.api_base_url}/{id}", ".."),  # above the base URL's own path
        ("{connection.api_base_url}/users/{id}", ".."),
        ("{connection.api_base_url}/users/{id}/manager", "."),  # drops a segment
        ("{connection.api_base_url}/users/{id}", "%2e%2e"),
        ("https://api.box.com/2.0/folders/{id}/items", ".."),
        ("https://api.box.com/2.0/folders/{id}", "\uff0e\uff0e"),
    ],
)
def test_built_urls_that_would_leave_their_place_are_refused(template: str, value: str) -> None:
    """After it is built, a URL is resolved as the HTTP client would and must keep the scheme,
    host, port and path prefix its template fixes (the API base URL's path included, at a
    segment boundary; the host of an https:// template), with no dot segment in any encoding."""
    values = template_values({"id": value}, api_base_url=GRAPH)
    with pytest.raises(TargetError):
        render_target(template, values)


def test_built_urls_are_sent_byte_for_byte() -> None:
    """A URL that stays in place is sent exactly as built: what a value percent-encoded stays
    encoded (yarl would turn %3B back into ; in a path and %2F into / in a query)."""
    values = template_values({"id": "a;b", "q": "x/y?"}, api_base_url=GRAPH + "/")
    sent = render_target("{connection.api_base_url}/users/{id}?q={q}", values)
    assert sent.raw_path_qs == "/v1.0/users/a%3Bb?q=x%2Fy%3F"
    assert (sent.scheme, sent.host, sent.port) == ("https", "graph.microsoft.com", 443)
