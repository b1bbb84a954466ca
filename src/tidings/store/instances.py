"""The execution instances a control instance publishes to, and what each delivery did."""

from __future__ import annotations

import msgspec

from tidings import model
from tidings.store.database import Connection, Row, sql


class InstanceRow(msgspec.Struct, frozen=True):
    """A registered execution instance (``credential`` is its ``publish`` API key)."""

    name: str
    base_url: str
    credential: str
    created_at: int
    contacted_at: int | None
    last_outcome: str
    last_error: str


class DeliveryRow(msgspec.Struct, frozen=True):
    """One delivery of a publication (or an unpublication) to an instance."""

    id: int
    instance: str
    audit_id: int | None
    event_type: str
    channel: model.Channel
    action: str
    content_hash: str
    outcome: str
    http_status: int | None
    error: str
    attempts: int
    created_at: int


_COLUMNS = "name, base_url, credential, created_at, contacted_at, last_outcome, last_error"

INSERT = sql(
    f"""INSERT INTO instances ({_COLUMNS}) VALUES ($1, $2, $3, $4, NULL, '', '')
        ON CONFLICT (name) DO NOTHING"""
)


async def insert_instance(
    conn: Connection, name: str, base_url: str, credential: str, now: int
) -> bool:
    """Register an instance; False if the name is taken."""
    return await conn.execute(INSERT, name, base_url, credential, now) > 0


def _instance(row: Row) -> InstanceRow:
    return InstanceRow(
        str(row[0]),
        str(row[1]),
        str(row[2]),
        int(row[3]),
        None if row[4] is None else int(row[4]),
        str(row[5]),
        str(row[6]),
    )


GET = sql(f"SELECT {_COLUMNS} FROM instances WHERE name = $1")
LIST = sql(f"SELECT {_COLUMNS} FROM instances ORDER BY name")


async def get_instance(conn: Connection, name: str) -> InstanceRow | None:
    """One instance by name."""
    row = await conn.fetchrow(GET, name)
    return None if row is None else _instance(row)


async def list_instances(conn: Connection) -> list[InstanceRow]:
    """Every registered instance, by name."""
    return [_instance(r) for r in await conn.fetch(LIST)]


DELETE = sql("DELETE FROM instances WHERE name = $1")


async def delete_instance(conn: Connection, name: str) -> bool:
    """Forget an instance (its deliveries stay, for the record); False if unknown."""
    return await conn.execute(DELETE, name) > 0


MARK = sql(
    """UPDATE instances SET last_outcome = $2, last_error = $3,
       contacted_at = COALESCE($4, contacted_at) WHERE name = $1"""
)


async def mark_instance(
    conn: Connection, name: str, outcome: str, error: str, contacted_at: int | None
) -> None:
    """Record an instance's last outcome (and when it last answered, if it did)."""
    await conn.execute(MARK, name, outcome, error, contacted_at)


INSERT_DELIVERY = sql(
    """INSERT INTO instance_deliveries (instance, audit_id, event_type, channel, action,
       content_hash, outcome, http_status, error, attempts, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id"""
)


async def add_delivery(conn: Connection, d: DeliveryRow) -> DeliveryRow:
    """Record one delivery's result (``d.id`` is ignored); it, with its id."""
    found = await conn.fetchval(
        INSERT_DELIVERY,
        d.instance,
        d.audit_id,
        d.event_type,
        str(d.channel),
        d.action,
        d.content_hash,
        d.outcome,
        d.http_status,
        d.error,
        d.attempts,
        d.created_at,
    )
    return msgspec.structs.replace(d, id=int(found))


_DELIVERY_COLUMNS = """id, instance, audit_id, event_type, channel, action, content_hash,
    outcome, http_status, error, attempts, created_at"""

LIST_DELIVERIES = sql(
    f"""SELECT {_DELIVERY_COLUMNS} FROM instance_deliveries
        WHERE instance = $1 AND created_at >= $3 ORDER BY id DESC LIMIT $2"""
)


def _delivery(r: Row) -> DeliveryRow:
    return DeliveryRow(
        int(r[0]),
        str(r[1]),
        None if r[2] is None else int(r[2]),
        str(r[3]),
        model.Channel(r[4]),
        str(r[5]),
        str(r[6]),
        str(r[7]),
        None if r[8] is None else int(r[8]),
        str(r[9]),
        int(r[10]),
        int(r[11]),
    )


async def list_deliveries(
    conn: Connection, instance: str, limit: int, since: int = 0
) -> list[DeliveryRow]:
    """An instance's deliveries made at ``since`` or later, newest first."""
    return [_delivery(r) for r in await conn.fetch(LIST_DELIVERIES, instance, limit, since)]


DELIVERED_FOR_AUDIT = sql(
    """SELECT DISTINCT audit_id, instance FROM instance_deliveries
       WHERE outcome = 'ok' AND audit_id >= $1 AND audit_id <= $2 ORDER BY instance"""
)


async def delivered_for_audit(conn: Connection, lowest: int, highest: int) -> dict[int, list[str]]:
    """The instances that got each audit line's publication (audit ids in a range)."""
    found: dict[int, list[str]] = {}
    for r in await conn.fetch(DELIVERED_FOR_AUDIT, lowest, highest):
        found.setdefault(int(r[0]), []).append(str(r[1]))
    return found
