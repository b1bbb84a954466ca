"""The two databases behind one small async interface.

Queries are plain SQL written once with ``$1``-style parameters (:func:`sql`); where the
dialects differ, both texts sit side by side in the query's module. A query runs on a
:class:`Connection` got from :meth:`Database.transaction` (writes) or
:meth:`Database.connection` (reads).

- **SQLite** (the embedded default): one writer connection on its own thread, so writes are
  serialised in-process and ``BEGIN IMMEDIATE`` takes the file lock only for other
  processes; readers use a small pool of connections on threads of their own, reading WAL
  snapshots without blocking the writer (the shape of datasette's ``database.py``). Several
  processes on one file (``--processes``) take turns to write through an ``flock`` on a file
  beside the database (``<file>-writer``): the kernel wakes the next writer the moment the
  lock is free, where SQLite's own busy handler polls with sleeps of up to 100 ms, which
  measured p99 latencies of ~650 ms with two processes.
- **PostgreSQL**: an asyncpg pool; statements are prepared and cached by asyncpg.

We call the drivers directly rather than through SQLAlchemy's async engine: tables and
migrations are SQLAlchemy's (``schema.py``), but the per-statement cost of the async engine
showed on the ingest and claim paths (see BENCHMARKS.md).

Errors: a database that cannot be reached raises :class:`Unavailable` (the API answers 503 with
``Retry-After``); everything else propagates as the driver raised it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

import asyncpg
import msgspec

T = TypeVar("T")
Row = Sequence[Any]


class Unavailable(RuntimeError):
    """The database cannot be reached right now; the operation changed nothing."""


class Query:
    """One statement in both dialects."""

    __slots__ = ("postgresql", "sqlite")

    def __init__(self, postgresql: str, sqlite: str):
        self.postgresql = postgresql
        self.sqlite = sqlite

    def __repr__(self) -> str:
        return f"Query({self.postgresql!r})"


class OnlyIf:
    """The rows of a :meth:`Database.write_many` step, built and written only if ``guard``
    finds a row in the same transaction (for a step that most often writes nothing: the rows
    are not even built then)."""

    __slots__ = ("build", "guard")

    def __init__(self, guard: Query, build: Callable[[], Sequence[Sequence[Any]]]):
        self.guard = guard
        self.build = build


#: What one :meth:`Database.write_many` step writes: the statement and its parameter rows.
Step = tuple[Query, Sequence[Sequence[Any]] | OnlyIf]


_PARAM = re.compile(r"\$(\d+)")


def sql(text: str, *, sqlite: str | None = None) -> Query:
    """A statement written with ``$n`` parameters; ``sqlite`` overrides the SQLite text."""
    text = " ".join(text.split())
    lite = " ".join(sqlite.split()) if sqlite is not None else text
    return Query(text, _PARAM.sub(r"?\1", lite))


class Connection(Protocol):
    """What store functions run their queries on.

    A ``list`` parameter is an array: PostgreSQL receives it as one (``= ANY($1::bigint[])``),
    SQLite as JSON text to read with ``json_each($1)``.
    """

    dialect: str

    async def execute(self, query: Query, *args: Any) -> int:
        """Run one statement; return the number of rows it changed."""
        ...

    async def executemany(self, query: Query, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each parameter row."""
        ...

    async def fetch(self, query: Query, *args: Any) -> list[Row]:
        """Run a query and return all rows."""
        ...

    async def fetchrow(self, query: Query, *args: Any) -> Row | None:
        """Run a query and return its first row, if any."""
        ...

    async def fetchval(self, query: Query, *args: Any) -> Any:
        """Run a query and return the first column of its first row (None if no row)."""
        ...


class Database(Protocol):
    """A connected database: transactions for writes, connections for reads."""

    dialect: str
    url: str

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Connection]:
        """A write transaction, committed when the block ends without an exception."""
        ...

    def connection(self) -> contextlib.AbstractAsyncContextManager[Connection]:
        """A connection for reads (autocommit; each statement sees committed data)."""
        ...

    async def write_many(self, steps: Sequence[Step]) -> None:
        """One transaction running each ``(statement, rows)`` as an ``executemany``, in a
        single round trip to the writer (the hot path of group commits: on SQLite each hop to
        the writer thread waits for a turn of a busy event loop). Rows given as
        :class:`OnlyIf` are built and written only if its guard finds a row."""
        ...

    async def write_fetch(self, query: Query, *args: Any) -> list[Row]:
        """One writing statement (``UPDATE ... RETURNING``), its own transaction, its rows:
        a single round trip to the writer."""
        ...

    async def close(self) -> None:
        """Release every connection."""
        ...


async def connect(url: str, *, synchronous: str = "FULL") -> Database:
    """Open the database a URL names (``sqlite:///path`` or ``postgresql://...``)."""
    if url.startswith("sqlite:"):
        db: Database = await SQLiteDatabase.open(sqlite_path(url), synchronous=synchronous)
        return db
    return await PostgresDatabase.open(url)


def sqlite_path(url: str) -> str:
    """The file path in a ``sqlite:///relative.db`` or ``sqlite:////abs/path.db`` URL."""
    path = url.split(":", 1)[1]
    if path.startswith("///"):
        path = path[3:]
    elif path.startswith("//"):
        path = path[2:]
    return unquote(path) or ":memory:"


def postgres_dsn(url: str) -> str:
    """A libpq-style URL asyncpg accepts (``postgres://`` and ``+driver`` forms allowed)."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme == "postgres":
        scheme = "postgresql"
    return parts._replace(scheme=scheme).geturl()


def unnest(query: Query, rows: Sequence[Sequence[Any]]) -> Step:
    """A step writing ``rows`` with one run of ``query``, a PostgreSQL statement that takes
    each column as an array (``unnest($1::bigint[], ...)``); no rows, no run. A single row
    is sent the same way (one plan for any batch size)."""
    return (query, [[list(column) for column in zip(*rows, strict=True)]] if rows else [])


async def run_steps(conn: Connection, steps: Sequence[Step]) -> None:
    """Run :meth:`Database.write_many` steps on a connection already in a transaction."""
    for query, rows in steps:
        if isinstance(rows, OnlyIf):
            if await conn.fetchrow(rows.guard) is None:
                continue
            rows = rows.build()
        if rows:
            await conn.executemany(query, rows)


# ---------------------------------------------------------------------------- SQLite

_json_encode = msgspec.json.Encoder().encode


_MAX_VARIABLES = 32_766  # SQLITE_MAX_VARIABLE_NUMBER since SQLite 3.32
_VALUES = re.compile(r"^(INSERT INTO \w+ \([\w, ]+\) VALUES )\((?:\?\d+, )*\?\d+\)$")


@functools.lru_cache(maxsize=64)
def _values_form(text: str) -> str | None:
    """``INSERT INTO t (a, b) VALUES `` if ``text`` is a one-row ``INSERT ... VALUES (?1, ?2)``."""
    match = _VALUES.match(text)
    return match.group(1) if match else None


@functools.lru_cache(maxsize=64)
def _row_placeholders(width: int) -> str:
    return "(" + ",".join("?" * width) + ")"


def _adapt(args: Sequence[Any]) -> Sequence[Any]:
    """Lists become JSON arrays (SQLite has no array parameters)."""
    if any(isinstance(a, list) for a in args):
        return [_json_encode(a).decode() if isinstance(a, list) else a for a in args]
    return args


class _SQLiteConnection:
    """A sqlite3 connection confined to its own thread."""

    dialect = "sqlite"

    def __init__(self, path: str, synchronous: str, *, readonly: bool = False):
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tidings-sqlite")
        self._path = path
        self._synchronous = synchronous
        self._readonly = readonly
        self._raw: sqlite3.Connection | None = None
        self.broken = False
        self._turn = -1  # the writer's lock file (several processes write one database)

    def _open(self) -> None:
        raw = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        raw.execute("PRAGMA busy_timeout = 30000")
        if not self._readonly:
            raw.execute("PRAGMA journal_mode = WAL")
        raw.execute(f"PRAGMA synchronous = {self._synchronous}")
        raw.execute("PRAGMA foreign_keys = ON")
        self._raw = raw
        if not self._readonly and self._path != ":memory:":
            self._turn = os.open(f"{self._path}-writer", os.O_RDWR | os.O_CREAT, 0o644)

    def _take_turn(self) -> None:
        if self._turn >= 0:
            fcntl.flock(self._turn, fcntl.LOCK_EX)

    def _give_turn(self) -> None:
        if self._turn >= 0:
            fcntl.flock(self._turn, fcntl.LOCK_UN)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.OperationalError as exc:
            if "unable to open" in str(exc) or "disk I/O" in str(exc):
                raise Unavailable(str(exc)) from exc
            raise

    async def open(self) -> None:
        await self._run(self._open)

    def _execute(self, text: str, args: Sequence[Any]) -> int:
        assert self._raw is not None
        return self._raw.execute(text, args).rowcount

    def _executemany(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        assert self._raw is not None
        self._raw.executemany(text, rows)

    def _fetch(self, text: str, args: Sequence[Any]) -> list[Row]:
        assert self._raw is not None
        return self._raw.execute(text, args).fetchall()

    def _write_many(self, steps: Sequence[tuple[str, Sequence[Sequence[Any]] | OnlyIf]]) -> None:
        self._take_turn()
        try:
            self._write_steps(steps)
        finally:
            self._give_turn()

    def _write_steps(self, steps: Sequence[tuple[str, Sequence[Sequence[Any]] | OnlyIf]]) -> None:
        raw = self._raw
        assert raw is not None
        if len(steps) == 1 and not isinstance(rows := steps[0][1], OnlyIf):
            text = steps[0][0]
            values = _values_form(text)
            width = len(rows[0]) if rows else 0
            if values is not None and width and len(rows) * width <= _MAX_VARIABLES:
                # One multi-row INSERT: one statement is its own atomic transaction, and one
                # sqlite3_step means this thread takes the GIL back once, not once per row
                # (each retake waits for a busy event loop thread to let go of it).
                statement = values + ",".join([_row_placeholders(width)] * len(rows))
                raw.execute(statement, [v for row in rows for v in row])
                return
        raw.execute("BEGIN IMMEDIATE")
        try:
            for text, rows in steps:
                if isinstance(rows, OnlyIf):
                    if raw.execute(rows.guard.sqlite).fetchone() is None:
                        continue
                    rows = rows.build()
                raw.executemany(text, rows)
        except BaseException:
            raw.execute("ROLLBACK")
            raise
        raw.execute("COMMIT")

    async def write_many(self, steps: Sequence[Step]) -> None:
        await self._run(self._write_many, [(q.sqlite, rows) for q, rows in steps if rows])

    def _write_fetch(self, text: str, args: Sequence[Any]) -> list[Row]:
        self._take_turn()
        try:
            return self._fetch(text, args)
        finally:
            self._give_turn()

    def _begin(self) -> None:
        assert self._raw is not None
        self._take_turn()
        try:
            self._raw.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._give_turn()
            raise

    def _end(self, text: str) -> None:
        assert self._raw is not None
        try:
            self._raw.execute(text)
        finally:
            self._give_turn()

    async def write_fetch(self, query: Query, *args: Any) -> list[Row]:
        # Autocommit: the statement is its own transaction, committed when fully stepped.
        return await self._run(self._write_fetch, query.sqlite, _adapt(args))

    async def begin(self) -> None:
        """``BEGIN IMMEDIATE``, once it is this process's turn to write."""
        await self._run(self._begin)

    async def end(self, commit: bool) -> None:
        """``COMMIT`` or ``ROLLBACK``, and let the next process write."""
        await self._run(self._end, "COMMIT" if commit else "ROLLBACK")

    async def execute(self, query: Query, *args: Any) -> int:
        return await self._run(self._execute, query.sqlite, _adapt(args))

    async def executemany(self, query: Query, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            await self._run(self._executemany, query.sqlite, rows)

    async def fetch(self, query: Query, *args: Any) -> list[Row]:
        return await self._run(self._fetch, query.sqlite, _adapt(args))

    async def fetchrow(self, query: Query, *args: Any) -> Row | None:
        rows = await self.fetch(query, *args)
        return rows[0] if rows else None

    async def fetchval(self, query: Query, *args: Any) -> Any:
        row = await self.fetchrow(query, *args)
        return None if row is None else row[0]

    async def close(self) -> None:
        if self._raw is not None:
            await self._run(self._raw.close)
            self._raw = None
        if self._turn >= 0:
            os.close(self._turn)
            self._turn = -1
        self._executor.shutdown(wait=False)


class SQLiteDatabase:
    """The embedded database: one writer thread, a few reader threads, WAL mode."""

    dialect = "sqlite"

    def __init__(self, path: str, synchronous: str, readers: int):
        self.url = f"sqlite:///{path}"
        self.path = path
        self._synchronous = synchronous
        self._writer = _SQLiteConnection(path, synchronous)
        self._write_lock = asyncio.Lock()
        self._readers: asyncio.Queue[_SQLiteConnection] = asyncio.Queue()
        self._reader_count = readers

    @classmethod
    async def open(
        cls, path: str, *, synchronous: str = "FULL", readers: int = 3
    ) -> SQLiteDatabase:
        """Open (creating if needed) the database file."""
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = cls(path, synchronous, readers if path != ":memory:" else 0)
        await db._writer.open()
        for _ in range(db._reader_count):
            reader = _SQLiteConnection(path, synchronous, readonly=True)
            await reader.open()
            db._readers.put_nowait(reader)
        return db

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self._write_lock:
            conn = self._writer
            began = asyncio.ensure_future(conn.begin())
            try:
                await asyncio.shield(began)
            except asyncio.CancelledError:
                # The writer thread goes on with BEGIN: end what it began, or this process
                # would keep the write turn (and every other process waiting) for good.
                with contextlib.suppress(Exception):
                    await began
                    await conn.end(commit=False)
                raise
            try:
                yield conn
            except BaseException:
                await asyncio.shield(conn.end(commit=False))
                raise
            else:
                await asyncio.shield(conn.end(commit=True))

    async def write_many(self, steps: Sequence[Step]) -> None:
        async with self._write_lock:
            await self._writer.write_many(steps)

    async def write_fetch(self, query: Query, *args: Any) -> list[Row]:
        async with self._write_lock:
            return await self._writer.write_fetch(query, *args)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        if self._reader_count == 0:
            async with self._write_lock:
                yield self._writer
            return
        conn = await self._readers.get()
        try:
            yield conn
        finally:
            self._readers.put_nowait(conn)

    async def close(self) -> None:
        async with self._write_lock:
            await self._writer.close()
        while not self._readers.empty():
            await self._readers.get_nowait().close()


# ------------------------------------------------------------------------ PostgreSQL

_UNREACHABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
)


class _PostgresConnection:
    dialect = "postgresql"

    def __init__(self, raw: asyncpg.Connection):
        self._raw = raw

    async def execute(self, query: Query, *args: Any) -> int:
        status = await self._raw.execute(query.postgresql, *args)
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def executemany(self, query: Query, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            await self._raw.executemany(query.postgresql, rows)

    async def fetch(self, query: Query, *args: Any) -> list[Row]:
        return list(await self._raw.fetch(query.postgresql, *args))

    async def fetchrow(self, query: Query, *args: Any) -> Row | None:
        row: Row | None = await self._raw.fetchrow(query.postgresql, *args)
        return row

    async def fetchval(self, query: Query, *args: Any) -> Any:
        return await self._raw.fetchval(query.postgresql, *args)


async def _keep_session(raw: asyncpg.Connection) -> None:
    """Give a connection back to the pool as it is. asyncpg's default reset sends
    ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on every release: one more
    round trip, awaited, at the end of every read and transaction (a worker's claim took two).
    Tidings leaves no session state on pooled connections (no ``SET``, no session advisory
    lock, no cursor outside a transaction; ``LISTEN`` has its own connection,
    :mod:`tidings.store.notify`), and asyncpg still rolls back an open transaction before
    calling this."""


class PostgresDatabase:
    """PostgreSQL through an asyncpg pool."""

    dialect = "postgresql"

    def __init__(self, url: str, pool: asyncpg.Pool):
        self.url = url
        self.pool = pool

    @classmethod
    async def open(cls, url: str, *, min_size: int = 2, max_size: int = 10) -> PostgresDatabase:
        """Connect a pool; raise :class:`Unavailable` if the server cannot be reached."""
        try:
            pool = await asyncpg.create_pool(
                postgres_dsn(url),
                min_size=min_size,
                max_size=max_size,
                command_timeout=60,
                reset=_keep_session,
            )
        except _UNREACHABLE as exc:
            raise Unavailable(f"cannot reach PostgreSQL: {exc}") from exc
        return cls(url, pool)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        try:
            async with self.pool.acquire() as raw, raw.transaction():
                yield _PostgresConnection(raw)
        except _UNREACHABLE as exc:
            raise Unavailable(f"PostgreSQL is unavailable: {exc}") from exc

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        try:
            async with self.pool.acquire() as raw:
                yield _PostgresConnection(raw)
        except _UNREACHABLE as exc:
            raise Unavailable(f"PostgreSQL is unavailable: {exc}") from exc

    async def write_many(self, steps: Sequence[Step]) -> None:
        async with self.transaction() as conn:
            await run_steps(conn, steps)

    async def write_fetch(self, query: Query, *args: Any) -> list[Row]:
        async with self.connection() as conn:  # autocommit: one statement, one transaction
            return await conn.fetch(query, *args)

    async def close(self) -> None:
        await self.pool.close()


__all__ = [
    "Connection",
    "Database",
    "OnlyIf",
    "PostgresDatabase",
    "Query",
    "SQLiteDatabase",
    "Step",
    "Unavailable",
    "connect",
    "run_steps",
    "sql",
    "unnest",
]
