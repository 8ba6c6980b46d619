"""The embedded MongoDB-wire-compatible server used when no MONGODB_URI is configured.

It is SecantusDB's `secantusd-py` command (the `local` extra), run as a child process bound to
127.0.0.1 on a free port. It is GPL-2.0-only, so it is only ever run, never imported. While it
runs, `<data dir>/embedded-mongodb.json` records its URI, its pid and the pid (and start time) of
the process that owns it, the bot or the operator CLI. The CLI uses it to reach the running bot's
server (the server refuses a second process on one directory); a later start uses it to find a
server that a killed owner left behind.

The server lives and dies with its owner:

- **Parent-death signal.** Between fork and exec the child asks Linux to send it SIGTERM when its
  parent dies (`prctl(PR_SET_PDEATHSIG)`), so the kernel stops it even after `kill -9` of the
  owner. SIGTERM rather than SIGKILL: the server then closes WiredTiger cleanly (it exits in
  ≤ 2 s); one that hangs is handled by the next start (below). This was chosen over a pipe
  watched by a wrapper process because it needs no extra process in between, no code of ours in
  the child after exec, and nothing that depends on the server's stdin. Linux sends the signal
  when the *thread* that forked dies; asyncio forks in the event-loop thread, which lives as long
  as the owner (start the server from that thread, never from a worker thread). The hook runs in
  the child of a threaded program before exec, so it only calls a libc function resolved in the
  parent and `getppid` (no imports, no locks, no logging); if the owner died before the request
  took effect, `getppid` tells, and the child exits instead of starting the server.
- **Stale server at start.** When the record names a server whose owner is dead and that pid still
  is a `secantusd` process serving this very storage path (read from `/proc/<pid>/cmdline`, so a
  pid reused by an unrelated process is never signalled), it is stopped first: SIGTERM, then
  SIGKILL after a bound. A live owner is never disturbed: the start then fails with a sentence
  naming it. "Alive" compares the pid's start time too, so a reused owner pid does not count.
- **Supervision.** While the owner runs, a task restarts a server that exits on its own, on the
  same folder and the same port (so the owner's `AsyncMongoClient` reconnects by itself), with a
  bounded number of attempts and a growing delay, each logged. When none succeeds, `lost` says
  why and `wait_lost()` returns; the bot then exits non-zero so that its process manager restarts
  it (app.py). An in-memory server (tests) is never restarted: its data would be gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

import background
import messages

log = logging.getLogger(__name__)

MEMORY = ":memory:"
RUNNING_FILE = "embedded-mongodb.json"
RESTART_DELAYS_S = (0.5, 1.0, 2.0)
_READY_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0
_STALE_STOP_TIMEOUT_S = 5.0
_STABLE_AFTER_S = 60.0  # a server that ran this long earns a fresh set of restart attempts
_POLL_S = 0.05
_PR_SET_PDEATHSIG = 1


class StoreUnavailable(RuntimeError):
    """No database can be used; the message tells a person what to install or set."""


def find_server_command(command: str) -> str:
    """Locate the embedded server's executable on PATH or beside this Python interpreter.

    Raises:
        StoreUnavailable: when it is not installed.
    """
    found = shutil.which(command)
    if found is None:
        beside_python = Path(sys.executable).parent / command
        if beside_python.is_file() and os.access(beside_python, os.X_OK):
            found = str(beside_python)
    if found is None:
        raise StoreUnavailable(messages.NO_STORE_CONFIGURED)
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _read_record(data_dir: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((data_dir / RUNNING_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def running_server_uri(data_dir: Path) -> str | None:
    """The URI of the embedded server a live bot (or CLI) runs on this data folder, if any.

    None when the record's owner no longer runs: its server, if still there, is stale and is
    stopped by the next `EmbeddedMongo` start rather than used. The URI may still not answer.
    """
    record = _read_record(data_dir)
    if record is None:
        return None
    uri = record.get("uri")
    if not isinstance(uri, str):
        return None
    if "pid" in record and not _owner_alive(record["pid"], record.get("pid_started")):
        return None
    return uri


def _start_time(pid: int) -> str | None:
    """When a live process started (clock ticks since boot), or None if there is no such process.

    A zombie counts as gone: it holds no files and serves nothing.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces or ")".
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]  # field 22, starttime


def _owner_alive(pid: object, started: object) -> bool:
    """Whether the recorded owner still runs (the same process, not a later one with its pid)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    now = _start_time(pid)
    return now is not None and (started is None or now == started)


def _serves(pid: int, storage_path: Path) -> bool:
    """Whether `pid` is a live `secantusd` server on `storage_path`, from its command line."""
    try:
        argv = [os.fsdecode(a) for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
    except OSError:
        return False
    argv = [a for a in argv if a]  # a zombie's command line is empty
    if not any("secantusd" in Path(a).name for a in argv):
        return False
    for index, argument in enumerate(argv):
        if argument == "--storage-path" and index + 1 < len(argv):
            value = argv[index + 1]
        elif argument.startswith("--storage-path="):
            value = argument.partition("=")[2]
        else:
            continue
        if value == MEMORY:
            return False
        if not os.path.isabs(value):
            try:
                value = os.path.join(os.readlink(f"/proc/{pid}/cwd"), value)
            except OSError:
                return False
        return os.path.realpath(value) == os.path.realpath(storage_path)
    return False


@functools.cache
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


def die_with_this_process() -> Callable[[], None] | None:
    """A `preexec_fn` making the child receive SIGTERM when this process dies (Linux only)."""
    prctl = _prctl()
    if prctl is None:
        return None
    owner = os.getpid()
    term = int(signal.SIGTERM)

    def die_with_owner() -> None:  # runs in the forked child: keep it to two system calls
        prctl(_PR_SET_PDEATHSIG, term, 0, 0, 0)
        if os.getppid() != owner:  # the owner died before the request took effect
            os._exit(1)

    return die_with_owner


class EmbeddedMongo:
    """An embedded server as an async context manager: `async with EmbeddedMongo(...) as uri:`.

    Enter it from the event-loop thread (the parent-death signal is tied to the forking thread).

    Args:
        command: the server executable name or path.
        storage: a folder for durable data, or `MEMORY` for a throwaway store (tests).
        restart_delays_s: the wait before each restart attempt after the server exits on its own.
    """

    def __init__(
        self,
        *,
        command: str,
        storage: Path | str,
        restart_delays_s: Sequence[float] = RESTART_DELAYS_S,
    ) -> None:
        self._command = command
        self._storage = storage
        self._restart_delays_s = tuple(restart_delays_s)
        self._executable = ""
        self._arguments: list[str] = []
        self._port = 0
        self._process: asyncio.subprocess.Process | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._output: Path | None = None
        self._recorded = False
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._lost_reason: str | None = None
        self.uri = ""

    @property
    def durable(self) -> bool:
        return self._storage != MEMORY

    @property
    def _storage_path(self) -> Path:
        """The server's own folder inside the data folder (absolute, as its command line shows)."""
        return Path(self._storage).resolve() / "mongodb"

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    @property
    def lost(self) -> str | None:
        """Why the server is gone for good (it exited and could not be restarted), else None."""
        return self._lost_reason

    async def wait_lost(self) -> str:
        """Return the reason once the server is gone for good."""
        await self._lost.wait()
        assert self._lost_reason is not None
        return self._lost_reason

    def _prepare(self) -> list[str]:
        """Create the folders and return the server's arguments (all but the port)."""
        self._scratch = tempfile.TemporaryDirectory(prefix="embedded-mongodb-")
        # An empty config file stops the server from reading a stray ./secantusd.toml.
        config = Path(self._scratch.name) / "secantusd.toml"
        config.write_text("")
        arguments = ["--config", str(config), "--host", "127.0.0.1", "--log-level", "WARNING"]
        if self.durable:
            Path(self._storage).mkdir(parents=True, exist_ok=True)
            arguments += ["--storage-path", str(self._storage_path), "--sync-on-commit"]
        else:
            arguments += ["--storage-path", MEMORY]
        arguments.append("--standalone")
        return arguments

    async def __aenter__(self) -> str:
        self._executable = find_server_command(self._command)
        self._arguments = await asyncio.to_thread(self._prepare)
        try:
            if self.durable:
                await self._stop_stale_server()
            self._port = _free_port()
            self.uri = f"mongodb://127.0.0.1:{self._port}/?directConnection=true"
            await self._launch()
        except BaseException:
            await self._stop()
            raise
        self._supervisor = asyncio.create_task(self._supervise(), name="embedded-mongodb")
        return self.uri

    async def _stop_stale_server(self) -> None:
        """Stop a server a dead owner left on this storage path; refuse if its owner lives.

        Raises:
            StoreUnavailable: the folder is in use by a live process, or the stale server
                could not be stopped.
        """
        record = _read_record(Path(self._storage))
        server = record.get("server_pid") if record else None
        if record is None or not isinstance(server, int) or server <= 0:
            return
        if not _serves(server, self._storage_path):
            return  # gone, or its pid now belongs to something else: leave that alone
        owner = record.get("pid")
        if _owner_alive(owner, record.get("pid_started")):
            raise StoreUnavailable(
                messages.EMBEDDED_STORE_IN_USE.format(folder=self._storage_path, pid=owner)
            )
        log.warning(messages.LOG_EMBEDDED_STORE_STALE, server, self._storage_path, owner)
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(server, signal_number)
            except ProcessLookupError:
                return
            except PermissionError:
                break  # another user's process: say so below
            deadline = loop.time() + _STALE_STOP_TIMEOUT_S
            while _serves(server, self._storage_path):
                if loop.time() > deadline:
                    break
                await asyncio.sleep(_POLL_S)  # not our child: no wait() to await, so poll
            else:
                return
        raise StoreUnavailable(
            messages.EMBEDDED_STORE_STALE_STUCK.format(folder=self._storage_path, pid=server)
        )

    async def _launch(self) -> None:
        """Start the server on `self._port`, record it, and wait until it answers."""
        assert self._scratch is not None
        # Output goes to a file, not a pipe: a pipe nobody reads would stall the server.
        self._output = Path(self._scratch.name) / "server.log"
        with self._output.open("ab") as output:
            self._process = await asyncio.create_subprocess_exec(
                self._executable,
                *self._arguments,
                "--port",
                str(self._port),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                preexec_fn=die_with_this_process(),  # safe here: see the module docstring
                # Its own session: Ctrl-C in a terminal reaches the owner only, which then
                # stops the server in order instead of racing it.
                start_new_session=True,
            )
        if self.durable:
            self._write_record(self._process.pid)
        await self._wait_until_ready()

    async def _wait_until_ready(self) -> None:
        assert self._process is not None
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
            self.uri, serverSelectionTimeoutMS=250, connectTimeoutMS=250
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _READY_TIMEOUT_S
        try:
            while True:
                if self._process.returncode is not None:
                    raise StoreUnavailable(self._failure_text())
                try:
                    await client.admin.command("ping")
                    return
                except PyMongoError:
                    if loop.time() > deadline:
                        raise StoreUnavailable(messages.EMBEDDED_STORE_TIMEOUT) from None
                    # serverSelectionTimeoutMS paces this loop; no extra sleep needed.
        finally:
            await client.close()

    def _failure_text(self) -> str:
        output = self._output.read_text(errors="replace").strip() if self._output else ""
        last_line = output.splitlines()[-1] if output else "no output"
        return messages.EMBEDDED_STORE_FAILED.format(detail=last_line[:300])

    def _write_record(self, server_pid: int) -> None:
        path = Path(self._storage) / RUNNING_FILE
        record = {
            "uri": self.uri,
            "pid": os.getpid(),
            "pid_started": _start_time(os.getpid()),
            "server_pid": server_pid,
            "storage_path": str(self._storage_path),
        }
        # Written whole and renamed, so a reader never sees half a record.
        draft = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        draft.write_text(json.dumps(record))
        draft.replace(path)
        self._recorded = True

    async def _supervise(self) -> None:
        """Restart the server whenever it exits on its own, until the attempts run out."""
        loop = asyncio.get_running_loop()
        attempts = len(self._restart_delays_s)
        failures = 0
        while True:
            process = self._process
            assert process is not None
            started = loop.time()
            status = await process.wait()
            if self._stopping:
                return
            if not self.durable:
                self._give_up(messages.EMBEDDED_STORE_MEMORY_LOST.format(status=status))
                return
            if loop.time() - started >= _STABLE_AFTER_S:
                failures = 0
            reported = False
            while True:
                if failures >= attempts:
                    self._give_up(messages.EMBEDDED_STORE_LOST.format(attempts=attempts))
                    return
                # Waiting before reporting also lets an orderly stop claim the exit (`_stop`
                # cancels this task): a stop signal sent to the whole group, as a service
                # manager does, can reach the server before the owner has begun to stop it.
                await asyncio.sleep(self._restart_delays_s[failures])
                if not reported:
                    log.error(messages.LOG_EMBEDDED_STORE_EXITED, status, self._port)
                    reported = True
                failures += 1
                log.warning(messages.LOG_EMBEDDED_STORE_RESTARTING, failures, attempts, self._port)
                try:
                    await self._launch()
                except (StoreUnavailable, OSError) as error:
                    await self._terminate()
                    log.error(messages.LOG_EMBEDDED_STORE_RESTART_FAILED, failures, attempts, error)
                    continue
                log.warning(messages.LOG_EMBEDDED_STORE_RESTARTED, self.pid, self._port)
                break

    def _give_up(self, reason: str) -> None:
        log.error(reason)
        self._lost_reason = reason
        self._lost.set()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        self._stopping = True
        supervisor, self._supervisor = self._supervisor, None
        await background.stop(supervisor)
        if self._recorded:
            with contextlib.suppress(OSError):
                (Path(self._storage) / RUNNING_FILE).unlink()
            self._recorded = False
        await self._terminate()
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    async def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), _STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning(messages.LOG_EMBEDDED_STORE_KILLED)
                process.kill()
                await process.wait()
