"""`python app.py --workers N`: a supervisor and N real worker processes on one port.

Each test starts the real command on a free loopback port with the embedded store (no
MONGODB_URI, a data folder in tmp_path), as a person would, and watches it from outside: which
process answers `/healthz` (its `X-Process-Id` header), the processes in /proc, the exit status.
Health requests are plain HTTP/1.1 over a fresh connection (`Connection: close`) written by hand,
so no client library retries a failed request out of sight.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

import messages
import serving
from settings import load_settings
from tests.support import activities
from tests.support.activities import JANE
from tests.support.connector import ConnectorServer
from tests.support.waiting import eventually

REPO = Path(__file__).resolve().parents[1]
RECORD = "embedded-mongodb.json"
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "MONGODB_URI"}
    env.update(extra)
    return env


def parent_of(pid: int) -> int | None:
    """The parent pid of a live process; None when it is gone (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else int(fields[1])


def gone(pid: int) -> bool:
    return parent_of(pid) is None


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and parent_of(int(entry.name)) == pid:
            found.add(int(entry.name))
    return found


async def health(port: int) -> tuple[int, int]:
    """GET /healthz on a fresh connection: (status, pid of the process that answered)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    lines = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    [pid] = [
        int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("x-process-id:")
    ]
    return status, pid


@dataclass
class Served:
    process: asyncio.subprocess.Process
    port: int
    data: Path
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    async def answering(self, count: int, *, within_s: float = 40.0) -> set[int]:
        """Ask /healthz until `count` distinct processes answered (each answer must be 200)."""
        seen: set[int] = set()

        async def enough() -> bool:
            status, pid = await health(self.port)
            assert status == 200
            seen.add(pid)
            return len(seen) >= count

        await eventually(enough, within_s=within_s)
        return seen


@asynccontextmanager
async def serving_bot(tmp_path: Path, *arguments: str, **variables: str) -> AsyncIterator[Served]:
    """`python app.py *arguments` on a free port, once it answers /healthz."""
    port = free_port()
    data = tmp_path / "data"
    log = tmp_path / "bot.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(REPO / "app.py"),
            *arguments,
            env=environment(PORT=str(port), HOST="127.0.0.1", DATA_DIR=str(data), **variables),
            cwd=tmp_path,
            stdout=output,
            stderr=output,
        )
    served = Served(process, port, data, log)
    try:

        async def answers() -> bool:
            assert process.returncode is None, served.log_text()
            with suppress(OSError, TimeoutError, ValueError, IndexError):
                return (await health(port))[0] == 200
            return False

        await eventually(answers, within_s=START_TIMEOUT_S)
        yield served
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 40)
            except TimeoutError:
                process.kill()
                await process.wait()


async def test_two_workers_share_the_port_serve_messages_and_stop_cleanly(tmp_path: Path) -> None:
    """Two processes answer on one port, a turn works, and SIGTERM stops everything: exit 0,
    no worker and no store left, "Listening on" said once."""
    async with serving_bot(tmp_path, "--workers", "2") as bot:
        workers = await bot.answering(2)
        record = json.loads((bot.data / RECORD).read_text())
        store = record["server_pid"]
        assert record["pid"] == bot.pid  # the supervisor owns the one store
        assert children_of(bot.pid) == workers | {store}

        connector = ConnectorServer()
        await connector.start()
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(4):
                    activity = activities.message(JANE, connector.service_url, "help")
                    async with session.post(
                        f"http://127.0.0.1:{bot.port}/api/messages", json=activity
                    ) as response:
                        assert response.status == 200
        finally:
            await connector.close()
        assert len(connector.sent) == 4
        assert all(reply.card is not None for reply in connector.sent)

        bot.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(bot.process.wait(), 40) == 0
        assert all(gone(pid) for pid in workers | {store})
        assert not (bot.data / RECORD).exists()
        with pytest.raises(OSError):
            await health(bot.port)
        log = bot.log_text()
        assert log.count("Listening on http://127.0.0.1") == 1
        assert "Every worker process stopped" in log
        assert "Traceback" not in log


async def test_a_killed_worker_is_replaced_while_the_service_answers(tmp_path: Path) -> None:
    """kill -9 of one worker: every request still answers 200, and a new process takes its
    place; the supervisor logs why."""
    async with serving_bot(tmp_path, "--workers", "2") as bot:
        first, second = sorted(await bot.answering(2))
        os.kill(first, signal.SIGKILL)
        await eventually(lambda: gone(first), within_s=5)
        seen: set[int] = set()

        async def replaced() -> bool:
            status, pid = await health(bot.port)
            assert status == 200
            seen.add(pid)
            return len(seen - {first, second}) == 1

        await eventually(replaced, within_s=40)
        assert first not in seen
        [new] = seen - {first, second}
        assert parent_of(new) == bot.pid
        assert await bot.answering(2) == {second, new}
        assert "stopped unexpectedly (killed by SIGKILL); starting another in 0.5 s" in (
            bot.log_text()
        )


async def test_sighup_replaces_every_worker_without_failing_a_request(tmp_path: Path) -> None:
    """SIGHUP: a rolling restart under a stream of concurrent requests (health checks on fresh
    connections and turns, which no client retries); not one fails, and afterwards only new
    processes answer."""
    async with serving_bot(tmp_path, "--workers", "2") as bot:
        old = await bot.answering(2)
        failures: list[str] = []
        answered: list[int] = []
        done = asyncio.Event()

        async def health_stream() -> None:
            while not done.is_set():
                try:
                    status, pid = await health(bot.port)
                except (OSError, TimeoutError, ValueError, IndexError) as error:
                    failures.append(repr(error))
                    continue
                if status != 200:
                    failures.append(f"status {status}")
                answered.append(pid)

        async def turn_stream(connector: ConnectorServer) -> None:
            fresh_connections = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(connector=fresh_connections) as session:
                while not done.is_set():
                    activity = activities.message(JANE, connector.service_url, "help")
                    try:
                        async with session.post(
                            f"http://127.0.0.1:{bot.port}/api/messages", json=activity
                        ) as response:
                            if response.status != 200:
                                failures.append(f"turn status {response.status}")
                    except (aiohttp.ClientError, TimeoutError) as error:
                        failures.append(repr(error))

        connector = ConnectorServer()
        await connector.start()
        try:
            streams = [asyncio.create_task(health_stream()) for _ in range(3)]
            streams.append(asyncio.create_task(turn_stream(connector)))
            await eventually(lambda: len(answered) > 20, within_s=10)
            bot.process.send_signal(signal.SIGHUP)
            await eventually(
                lambda: "Every worker process was replaced" in bot.log_text(), within_s=60
            )
            await eventually(lambda: all(gone(pid) for pid in old), within_s=30)
            settled = len(answered)
            await eventually(lambda: len(answered) > settled + 20, within_s=10)
            done.set()
            await asyncio.gather(*streams)
        finally:
            done.set()
            await connector.close()
        assert failures == []
        assert len(connector.sent) > 0
        new = await bot.answering(2)
        assert not new & old
        assert set(answered[settled:]) <= new
        assert children_of(bot.pid) >= new


async def test_killing_the_supervisor_takes_its_workers_and_store_along(tmp_path: Path) -> None:
    """kill -9 of the supervisor: its workers and the embedded store stop by themselves
    (parent-death signal)."""
    async with serving_bot(tmp_path, "--workers", "2") as bot:
        workers = await bot.answering(2)
        store = json.loads((bot.data / RECORD).read_text())["server_pid"]
        assert children_of(bot.pid) == workers | {store}
        bot.process.kill()
        await bot.process.wait()
        await eventually(lambda: all(gone(pid) for pid in workers | {store}), within_s=15)


async def test_one_worker_is_the_single_process_of_old(tmp_path: Path) -> None:
    """--workers 1: no supervisor; the process started is the one that answers."""
    async with serving_bot(tmp_path, "--workers", "1") as bot:
        status, pid = await health(bot.port)
        assert (status, pid) == (200, bot.pid)
        store = json.loads((bot.data / RECORD).read_text())["server_pid"]
        assert children_of(bot.pid) == {store}
        bot.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(bot.process.wait(), 40) == 0
        assert "Supervisor" not in bot.log_text()


async def test_a_worker_that_cannot_start_stops_the_supervisor_with_its_sentence(
    tmp_path: Path,
) -> None:
    """A broken apps file found by the first worker: exit 2 with the worker's one sentence,
    and the supervisor's store is stopped."""
    apps = tmp_path / "apps.toml"
    apps.write_text('[apps.box]\npreset = "box"\n')
    result = await asyncio.to_thread(run_app, tmp_path, "--workers", "2", APPS_FILE=str(apps))
    assert result.returncode == 2
    assert result.stderr.count("Cannot start:") == 1
    assert "apps.box.client_id" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / RECORD).exists()


def run_app(tmp_path: Path, *arguments: str, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "app.py"), *arguments],
        env=environment(
            DATA_DIR=str(tmp_path / "data"), PORT=str(free_port()), HOST="127.0.0.1", **variables
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


BAD_WORKER_COUNTS = [
    (("--workers", "0"), {}, "--workers 0 is invalid"),
    (("--workers", "65"), {}, "--workers 65 is invalid"),
    (("--workers=two",), {}, "--workers two is invalid"),
    ((), {"WORKERS": "abc"}, "The setting WORKERS is invalid"),
    ((), {"WORKERS": "0"}, "The setting WORKERS is invalid"),
    (("--threads", "2"), {}, "unrecognized arguments: --threads 2"),
]


async def test_bad_worker_counts_stop_the_start_with_one_sentence(tmp_path: Path) -> None:
    """A bad --workers or WORKERS (or an unknown option): exit 2, one sentence naming it, no
    traceback, nothing started. The cases run side by side."""

    async def attempt(index: int) -> None:
        arguments, variables, named = BAD_WORKER_COUNTS[index]
        folder = tmp_path / str(index)
        folder.mkdir()
        result = await asyncio.to_thread(run_app, folder, *arguments, **variables)
        assert result.returncode == 2, named
        assert result.stderr.strip().count("\n") == 0, result.stderr
        assert result.stderr.startswith("Cannot start: "), result.stderr
        assert named in result.stderr
        if "invalid" in named:
            assert "from 1 to 64" in result.stderr
        assert "Traceback" not in result.stderr
        assert not (folder / "data").exists()

    await asyncio.gather(*(attempt(index) for index in range(len(BAD_WORKER_COUNTS))))


def test_default_is_one_worker_locally_and_one_per_core_in_production() -> None:
    """Unset WORKERS: 1 with authentication off; with it on, the usable cores (at most 64)."""
    local = load_settings(_env_file=None)
    assert local.workers is None
    assert serving.default_workers(local) == 1
    production = load_settings(
        _env_file=None,
        app_id="app-id",
        app_password="pw",
        allowed_tenant_ids="*",
        mongodb_uri="mongodb://db.example/",
    )
    assert serving.default_workers(production) == min(64, len(os.sched_getaffinity(0)))
    assert load_settings(_env_file=None, workers=" 8 ").workers == 8
    assert messages.SETTING_WORKERS_RANGE in messages.WORKERS_OPTION_INVALID
