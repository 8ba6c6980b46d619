"""`python app.py` as a person runs it: no configuration, embedded store, clean stop, errors."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

import messages
from settings import Settings
from tests.support import activities
from tests.support.activities import JANE
from tests.support.connector import ConnectorServer

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "MONGODB_URI"}
    env.update(extra)
    return env


async def wait_until_ready(url: str, process: asyncio.subprocess.Process) -> None:
    """Poll /readyz until it answers 200; fail at once if the process dies."""
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            if process.returncode is not None:
                pytest.fail(f"the bot exited with {process.returncode}")
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)  # polling interval of a readiness probe, not a sync point
    pytest.fail("the bot did not become ready")


@pytest.fixture
async def running_bot(tmp_path: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    port = free_port()
    with (tmp_path / "bot.log").open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(REPO / "app.py"),
            env=environment(PORT=str(port), HOST="127.0.0.1", DATA_DIR=str(tmp_path / "data")),
            cwd=tmp_path,
            stdout=log_file,
            stderr=log_file,
        )
    try:
        await wait_until_ready(f"http://127.0.0.1:{port}/readyz", process)
        yield process, port
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_zero_configuration_start_serve_and_clean_stop(
    running_bot: tuple[asyncio.subprocess.Process, int], tmp_path: Path
) -> None:
    """With no settings the bot serves /api/messages on the embedded store and stops cleanly."""
    process, port = running_bot
    data = tmp_path / "data"
    running_file = data / "embedded-mongodb.json"
    store_uri = json.loads(running_file.read_text())["uri"]

    connector = ConnectorServer()
    await connector.start()
    try:
        async with aiohttp.ClientSession() as session:
            activity = activities.message(JANE, connector.service_url, "help")
            async with session.post(
                f"http://127.0.0.1:{port}/api/messages", json=activity
            ) as response:
                assert response.status == 200
    finally:
        await connector.close()
    [reply] = connector.sent
    assert reply.card is not None

    # The operator CLI finds the running bot's store instead of starting a second one.
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "admin",
        "connections",
        "create-parent",
        "--provider",
        "box",
        "--account",
        "admin@box.example",
        "--tenant",
        JANE.tenant_id,
        env=environment(DATA_DIR=str(data), PYTHONPATH=str(REPO)),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await cli.communicate()
    assert cli.returncode == 0, err.decode()
    assert "admin@box.example" in out.decode()

    process.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(process.wait(), 30) == 0
    log = (tmp_path / "bot.log").read_text()
    assert "Store: embedded MongoDB-compatible server" in log
    assert log.count("authentication is OFF") == 1
    assert not running_file.exists()
    host, port_text = store_uri.removeprefix("mongodb://").split("/")[0].split(":")
    with pytest.raises(OSError), socket.create_connection((host, int(port_text)), timeout=1):
        pass
    assert (data / "mongodb").is_dir()  # data stays for the next start


def run_app(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "app.py")],
        env=environment(
            **{"DATA_DIR": str(tmp_path / "data"), "PORT": str(free_port()), **variables}
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_invalid_setting_stops_the_start_with_one_sentence(tmp_path: Path) -> None:
    """An invalid setting: exit code 2 and one sentence naming the variable, no traceback."""
    result = run_app(tmp_path, PORT="not-a-port")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_embedded_store_says_what_to_install_or_set(tmp_path: Path) -> None:
    """No MONGODB_URI and no local extra: exit 2 with a sentence naming both ways out."""
    result = run_app(tmp_path, EMBEDDED_MONGODB_COMMAND="no-such-secantusd")
    assert result.returncode == 2
    assert messages.NO_STORE_CONFIGURED in result.stderr
    assert "Traceback" not in result.stderr


def test_production_without_token_key_refuses_to_start(tmp_path: Path) -> None:
    """With an app id (production) and no TOKEN_ENCRYPTION_KEYS the bot does not start."""
    result = run_app(
        tmp_path,
        MicrosoftAppId="app-id",
        MicrosoftAppPassword="pw",
        ALLOWED_TENANT_IDS="*",
        MONGODB_URI="mongodb://127.0.0.1:9/",
    )
    assert result.returncode == 2
    assert "TOKEN_ENCRYPTION_KEYS" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "token-encryption.key").exists()


def test_missing_apps_file_stops_the_start(tmp_path: Path) -> None:
    """APPS_FILE naming no file stops the start with a sentence naming the variable."""
    result = run_app(tmp_path, APPS_FILE=str(tmp_path / "missing.toml"))
    assert result.returncode == 2
    assert "APPS_FILE" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_apps_file_stops_the_start(tmp_path: Path) -> None:
    """A broken apps file stops the start with a sentence naming the file and the key."""
    apps = tmp_path / "apps.toml"
    apps.write_text('[apps.box]\npreset = "box"\n')
    result = run_app(tmp_path, APPS_FILE=str(apps))
    assert result.returncode == 2
    assert "apps.box.client_id" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_recipes_file_stops_the_start(tmp_path: Path) -> None:
    """A recipe naming an unknown parent stops the start with a sentence naming it."""
    recipes = tmp_path / "recipes.toml"
    recipes.write_text(
        '[recipes.x]\nname = "X"\nphrase = "do x"\nparent = "nobody"\n'
        '[recipes.x.action]\nmethod = "GET"\nurl = "https://api.example.com/x"\n'
    )
    result = run_app(tmp_path, RECIPES_FILE=str(recipes))
    assert result.returncode == 2
    assert "recipes.x.parent" in result.stderr and "nobody" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"HOST": "0.0.0.0"}, "HOST=0.0.0.0 is refused while authentication is off"),
        ({"HOST": "bot.example.com"}, "HOST=bot.example.com is refused"),
        (
            {"MicrosoftAppId": "app-id", "MicrosoftAppPassword": "pw"},
            "ALLOWED_TENANT_IDS is required",
        ),
        (
            {"MicrosoftAppId": "app-id", "MicrosoftAppPassword": "pw", "ALLOWED_TENANT_IDS": "*"},
            "MONGODB_URI is required",
        ),
    ],
)
def test_fail_open_configuration_refuses_to_start(
    tmp_path: Path, variables: dict[str, str], named: str
) -> None:
    """`python app.py` refuses, with one sentence and exit 2, to serve unauthenticated off
    loopback, or authenticated without an explicit tenant list or an explicit MONGODB_URI."""
    result = run_app(tmp_path, **variables)
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # nothing was started, no store created


async def test_listening_is_logged_once_when_the_bot_serves(
    running_bot: tuple[asyncio.subprocess.Process, int], tmp_path: Path
) -> None:
    """The bot logs "Listening on" once, after the startup (the store), once it serves."""
    _process, port = running_bot
    log = (tmp_path / "bot.log").read_text()
    listening = messages.LOG_LISTENING % ("127.0.0.1", port)
    assert log.count("Listening on") == 1
    assert listening in log
    assert log.index("Store: embedded MongoDB-compatible server") < log.index(listening)


def test_taken_port_never_says_listening(tmp_path: Path) -> None:
    """With the port already taken the bot says so in one sentence, exits 2, and never logs
    "Listening on"."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        result = run_app(tmp_path, HOST="127.0.0.1", PORT=str(port))
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Listening on" not in output
    assert f"HOST 127.0.0.1 and PORT {port} cannot be listened on" in result.stderr
    assert "Traceback" not in output


@pytest.mark.parametrize("module", ["sandbox", "sandbox.demo"])
def test_sandbox_without_its_extra_says_what_to_install(tmp_path: Path, module: str) -> None:
    """`python -m sandbox` (and the demo) without Flask (the `sandbox` extra): one sentence
    naming the install command, exit 2, no traceback."""
    blocked = (
        "import sys; sys.modules['flask'] = None; import runpy; "
        f"runpy.run_module('{module}', run_name='__main__', alter_sys=True)"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocked, "--help"],
        env=environment(PYTHONPATH=str(REPO)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == messages.SANDBOX_EXTRA_MISSING.format(module="flask")
    assert 'pip install -e ".[sandbox]"' in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


async def test_a_served_app_freezes_what_its_start_up_built(
    make_settings: Callable[..., Settings],
) -> None:
    """`python app.py` (and each worker) serves `served_app`: once the bot has started, what
    start-up built is out of the garbage collector's full passes (`gc.freeze`)."""
    from aiohttp.test_utils import TestServer

    from app import served_app

    gc.unfreeze()
    server = TestServer(served_app(make_settings()), host="127.0.0.1")
    try:
        assert gc.get_freeze_count() == 0
        await server.start_server()
        assert gc.get_freeze_count() > 0
    finally:
        await server.close()
        gc.unfreeze()  # this test process builds many apps: let theirs be collected
