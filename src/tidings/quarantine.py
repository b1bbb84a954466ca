"""Quarantine operations (API and CLI call these): addresses Tidings will not send to."""

from __future__ import annotations

from tidings import clock, model
from tidings.store import quarantine as store
from tidings.store.database import Database


async def add(
    db: Database,
    channel: model.Channel,
    address: str,
    *,
    reason: str,
    source: str = "operator",
    expires_at: int | None = None,
) -> model.QuarantineEntry:
    """Quarantine an address (events to it end ``ignored``)."""
    entry = model.QuarantineEntry(
        channel=channel,
        address=address.strip(),
        reason=reason,
        source=source,
        created_at=clock.now_us(),
        expires_at=expires_at,
    )
    async with db.transaction() as conn:
        await store.add(conn, entry)
    return entry


async def remove(db: Database, channel: model.Channel, address: str) -> bool:
    """Release an address; False if it was not quarantined."""
    async with db.transaction() as conn:
        return await store.remove(conn, channel, address.strip())


async def entries(
    db: Database,
    channel: model.Channel | None = None,
    *,
    include_expired: bool = False,
    limit: int = 1000,
) -> list[model.QuarantineEntry]:
    """Quarantined addresses, newest first."""
    async with db.connection() as conn:
        return await store.list_entries(
            conn, channel, None if include_expired else clock.now_us(), limit
        )
