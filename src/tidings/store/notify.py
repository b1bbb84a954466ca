"""Wake-ups across processes on PostgreSQL: ``NOTIFY`` after commits, ``LISTEN`` in every
worker process.

Two channels: ``tidings_events`` (new events were committed: wake the workers) and
``tidings_callbacks`` (status callbacks were enqueued: wake the callback senders). In one
process the committer wakes its own worker or sender directly (``App._on_commit``,
``App._on_callbacks``); other processes learn of it through PostgreSQL. A :class:`Notifier`
sends ``pg_notify(channel, '')`` right after each commit, off the request's path and
coalesced (one notification in flight, at most one more owed, however many commits happen
meanwhile). :class:`Listener` keeps a connection of its own (not from the pool: a pooled
connection is reset on release, which ends its ``LISTEN``), calls ``on_notify`` for each
notification on its channel, and reconnects when the connection goes; after each
(re)connection it calls every ``on_notify`` once too, since notifications sent while it was
away are lost.

Notifications are only a shortcut: a lost one (a crash between commit and ``NOTIFY``, a
listener reconnecting) delays events until the worker's next poll, never loses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg

from tidings.store.database import Database, Unavailable, postgres_dsn, sql

log = logging.getLogger("tidings.notify")

CHANNEL = "tidings_events"
CALLBACKS = "tidings_callbacks"
APPLICATION_NAME = "tidings-listener"
NOTIFY = sql(f"SELECT pg_notify('{CHANNEL}', '')")
NOTIFY_CALLBACKS = sql(f"SELECT pg_notify('{CALLBACKS}', '')")
_NOTIFY = {CHANNEL: NOTIFY, CALLBACKS: NOTIFY_CALLBACKS}


class Notifier:
    """Sends a notification on ``channel`` after commits (PostgreSQL only), at most one at a
    time."""

    def __init__(self, db: Database, channel: str = CHANNEL):
        self.db = db
        self.channel = channel
        self._query = _NOTIFY[channel]
        self._owed = False
        self._task: asyncio.Task[None] | None = None
        self.sent = 0

    def poke(self) -> None:
        """A commit of new events happened: notify (soon, without waiting for it)."""
        self._owed = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._send(), name="tidings-notify")

    async def _send(self) -> None:
        while self._owed:
            self._owed = False
            try:
                async with self.db.connection() as conn:
                    await conn.execute(self._query)
                self.sent += 1
            except (Unavailable, asyncpg.PostgresError) as exc:
                # Workers will find the events at their next poll.
                log.debug("cannot notify: %s", exc)
                return

    async def aclose(self) -> None:
        """Send what is owed, then stop."""
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task


class Listener:
    """A dedicated connection listening for new events (and, with ``also``, on other
    channels: ``{channel: on_notify}``); reconnects until closed."""

    def __init__(
        self,
        url: str,
        on_notify: Callable[[], None],
        *,
        also: Mapping[str, Callable[[], None]] | None = None,
        check_every: float = 10.0,
        retry_min: float = 0.2,
        retry_max: float = 5.0,
    ):
        self.url = url
        self.on_notify = on_notify
        self.handlers: dict[str, Callable[[], None]] = {CHANNEL: on_notify, **(also or {})}
        self.check_every = check_every
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.connected = asyncio.Event()
        self.connections = 0
        self.notifications = 0
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Listen in the background."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="tidings-listen")

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self.notifications += 1
        handler = self.handlers.get(channel)
        if handler is not None:
            handler()

    async def _run(self) -> None:
        delay = self.retry_min
        while True:
            try:
                await self._listen()
                delay = self.retry_min  # it was up; the next attempt comes at once
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # whatever the driver raises, keep trying
                if self.connected.is_set() or self.connections == 0:
                    log.warning("notification listener lost the database: %s", exc)
                self.connected.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
            finally:
                await self._drop()

    async def _listen(self) -> None:
        conn = await asyncpg.connect(
            postgres_dsn(self.url),
            timeout=10,
            server_settings={"application_name": APPLICATION_NAME},
        )
        self._conn = conn
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _: lost.set())
        for channel in self.handlers:
            await conn.add_listener(channel, self._notified)
        self.connections += 1
        if self.connections > 1:
            log.info("notification listener reconnected")
        self.connected.set()
        for handler in self.handlers.values():
            handler()  # anything committed while we were not listening
        while not conn.is_closed():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), self.check_every)
                break
            # A connection can die silently (no FIN from a vanished host): ask.
            await conn.fetchval("SELECT 1", timeout=self.check_every)
        raise ConnectionError("listener connection closed")

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def aclose(self) -> None:
        """Stop listening and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._drop()
