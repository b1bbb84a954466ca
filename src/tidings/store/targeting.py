"""Event type targeting: reconciliation with profiles and the enrichment source, per type.

A change bumps the routing revision in the same transaction, so workers reload it with the
rest of routing.
"""

from __future__ import annotations

import msgspec

from tidings import model
from tidings.store import catalog
from tidings.store.database import Connection, Row, sql

_encode = msgspec.json.Encoder().encode
_headers = msgspec.json.Decoder(dict[str, str])

COLUMNS = (
    "event_type, reconcile_by, on_missing, enrichment_url, enrichment_method, "
    "enrichment_timeout, enrichment_ttl, enrichment_headers, updated_at"
)


def _targeting(row: Row) -> model.Targeting:
    return model.Targeting(
        event_type=row[0],
        reconcile_by=model.ReconcileBy(row[1]),
        on_missing=model.OnMissing(row[2]),
        enrichment_url=row[3] or "",
        enrichment_method=row[4],
        enrichment_timeout=float(row[5]),
        enrichment_ttl=float(row[6]),
        enrichment_headers=_headers.decode(row[7]),
        updated_at=row[8],
    )


GET = sql(f"SELECT {COLUMNS} FROM event_type_targeting WHERE event_type = $1")


async def get_targeting(conn: Connection, event_type: str) -> model.Targeting | None:
    """An event type's targeting, if it has any."""
    row = await conn.fetchrow(GET, event_type)
    return None if row is None else _targeting(row)


LIST = sql(f"SELECT {COLUMNS} FROM event_type_targeting ORDER BY event_type")


async def list_targeting(conn: Connection) -> list[model.Targeting]:
    """Every event type's targeting (what routing loads)."""
    return [_targeting(r) for r in await conn.fetch(LIST)]


PUT = sql(
    f"""INSERT INTO event_type_targeting ({COLUMNS})
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (event_type) DO UPDATE SET reconcile_by = excluded.reconcile_by,
          on_missing = excluded.on_missing, enrichment_url = excluded.enrichment_url,
          enrichment_method = excluded.enrichment_method,
          enrichment_timeout = excluded.enrichment_timeout,
          enrichment_ttl = excluded.enrichment_ttl,
          enrichment_headers = excluded.enrichment_headers, updated_at = excluded.updated_at"""
)


async def put_targeting(conn: Connection, t: model.Targeting) -> None:
    """Set an event type's targeting (replacing what it had)."""
    await conn.execute(
        PUT,
        t.event_type,
        str(t.reconcile_by),
        str(t.on_missing),
        t.enrichment_url or None,
        t.enrichment_method,
        t.enrichment_timeout,
        t.enrichment_ttl,
        _encode(t.enrichment_headers).decode(),
        t.updated_at,
    )
    await catalog.bump_routing_revision(conn)


DELETE = sql("DELETE FROM event_type_targeting WHERE event_type = $1")


async def delete_targeting(conn: Connection, event_type: str) -> bool:
    """Remove an event type's targeting; False if it had none."""
    deleted = await conn.execute(DELETE, event_type) > 0
    if deleted:
        await catalog.bump_routing_revision(conn)
    return deleted


TYPE_EXISTS = sql("SELECT 1 FROM event_types WHERE name = $1")


async def event_type_exists(conn: Connection, name: str) -> bool:
    """Whether an event type of that name exists."""
    return await conn.fetchval(TYPE_EXISTS, name) is not None
