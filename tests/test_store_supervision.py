"""The embedded store lives and dies with the bot, and comes back when it dies alone.

Real `python app.py` and `python -m admin` processes on a data folder in tmp_path, a real
`secantusd-py`, real signals. Every wait polls a condition against a bounded deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pymongo import MongoClient

import messages
from tests.support import activities
from tests.support.activities import JANE
from tests.support.connector import ConnectorServer
from tests.test_app_process import REPO, environment, free_port

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="parent-death signals and /proc are Linux's"
)

RECORD = "embedded-mongodb.json"


def server_command() -> str:
    found = shutil.which("secantusd-py") or str(Path(sys.executable).parent / "secantusd-py")
    assert Path(found).exists(), "the local extra (secantusd-py) is not installed"
    return found


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def stopped(pid: int) -> bool:
    """Whether every thread of `pid` is stopped by a signal (SIGSTOP is delivered per thread)."""
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with suppress(OSError):
            states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
    return bool(states) and all(state == "T" for state in states)


async def eventually(condition: Callable[[], bool], *, within_s: float, what: str) -> None:
    """Poll `condition` until it holds; fail after `within_s` seconds."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within_s} s: {what}")
        await asyncio.sleep(0.05)  # polling interval, not a synchronisation point


def servers_on(storage: Path) -> list[int]:
    """The pids of every live process whose command line names `storage` (any server on it),
    found in /proc rather than in the bot's record."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and running(int(entry.name)):
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if os.fsencode(storage.resolve()) in argv:
                found.append(int(entry.name))
    return found


async def wait_until_ready(url: str, process: asyncio.subprocess.Process) -> None:
    """Poll /readyz until it answers 200 (it may take up to its 2 s budget); fail if the
    process dies or after 60 s."""
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while True:
            if process.returncode is not None:
                pytest.fail(f"the bot exited with {process.returncode}")
            with suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=3)) as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                pytest.fail("the bot did not become ready")
            await asyncio.sleep(0.05)  # polling interval of a readiness probe


def the_server(data: Path) -> int:
    """The pid of the one store server running on the data folder."""
    [pid] = servers_on(data / "mongodb")
    return pid


def port_of(pid: int) -> str:
    """The `--port` on a server's command line."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return argv[argv.index("--port") + 1]


def read_record(data: Path) -> dict[str, Any]:
    return dict(json.loads((data / RECORD).read_text()))


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped: an owner that no longer runs."""
    probe = subprocess.Popen(["true"])
    probe.wait()
    return probe.pid


@asynccontextmanager
async def bot(
    data: Path, log: Path, **variables: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """`python app.py` on `data` without MONGODB_URI, ready; yields it and its base URL."""
    port = free_port()
    with log.open("ab") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(REPO / "app.py"),
            env=environment(PORT=str(port), HOST="127.0.0.1", DATA_DIR=str(data), **variables),
            cwd=data.parent,
            stdout=log_file,
            stderr=log_file,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_until_ready(f"{base}/readyz", process)
        yield process, base
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def admin(data: Path, *arguments: str) -> tuple[int, str, str]:
    """`python -m admin ...` on `data`; returns (exit status, stdout, stderr)."""
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "admin",
        *arguments,
        env=environment(DATA_DIR=str(data), PYTHONPATH=str(REPO)),
        cwd=data.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode is not None
    return cli.returncode, out.decode(), err.decode()


async def get(base: str, path: str, *, timeout_s: float = 5.0) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(base + path, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response,
    ):
        return response.status, await response.json()


@contextmanager
def orphan_server(data: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A `secantusd-py` on the data folder's store, as a bot killed before PR_SET_PDEATHSIG
    existed would have left it; yields it and its URI once it answers."""
    (data / "mongodb").mkdir(parents=True, exist_ok=True)
    config = data.parent / "empty.toml"
    config.write_text("")
    port = free_port()
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    server = subprocess.Popen(
        [
            server_command(),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            str((data / "mongodb").resolve()),
            "--sync-on-commit",
            "--standalone",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with MongoClient(uri, serverSelectionTimeoutMS=30_000) as client:
            client.admin.command("ping")
            client["stale_check"]["marks"].insert_one({"_id": "written by the orphan"})
        yield server, uri
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


def leave_record(data: Path, *, owner: int, server_pid: int, uri: str) -> None:
    """The record a killed bot leaves behind."""
    record = {"uri": uri, "pid": owner, "server_pid": server_pid}
    (data / RECORD).write_text(json.dumps(record))


async def test_a_killed_bot_takes_its_store_along_and_the_next_start_works(
    tmp_path: Path,
) -> None:
    """After kill -9 of `python app.py` its store process is gone within seconds, and the next
    `python app.py` on the same folder starts and still has the data written before."""
    data, log = tmp_path / "data", tmp_path / "bot.log"
    async with bot(data, log) as (process, _base):
        server_pid = the_server(data)
        status, out, err = await admin(
            data, "connections", "create-parent", "--provider", "box", "--account", "a@b",
            "--tenant", "t1",
        )  # fmt: skip
        assert status == 0, err
        process.kill()
        await process.wait()
    await eventually(
        lambda: not running(server_pid), within_s=5, what="the store died with the bot"
    )

    async with bot(data, log) as (process, _base):
        status, out, err = await admin(data, "connections", "list")
        assert status == 0, err
        assert "a@b" in out


async def test_a_stale_store_of_a_dead_owner_is_stopped_at_start(tmp_path: Path) -> None:
    """A store server left running on the data folder by a bot that no longer runs is stopped
    (gently: what it wrote is kept) before the bot starts its own; the bot then starts."""
    data, log = tmp_path / "data", tmp_path / "bot.log"
    with orphan_server(data) as (orphan, uri):
        leave_record(data, owner=dead_pid(), server_pid=orphan.pid, uri=uri)
        async with bot(data, log) as (process, _base):
            assert orphan.poll() is not None, "the stale server still runs"
            assert orphan.returncode == 0, "the stale server was not stopped with SIGTERM"
            own = read_record(data)
            assert own["server_pid"] == the_server(data) and own["pid"] == process.pid
            with MongoClient(own["uri"], serverSelectionTimeoutMS=5000) as client:
                assert client["stale_check"]["marks"].find_one({}) is not None
    assert "Stopping embedded database process" in log.read_text()


async def test_a_live_process_named_in_the_record_is_never_killed(tmp_path: Path) -> None:
    """A pid in the record that now belongs to an unrelated process (here `sleep`) is left
    alone; the storage path is free, so the bot starts, and records its own server instead."""
    data, log = tmp_path / "data", tmp_path / "bot.log"
    data.mkdir()
    unrelated = subprocess.Popen(["sleep", "60"])  # noqa: ASYNC220 (a bystander, not awaited)
    try:
        leave_record(data, owner=dead_pid(), server_pid=unrelated.pid, uri="mongodb://127.0.0.1:9/")
        async with bot(data, log) as (process, _base):
            assert unrelated.poll() is None, "an unrelated process was killed"
            record = read_record(data)
            assert record["pid"] == process.pid
            assert record["server_pid"] == the_server(data)
        assert unrelated.poll() is None
    finally:
        unrelated.kill()
        unrelated.wait()


async def test_the_admin_cli_stops_a_stale_store_and_works(tmp_path: Path) -> None:
    """With no bot running, the operator CLI stops a store server left on the folder by a dead
    owner, then does its work on its own server; nothing is left running afterwards."""
    data = tmp_path / "data"
    with orphan_server(data) as (orphan, uri):
        leave_record(data, owner=dead_pid(), server_pid=orphan.pid, uri=uri)
        status, out, err = await admin(
            data, "connections", "create-parent", "--provider", "box", "--account", "a@b",
            "--tenant", "t1",
        )  # fmt: skip
        assert status == 0, err
        assert "a@b" in out
        assert orphan.poll() is not None, "the stale server still runs"
    assert not (data / RECORD).exists()
    assert servers_on(data / "mongodb") == []  # neither the stale server nor the CLI's own


async def test_a_store_killed_while_the_bot_runs_is_restarted(tmp_path: Path) -> None:
    """SIGKILL of the store while the bot runs: the bot restarts it on the same port (logged),
    /readyz returns to 200 by itself, and a turn that reads the database works again."""
    data, log = tmp_path / "data", tmp_path / "bot.log"
    connector = ConnectorServer()
    await connector.start()
    try:
        async with bot(data, log) as (process, base):
            before = the_server(data)
            port = port_of(before)
            os.kill(before, signal.SIGKILL)
            await eventually(
                lambda: servers_on(data / "mongodb") not in ([], [before]),
                within_s=20,
                what="the store was restarted",
            )
            assert port_of(the_server(data)) == port
            await wait_until_ready(f"{base}/readyz", process)
            await eventually(
                lambda: messages.LOG_EMBEDDED_STORE_RESTARTED.split(" (")[0] in log.read_text(),
                within_s=5,
                what="the restart was logged",
            )
            activity = activities.message(JANE, connector.service_url, "personal_connections")
            async with (
                aiohttp.ClientSession() as session,
                session.post(f"{base}/api/messages", json=activity) as response,
            ):
                assert response.status == 200
            reply = await connector.wait_for(lambda sent: sent.card is not None, within_s=10)
            assert reply.conversation_id == JANE.personal_conversation
            assert process.returncode is None
    finally:
        await connector.close()
    assert "The embedded database stopped unexpectedly (exit status -9)" in log.read_text()


async def test_a_store_that_cannot_be_restarted_stops_the_bot_non_zero(tmp_path: Path) -> None:
    """When every restart attempt fails, /healthz answers 503 with the reason and the bot exits
    by itself with a non-zero status, so that its process manager restarts it."""
    data, log = tmp_path / "data", tmp_path / "bot.log"
    starts = tmp_path / "starts"
    wrapper = tmp_path / "secantusd-once"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'echo start >> "{starts}"\n'
        f'if [ "$(wc -l < "{starts}")" -gt 1 ]; then echo "refusing a restart" >&2; exit 1; fi\n'
        f'exec "{server_command()}" "$@"\n'
    )
    wrapper.chmod(0o755)
    async with bot(data, log, EMBEDDED_MONGODB_COMMAND=str(wrapper)) as (process, base):
        os.kill(the_server(data), signal.SIGKILL)
        health: list[tuple[int, Any]] = []

        async def watch_health() -> None:
            while process.returncode is None:
                with suppress(aiohttp.ClientError, TimeoutError):
                    health.append(await get(base, "/healthz", timeout_s=2))
                await asyncio.sleep(0.05)  # polling interval

        watcher = asyncio.create_task(watch_health())
        status = await asyncio.wait_for(process.wait(), 30)
        await watcher
    assert status == 1
    attempts = len(starts.read_text().splitlines()) - 1
    assert attempts == 3
    reason = messages.EMBEDDED_STORE_LOST.format(attempts=attempts)
    assert (503, {"status": "store lost", "reason": reason}) in health
    assert health[0] == (200, {"status": "alive"})  # alive while it still tried
    text = log.read_text()
    assert text.count("Restarting the embedded database") == 3
    assert reason in text
    assert not (data / RECORD).exists()


async def test_readiness_answers_within_two_seconds_whatever_the_store_does(
    tmp_path: Path,
) -> None:
    """With the store process stopped (SIGSTOP), /readyz answers 503 within 2 s; the operator
    CLI does not take over a live bot's folder (it says who holds it); after SIGCONT the bot
    is ready again by itself."""
    data, log = tmp_path / "data", tmp_path / "bot.log"
    async with bot(data, log) as (process, base):
        server_pid = the_server(data)
        os.kill(server_pid, signal.SIGSTOP)
        try:
            await eventually(lambda: stopped(server_pid), within_s=5, what="SIGSTOP took effect")
            started = time.monotonic()
            status, body = await get(base, "/readyz", timeout_s=5)
            assert time.monotonic() - started < 2.0
            assert (status, body) == (503, {"status": "database unreachable"})
            assert (await get(base, "/healthz"))[0] == 200  # the process is fine

            status, _out, err = await admin(data, "connections", "list")
            assert status == 2
            assert f"belongs to process {process.pid}, which still runs" in err
            assert servers_on(data / "mongodb") == [server_pid]
        finally:
            os.kill(server_pid, signal.SIGCONT)
        await wait_until_ready(f"{base}/readyz", process)
