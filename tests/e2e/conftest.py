"""Fixtures for end-to-end tests: one Playground per bot URL, one Chromium per session, a fresh
page per test. Run only inside a private network namespace:

    unshare -n sh -c 'ip link set lo up && exec python -m pytest tests/e2e'
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser, async_playwright

from app import DATABASE_KEY, PathOnlyAccessLogger, create_app
from settings import load_settings
from storage.database import Database
from tests.conftest import TEST_TOKEN_KEY, unique_database_name
from tests.e2e.harness import (
    ARTIFACTS_ROOT,
    DEFAULT_TIMEOUT_S,
    Playground,
    TeamsPage,
    free_port,
    launch_chromium,
    new_loopback_context,
    require_private_network,
    slug,
)
from tests.support.sandbox import (
    CLIENT_SECRET,
    SECRET_VARIABLE,
    RunningSandbox,
    run_sandbox,
    sandbox_for_bot,
    write_apps_file,
)

_HERE = Path(__file__).resolve().parent
SANDBOX_SECRET = "e2e-sandbox-secret"
E2E_RECIPES = """
[recipes.create_opportunity]
name = "Create opportunity"
phrase = "create opportunity {name} {amount:number}"
parent = "sandbox_team"
verify_user_access = true
[recipes.create_opportunity.action]
method = "POST"
url = "{connection.api_base_url}/api/opportunities"
body = { name = "{name}", amount = "{amount}" }
[recipes.create_opportunity.result]
verb = "Created"
fields = { Id = "id", "Created by" = "created_by.email" }
"""
# The Playground's output and its record of every request both ways, for post-mortems.
PLAYGROUND_LOGS = ARTIFACTS_ROOT / "_playground"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything in this folder is end to end: `-m "not e2e"` leaves it out.
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Lets teams_page know in teardown whether the test failed, to keep a screenshot.
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


@dataclass(frozen=True)
class E2EBot:
    """The real bot application served on loopback for the Playground to call, with the
    sandbox OAuth2 provider configured as the app `sandbox`."""

    base_url: str
    database: Database
    sandbox: RunningSandbox
    apps_file: Path


@pytest.fixture(scope="session")
async def e2e_bot(
    mongodb_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[E2EBot]:
    """The bot exactly as `python app.py` builds it (auth off, as the Playground sends no
    token), on its own database."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    apps = tmp_path_factory.mktemp("e2e-apps") / "apps.toml"
    with (
        run_sandbox(sandbox_for_bot(port)) as sandbox,
        pytest.MonkeyPatch.context() as env,
    ):
        write_apps_file(apps, sandbox)
        env.setenv(SECRET_VARIABLE, CLIENT_SECRET)
        recipes = apps.parent / "recipes.toml"
        recipes.write_text(E2E_RECIPES)
        settings = load_settings(
            _env_file=None,
            mongodb_uri=mongodb_uri,
            database_name=unique_database_name(),
            host="127.0.0.1",
            port=port,
            app_id=None,
            public_base_url=base_url,
            apps_file=str(apps),
            recipes_file=str(recipes),
            token_encryption_keys=TEST_TOKEN_KEY,
        )
        runner = web.AppRunner(create_app(settings), access_log_class=PathOnlyAccessLogger)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", port).start()
            yield E2EBot(base_url, runner.app[DATABASE_KEY], sandbox, apps)
        finally:
            await runner.cleanup()


@pytest.fixture(scope="session")
def e2e_bot_base_url(e2e_bot: E2EBot) -> str:
    """Base URL of the bot under test (its endpoint is `<base>/api/messages`)."""
    return e2e_bot.base_url


@pytest.fixture(scope="session")
async def _playgrounds() -> AsyncIterator[dict[str, Playground]]:
    # One Playground per bot endpoint for the whole session: it starts in about a second,
    # and each page load gives a fresh, empty conversation view anyway.
    started: dict[str, Playground] = {}
    shutil.rmtree(PLAYGROUND_LOGS, ignore_errors=True)
    try:
        yield started
    finally:
        for playground in started.values():
            await playground.stop()


@pytest.fixture
async def playground(e2e_bot_base_url: str, _playgrounds: dict[str, Playground]) -> Playground:
    """The Playground connected to `<e2e_bot_base_url>/api/messages` (any fixture scope)."""
    endpoint = f"{e2e_bot_base_url}/api/messages"
    if endpoint not in _playgrounds:
        instance = Playground(endpoint, log_dir=PLAYGROUND_LOGS)
        await instance.start()
        _playgrounds[endpoint] = instance
    return _playgrounds[endpoint]


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    require_private_network()
    async with async_playwright() as playwright:
        chromium = await launch_chromium(playwright)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def teams_page(
    browser: Browser, playground: Playground, request: pytest.FixtureRequest
) -> AsyncIterator[TeamsPage]:
    """A fresh browser context on the Playground's UI, opened on the personal chat.

    Screenshots go to test-artifacts/e2e/<test name>/; a failing test leaves a last one.
    """
    context = await new_loopback_context(browser)
    context.set_default_timeout(DEFAULT_TIMEOUT_S * 1000)
    try:
        page = await context.new_page()
        artifacts = ARTIFACTS_ROOT / slug(request.node.name)
        # Screenshots of an earlier run would mix with this run's numbering.
        shutil.rmtree(artifacts, ignore_errors=True)
        teams = TeamsPage(page, playground, artifacts)
        try:
            await teams.open()
        except BaseException:
            await teams.screenshot("open-failed")
            raise
        yield teams
        if request.node.stash.get(_CALL_FAILED, False):
            await teams.screenshot("failure")
    finally:
        await context.close()
