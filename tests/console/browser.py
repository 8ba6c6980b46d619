"""The admin console in headless Chromium: a loopback-only browser context, an administrator's
page with sign-in through the sandbox issuer's consent page, screenshots, CSV downloads, and
the bot's chat (a recipe run over /api/messages) for checking what a console change does.

Screenshots go to test-artifacts/console/<test>-NN-<step>.png, one per page visited.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from playwright.async_api import Browser, BrowserContext, Locator, Page, Route, expect

from storage.models import Connection
from tests.conftest import RunningBot
from tests.e2e.harness import LOOPBACK_HOSTS, REPO_ROOT, slug
from tests.support import activities
from tests.support.activities import Person
from tests.support.sandbox import RunningSandbox

ARTIFACTS = REPO_ROOT / "test-artifacts" / "console"
TIMEOUT_MS = 10_000
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# The console's signed-in cookie over plain HTTP (`__Host-` prefixed only over HTTPS).
SESSION_COOKIE = "rc_console"
SIGNIN_COOKIE = "rc_console_signin"
# Someone in the chat of the console's tenant (the bot admits only ALLOWED_TENANT_IDS).
CHAT_PERSON = Person("29:alex", "user-alex", "Alex Wilber", tenant_id="contoso")


def clear_artifacts(test_name: str) -> None:
    """Remove a test's screenshots and downloads of an earlier run (numbering starts again)."""
    for old in ARTIFACTS.glob(f"{slug(test_name)}-*"):
        old.unlink()


async def new_console_context(
    browser: Browser, *, viewport: dict[str, int] | None = None
) -> BrowserContext:
    """Like tests/e2e/harness.new_loopback_context (every request off loopback aborted), but
    trusting any certificate: the sandbox issuer's consent page is served with a test CA's."""
    context = await browser.new_context(
        viewport=viewport or DESKTOP, ignore_https_errors=True, accept_downloads=True
    )

    async def guard(route: Route) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlsplit(url).hostname in LOOPBACK_HOSTS:
            await route.continue_()
        else:
            await route.abort("blockedbyclient")

    await context.route("**/*", guard)
    context.set_default_timeout(TIMEOUT_MS)
    return context


@dataclass
class ConsolePage:
    """One administrator's browser tab on the console of the bot at `base_url`."""

    page: Page
    base_url: str
    test_name: str
    shots: list[Path] = field(default_factory=list)

    @property
    def main(self) -> Locator:
        return self.page.locator("main")

    @property
    def heading(self) -> Locator:
        return self.page.get_by_role("heading", level=1)

    @property
    def csv_link(self) -> Locator:
        return self.page.get_by_role("link", name=re.compile(r"^Download CSV"))

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    async def shot(self, step: str) -> Path:
        """A full-page screenshot of what is on screen now."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = f"{slug(self.test_name)}-{len(self.shots) + 1:02d}-{slug(step)}.png"
        path = ARTIFACTS / name
        await self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        return path

    async def goto(self, path: str, step: str) -> Any:
        response = await self.page.goto(self.url(path))
        await self.shot(step)
        return response

    async def sign_in(self, *, user: str = "jane", name: str = "Jane Doe") -> None:
        """From /admin/ signed out: the sign-in page, its button, the sandbox's consent page,
        `user` chosen and allowed, and back on the console's first page signed in."""
        await self.goto("/admin/", "signed-out")
        await self.expect_sign_in_page(return_to="/admin/")
        await self.page.get_by_role("link", name=re.compile(r"^Sign in with")).click()
        # The sandbox issuer, over HTTPS, on its own port.
        consent = self.page.get_by_role("heading", name="Sandbox client wants to use your sandbox")
        await expect(consent).to_be_visible()
        assert self.page.url.startswith("https://127.0.0.1:"), self.page.url
        await self.shot("consent")
        await self.page.get_by_label(re.compile(rf"^\s*{re.escape(name)} <")).check()
        await expect(self.page.locator("input[name=user]:checked")).to_have_value(user)
        await self.page.get_by_role("button", name="Allow").click()
        await expect(self.page).to_have_url(self.url("/admin/"))
        await expect(self.main).to_contain_text(f"Signed in as {name}")
        await self.shot("signed-in")

    async def expect_sign_in_page(self, *, return_to: str) -> None:
        """On the sign-in page, which will send back to `return_to` once signed in."""
        await expect(self.page).to_have_url(re.compile(r"^[^?]+/admin/signin\?return_to="))
        assert parse_qs(urlsplit(self.page.url).query) == {"return_to": [return_to]}
        await expect(self.heading).to_have_text("Sign in to the admin console")
        await expect(
            self.page.get_by_role("link", name=re.compile(r"^Sign in with"))
        ).to_have_attribute("href", f"/admin/signin/start?return_to={quote(return_to, safe='')}")

    async def csrf_of(self, form: str) -> str:
        """The CSRF token in the form matched by the CSS selector `form`."""
        return await self.page.locator(f"{form} input[name=csrf]").input_value()

    async def download(self, link: Locator, step: str) -> list[dict[str, str]]:
        """Click a CSV link; the downloaded file's rows as dictionaries."""
        async with self.page.expect_download() as info:
            await link.click()
        download = await info.value
        path = ARTIFACTS / f"{slug(self.test_name)}-{len(self.shots) + 1:02d}-{slug(step)}.csv"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await download.save_as(path)
        text = path.read_text(encoding="utf-8")
        return list(csv.DictReader(io.StringIO(text)))

    async def post_form(self, action: str, fields: list[tuple[str, str]]) -> Any:
        """Build a form in the page and submit it, as someone editing the page by hand would;
        the response of the navigation it causes."""
        async with self.page.expect_navigation() as navigation:
            await self.page.evaluate(
                """([action, fields]) => {
                    const form = document.createElement("form");
                    form.method = "post";
                    form.action = action;
                    for (const [name, value] of fields) {
                        const input = document.createElement("input");
                        input.type = "hidden";
                        input.name = name;
                        input.value = value;
                        form.appendChild(input);
                    }
                    document.body.appendChild(form);
                    form.submit();
                }""",
                [action, fields],
            )
        return await navigation.value

    # --- the connections list ---

    def rows(self) -> Locator:
        """The list's rows that show a connection (not the "no connections" line)."""
        return self.page.locator("tbody tr").filter(has=self.page.locator("td[data-label=Person]"))

    def row_of(self, person: str, app: str) -> Locator:
        return (
            self.rows()
            .filter(has=self.page.locator("td[data-label=Person]", has_text=person))
            .filter(has=self.page.locator("td[data-label=App]", has_text=app))
        )

    async def chosen_ids(self) -> list[str]:
        """The connection ids of the rows on the page (their checkboxes' values)."""
        boxes = self.page.locator("tbody input[type=checkbox][name=id]")
        return [await box.get_attribute("value") or "" for box in await boxes.all()]

    async def persons(self) -> list[str]:
        cells = self.page.locator("tbody td[data-label=Person] label")
        return [text.strip() for text in await cells.all_inner_texts()]


def shown_ids(rows: list[dict[str, str]]) -> set[str]:
    return {row["id"] for row in rows}


def ids_of(connections: list[Connection]) -> set[str]:
    return {connection.id for connection in connections}


@dataclass
class Chat:
    """The bot's chat with `person`, over /api/messages with the test connector (as
    tests/test_recipe_runs.py drives recipe runs)."""

    bot: RunningBot
    sandbox: RunningSandbox
    person: Person = CHAT_PERSON

    async def say(self, text: str) -> str:
        """Send `text` in the 1:1 chat; everything the bot sent back, as JSON text."""
        self.bot.connector.clear()
        status, _ = await self.bot.post(activities.message(self.person, self.bot.service_url, text))
        assert status == 200
        return json.dumps([sent.activity for sent in self.bot.connector.sent], ensure_ascii=False)

    def created_by(self, name: str) -> list[str]:
        """Who the sandbox app recorded as having created opportunity `name`."""
        return [
            o["created_by"]["email"] for o in self.sandbox.state.opportunities if o["name"] == name
        ]
