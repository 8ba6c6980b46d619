"""Several processes on one port: a supervisor that keeps N worker processes serving the bot.

`python app.py --workers N` (or `WORKERS=N`) with N > 1 runs `run_supervisor`; each worker is
`python app.py` again, told by the supervisor (an environment variable, `take_worker_handoff`)
to serve through `run_worker` instead of starting on its own. With one worker nothing here runs.

- **One listening socket, inherited.** The supervisor binds HOST:PORT once and passes the
  socket to every worker (pre-fork style); the kernel hands each new connection to whichever
  worker accepts it first. Measured here against separate `SO_REUSEPORT` sockets per worker:
  with those, a worker that stops takes the connections still queued on its own socket down
  with it (12 connections reset in 10 rolling restarts under load); with one shared queue a
  stopping worker just stops accepting and the others take the queue, so no connection is lost
  (and while no worker runs, connections wait in the queue instead of being refused).
- **The embedded store.** Without MONGODB_URI the store (`storage.embedded.EmbeddedMongo`, with
  its stale-server check, parent-death signal and restarts) belongs to the supervisor, which
  gives its URI to the workers as their MONGODB_URI: a second server on one data folder is
  refused. If the store is gone for good, the supervisor stops and exits with status 1.
- **Workers die with the supervisor.** Each worker gets Linux's parent-death signal (SIGTERM,
  the same `preexec_fn` as the store's), so `kill -9` of the supervisor stops them too.
- **Readiness.** Each worker also serves on a private Unix socket (in a folder only this user
  can open); the supervisor asks that worker, and only it, for `/healthz` (answered with the
  worker's `X-Process-Id`). "Listening on ..." is logged once the first worker answers.
- **Signals.** SIGTERM/SIGINT: SIGTERM to every worker (each stops accepting, finishes the
  requests in flight), SIGKILL after `WORKER_STOP_TIMEOUT_S`, then the store stops; exit 0.
  SIGHUP: a rolling restart, one worker at a time: start its replacement, wait until that
  answers `/healthz`, then stop the old one. A worker that dies is restarted after a growing
  delay (`RESTART_DELAYS_S`, reset once a worker has run `STABLE_AFTER_S`), each logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Coroutine, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

import background
import messages
from settings import Settings
from storage.embedded import EmbeddedMongo, die_with_this_process

log = logging.getLogger("runtime_connections")

MAX_WORKERS = 64
HANDOFF_VARIABLE = "RUNTIME_CONNECTIONS_WORKER"
LISTEN_BACKLOG = 1024
READY_TIMEOUT_S = 60.0  # a worker that does not answer /healthz by then is stopped
WORKER_STOP_TIMEOUT_S = 30.0  # SIGTERM, then SIGKILL after this long
WORKER_SHUTDOWN_TIMEOUT_S = 20.0  # a stopping worker's bound for the requests in flight
ORPHAN_STOP_TIMEOUT_S = 5.0  # a worker whose supervisor died: its whole stop, bounded
ACCEPTED_GRACE_S = 0.5  # a stopping worker still reads requests on connections it accepted
RESTART_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # then 10 s between attempts, for as long as needed
STABLE_AFTER_S = 30.0  # a worker that ran this long earns the shortest delay again
_PROBE_TIMEOUT_S = 1.0
_POLL_S = 0.05


class ServingError(RuntimeError):
    """Serving cannot start; the message is one sentence for a person."""


def default_workers(settings: Settings) -> int:
    """One worker per usable core in production (authentication on), one locally."""
    if not settings.auth_enabled:
        return 1
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


# --- The worker's side ---------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerHandoff:
    """What the supervisor gives a worker: the listening sockets' descriptors and the path of
    the worker's own Unix socket for the supervisor's health checks."""

    listen_fds: tuple[int, ...]
    health_path: str

    def encode(self) -> str:
        return json.dumps({"listen": list(self.listen_fds), "health": self.health_path})


def take_worker_handoff() -> WorkerHandoff | None:
    """The handoff when a supervisor started this process, else None; removed from the
    environment so that nothing this process starts inherits it.

    Raises:
        ServingError: the variable is set but is not a handoff.
    """
    raw = os.environ.pop(HANDOFF_VARIABLE, None)
    if raw is None:
        return None
    try:
        decoded = json.loads(raw)
        fds = tuple(int(fd) for fd in decoded["listen"])
        health = str(decoded["health"])
    except (ValueError, TypeError, KeyError):
        raise ServingError(
            messages.WORKER_HANDOFF_INVALID.format(variable=HANDOFF_VARIABLE)
        ) from None
    if not fds or not health:
        raise ServingError(messages.WORKER_HANDOFF_INVALID.format(variable=HANDOFF_VARIABLE))
    return WorkerHandoff(fds, health)


def run_worker(
    app: web.Application,
    handoff: WorkerHandoff,
    *,
    access_log_class: type[AbstractAccessLogger],
) -> None:
    """Serve `app` on the inherited sockets until SIGTERM or SIGINT, then stop gracefully."""
    asyncio.run(_serve_worker(app, handoff, access_log_class))


async def _serve_worker(
    app: web.Application, handoff: WorkerHandoff, access_log_class: type[AbstractAccessLogger]
) -> None:
    loop = asyncio.get_running_loop()
    supervisor = os.getppid()
    stop = asyncio.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    listeners = [socket.socket(fileno=fd) for fd in handoff.listen_fds]
    runner = web.AppRunner(
        app, access_log_class=access_log_class, shutdown_timeout=WORKER_SHUTDOWN_TIMEOUT_S
    )
    try:
        await runner.setup()  # the bot starts here (wiring); START_ERRORS come out of it
        public = [web.SockSite(runner, sock, backlog=LISTEN_BACKLOG) for sock in listeners]
        if not stop.is_set():
            for site in public:
                await site.start()
            # Last: once it answers, the public sites accept too.
            await web.UnixSite(runner, handoff.health_path).start()
            await stop.wait()
        # Stop accepting (the others take the shared queue), give the connections this worker
        # already accepted time to send their request, then finish what is in flight.
        for site in public:
            if site in runner.sites:
                await site.stop()
        await asyncio.sleep(ACCEPTED_GRACE_S)
    finally:
        # Orphaned (the supervisor was killed, and the embedded store with it): nothing can
        # finish against a store that is gone, so the stop is short rather than a series of
        # store timeouts.
        orphaned = os.getppid() != supervisor
        try:
            async with asyncio.timeout(ORPHAN_STOP_TIMEOUT_S if orphaned else None):
                await runner.cleanup()
        except TimeoutError:
            log.warning(messages.LOG_ORPHAN_STOPPED, ORPHAN_STOP_TIMEOUT_S)
            logging.shutdown()
            os._exit(1)  # what is left waits on the store that is gone; nothing to save
        with contextlib.suppress(OSError):
            os.unlink(handoff.health_path)


# --- The supervisor's side -----------------------------------------------------------------


def bind_listeners(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for every address `host` resolves to (as aiohttp binds them).

    Raises:
        ServingError: no address could be bound (in use, not available, no such host).
    """
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as error:
        raise ServingError(
            messages.LISTEN_FAILED.format(host=host, port=port, reason=error.strerror or error)
        ) from None
    listeners: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _name, address in found:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(LISTEN_BACKLOG)
            except OSError as error:
                sock.close()
                if error.errno == errno.EADDRNOTAVAIL:
                    continue  # that family is not enabled here (IPv6 in some containers)
                raise ServingError(
                    messages.LISTEN_FAILED.format(
                        host=host, port=port, reason=error.strerror or error
                    )
                ) from None
            listeners.append(sock)
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    if not listeners:
        raise ServingError(
            messages.LISTEN_FAILED.format(
                host=host, port=port, reason=os.strerror(errno.EADDRNOTAVAIL)
            )
        )
    return listeners


def run_supervisor(settings: Settings, *, workers: int, worker_command: Sequence[str]) -> int:
    """Serve with `workers` processes until SIGTERM or SIGINT; the exit status.

    Args:
        settings: the validated settings (HOST, PORT, the store, ...).
        workers: how many worker processes, 2 or more.
        worker_command: the command that starts one worker (`python app.py`).

    Raises:
        ServingError: HOST:PORT cannot be bound.
        StoreUnavailable: the embedded store cannot start.
    """
    return asyncio.run(Supervisor(settings, workers, worker_command).run())


def _describe(status: int) -> str:
    if status < 0:
        with contextlib.suppress(ValueError):
            return messages.WORKER_KILLED_BY.format(signal=signal.Signals(-status).name)
    return messages.WORKER_EXIT_STATUS.format(status=status)


@dataclass(eq=False)
class _Worker:
    slot: int
    process: asyncio.subprocess.Process
    health_path: Path
    started: float

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass(eq=False)
class _Slot:
    number: int  # 1-based, as logged
    current: _Worker | None = None
    failures: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Supervisor:
    """Keeps `workers` worker processes serving; see the module docstring."""

    def __init__(self, settings: Settings, workers: int, worker_command: Sequence[str]) -> None:
        self._settings = settings
        self._command = list(worker_command)
        self._slots = [_Slot(number) for number in range(1, workers + 1)]
        self._listeners: list[socket.socket] = []
        self._store_uri: str | None = None
        self._folder: Path | None = None
        self._launched = 0
        self._live: set[_Worker] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._stop_reason = ""
        self._exit_status = 0
        self._stop_requested = asyncio.Event()
        self._roll_requested = asyncio.Event()

    # -- lifecycle

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._listeners = bind_listeners(self._settings.host, self._settings.port)
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, self._request_stop, signal.Signals(number).name)
        loop.add_signal_handler(signal.SIGHUP, self._roll_requested.set)
        self._folder = Path(tempfile.mkdtemp(prefix="bot-workers-"))  # mode 0700
        try:
            log.info(
                messages.LOG_SUPERVISOR_STARTED,
                os.getpid(),
                len(self._slots),
                self._settings.host,
                self._settings.port,
            )
            async with AsyncExitStack() as stack:
                await self._start_store(stack)
                try:
                    return await self._serve()
                finally:
                    await self._stop_everything()
        finally:
            for number in handled:
                loop.remove_signal_handler(number)
            for sock in self._listeners:
                sock.close()
            shutil.rmtree(self._folder, ignore_errors=True)

    async def _start_store(self, stack: AsyncExitStack) -> None:
        configured = self._settings.mongodb_uri
        if configured is not None and configured.get_secret_value().strip():
            return  # the workers read MONGODB_URI themselves
        store = EmbeddedMongo(
            command=self._settings.embedded_mongodb_command, storage=self._settings.data_dir
        )
        self._store_uri = await stack.enter_async_context(store)
        log.info(
            messages.LOG_STORE_EMBEDDED,
            Path(self._settings.data_dir) / "mongodb",
            self._settings.database_name,
        )
        self._spawn(self._exit_when_store_is_lost(store))

    async def _serve(self) -> int:
        if self._stopping:
            return self._exit_status
        first_slot = self._slots[0]
        first = await self._launch(first_slot)
        first_slot.current = first
        if not await self._wait_ready(first):
            if self._stopping:
                return self._exit_status
            status = first.process.returncode
            if status is None:
                log.error(messages.LOG_WORKER_NOT_READY, first.slot, first.pid, READY_TIMEOUT_S)
                return 1
            if status != 2:  # status 2: the worker already said why, in one sentence
                log.error(
                    messages.LOG_WORKER_FAILED_AT_START, first.slot, first.pid, _describe(status)
                )
            return 2 if status == 2 else 1
        log.info(messages.LOG_WORKER_SERVES, first.slot, first.pid)
        log.info(messages.LOG_LISTENING, self._settings.host, self._settings.port)
        for slot in self._slots[1:]:
            slot.current = await self._launch(slot)
            self._spawn(self._announce(slot.current))
        for slot in self._slots:
            self._spawn(self._keep(slot))
        self._spawn(self._roll_when_asked())
        await self._stop_requested.wait()
        return self._exit_status

    def _request_stop(self, reason: str, status: int = 0) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._stop_reason = reason
        self._exit_status = status
        self._stop_requested.set()

    async def _stop_everything(self) -> None:
        """Stop the supervising tasks, then every worker (the store stops after, on exit)."""
        self._request_stop(self._stop_reason or "exit")
        tasks, self._tasks = list(self._tasks), set()
        await background.stop(*tasks)
        live = [worker for worker in self._live if worker.process.returncode is None]
        if live:
            log.info(messages.LOG_WORKERS_STOPPING, len(live), self._stop_reason)
        await asyncio.gather(*(self._terminate(worker) for worker in live))
        if live:
            log.info(messages.LOG_WORKERS_STOPPED)

    async def _exit_when_store_is_lost(self, store: EmbeddedMongo) -> None:
        reason = await store.wait_lost()
        log.critical(messages.LOG_STORE_LOST_EXITING, reason)
        self._request_stop(reason, status=1)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- workers

    async def _launch(self, slot: _Slot) -> _Worker:
        """Start one worker process for `slot` (not yet ready)."""
        assert self._folder is not None
        self._launched += 1
        health = self._folder / f"worker-{slot.number}-{self._launched}.sock"
        fds = tuple(sock.fileno() for sock in self._listeners)
        environment = dict(os.environ)
        environment[HANDOFF_VARIABLE] = WorkerHandoff(fds, str(health)).encode()
        if self._store_uri is not None:
            environment["MONGODB_URI"] = self._store_uri
        process = await asyncio.create_subprocess_exec(
            *self._command,
            stdin=asyncio.subprocess.DEVNULL,
            env=environment,
            pass_fds=fds,
            preexec_fn=die_with_this_process(),  # forked from the event-loop thread
            # Its own session: Ctrl-C in a terminal reaches the supervisor only, which then
            # stops the workers in order.
            start_new_session=True,
        )
        worker = _Worker(slot.number, process, health, asyncio.get_running_loop().time())
        self._live.add(worker)
        self._spawn(self._forget_when_gone(worker))
        return worker

    async def _forget_when_gone(self, worker: _Worker) -> None:
        await worker.process.wait()
        self._live.discard(worker)
        with contextlib.suppress(OSError):
            worker.health_path.unlink()

    async def _wait_ready(self, worker: _Worker) -> bool:
        """True once `worker` itself answers /healthz; False if it exits, times out, or the
        supervisor stops first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT_S
        timeout = aiohttp.ClientTimeout(total=_PROBE_TIMEOUT_S)
        while not self._stopping and worker.process.returncode is None:
            if worker.health_path.exists():
                connector = aiohttp.UnixConnector(path=str(worker.health_path))
                async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with session.get("http://worker/healthz") as response:
                            if response.headers.get("X-Process-Id") == str(worker.pid):
                                return True
            if loop.time() > deadline:
                return False
            await asyncio.sleep(_POLL_S)  # polling interval of a readiness probe
        return False

    async def _announce(self, worker: _Worker) -> None:
        if await self._wait_ready(worker):
            log.info(messages.LOG_WORKER_SERVES, worker.slot, worker.pid)
        elif not self._stopping and worker.process.returncode is None:
            log.error(messages.LOG_WORKER_NOT_READY, worker.slot, worker.pid, READY_TIMEOUT_S)
            await self._terminate(worker)  # its slot's keeper starts another

    async def _terminate(self, worker: _Worker) -> None:
        """SIGTERM, then SIGKILL after `WORKER_STOP_TIMEOUT_S`; returns once it is gone."""
        process = worker.process
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), WORKER_STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning(messages.LOG_WORKER_KILLED, worker.pid, WORKER_STOP_TIMEOUT_S)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        await process.wait()

    async def _keep(self, slot: _Slot) -> None:
        """Restart the slot's worker whenever it dies on its own (not replaced, not stopping)."""
        loop = asyncio.get_running_loop()
        while True:
            worker = slot.current
            assert worker is not None
            status = await worker.process.wait()
            async with slot.lock:
                if self._stopping:
                    return
                if slot.current is not worker:
                    continue  # replaced by a rolling restart: watch the new one
                lived = loop.time() - worker.started
                slot.failures = 1 if lived >= STABLE_AFTER_S else slot.failures + 1
                delay = RESTART_DELAYS_S[min(slot.failures, len(RESTART_DELAYS_S)) - 1]
                log.error(
                    messages.LOG_WORKER_EXITED, slot.number, worker.pid, _describe(status), delay
                )
                await asyncio.sleep(delay)
                if self._stopping:
                    return
                slot.current = await self._launch(slot)
                self._spawn(self._announce(slot.current))

    async def _roll_when_asked(self) -> None:
        """On SIGHUP: replace every worker, one at a time, each only once its successor serves."""
        while True:
            await self._roll_requested.wait()
            self._roll_requested.clear()
            log.info(messages.LOG_WORKERS_ROLLING, len(self._slots))
            for slot in self._slots:
                async with slot.lock:
                    old = slot.current
                    assert old is not None
                    new = await self._launch(slot)
                    if not await self._wait_ready(new):
                        if not self._stopping:
                            log.error(
                                messages.LOG_WORKERS_ROLL_STOPPED, slot.number, new.pid, old.pid
                            )
                        await self._terminate(new)
                        break
                    slot.current = new
                    slot.failures = 0
                log.info(messages.LOG_WORKER_REPLACED, slot.number, old.pid, new.pid)
                # Its keeper now watches the new worker; the old one finishes what it has.
                await self._terminate(old)
            else:
                log.info(messages.LOG_WORKERS_ROLLED)
