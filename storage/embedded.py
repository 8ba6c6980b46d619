"""The embedded MongoDB-wire-compatible server used when no MONGODB_URI is configured.

It is SecantusDB's `secantusd-py` command (the `local` extra), run as a child process bound to
127.0.0.1 on a free port. It is GPL-2.0-only, so it is only ever run, never imported. While it
runs, its URI is written to `<data dir>/embedded-mongodb.json` so that the operator CLI can use
the same server as the running bot (the server refuses a second process on one directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from types import TracebackType

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

import messages

log = logging.getLogger(__name__)

MEMORY = ":memory:"
RUNNING_FILE = "embedded-mongodb.json"
_READY_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0


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


def running_server_uri(data_dir: Path) -> str | None:
    """The URI a running embedded server left in the data folder, if any (it may be stale)."""
    try:
        return str(json.loads((data_dir / RUNNING_FILE).read_text())["uri"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class EmbeddedMongo:
    """An embedded server as an async context manager: `async with EmbeddedMongo(...) as uri:`.

    Args:
        command: the server executable name or path.
        storage: a folder for durable data, or `MEMORY` for a throwaway store (tests).
    """

    def __init__(self, *, command: str, storage: Path | str) -> None:
        self._command = command
        self._storage = storage
        self._process: asyncio.subprocess.Process | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._output: Path | None = None
        self.uri = ""

    @property
    def durable(self) -> bool:
        return self._storage != MEMORY

    def _prepare(self) -> list[str]:
        """Create the folders and return the server's arguments (all but the port)."""
        self._scratch = tempfile.TemporaryDirectory(prefix="embedded-mongodb-")
        # An empty config file stops the server from reading a stray ./secantusd.toml.
        config = Path(self._scratch.name) / "secantusd.toml"
        config.write_text("")
        arguments = ["--config", str(config), "--host", "127.0.0.1", "--log-level", "WARNING"]
        if self.durable:
            storage = Path(self._storage)
            storage.mkdir(parents=True, exist_ok=True)
            arguments += ["--storage-path", str(storage / "mongodb"), "--sync-on-commit"]
        else:
            arguments += ["--storage-path", MEMORY]
        arguments.append("--standalone")
        return arguments

    async def __aenter__(self) -> str:
        executable = find_server_command(self._command)
        arguments = await asyncio.to_thread(self._prepare)
        try:
            await self._start(executable, arguments)
        except BaseException:
            await self._stop()
            raise
        if self.durable:
            self._write_running_file()
        return self.uri

    async def _start(self, executable: str, arguments: list[str]) -> None:
        port = _free_port()
        self.uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        assert self._scratch is not None
        # Output goes to a file, not a pipe: a pipe nobody reads would stall the server.
        self._output = Path(self._scratch.name) / "server.log"
        with self._output.open("wb") as output:
            self._process = await asyncio.create_subprocess_exec(
                executable,
                *arguments,
                "--port",
                str(port),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=output,
            )
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

    def _write_running_file(self) -> None:
        path = Path(self._storage) / RUNNING_FILE
        path.write_text(json.dumps({"uri": self.uri, "pid": os.getpid()}))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        if self.durable:
            with contextlib.suppress(OSError):
                (Path(self._storage) / RUNNING_FILE).unlink()
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), _STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning(messages.LOG_EMBEDDED_STORE_KILLED)
                process.kill()
                await process.wait()
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None
