"""Bounces: the delivery a bounce is about, the bounces kept, soft bounces counted."""

from __future__ import annotations

from tidings import ids, model
from tidings.store.database import Connection, Row, sql

_COLUMNS = "id, event_id, channel, address, message_id, kind, status, diagnostic, received_at"


def _bounce(row: Row) -> model.Bounce:
    return model.Bounce(
        id=int(row[0]),
        event_id=ids.from_db(row[1]),
        channel=model.Channel(row[2]),
        address=row[3],
        message_id=row[4],
        kind=model.BounceKind(row[5]),
        status=row[6],
        diagnostic=row[7],
        received_at=row[8],
    )


_DELIVERY_COLUMNS = """SELECT event_id, attempt, channel, transport, address, message_id,
       outcome, reply, render_us, send_us, created_at FROM deliveries"""
FIND_DELIVERY = sql(
    _DELIVERY_COLUMNS
    + """ WHERE event_id = $1 AND message_id = $2 AND outcome <> 'bounced'
       ORDER BY id DESC LIMIT 1"""
)
FIND_EMAIL_DELIVERY = sql(
    _DELIVERY_COLUMNS
    + """ WHERE event_id = $1 AND channel = 'email' AND outcome = 'delivered'
       ORDER BY id DESC LIMIT 1"""
)


async def find_delivery(
    conn: Connection, event_id: int, message_id: str | None = None
) -> model.Delivery | None:
    """The latest attempt that sent ``event_id``'s message under ``message_id`` (or, without
    one, its latest delivered email), if any."""
    if message_id is None:
        r = await conn.fetchrow(FIND_EMAIL_DELIVERY, ids.to_db(event_id))
    else:
        r = await conn.fetchrow(FIND_DELIVERY, ids.to_db(event_id), message_id)
    if r is None:
        return None
    return model.Delivery(
        event_id=ids.from_db(r[0]),
        attempt=r[1],
        channel=model.Channel(r[2]),
        transport=r[3],
        address=r[4],
        message_id=r[5],
        outcome=model.OutcomeKind(r[6]),
        reply=r[7],
        render_us=r[8],
        send_us=r[9],
        created_at=r[10],
    )


INSERT = sql(
    """INSERT INTO bounces (event_id, channel, address, message_id, kind, status, diagnostic,
       received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (event_id, address, kind) DO NOTHING"""
)


async def add(conn: Connection, bounce: model.Bounce) -> bool:
    """Keep a bounce; False (and nothing written) if the same event already bounced the
    same way for the same address."""
    changed = await conn.execute(
        INSERT,
        ids.to_db(bounce.event_id),
        str(bounce.channel),
        bounce.address,
        bounce.message_id,
        str(bounce.kind),
        bounce.status,
        bounce.diagnostic,
        bounce.received_at,
    )
    return changed > 0


COUNT_SOFT = sql(
    """SELECT COUNT(DISTINCT event_id) FROM bounces
       WHERE address = $1 AND channel = $2 AND kind = 'soft' AND received_at >= $3"""
)


async def count_soft(conn: Connection, channel: model.Channel, address: str, since: int) -> int:
    """How many distinct events soft-bounced for ``address`` since ``since``."""
    row = await conn.fetchrow(COUNT_SOFT, address, str(channel), since)
    return 0 if row is None else int(row[0])


LOG_DELIVERY = sql(
    """INSERT INTO deliveries (event_id, attempt, channel, transport, address, message_id,
       outcome, reply, render_us, send_us, created_at)
       VALUES ($1, $2, $3, 'bounce', $4, $5, 'bounced', $6, 0, 0, $7)"""
)


async def log_delivery(conn: Connection, sent: model.Delivery, reply: str, at: int) -> None:
    """Add the bounce to the event's delivery log, as an entry of the attempt it is about."""
    await conn.execute(
        LOG_DELIVERY,
        ids.to_db(sent.event_id),
        sent.attempt,
        str(sent.channel),
        sent.address,
        sent.message_id,
        reply,
        at,
    )


LIST = sql(
    f"""SELECT {_COLUMNS} FROM bounces WHERE ($1::bigint IS NULL OR id < $1)
        AND ($2::text IS NULL OR address = $2) ORDER BY id DESC LIMIT $3""",
    sqlite=f"""SELECT {_COLUMNS} FROM bounces WHERE ($1 IS NULL OR id < $1)
        AND ($2 IS NULL OR address = $2) ORDER BY id DESC LIMIT $3""",
)


async def list_bounces(
    conn: Connection, *, before_id: int | None, address: str | None, limit: int
) -> list[model.Bounce]:
    """Bounces, newest first."""
    return [_bounce(r) for r in await conn.fetch(LIST, before_id, address, limit)]
