"""Schema migrations (Alembic), run from code: ``tidings migrate`` and on start-up."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool
from sqlalchemy.ext.asyncio import create_async_engine

from tidings.store import database

_HERE = Path(__file__).parent / "migrations"


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy URL (with driver) for a Tidings database URL."""
    if url.startswith("sqlite:"):
        return f"sqlite:///{database.sqlite_path(url)}"
    dsn = database.postgres_dsn(url)
    return "postgresql+asyncpg://" + dsn.split("://", 1)[1]


def alembic_config(url: str) -> Config:
    """An Alembic configuration pointing at our migrations and at ``url``."""
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return config


def head() -> str:
    """The newest migration's revision id."""
    revision = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert revision is not None
    return revision


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (blocking; run it in a thread)."""
    if url.startswith("sqlite:"):
        path = database.sqlite_path(url)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)


async def current(url: str) -> str | None:
    """The revision the database at ``url`` is at (None when never migrated)."""
    target = sqlalchemy_url(url)
    if target.startswith("sqlite"):

        def read() -> str | None:
            engine = create_engine(target, poolclass=pool.NullPool)
            with engine.connect() as conn:
                rev = MigrationContext.configure(conn).get_current_revision()
            engine.dispose()
            return rev

        return await asyncio.to_thread(read)
    engine = create_async_engine(target, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda c: MigrationContext.configure(c).get_current_revision()
            )
    finally:
        await engine.dispose()
