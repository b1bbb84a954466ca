"""Event type operations shared by the API, the CLI and (later) the console."""

from __future__ import annotations

from tidings import clock, model
from tidings.store import catalog as store
from tidings.store import queue
from tidings.store.database import Database


class UnknownEventType(LookupError):
    """No event type has that name."""


async def event_types(db: Database) -> list[model.EventType]:
    """Every event type."""
    async with db.connection() as conn:
        return await store.list_event_types(conn)


async def pause(db: Database, name: str) -> None:
    """Pause an event type: its events wait, ``paused``, until it is resumed."""
    async with db.transaction() as conn:
        if not await store.set_paused(conn, name, True, clock.now_us()):
            raise UnknownEventType(name)


async def resume(db: Database, name: str) -> int:
    """Resume an event type; its paused events go back to ``pending``. Returns how many."""
    now = clock.now_us()
    async with db.transaction() as conn:
        if not await store.set_paused(conn, name, False, now):
            raise UnknownEventType(name)
        return await queue.resume_paused(conn, name, now)
