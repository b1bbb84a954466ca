"""Shared fixtures: databases (SQLite and PostgreSQL), settings, a running App.

PostgreSQL: ``TIDINGS_TEST_POSTGRES_URL`` names a server (default: 127.0.0.1:5432 as
``postgres``, then ``root``, trust auth). Each test run creates its own database there and drops
it at the end; between tests its tables are emptied.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from tidings.app import App
from tidings.settings import Settings
from tidings.store import database, migrate, schema

_CANDIDATES = [
    "postgresql://postgres@127.0.0.1:5432/postgres",
    "postgresql://root@127.0.0.1:5432/postgres",
]


async def _admin_url() -> str:
    given = os.environ.get("TIDINGS_TEST_POSTGRES_URL")
    errors = []
    for url in [given] if given else _CANDIDATES:
        try:
            conn = await asyncpg.connect(url, timeout=5)
        except (OSError, asyncpg.PostgresError) as exc:
            errors.append(f"{url}: {exc}")
            continue
        await conn.close()
        return url
    raise RuntimeError("no PostgreSQL server for the tests: " + "; ".join(errors))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of its own for this test run, migrated to the head revision."""
    admin = asyncio.run(_admin_url())
    name = f"tidings_test_{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        conn = await asyncpg.connect(admin)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    asyncio.run(create())
    url = admin.rsplit("/", 1)[0] + f"/{name}"
    migrate.upgrade(url)
    try:
        yield url
    finally:
        asyncio.run(drop())


async def empty_postgres(url: str) -> None:
    """Delete every row (keeping the schema and the migration revision)."""
    conn = await asyncpg.connect(url)
    try:
        tables = ", ".join(t.name for t in schema.metadata.sorted_tables)
        await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY")
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'tidings.db'}"
        migrate.upgrade(url)
        return url
    url: str = request.getfixturevalue("postgres_url")
    asyncio.run(empty_postgres(url))
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated, empty SQLite database."""
    url = f"sqlite:///{tmp_path / 'tidings.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[database.Database]:
    """A connected database of each kind."""
    connected = await database.connect(database_url)
    try:
        yield connected
    finally:
        await connected.close()


def test_settings(database_url: str, **overrides: object) -> Settings:
    """Settings for tests: fast polling and retries, a free port."""
    values: dict[str, object] = {
        "database_url": database_url,
        "poll_interval": 0.05,
        "retry_base": 0.05,
        "retry_max": 0.2,
        "lease_seconds": 5.0,
        "shutdown_grace": 2.0,
        "port": 0,
    }
    values.update(overrides)
    return Settings.from_mapping(values)


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[App]:
    """A running App (worker included) on each kind of database, email to the outbox."""
    async with App.running(test_settings(database_url), migrate_schema=False) as running:
        yield running
