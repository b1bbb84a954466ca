"""Delivery receipts: the delivery a provider's message id belongs to, the receipts kept.

A receipt names the connector it came through (``transport``: with several SMSCs, two may
hand out the same message id); it is matched to the latest delivery with its provider id
sent through that connector, else the latest with that id at all (a single SMSC renamed, or a
delivery logged before the connector had a name of its own).
"""

from __future__ import annotations

import msgspec

from tidings import ids, model
from tidings.store.database import Connection, Row, sql

FIND_DELIVERY = sql(
    """SELECT event_id, attempt FROM deliveries WHERE provider_id = $1 AND channel = $2
       ORDER BY CASE WHEN transport = $3 THEN 0 ELSE 1 END, id DESC LIMIT 1"""
)

INSERT = sql(
    """INSERT INTO receipts (channel, provider_id, event_id, attempt, state, error, text,
       received_at, transport) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (channel, transport, provider_id, state) DO NOTHING"""
)


async def record_receipt(
    conn: Connection,
    channel: model.Channel,
    provider_id: str,
    state: str,
    *,
    error: str,
    text: str,
    received_at: int,
    transport: str = "",
) -> tuple[model.Receipt, bool]:
    """Keep a receipt that came through connector ``transport``, matched to a delivery that
    carried ``provider_id`` on ``channel`` (see the module; ``event_id`` None when none did).
    Returns the receipt and whether it was new (the same receipt again is kept once)."""
    found = await conn.fetchrow(FIND_DELIVERY, provider_id, str(channel), transport)
    event_id = None if found is None else ids.from_db(found[0])
    attempt = None if found is None else int(found[1])
    added = await conn.execute(
        INSERT,
        str(channel),
        provider_id,
        None if event_id is None else ids.to_db(event_id),
        attempt,
        state,
        error,
        text,
        received_at,
        transport,
    )
    kept = model.Receipt(
        channel=channel,
        provider_id=provider_id,
        state=state,
        error=error,
        text=text,
        received_at=received_at,
        event_id=event_id,
        attempt=attempt,
        transport=transport,
    )
    return kept, added > 0


_COLUMNS = "channel, provider_id, state, error, text, received_at, event_id, attempt, transport"
# Also by the provider ids of the event's deliveries: a receipt that came before the
# delivery was logged was kept unmatched.
LIST_FOR_EVENT = sql(
    f"""SELECT {_COLUMNS} FROM receipts WHERE event_id = $1 OR (event_id IS NULL AND
        (channel, provider_id) IN (SELECT channel, provider_id FROM deliveries
                                   WHERE event_id = $1 AND provider_id <> ''))
        ORDER BY id"""
)
LIST_FOR_PROVIDER_ID = sql(
    f"SELECT {_COLUMNS} FROM receipts WHERE channel = $1 AND provider_id = $2 ORDER BY id"
)


def _receipt(row: Row) -> model.Receipt:
    return model.Receipt(
        channel=model.Channel(row[0]),
        provider_id=row[1],
        state=row[2],
        error=row[3],
        text=row[4],
        received_at=row[5],
        event_id=None if row[6] is None else ids.from_db(row[6]),
        attempt=row[7],
        transport=row[8],
    )


async def receipts_for_event(conn: Connection, event_id: int) -> list[model.Receipt]:
    """The receipts about an event's messages, oldest first (those kept unmatched because
    they arrived before the delivery was logged included)."""
    return [_receipt(r) for r in await conn.fetch(LIST_FOR_EVENT, ids.to_db(event_id))]


async def receipts_for_provider_id(
    conn: Connection, channel: model.Channel, provider_id: str
) -> list[model.Receipt]:
    """The receipts naming ``provider_id`` (matched or not), oldest first."""
    return [_receipt(r) for r in await conn.fetch(LIST_FOR_PROVIDER_ID, str(channel), provider_id)]


# A receipt can come before its delivery is logged (the SMSC answers submit_sm and sends the
# receipt at once, while the worker's outcome waits for its group commit): it is kept
# unmatched, and adopted here once the delivery is in the log.
ORPHANS = sql(
    f"""SELECT r.id, d.event_id, d.attempt, {", ".join("r." + c for c in _COLUMNS.split(", "))}
       FROM receipts r JOIN deliveries d
         ON d.provider_id = r.provider_id AND d.channel = r.channel
            AND (r.transport = '' OR d.transport = r.transport)
       WHERE r.event_id IS NULL AND r.received_at >= $1
       ORDER BY r.id, d.id DESC LIMIT $2"""
)
ADOPT = sql("UPDATE receipts SET event_id = $2, attempt = $3 WHERE id = $1 AND event_id IS NULL")


async def any_orphans(conn: Connection, *, since: int) -> bool:
    """Whether a receipt kept unmatched (received at ``since`` or later) has its delivery in
    the log now (a read)."""
    return bool(await conn.fetch(ORPHANS, since, 1))


async def adopt_orphans(conn: Connection, *, since: int, limit: int = 500) -> list[model.Receipt]:
    """Match the receipts kept unmatched (received at ``since`` or later) whose delivery is
    now in the log; return the receipts matched."""
    adopted = []
    seen: set[int] = set()
    for row in await conn.fetch(ORPHANS, since, limit):
        receipt_id = int(row[0])
        if receipt_id in seen:  # the latest delivery with the id comes first
            continue
        seen.add(receipt_id)
        if await conn.execute(ADOPT, receipt_id, row[1], row[2]):
            kept = _receipt(tuple(row)[3:])
            adopted.append(
                msgspec.structs.replace(kept, event_id=ids.from_db(row[1]), attempt=int(row[2]))
            )
    return adopted
