"""No stranded runs: a run whose process died mid-run is taken over once its lease runs out.
Its action is resumed exactly once if it was never sent; if it may have been sent, it is
never sent again and the person is told once that the outcome is unknown."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

import messages
from app import WIRING_KEY
from storage.crypto import TokenCipher
from storage.database import open_database
from storage.embedded import MEMORY
from storage.models import ProviderAccount
from tests.conftest import TEST_TOKEN_KEY, RunningBot, StartBot, free_port, unique_database_name
from tests.support import activities
from tests.support.activities import JANE
from tests.support.connector import ConnectorServer
from tests.support.data import ADMIN, owner
from tests.support.sandbox import RunningSandbox, issue_tokens
from tests.support.waiting import eventually
from tests.test_app_process import wait_until_ready
from tests.test_recipe_runs import RECIPES

REPO = Path(__file__).resolve().parents[1]
UNKNOWN = messages.RECIPE_OUTCOME_UNKNOWN.format(
    recipe="Sandbox opportunity", app="Sandbox", contact="Ada Admin"
)


@pytest.fixture
def recipes_file(tmp_path: Path) -> Path:
    path = tmp_path / "recipes.toml"
    path.write_text(RECIPES)
    return path


async def store_parent(database: object, apps_file: Path, base_url: str, sandbox_url: str) -> None:
    tokens = await issue_tokens(apps_file, f"{base_url}/auth/callback", user="omar")
    await database.connections.create_parent(  # type: ignore[attr-defined]
        provider="sandbox",
        owner=ADMIN,
        account=ProviderAccount(id="user-omar", display_name="omar@sandbox.example"),
        tokens=TokenCipher([TEST_TOKEN_KEY]).seal(tokens.as_record()),
        api_base_url=sandbox_url,
        name="sandbox_team",
    )


async def test_run_stranded_before_sending_is_resumed_once(
    start_bot: StartBot, sandbox: RunningSandbox, apps_file: Path, bot_port: int, recipes_file: Path
) -> None:
    """A run left `running` by a crash before its action was sent (lease run out, no
    `action_sent_at`): the sweep resumes it once, from its sealed arguments, and posts the
    result; further sweeps, from any process, do nothing more."""
    base_url = f"http://127.0.0.1:{bot_port}"
    bot: RunningBot = await start_bot(
        port=bot_port,
        apps_file=str(apps_file),
        recipes_file=str(recipes_file),
        public_base_url=base_url,
    )
    await store_parent(bot.database, apps_file, base_url, sandbox.base_url)
    runner = bot.client.server.app[WIRING_KEY].resumer.runner
    sealed = runner.tokens.cipher.seal({"name": "Stranded", "amount": 7}).model_dump()
    reference = activities.message(JANE, bot.service_url, "x")
    run_id = await bot.database.recipe_runs.start(
        recipe="sandbox_opportunity",
        activity_key="conversation|crashed-activity",
        invoker=owner(JANE),
        inputs={"name": "Stranded", "amount": 7},
        conversation={
            "serviceUrl": bot.service_url,
            "conversation": reference["conversation"],
            "bot": reference["recipient"],
            "user": reference["from"],
            "channelId": "msteams",
        },
        verify_user_access=False,
        sealed_arguments=sealed,
        lease_until=datetime.now(UTC) - timedelta(seconds=1),
    )
    assert run_id is not None
    resumers = [bot.client.server.app[WIRING_KEY].resumer]
    await asyncio.gather(*(r.sweep_once() for r in resumers * 2))
    await resumers[0].sweep_once()

    def posted() -> list[object]:
        return [s for s in bot.connector.sent if "Created in Sandbox" in json.dumps(s.card or {})]

    # The bot's own sweeper (the same holder) may be the one that took the run over: its
    # result is posted when its round ends.
    results = await eventually(posted)
    created = [o for o in sandbox.state.opportunities if o["name"] == "Stranded"]
    assert [o["created_by"]["email"] for o in created] == ["omar@sandbox.example"]
    run = await bot.database.recipe_runs.get(run_id)
    assert run is not None and run.status == "succeeded" and run.sealed_arguments is None
    await resumers[0].sweep_once()  # one more round: nothing is resumed or posted again
    assert len(results) == len(posted()) == 1
    events = [e for e in await bot.database.audit.recent() if e.action == "recipe.ran"]
    assert len(events) == 1


async def test_killed_mid_action_is_never_sent_twice(
    sandbox: RunningSandbox,
    apps_file: Path,
    bot_port: int,
    recipes_file: Path,
    mongodb_uri: str,
    connector: ConnectorServer,
    tmp_path: Path,
) -> None:
    """kill -9 of `python app.py` while a run's API call is in flight; another process (the
    restarted bot) takes the run over when its lease runs out: the action is not sent again,
    the person is told once that the outcome is unknown, and the run ends audited once."""
    name = unique_database_name()
    base_url = f"http://127.0.0.1:{bot_port}"
    ports = [bot_port, free_port()]
    env = {
        **os.environ,
        "MONGODB_URI": mongodb_uri,
        "DATABASE_NAME": name,
        "APPS_FILE": str(apps_file),
        "RECIPES_FILE": str(recipes_file),
        "PUBLIC_BASE_URL": base_url,
        "TOKEN_ENCRYPTION_KEYS": TEST_TOKEN_KEY,
        "HOST": "127.0.0.1",
        "RECIPE_TIMEOUT_SECONDS": "2",
        "RECIPE_ACKNOWLEDGE_AFTER_SECONDS": "0.2",
        "SIGNIN_SWEEP_SECONDS": "0.3",
    }
    processes = []
    async with open_database(mongodb_uri=mongodb_uri, database_name=name, data_dir=MEMORY) as db:
        await store_parent(db, apps_file, base_url, sandbox.base_url)
        try:
            for index, port in enumerate(ports[:1]):
                log = (tmp_path / f"bot-{index}.log").open("wb")
                processes.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        str(REPO / "app.py"),
                        env={**env, "PORT": str(port)},
                        cwd=tmp_path,
                        stdout=log,
                        stderr=log,
                    )
                )
                await wait_until_ready(f"http://127.0.0.1:{port}/readyz", processes[-1])
            sandbox.control(hang_s=30)
            message = activities.message(
                JANE, connector.service_url, 'sandbox opportunity "Lost" 3'
            )
            async with (
                aiohttp.ClientSession() as session,
                session.post(f"http://127.0.0.1:{ports[0]}/api/messages", json=message) as response,
            ):
                assert response.status == 200
            # The action is in flight at the (hanging) app: the run says so.
            deadline = asyncio.get_running_loop().time() + 10
            while True:
                run = await db.db["recipe_runs"].find_one({})
                if run is not None and run.get("action_sent_at") is not None:
                    break
                assert asyncio.get_running_loop().time() < deadline, run
                await asyncio.sleep(0.02)  # polling the run document
            processes[0].send_signal(signal.SIGKILL)
            await processes[0].wait()
            sandbox.control(hang_s=0)
            log = (tmp_path / "bot-1.log").open("wb")
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(REPO / "app.py"),
                    env={**env, "PORT": str(ports[1])},
                    cwd=tmp_path,
                    stdout=log,
                    stderr=log,
                )
            )
            await wait_until_ready(f"http://127.0.0.1:{ports[1]}/readyz", processes[-1])
            await connector.wait_for(lambda s: s.text == UNKNOWN, within_s=30)
            # A few more sweeps pass; nothing more is said or sent.
            seen = set()
            while len(seen) < 4:
                lease = await db.db["leases"].find_one({"_id": "signin-expiry-sweeper"})
                if lease is not None:
                    seen.add(lease["until"])
                await asyncio.sleep(0.05)  # polling the sweeper's lease
            assert [s.text for s in connector.sent].count(UNKNOWN) == 1
            [run] = [r async for r in db.db["recipe_runs"].find({})]
            assert run["status"] == "unknown" and "sealed_arguments" not in run
            posts = [r for r in sandbox.state.requests if r == ("POST", "/api/opportunities")]
            assert len(posts) == 1  # the one in flight when the bot died; never resent
            events = [e async for e in db.db["audit_events"].find({"action": "recipe.ran"})]
            assert len(events) == 1 and events[0]["details"]["outcome"] == "unknown"
        finally:
            for process in processes:
                if process.returncode is None:
                    process.send_signal(signal.SIGINT)
                    await asyncio.wait_for(process.wait(), 30)
            await db.client.drop_database(name)
