"""The admin console in a real browser (headless Chromium through Playwright).

An administrator signs in with msal at the sandbox OpenID Connect issuer (over HTTPS with a
test CA), and uses every page as a person would: filters, pages, CSV downloads, Disconnect and
Delete behind their confirmations, a parent's deletion and a recipe's switch (checked by running
the recipe in the chat), privileges, CSRF, sign-out and an expired session, another tenant's
data, a phone's screen and the keyboard. Each test checks what the page shows and what the
store holds. Run inside a private network namespace, like tests/e2e:

    unshare --net sh -c 'ip link set lo up &&
        exec python3 -m pytest tests/console/test_console_browser.py'
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from bson import ObjectId
from playwright.async_api import Browser, BrowserContext, async_playwright, expect

import messages
from sandbox.server import SandboxClient
from storage.crypto import TokenCipher
from storage.database import Database
from storage.models import Actor, Connection, ConnectionStatus, Owner, ProviderAccount
from storage.privileges import OWNER_PRIVILEGES, PrincipalKind, Privilege
from tests.conftest import TEST_TOKEN_KEY, RunningBot, StartBot
from tests.console.browser import (
    PHONE,
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    Chat,
    ConsolePage,
    clear_artifacts,
    ids_of,
    new_console_context,
    shown_ids,
)
from tests.console.support import CONTOSO, FABRIKAM, stored_parent, stored_runtime
from tests.e2e.harness import launch_chromium, require_private_network
from tests.support.sandbox import (
    CLIENT_ID,
    CLIENT_SECRET,
    SECRET_VARIABLE,
    RunningSandbox,
    issue_tokens,
    run_sandbox,
    sandbox_config,
    write_apps_file,
)
from tests.support.tls import make_tls
from tests.support.waiting import eventually

pytestmark = [
    pytest.mark.e2e,
    # console.signin silences it when imported; pytest restores the filters after collection.
    pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended"),
]

JANE = "user-jane"  # the administrator signing in (the sandbox user "jane", Jane Doe)
RECIPE = "Sandbox opportunity"
RECIPE_KEY = "sandbox_opportunity"
RECIPES = """
[recipes.sandbox_opportunity]
name = "Sandbox opportunity"
phrase = "sandbox opportunity {name} {amount:number}"
parent = "sandbox_team"
verify_user_access = true
[recipes.sandbox_opportunity.action]
method = "POST"
url = "{connection.api_base_url}/api/opportunities"
body = { name = "{name}", amount = "{amount}" }
[recipes.sandbox_opportunity.result]
verb = "Created"
fields = { Id = "id", "Created by" = "created_by.email" }
"""
# Two more apps besides the sandbox, for the App filter (never called: no tokens are stored).
MORE_APPS = f"""
[apps.box]
preset = "box"
client_id = "box-client"
client_secret_env = "{SECRET_VARIABLE}"

[apps.salesforce]
preset = "salesforce"
host = "login.salesforce.com"
client_id = "salesforce-client"
client_secret_env = "{SECRET_VARIABLE}"
"""
SIGNED_IN_AS_PARENT = "Created in Sandbox as omar@sandbox.example"
ASKED_TO_SIGN_IN = "you need to sign in with your own Sandbox account first"
LOGIN_CARD = "application/vnd.microsoft.card.signin"
PAGE_WIDTH = "() => [document.documentElement.scrollWidth, window.innerWidth]"
# Table cells on the page whose content is wider than the cell (cut off, or scrolled sideways).
CUT_OFF = """() => [...document.querySelectorAll("tbody td")]
    .filter((cell) => cell.scrollWidth > cell.clientWidth + 1)
    .map((cell) => `${cell.dataset.label}: ${cell.innerText.trim()} `
        + `(${cell.scrollWidth} px in ${cell.clientWidth})`)"""
TURN = "Turn Verify user access at runtime {value} for " + RECIPE


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    require_private_network()
    async with async_playwright() as playwright:
        chromium = await launch_chromium(playwright)
        try:
            yield chromium
        finally:
            await chromium.close()


@dataclass
class Console:
    """The bot with its console signing in at the sandbox issuer, the sandbox app its recipe
    acts in, and browser tabs on it."""

    bot: RunningBot
    sandbox: RunningSandbox
    parent: Connection  # sandbox_team, of tenant contoso, authorized as omar@sandbox.example
    browser: Browser
    test_name: str
    contexts: list[BrowserContext] = field(default_factory=list)
    pages: list[ConsolePage] = field(default_factory=list)

    @property
    def database(self) -> Database:
        return self.bot.database

    @property
    def base_url(self) -> str:
        return str(self.bot.settings.public_base_url).rstrip("/")

    @property
    def chat(self) -> Chat:
        return Chat(self.bot, self.sandbox)

    async def grant(
        self, privileges: Iterable[Privilege], *, principal: str = JANE, tenant: str = CONTOSO
    ) -> None:
        await self.database.privileges.grant(
            tenant_id=tenant,
            kind=PrincipalKind.USER,
            principal=principal,
            privileges=list(privileges),
            actor=Actor.operator("test"),
        )

    async def open(self, *, viewport: dict[str, int] | None = None) -> ConsolePage:
        context = await new_console_context(self.browser, viewport=viewport)
        self.contexts.append(context)
        tab = ConsolePage(await context.new_page(), self.base_url, self.test_name)
        if self.pages:  # screenshots of a second tab are numbered after the first's
            tab.shots = self.pages[-1].shots
        self.pages.append(tab)
        return tab

    async def signed_in(
        self,
        privileges: Iterable[Privilege] = OWNER_PRIVILEGES,
        *,
        viewport: dict[str, int] | None = None,
        user: str = "jane",
        name: str = "Jane Doe",
    ) -> ConsolePage:
        """A tab signed in through the sandbox issuer as its user `user` (object id
        `user-<user>`, tenant contoso), who holds `privileges`."""
        await self.grant(privileges, principal=f"user-{user}")
        tab = await self.open(viewport=viewport)
        await tab.sign_in(user=user, name=name)
        return tab


@pytest.fixture
async def console(
    start_bot: StartBot,
    bot_port: int,
    sandbox: RunningSandbox,
    browser: Browser,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Console]:
    tls = make_tls(tmp_path / "tls")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_bundle))  # msal trusts the issuer
    monkeypatch.setenv(SECRET_VARIABLE, CLIENT_SECRET)
    base_url = f"http://127.0.0.1:{bot_port}"
    admin_client = SandboxClient(
        CLIENT_ID,
        CLIENT_SECRET,
        redirect_uris=(f"{base_url}/admin/callback",),
        scopes=("openid", "profile", "email", "offline_access"),
    )
    issuer_config = sandbox_config(clients=(admin_client,), oidc_tenant=CONTOSO)
    apps = write_apps_file(tmp_path / "apps.toml", sandbox, contact="Ada Admin")
    apps.write_text(apps.read_text() + MORE_APPS)
    recipes = tmp_path / "recipes.toml"
    recipes.write_text(RECIPES)
    with run_sandbox(issuer_config, tls=tls.server_context()) as issuer:
        bot = await start_bot(
            port=bot_port,
            PUBLIC_BASE_URL=base_url,
            ADMIN_OIDC_AUTHORITY=f"{issuer.base_url}/{CONTOSO}",
            ADMIN_CLIENT_ID=CLIENT_ID,
            ADMIN_CLIENT_SECRET=CLIENT_SECRET,
            ALLOWED_TENANT_IDS=CONTOSO,
            APPS_FILE=str(apps),
            RECIPES_FILE=str(recipes),
        )
        # The recipe's parent, authorized as the sandbox user omar, serving tenant contoso.
        tokens = await issue_tokens(apps, f"{base_url}/auth/callback", user="omar")
        parent = await bot.database.connections.create_parent(
            provider="sandbox",
            owner=Owner(tenant_id=CONTOSO, aad_object_id="aad-ada", name="Ada Admin"),
            account=ProviderAccount(id="user-omar", display_name="omar@sandbox.example"),
            tokens=TokenCipher([TEST_TOKEN_KEY]).seal(tokens.as_record()),
            api_base_url=sandbox.base_url,
            name="sandbox_team",
            tenant_id=CONTOSO,
        )
        made = Console(bot, sandbox, parent, browser, request.node.name)
        clear_artifacts(request.node.name)
        failed_before = request.session.testsfailed
        try:
            yield made
            if request.session.testsfailed > failed_before:
                for tab in made.pages:
                    await tab.shot("failure")
        finally:
            for context in made.contexts:
                await context.close()


async def set_status(database: Database, connection: Connection, status: ConnectionStatus) -> None:
    store = database.connections
    if status is ConnectionStatus.DISCONNECTED:
        await store.disconnect_for_owner(connection_id=connection.id, owner=connection.owner)
    elif status is ConnectionStatus.NEEDS_REAUTH:
        assert await store.mark_needs_reauth(connection_id=connection.id)


def filters_in(url: str) -> dict[str, str]:
    """The filters a list's URL carries (a GET form also sends its empty fields)."""
    return {key: value for key, value in parse_qsl(urlsplit(url).query) if value}


async def status_of(database: Database, connection: Connection) -> ConnectionStatus | None:
    found = await database.connections.get(connection.id)
    return None if found is None else found.status


# --- 1. Signing in -----------------------------------------------------------------------------


async def test_signs_in_through_msal_at_the_issuer(console: Console) -> None:
    await console.grant([Privilege.VIEW_CONNECTIONS, Privilege.EDIT_CONNECTIONS])
    tab = await console.open()
    await tab.sign_in()  # /admin/ → sign-in page → sandbox consent → jane → back on /admin/

    await expect(tab.main).to_contain_text("Signed in as Jane Doe of tenant contoso")
    await expect(tab.page.locator("header .who")).to_contain_text("Jane Doe (contoso)")
    privileges = tab.main.get_by_role("heading", name="Your privileges").locator("+ ul > li")
    await expect(privileges).to_have_text(
        ["Edit runtime user connections", "View runtime user connections"]
    )
    cookies = {cookie["name"]: cookie for cookie in await tab.page.context.cookies()}
    session = cookies[SESSION_COOKIE]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Lax"
    assert session["path"] == "/"
    assert SIGNIN_COOKIE not in cookies, "the sign-in binding cookie is cleared after the callback"
    [stored] = await console.database.admin_sessions.collection.find({}).to_list()
    assert stored["administrator"]["object_id"] == JANE
    assert stored["administrator"]["tenant_id"] == CONTOSO
    assert session["value"] not in str(stored), "the store keeps only the cookie's hash"


# --- 2. The list: filters, counts, pages, CSV ----------------------------------------------------


@dataclass
class Listed:
    omar_box: Connection
    omar_sf: Connection
    bea_box: Connection
    carl_sf: Connection
    dana_sf: Connection
    crowd: list[Connection]

    @property
    def everyone(self) -> list[Connection]:
        named = [self.omar_box, self.omar_sf, self.bea_box, self.carl_sf, self.dana_sf]
        return named + self.crowd


async def store_a_list(database: Database, *, crowd: int = 0) -> Listed:
    box = await stored_parent(database, name="box_team", provider="box")
    sf = await stored_parent(database, name="sf_team", provider="salesforce")
    crowd_made = [
        await stored_runtime(database, box, f"p{n:02d}", name=f"Person {n:02d}")
        for n in range(1, crowd + 1)
    ]
    listed = Listed(
        omar_box=await stored_runtime(database, box, "omar", name="Omar Ali"),
        omar_sf=await stored_runtime(database, sf, "omar", name="Omar Ali"),
        bea_box=await stored_runtime(database, box, "bea", name="Bea Brown"),
        carl_sf=await stored_runtime(database, sf, "carl", name="Carl Chen"),
        dana_sf=await stored_runtime(database, sf, "dana", name="Dana Diaz"),
        crowd=crowd_made,
    )
    await set_status(database, listed.omar_sf, ConnectionStatus.NEEDS_REAUTH)
    await set_status(database, listed.bea_box, ConnectionStatus.DISCONNECTED)
    await set_status(database, listed.dana_sf, ConnectionStatus.DISCONNECTED)
    return listed


async def test_the_list_filters_counts_pages_and_downloads(console: Console) -> None:
    listed = await store_a_list(console.database, crowd=55)  # 60 in all
    tab = await console.signed_in()
    await tab.page.get_by_role("link", name="Connections", exact=True).click()
    await expect(tab.heading).to_have_text("Runtime user connections")
    await tab.shot("list")

    counts = tab.page.get_by_role("list", name="By status").get_by_role("listitem")
    await expect(counts).to_have_text(["57 Connected", "2 Disconnected", "1 Needs sign-in"])

    # Newest first, 50 a page; the older ones on the next.
    await expect(tab.rows()).to_have_count(50)
    first = await tab.chosen_ids()
    await tab.page.get_by_role("link", name="Older »").click()
    await expect(tab.page).to_have_url(re.compile(r"/admin/connections\?before=[0-9a-f]{24}$"))
    await expect(tab.rows()).to_have_count(10)
    await tab.shot("older")
    second = await tab.chosen_ids()
    assert set(first).isdisjoint(second)
    assert set(first) | set(second) == ids_of(listed.everyone)
    await expect(tab.page.get_by_role("link", name="Older »")).to_have_count(0)
    await tab.page.get_by_role("link", name="« Newest").click()
    await expect(tab.page).to_have_url(tab.url("/admin/connections"))
    await expect(tab.rows()).to_have_count(50)
    assert await tab.chosen_ids() == first
    await tab.shot("newest")

    # By person, through the form: the URL carries the filter.
    await tab.page.get_by_label("Person", exact=True).fill("omar")
    await tab.page.get_by_role("button", name="Filter").click()
    await expect(tab.page).to_have_url(re.compile(r"/admin/connections\?.*person=omar"))
    assert filters_in(tab.page.url) == {"person": "omar"}
    await expect(tab.rows()).to_have_count(2)
    await tab.shot("person-omar")
    assert set(await tab.persons()) == {"Omar Ali"}
    rows = await tab.download(tab.csv_link, "omar")
    assert shown_ids(rows) == ids_of([listed.omar_box, listed.omar_sf])
    assert len(rows) == 2 and {row["person"] for row in rows} == {"Omar Ali"}

    # And by app: both filters in the URL.
    await tab.page.get_by_label("App", exact=True).select_option(label="Salesforce")
    await tab.page.get_by_role("button", name="Filter").click()
    await expect(tab.page).to_have_url(re.compile(r"\?.*app=salesforce"))
    assert filters_in(tab.page.url) == {"person": "omar", "app": "salesforce"}
    await expect(tab.rows()).to_have_count(1)
    await tab.shot("omar-salesforce")
    await expect(tab.row_of("Omar Ali", "Salesforce")).to_contain_text("Needs sign-in")
    await expect(tab.page.get_by_label("Person", exact=True)).to_have_value("omar")
    rows = await tab.download(tab.csv_link, "omar-salesforce")
    assert shown_ids(rows) == {listed.omar_sf.id}
    assert rows[0]["status"] == "needs_reauth" and rows[0]["app"] == "Salesforce"

    # By status alone (Clear, then the Status field).
    await tab.page.get_by_role("link", name="Clear").click()
    await expect(tab.page).to_have_url(tab.url("/admin/connections"))
    await expect(tab.page.get_by_label("Person", exact=True)).to_have_value("")
    await tab.shot("cleared")
    await tab.page.get_by_label("Status", exact=True).select_option(label="Disconnected")
    await tab.page.get_by_role("button", name="Filter").click()
    await expect(tab.page).to_have_url(re.compile(r"\?.*status=disconnected"))
    assert filters_in(tab.page.url) == {"status": "disconnected"}
    await expect(tab.rows()).to_have_count(2)
    await tab.shot("disconnected")
    assert sorted(await tab.persons()) == ["Bea Brown", "Dana Diaz"]
    rows = await tab.download(tab.csv_link, "disconnected")
    assert shown_ids(rows) == ids_of([listed.bea_box, listed.dana_sf])
    # The counts still show every status; the chosen one is marked.
    await expect(counts).to_have_text(["57 Connected", "2 Disconnected", "1 Needs sign-in"])
    await expect(tab.page.locator(".counts a[aria-current=true]")).to_have_text("2 Disconnected")

    # A count is a link to its status.
    await tab.page.get_by_role("link", name="1 Needs sign-in").click()
    await expect(tab.page).to_have_url(tab.url("/admin/connections?status=needs_reauth"))
    await expect(tab.rows()).to_have_count(1)
    await tab.shot("needs-sign-in")

    # Every matching connection, not only the first page's 50.
    await tab.goto("/admin/connections?app=box", "box")
    await expect(tab.rows()).to_have_count(50)
    rows = await tab.download(tab.csv_link, "box")
    box_ids = ids_of([listed.omar_box, listed.bea_box, *listed.crowd])
    assert len(rows) == len(box_ids) == 57
    assert shown_ids(rows) == box_ids


# --- 3. Disconnect one -------------------------------------------------------------------------


async def test_disconnect_one_with_its_confirmation(console: Console) -> None:
    listed = await store_a_list(console.database)
    tab = await console.signed_in()
    await tab.goto("/admin/connections", "list")
    await tab.page.get_by_label("Choose Omar Ali's Box connection").check()
    await tab.page.get_by_role("button", name="Disconnect chosen…").click()

    await expect(tab.page).to_have_url(tab.url("/admin/connections/confirm"))
    await expect(tab.heading).to_have_text("Disconnect 1 connection?")
    await expect(tab.page.locator("ul.effects > li")).to_have_text(
        [
            "Omar Ali will be signed out of Box (omar@contoso.example) and asked to sign in "
            "again the next time a recipe needs Box. The connection stays listed as Disconnected."
        ]
    )
    await tab.shot("confirm")
    assert await status_of(console.database, listed.omar_box) is ConnectionStatus.CONNECTED

    await tab.page.get_by_role("button", name="Yes, disconnect it").click()
    await expect(tab.heading).to_have_text("Done")
    await expect(tab.page.get_by_role("status")).to_have_text(
        "Omar Ali: Box (omar@contoso.example) is disconnected."
    )
    await tab.shot("done")
    assert await status_of(console.database, listed.omar_box) is ConnectionStatus.DISCONNECTED
    for other in (listed.omar_sf, listed.carl_sf):
        assert await status_of(console.database, other) is not ConnectionStatus.DISCONNECTED

    await tab.page.get_by_role("link", name="Back to the list").click()
    await expect(tab.row_of("Omar Ali", "Box").locator("td[data-label=Status]")).to_have_text(
        "Disconnected"
    )
    await expect(tab.row_of("Carl Chen", "Salesforce")).to_contain_text("Connected")
    await tab.shot("list-after")

    async def audited() -> list:
        events = await console.database.audit.for_connection(listed.omar_box.id)
        return [e for e in events if e.action == "connection.disconnected"]

    [event] = await eventually(audited)
    assert (event.actor.kind, event.actor.aad_object_id) == ("administrator", JANE)
    await tab.page.get_by_role("link", name="Audit log").click()
    line = tab.page.locator("tbody tr").filter(
        has=tab.page.locator("td[data-label=Action]", has_text="connection.disconnected")
    )
    await expect(line).to_have_count(1)
    await expect(line.locator("td[data-label=By]")).to_have_text("Jane Doe (administrator)")
    await expect(line.locator("td[data-label=Whose]")).to_have_text("Omar Ali")
    await tab.shot("audit")


# --- 4. Offboarding: delete a filtered set -------------------------------------------------------


async def test_delete_everything_matching_a_person(console: Console) -> None:
    listed = await store_a_list(console.database)
    tab = await console.signed_in()
    await tab.goto("/admin/connections", "list")
    await tab.page.get_by_label("Person", exact=True).fill("omar")
    await tab.page.get_by_role("button", name="Filter").click()
    await expect(tab.rows()).to_have_count(2)
    await tab.shot("omar")

    await tab.page.get_by_role("button", name="Delete all matching…").click()
    await expect(tab.heading).to_have_text("Delete 2 connections?")
    effects = tab.page.locator("ul.effects > li")
    await expect(effects).to_have_count(2)
    for app in ("Box", "Salesforce"):
        await expect(effects.filter(has_text=f"Omar Ali's {app} connection")).to_have_text(
            f"Omar Ali's {app} connection (omar@contoso.example) will be removed, and Omar Ali "
            f"will be asked to sign in again the next time a recipe needs {app}."
        )
    await expect(tab.main).not_to_contain_text("Bea")
    await tab.shot("confirm")
    assert await status_of(console.database, listed.omar_box) is ConnectionStatus.CONNECTED

    await tab.page.get_by_role("button", name="Yes, delete them").click()
    await expect(tab.heading).to_have_text("Done")
    done = tab.page.get_by_role("status").locator("li")
    await expect(done).to_have_count(2)
    assert sorted(await done.all_inner_texts()) == [
        "Omar Ali: Box (omar@contoso.example) is removed.",
        "Omar Ali: Salesforce (omar@contoso.example) is removed.",
    ]
    await tab.shot("done")
    for gone in (listed.omar_box, listed.omar_sf):
        assert await console.database.connections.get(gone.id) is None
    for kept in (listed.bea_box, listed.carl_sf, listed.dana_sf):
        assert await console.database.connections.get(kept.id) is not None

    await tab.page.get_by_role("link", name="Back to the list").click()
    await expect(tab.rows()).to_have_count(3)
    assert sorted(await tab.persons()) == ["Bea Brown", "Carl Chen", "Dana Diaz"]
    await tab.shot("list-after")


# --- 5. Deleting a parent stops its recipe -------------------------------------------------------


async def test_deleting_a_parent_stops_its_recipe_in_the_chat(console: Console) -> None:
    children = [
        await stored_runtime(console.database, console.parent, person, name=name)
        for person, name in (("bea", "Bea Brown"), ("carl", "Carl Chen"))
    ]
    tab = await console.signed_in()
    await tab.page.get_by_role("link", name="Parent connections").click()
    row = tab.page.locator("tbody tr").filter(
        has=tab.page.locator("td[data-label=Name]", has_text="sandbox_team")
    )
    await expect(row.locator("td[data-label=Recipes]")).to_have_text(RECIPE)
    await expect(row.locator("td[data-label='Runtime connections']")).to_have_text("2")
    await expect(row.locator("td[data-label=Account]")).to_have_text("omar@sandbox.example")
    await tab.shot("parents")

    await row.get_by_role("button", name="Delete the parent connection sandbox_team").click()
    await expect(tab.heading).to_have_text("Delete the parent connection sandbox_team?")
    effects = tab.page.locator("ul.effects > li")
    await expect(effects).to_have_text(
        [
            "Sandbox (omar@sandbox.example) will no longer be used, and its tokens are revoked "
            "at Sandbox.",
            "These recipes will stop, and answer that their connection was removed until it is "
            f"authorized again: {RECIPE}.",
            "Its 2 runtime user connections stay stored; people keep them for when the parent "
            "is authorized again.",
        ]
    )
    await tab.shot("confirm")
    assert await console.database.connections.get(console.parent.id) is not None
    assert console.sandbox.stats().get("revoke", 0) == 0

    await tab.page.get_by_role("button", name="Yes, delete it").click()
    await expect(tab.page.get_by_role("status")).to_have_text(
        f"The parent connection sandbox_team is removed. Recipes that stop: {RECIPE}. Its "
        "runtime user connections stay stored."
    )
    await tab.shot("done")
    assert await console.database.connections.get(console.parent.id) is None
    for child in children:
        assert await console.database.connections.get(child.id) is not None
    # As the confirmation said: the parent's grant is revoked at the app.
    await eventually(lambda: console.sandbox.stats().get("revoke", 0) >= 1)
    await tab.page.get_by_role("link", name="Back to the list").click()
    await expect(tab.page).to_have_url(tab.url("/admin/parents"))
    await expect(tab.main).not_to_contain_text("sandbox_team")
    await tab.shot("parents-after")

    shown = await console.chat.say('sandbox opportunity "After removal" 10')
    assert f"{RECIPE} can't run: its Sandbox app connection was removed. Ask Ada Admin" in shown
    assert console.chat.created_by("After removal") == []


# --- 6. A recipe's switch changes whose account the next run uses ---------------------------------


async def test_the_recipe_switch_changes_the_next_runs_identity(console: Console) -> None:
    chat = console.chat
    tab = await console.signed_in()
    await tab.page.get_by_role("link", name="Recipes").click()
    row = tab.page.locator("tbody tr").filter(has_text=RECIPE)
    switch = row.locator("td[data-label='Verify user access']")
    await expect(switch.locator(".switch-state")).to_have_text("On")
    await tab.shot("recipes-on")

    # On (the file's value): the person is asked to sign in with their own account.
    shown = await chat.say('sandbox opportunity "Before" 1')
    assert ASKED_TO_SIGN_IN in shown and LOGIN_CARD in shown
    assert chat.created_by("Before") == []

    await switch.get_by_role("button", name=TURN.format(value="off")).click()
    await expect(tab.page).to_have_url(tab.url(f"/admin/recipes?changed={RECIPE_KEY}"))
    await expect(tab.page.get_by_role("status")).to_have_text(f"Saved: {RECIPE_KEY}.")
    await expect(switch.locator(".switch-state")).to_have_text("Off")
    await expect(switch.get_by_role("button")).to_have_text("Turn on")
    await tab.shot("recipes-off")
    assert (await console.database.recipe_settings.all())[RECIPE_KEY] is False

    shown = await chat.say('sandbox opportunity "Off deal" 2')
    assert SIGNED_IN_AS_PARENT in shown and LOGIN_CARD not in shown
    assert chat.created_by("Off deal") == ["omar@sandbox.example"]

    await switch.get_by_role("button", name=TURN.format(value="on")).click()
    await expect(switch.locator(".switch-state")).to_have_text("On")
    await expect(switch.get_by_role("button")).to_have_text("Turn off")
    await tab.shot("recipes-on-again")

    shown = await chat.say('sandbox opportunity "On deal" 3')
    assert ASKED_TO_SIGN_IN in shown and LOGIN_CARD in shown
    assert SIGNED_IN_AS_PARENT not in shown
    assert chat.created_by("On deal") == []

    async def audited() -> list:
        return [
            e
            for e in await console.database.audit.recent(limit=50)
            if e.action == "recipe.setting_changed" and e.actor.aad_object_id == JANE
        ]

    changes = await eventually(audited)
    assert sorted(e.details["verify_user_access"] for e in changes) == [False, True]


# --- 7. A viewer can't change anything -----------------------------------------------------------


async def test_a_viewer_sees_no_actions_and_a_hand_made_form_is_refused(console: Console) -> None:
    listed = await store_a_list(console.database)
    tab = await console.signed_in([Privilege.VIEW_CONNECTIONS])
    await tab.goto("/admin/connections", "list")
    await expect(tab.rows()).to_have_count(5)
    actions = tab.page.get_by_role("button", name=re.compile("Disconnect|Delete"))
    await expect(actions).to_have_count(0)
    await expect(tab.page.locator("tbody input[type=checkbox]")).to_have_count(0)
    await tab.page.get_by_label("Person", exact=True).fill("omar")
    await tab.page.get_by_role("button", name="Filter").click()
    await expect(tab.rows()).to_have_count(2)
    await expect(tab.page.get_by_role("button", name=re.compile("all matching"))).to_have_count(0)
    await tab.shot("viewer-list")

    csrf = await tab.csrf_of("form[action='/admin/signout']")
    for action, privilege in (("delete", "Delete connections"), ("disconnect", "Edit runtime")):
        await tab.goto("/admin/connections", f"before-{action}")
        response = await tab.post_form(
            "/admin/connections/apply",
            [("csrf", csrf), ("action", action), ("id", listed.omar_box.id)],
        )
        assert response.status == 403
        await expect(tab.heading).to_have_text("You can't do that here")
        await expect(tab.page.get_by_role("alert")).to_contain_text(privilege)
        await tab.shot(f"forbidden-{action}")
    statuses = [await status_of(console.database, c) for c in listed.everyone]
    assert statuses == [
        ConnectionStatus.CONNECTED,
        ConnectionStatus.NEEDS_REAUTH,
        ConnectionStatus.DISCONNECTED,
        ConnectionStatus.CONNECTED,
        ConnectionStatus.DISCONNECTED,
    ], "nothing changed"


# --- 8. CSRF ----------------------------------------------------------------------------------


async def test_an_altered_csrf_token_changes_nothing(console: Console) -> None:
    listed = await store_a_list(console.database)
    tab = await console.signed_in()
    await tab.goto("/admin/connections", "list")
    await tab.page.get_by_label("Choose Carl Chen's Salesforce connection").check()
    await tab.page.get_by_role("button", name="Delete chosen…").click()
    await expect(tab.heading).to_have_text("Delete 1 connection?")
    real = await tab.csrf_of("form.confirm")
    await tab.page.locator("form.confirm input[name=csrf]").evaluate(
        "(input) => { input.value = input.value.slice(0, -4) + 'AAAA'; }"
    )
    assert await tab.csrf_of("form.confirm") != real
    await tab.shot("confirm-altered")

    async with tab.page.expect_navigation() as navigation:
        await tab.page.get_by_role("button", name="Yes, delete it").click()
    assert (await navigation.value).status == 403
    await expect(tab.heading).to_have_text("Nothing was changed")
    await expect(tab.page.get_by_role("alert")).to_have_text(messages.CONSOLE_BAD_CSRF)
    await tab.shot("refused")
    kept = await console.database.connections.get(listed.carl_sf.id)
    assert kept is not None and kept.status is ConnectionStatus.CONNECTED

    # The same steps with the page's own token do it: the refusal was the token's doing.
    await tab.goto("/admin/connections", "list-again")
    await tab.page.get_by_label("Choose Carl Chen's Salesforce connection").check()
    await tab.page.get_by_role("button", name="Delete chosen…").click()
    assert await tab.csrf_of("form.confirm") == real
    await tab.page.get_by_role("button", name="Yes, delete it").click()
    await expect(tab.page.get_by_role("status")).to_contain_text("is removed")
    await tab.shot("with-the-real-token")
    assert await console.database.connections.get(listed.carl_sf.id) is None


# --- 9. Sign-out and an expired session -------------------------------------------------------


async def test_sign_out_and_an_expired_session_lead_to_sign_in(console: Console) -> None:
    tab = await console.signed_in([Privilege.VIEW_CONNECTIONS])
    await tab.goto("/admin/connections", "list")
    await tab.page.locator("header").get_by_role("button", name="Sign out").click()
    await expect(tab.page).to_have_url(tab.url("/admin/signin?signed_out=1"))
    await expect(tab.page.get_by_role("status")).to_have_text("You are signed out.")
    await expect(tab.page.locator("header")).not_to_contain_text("Jane Doe")
    await tab.shot("signed-out")
    assert SESSION_COOKIE not in {c["name"] for c in await tab.page.context.cookies()}
    assert await console.database.admin_sessions.collection.count_documents({}) == 0

    await tab.goto("/admin/connections", "after-sign-out")
    await tab.expect_sign_in_page(return_to="/admin/connections")

    # Signed in again, then the session's idle time runs out.
    await tab.sign_in()
    await tab.goto("/admin/connections", "signed-in-again")
    await expect(tab.heading).to_have_text("Runtime user connections")
    expired = await console.database.admin_sessions.collection.update_many(
        {}, {"$set": {"idle_until": ObjectId().generation_time.replace(year=2000)}}
    )
    assert expired.modified_count == 1
    await tab.goto("/admin/audit", "expired")
    await tab.expect_sign_in_page(return_to="/admin/audit")
    await expect(tab.page.locator("header nav")).to_have_count(0)


# --- 10. Another tenant's data -------------------------------------------------------------------


async def test_another_tenants_data_never_shows(console: Console) -> None:
    ours = await stored_parent(console.database, name="contoso_box")
    theirs = await stored_parent(console.database, tenant=FABRIKAM, name="fabrikam_box")
    jane = await stored_runtime(console.database, ours, "jc", name="Jane Contoso")
    zed = await stored_runtime(console.database, theirs, "zed", tenant=FABRIKAM, name="Zed Fab")
    for connection in (jane, zed):
        await console.database.audit.record(
            actor=Actor.person(connection.owner),
            action="connection.disconnected",
            connection=connection,
        )
    tab = await console.signed_in()
    for path, ours_shown in (
        ("/admin/connections", "Jane Contoso"),
        ("/admin/connections?person=zed", "No runtime user connections match"),
        ("/admin/parents", "contoso_box"),
        ("/admin/audit", "Jane Contoso"),
        ("/admin/audit?person=zed", "No events match"),
    ):
        await tab.goto(path, path.removeprefix("/admin/"))
        await expect(tab.main).to_contain_text(ours_shown)
        html = await tab.page.content()
        assert "Zed Fab" not in html and "fabrikam" not in html.lower(), path
        assert zed.id not in html and theirs.id not in html, path
    await tab.goto("/admin/connections", "list")
    counts = tab.page.get_by_role("list", name="By status").get_by_role("listitem")
    await expect(counts).to_have_text(["1 Connected", "0 Disconnected", "0 Needs sign-in"])

    rows = await tab.download(tab.csv_link, "csv")
    assert shown_ids(rows) == {jane.id}
    await tab.goto("/admin/audit", "for-audit-csv")
    rows = await tab.download(tab.csv_link, "audit")
    assert rows and all(row["tenant_id"] == CONTOSO for row in rows)
    assert zed.id not in {row["connection_id"] for row in rows}
    assert jane.id in {row["connection_id"] for row in rows}

    # The same pages do show fabrikam's data to an administrator who may see every tenant.
    wide = await console.signed_in(
        [Privilege.VIEW_CONNECTIONS, Privilege.ALL_TENANTS], user="omar", name="Omar Ali"
    )
    for path in ("/admin/connections", "/admin/parents", "/admin/audit"):
        await wide.goto(path, f"all-tenants-{path.removeprefix('/admin/')}")
        await expect(wide.main).to_contain_text("fabrikam" if "parents" in path else "Zed Fab")


# --- 11. A phone's screen ----------------------------------------------------------------------


async def test_the_list_is_readable_on_a_phone(console: Console) -> None:
    listed = await store_a_list(console.database)
    await console.database.audit.record(
        actor=Actor.person(listed.carl_sf.owner),
        action="connection.disconnected",
        connection=listed.carl_sf,
    )
    tab = await console.signed_in(viewport=PHONE)
    await tab.goto("/admin/connections", "phone-list")
    await expect(tab.rows()).to_have_count(5)
    width = await tab.page.evaluate(PAGE_WIDTH)
    assert width[0] <= width[1] + 1, f"the page is {width[0]} px wide on a {width[1]} px screen"
    row = tab.row_of("Carl Chen", "Salesforce")
    labels = await row.locator("td").evaluate_all(
        "(cells) => cells.map((cell) => getComputedStyle(cell, '::before').content)"
    )
    assert labels == [
        '"Choose"',
        '"Person"',
        '"App"',
        '"Parent"',
        '"Account"',
        '"Status"',
        '"Connected"',
        '"Last used"',
        '"Last refreshed"',
    ]
    # Each row is a card of label and value lines, one under the other, within the screen.
    person = row.locator("td[data-label=Person]")
    app = row.locator("td[data-label=App]")
    above, below = await person.bounding_box(), await app.bounding_box()
    assert above is not None and below is not None and below["y"] >= above["y"] + above["height"]
    box = await row.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    await expect(person).to_contain_text("Carl Chen")

    cut_off = {"/admin/connections": await tab.page.evaluate(CUT_OFF)}
    for path in ("/admin/", "/admin/parents", "/admin/audit", "/admin/recipes"):
        await tab.goto(path, f"phone-{path.strip('/').replace('/', '-')}")
        await expect(tab.heading).to_be_visible()
        width = await tab.page.evaluate(PAGE_WIDTH)
        assert width[0] <= width[1] + 1, (path, width)
        cut_off[path] = await tab.page.evaluate(CUT_OFF)
        if path == "/admin/audit":
            await expect(tab.main.locator("tbody td[data-label=Action]")).to_have_text(
                ["connection.disconnected"]
            )
    # Every value fits in its card: none runs past the card's edge into a sideways scroll.
    assert {path: cells for path, cells in cut_off.items() if cells} == {}


# --- 12. The keyboard ----------------------------------------------------------------------------


async def test_keyboard_reaches_skip_link_first_and_fields_are_labelled(console: Console) -> None:
    await store_a_list(console.database)
    tab = await console.signed_in()
    await tab.goto("/admin/connections", "list")
    await tab.page.keyboard.press("Tab")
    skip = tab.page.get_by_role("link", name="Skip to content")
    await expect(skip).to_be_focused()
    box = await skip.bounding_box()
    assert box is not None and box["x"] >= 0, "the focused skip link is on screen"
    await tab.shot("skip-link")
    await tab.page.keyboard.press("Enter")
    await expect(tab.page).to_have_url(tab.url("/admin/connections#main"))
    await expect(tab.main).to_be_focused()

    for label in ("Person", "Status", "App", "Parent connection", "Not used for (days)"):
        await expect(tab.page.get_by_label(label, exact=True)).to_be_visible()
    # Filtering with the keyboard alone.
    await tab.page.get_by_label("Status", exact=True).focus()
    await tab.page.keyboard.press("Shift+Tab")
    await expect(tab.page.get_by_label("Person", exact=True)).to_be_focused()
    await tab.page.keyboard.type("carl")
    await tab.page.keyboard.press("Enter")
    await expect(tab.page).to_have_url(re.compile(r"/admin/connections\?.*person=carl"))
    assert filters_in(tab.page.url) == {"person": "carl"}
    await expect(tab.rows()).to_have_count(1)
    await tab.shot("filtered-by-keyboard")
