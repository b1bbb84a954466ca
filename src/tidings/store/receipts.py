"""Delivery receipts: the delivery a provider's message id belongs to, the receipts kept."""

from __future__ import annotations

from tidings import ids, model
from tidings.store.database import Connection, Row, sql

FIND_DELIVERY = sql(
    """SELECT event_id, attempt FROM deliveries WHERE provider_id = $1 AND channel = $2
       ORDER BY id DESC LIMIT 1"""
)

INSERT = sql(
    """INSERT INTO receipts (channel, provider_id, event_id, attempt, state, error, text,
       received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (channel, provider_id, state) DO NOTHING"""
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
) -> tuple[model.Receipt, bool]:
    """Keep a receipt, matched to the latest delivery that carried ``provider_id`` on
    ``channel`` (``event_id`` None when none did). Returns the receipt and whether it was new
    (the same receipt again is kept once)."""
    found = await conn.fetchrow(FIND_DELIVERY, provider_id, str(channel))
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
    )
    return kept, added > 0


_COLUMNS = "channel, provider_id, state, error, text, received_at, event_id, attempt"
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
