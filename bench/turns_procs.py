"""Processes and CPUs for `bench.turns`: child processes, pinning, and CPU seconds from /proc.

Every part of a run is a child process started from this machine's Python (`start_child`);
CPU time is read per process (`cpu_seconds`) and for the whole machine
(`machine_busy_seconds`), so the CPU taken by processes outside the run shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
# The load generator's result is one JSON line holding every latency: ~10 bytes a turn.
RESULT_LINE_LIMIT = 1 << 24
START_TIMEOUT_S = 60.0

Json = dict[str, Any]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


# --------------------------------------------------------------------------- CPUs


def _threads(pid: int) -> list[int]:
    try:
        return [int(name) for name in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return [pid]


def pin(pid: int, cpus: set[int] | None) -> None:
    """Pin every thread of `pid` (threads made later inherit it from their creator)."""
    if not cpus:
        return
    for thread in _threads(pid):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(thread, cpus)


def descendants(pid: int) -> list[int]:
    """Child processes of `pid`, recursively (the embedded store is the bot's child)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat_fields(int(entry))
            if stat:
                parents.setdefault(int(stat[1]), []).append(int(entry))
    found: list[int] = []
    pending = [pid]
    while pending:
        children = parents.get(pending.pop(), [])
        found += children
        pending += children
    return found


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: [state, ppid, ...]; [] if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def machine_busy_seconds() -> float:
    """CPU time all cores spent busy since boot (the first line of /proc/stat)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return math.nan
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    guest = sum(fields[8:10])  # already counted in user and nice
    return (sum(fields) - idle - guest) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the whole process (all its threads)."""
    fields = _stat_fields(pid)
    if not fields:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class CpuWindow:
    """CPU seconds of named groups of processes, and of the whole machine, over a window."""

    watched: Mapping[str, list[int]]
    began: float = 0.0
    machine_before: float = 0.0
    before: dict[str, float] | None = None

    def open(self) -> None:
        self.began = time.monotonic()
        self.machine_before = machine_busy_seconds()
        self.before = {name: sum(map(cpu_seconds, pids)) for name, pids in self.watched.items()}

    def close(self) -> tuple[float, dict[str, float]]:
        """(wall seconds, CPU seconds per group); the group "other processes" is what the rest
        of the machine used meanwhile."""
        wall = time.monotonic() - self.began
        before = self.before or {}
        used = {
            name: sum(map(cpu_seconds, pids)) - before.get(name, 0.0) if pids else math.nan
            for name, pids in self.watched.items()
        }
        machine = machine_busy_seconds() - self.machine_before
        ours = sum(value for value in used.values() if not math.isnan(value))
        used[OTHERS] = max(machine - ours, 0.0)
        return wall, used


OTHERS = "other processes"


# --------------------------------------------------------------------------- child processes


@dataclass
class Child:
    """A child process started by this run, with the file its output goes to."""

    name: str
    process: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def stop(self) -> None:
        if self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def start_child(
    name: str,
    workdir: Path,
    command: list[str],
    *,
    stdout_pipe: bool = False,
    stdin_pipe: bool = False,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO,
) -> Child:
    """Start `command` (a list after the interpreter: ["-m", "bench.turns_roles", ...])."""
    log = workdir / f"{name}.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *command,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=asyncio.subprocess.PIPE if stdin_pipe else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if stdout_pipe else output,
            stderr=output,
            limit=RESULT_LINE_LIMIT,
        )
    return Child(name, process, log)


async def start_role(
    role: str, workdir: Path, *arguments: str, name: str | None = None, **options: Any
) -> Child:
    """One of the internal roles of `bench.turns_roles` as a child process."""
    command = ["-m", "bench.turns_roles", role, *arguments]
    return await start_child(name or role.lstrip("_"), workdir, command, **options)


async def get_json(session: aiohttp.ClientSession, url: str, **options: Any) -> Json:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=10), **options) as response:
        response.raise_for_status()
        return dict(await response.json())


async def wait_until_serving(
    session: aiohttp.ClientSession,
    url: str,
    child: Child,
    *,
    timeout_s: float = START_TIMEOUT_S,
    **options: Any,
) -> Json:
    deadline = time.monotonic() + timeout_s
    while True:
        if child.process.returncode is not None:
            raise RuntimeError(
                f"{child.name} exited with {child.process.returncode}:\n{child.tail()}"
            )
        try:
            return await get_json(session, url, **options)
        except (aiohttp.ClientError, TimeoutError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} did not start:\n{child.tail()}") from None
        await asyncio.sleep(0.05)  # a readiness poll's interval
