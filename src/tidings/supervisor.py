"""Several processes on one node: ``tidings serve|api|worker --processes N``.

One Python process uses one core for its own work (the GIL); the supervisor runs N processes
so that every core takes requests and delivers. The parent

1. binds the listening socket (a port in use fails at once, as with one process),
2. migrates the database and, on an empty one, publishes the example and makes the first API
   key, once (N processes doing it at the same time would race),
3. starts N children, fresh interpreters (``python -m tidings.supervisor``, not ``fork()`` of
   a process that has run database threads) that inherit the socket: the kernel hands each new
   connection to one of the processes accepting on it,
4. waits until every child said it is ready, then supervises.

Each child is a whole Tidings process: its own database connections, its own group-commit
writer, its own event-id slot (``store.nodes``: ids stay unique across the processes of one
instance id, as across nodes), its own worker for ``serve`` (the inbound bounce listener, if
configured, runs in the first process only: its port can be bound once). On SQLite the
processes write one WAL file, taking turns at the write lock (``store.database``) and nothing
is acknowledged before its transaction committed; on PostgreSQL they are clients like any
other.

Signals: SIGTERM or SIGINT to the parent is passed on as SIGTERM to every child, which stops
as one process does (stops accepting, answers the requests in flight, commits what it
acknowledged, releases its claimed events); the parent exits 0 once all exited 0. A child
that exits on its own is restarted; if children exit :data:`MAX_RESTARTS` times within
:data:`RESTART_WINDOW` seconds, or one fails before it was ever ready (the database is
unreachable, the settings are wrong), restarting does not help: the parent stops the others
and exits 1. Children die with the parent (``PR_SET_PDEATHSIG``) if it is killed outright.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from tidings import logs, operators, server
from tidings.app import App
from tidings.settings import Settings

log = logging.getLogger("tidings")

MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
START_TIMEOUT = 120.0
_ENV = "TIDINGS_SUPERVISED_CHILD"  # not a setting: how a child learns its part
_PR_SET_PDEATHSIG = 1


class StartFailed(RuntimeError):
    """A child process exited before it was ready."""


def process_count(settings: Settings) -> int:
    """How many processes the settings ask for (0: one per CPU core)."""
    return settings.processes or len(os.sched_getaffinity(0))


@dataclasses.dataclass
class _Child:
    process: subprocess.Popen[bytes]
    ready: int  # read end of the pipe the child writes one byte to once it serves


class Supervisor:
    """The parent: starts, watches and stops the children."""

    def __init__(self, settings: Settings, *, api: bool, worker: bool, processes: int):
        self.settings = settings
        self.api = api
        self.worker = worker
        self.processes = processes
        self.sock: socket.socket | None = None
        self.children: list[_Child] = []
        self._stopping = False
        self._restarts: list[float] = []

    def run(
        self,
        announce: Callable[[str | None], None],
        first_admin: Callable[[str, str], None] | None = None,
    ) -> int:
        """Serve until SIGTERM/SIGINT; return the exit status. ``announce`` is called with
        the first start's API key (or None) once every child is ready, then ``first_admin``
        with the console admin's name and password if the first start made one."""
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            if self.api:
                self.sock = server.listen(self.settings.host, self.settings.port)
            new_key, password = _run_async(_set_up(self.settings, api=self.api))
            self.children = [self._spawn(n) for n in range(self.processes)]
            try:
                self._await_ready(self.children)
            except StartFailed as exc:
                log.error("%s", exc)
                self._stop_children()
                return 1
            if not self._stopping:
                log.info("%d processes ready", self.processes)
                announce(new_key)
                if password is not None and first_admin is not None:
                    first_admin(server.FIRST_ADMIN, password)
            return self._supervise()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.sock is not None:
                self.sock.close()

    def _stop(self, sig: int, frame: object) -> None:
        if not self._stopping:
            log.info("stopping %d processes (signal %s)", self.processes, signal.Signals(sig).name)
        self._stopping = True

    def _spawn(self, number: int) -> _Child:
        read_end, write_end = os.pipe()
        fds = [write_end]
        settings = self.settings
        if number > 0:
            # One inbound bounce listener a node: the port can be bound only once.
            settings = settings.replace(bounce_smtp_port=0)
        spec: dict[str, Any] = {
            "settings": dataclasses.asdict(settings),
            "api": self.api,
            "worker": self.worker,
            "ready_fd": write_end,
            "listen_fd": -1,
            "parent": os.getpid(),
        }
        if self.sock is not None:
            spec["listen_fd"] = self.sock.fileno()
            fds.append(self.sock.fileno())
        env = dict(os.environ)
        env[_ENV] = json.dumps(spec)
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "tidings.supervisor"],
                env=env,
                pass_fds=fds,
                # Its own process group: a Ctrl-C in the terminal reaches the parent only,
                # which passes it on as one SIGTERM (a second signal would hurry uvicorn).
                process_group=0,
            )
        finally:
            os.close(write_end)
        log.info("started process %d (pid %d)", number, process.pid)
        return _Child(process, read_end)

    def _await_ready(self, children: list[_Child]) -> None:
        waiting = {child.ready: child for child in children}
        deadline = time.monotonic() + START_TIMEOUT
        while waiting and not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StartFailed(f"{len(waiting)} processes did not start in {START_TIMEOUT} s")
            readable, _, _ = select.select(list(waiting), [], [], min(left, 0.5))
            for fd in readable:
                child = waiting.pop(fd)
                said = os.read(fd, 1)
                os.close(fd)
                child.ready = -1
                if not said:  # the pipe closed without a word: the child exited
                    code = child.process.wait()
                    raise StartFailed(f"process {child.process.pid} exited with {code} at start")

    def _supervise(self) -> int:
        status = 0
        while not self._stopping:
            for number, child in enumerate(self.children):
                code = child.process.poll()
                if code is None or self._stopping:
                    continue
                now = time.monotonic()
                self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW]
                self._restarts.append(now)
                if len(self._restarts) > MAX_RESTARTS:
                    log.error(
                        "process %d (pid %d) exited with %s; %d exits within %.0f s, giving up",
                        number,
                        child.process.pid,
                        code,
                        len(self._restarts),
                        RESTART_WINDOW,
                    )
                    self._stopping = True
                    status = 1
                    break
                log.warning(
                    "process %d (pid %d) exited with %s; starting another",
                    number,
                    child.process.pid,
                    code,
                )
                if child.ready >= 0:
                    os.close(child.ready)
                self.children[number] = self._spawn(number)
            time.sleep(0.1)
        return max(status, self._stop_children())

    def _stop_children(self) -> int:
        """SIGTERM to every child; wait for them (killing those that overstay); 0 if every
        child that was still running exited 0."""
        if self.sock is not None:
            # Our copy of the listening socket would keep it open after the children closed
            # theirs: new connections would wait in its queue instead of being refused.
            self.sock.close()
            self.sock = None
        live = [c for c in self.children if c.process.poll() is None]
        for child in live:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_grace + 30
        status = 0
        for child in live:
            process = child.process
            try:
                code = process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("process %d did not stop in time; killing it", process.pid)
                process.kill()
                code = process.wait()
            # A child still starting has no handler yet: SIGTERM ends it before it took or
            # claimed anything, which is a clean stop too.
            starting = child.ready >= 0 and code == -signal.SIGTERM
            if code != 0 and not starting:
                log.error("process %d exited with %s", process.pid, code)
                status = 1
        for child in self.children:
            if child.ready >= 0:
                os.close(child.ready)
                child.ready = -1
        return status


async def _set_up(settings: Settings, *, api: bool) -> tuple[str | None, str | None]:
    """Migrate once, and on an empty database make the first start's example, API key and
    console admin: (the key, the admin's password), each None if not made."""
    async with App.running(settings, run_worker=False) as app:
        if not api:
            return None, None
        key = await server.first_start(app)
        return key, await operators.first_admin(app.db, server.FIRST_ADMIN)


def _run_async(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency of uvicorn[standard]
        return asyncio.run(coro)


# ------------------------------------------------------------------------------ a child


def _die_with_parent(parent: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        sys.exit(1)


def child_main() -> None:
    """A child process: serve with the inherited socket until SIGTERM."""
    spec = json.loads(os.environ.pop(_ENV))
    _die_with_parent(spec["parent"])
    settings = Settings.from_mapping(spec["settings"])
    logs.configure(settings.log_level, settings.log_format)
    ready_fd: int = spec["ready_fd"]
    sock = socket.socket(fileno=spec["listen_fd"]) if spec["listen_fd"] >= 0 else None

    def serving() -> None:
        os.write(ready_fd, b"+")
        os.close(ready_fd)

    _run_async(
        server.run(
            settings,
            api=spec["api"],
            worker=spec["worker"],
            sock=sock,
            setup=False,
            serving=serving,
        )
    )


if __name__ == "__main__":
    child_main()
