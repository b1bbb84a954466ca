"""Quarantined addresses: events to them end ``ignored``."""

from __future__ import annotations

from collections.abc import Sequence

from tidings import ids, model
from tidings.store.database import Connection, Row, sql

_COLUMNS = "channel, address, reason, source, created_at, expires_at, event_id"


def _entry(row: Row) -> model.QuarantineEntry:
    return model.QuarantineEntry(
        channel=model.Channel(row[0]),
        address=row[1],
        reason=row[2],
        source=row[3],
        created_at=row[4],
        expires_at=row[5],
        event_id=None if row[6] is None else ids.from_db(row[6]),
    )


UPSERT = sql(
    f"""INSERT INTO quarantine ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (channel, address) DO UPDATE SET reason = excluded.reason,
          source = excluded.source, created_at = excluded.created_at,
          expires_at = excluded.expires_at, event_id = excluded.event_id"""
)


async def add(conn: Connection, entry: model.QuarantineEntry) -> None:
    """Quarantine an address (replacing an existing entry for it)."""
    await conn.execute(
        UPSERT,
        str(entry.channel),
        entry.address,
        entry.reason,
        entry.source,
        entry.created_at,
        entry.expires_at,
        None if entry.event_id is None else ids.to_db(entry.event_id),
    )


DELETE = sql("DELETE FROM quarantine WHERE channel = $1 AND address = $2")


async def remove(conn: Connection, channel: model.Channel, address: str) -> bool:
    """Release an address; False if it was not quarantined."""
    return await conn.execute(DELETE, str(channel), address) > 0


LIST = sql(
    f"""SELECT {_COLUMNS} FROM quarantine
        WHERE ($1::text IS NULL OR channel = $1) AND ($2::bigint IS NULL OR expires_at IS NULL
          OR expires_at > $2)
        ORDER BY created_at DESC, address LIMIT $3""",
    sqlite=f"""SELECT {_COLUMNS} FROM quarantine
        WHERE ($1 IS NULL OR channel = $1) AND ($2 IS NULL OR expires_at IS NULL
          OR expires_at > $2)
        ORDER BY created_at DESC, address LIMIT $3""",
)


async def list_entries(
    conn: Connection, channel: model.Channel | None, now: int | None, limit: int
) -> list[model.QuarantineEntry]:
    """Quarantine entries, newest first; with ``now``, only those still in force."""
    rows = await conn.fetch(LIST, None if channel is None else str(channel), now, limit)
    return [_entry(row) for row in rows]


def held(channel: model.Channel, column: str, now: str) -> str:
    """An SQL expression: whether the address in ``column`` is quarantined on ``channel`` at
    ``now`` (a parameter, ``$1``), for a statement that reads rows with addresses (the queue's
    claim) to say it of each of them in the same round trip."""
    return (
        f"EXISTS (SELECT 1 FROM quarantine q WHERE q.channel = '{channel}' "
        f"AND q.address = {column} AND (q.expires_at IS NULL OR q.expires_at > {now}))"
    )


FIND = sql(
    """SELECT address FROM quarantine WHERE channel = $1 AND address = ANY($2::text[])
       AND (expires_at IS NULL OR expires_at > $3)""",
    sqlite="""SELECT address FROM quarantine WHERE channel = $1
       AND address IN (SELECT value FROM json_each($2))
       AND (expires_at IS NULL OR expires_at > $3)""",
)


async def find_quarantined(
    conn: Connection, channel: model.Channel, addresses: Sequence[str], now: int
) -> set[str]:
    """Which of ``addresses`` are quarantined (and not expired) on ``channel``."""
    if not addresses:
        return set()
    rows = await conn.fetch(FIND, str(channel), list(addresses), now)
    return {row[0] for row in rows}
