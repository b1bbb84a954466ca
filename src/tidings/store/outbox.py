"""The local outbox: messages kept instead of sent (the default for email)."""

from __future__ import annotations

from collections.abc import Sequence

from tidings import ids, model
from tidings.store.database import Connection, Row, sql

_COLUMNS = (
    "event_id, message_id, channel, recipient, sender, subject, html, text, raw, created_at, id"
)

INSERT = sql(
    """INSERT INTO outbox (event_id, message_id, channel, recipient, sender, subject, html,
       text, raw, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
       ON CONFLICT (message_id) DO NOTHING"""
)


def _message(row: Row) -> model.OutboxMessage:
    return model.OutboxMessage(
        event_id=ids.from_db(row[0]),
        message_id=row[1],
        channel=model.Channel(row[2]),
        recipient=row[3],
        sender=row[4],
        subject=row[5],
        html=row[6],
        text=row[7],
        raw=row[8],
        created_at=row[9],
        id=int(row[10]),
    )


async def add_messages(conn: Connection, messages: Sequence[model.OutboxMessage]) -> None:
    """Keep messages; one already kept under the same Message-ID is not kept twice (a retry
    after a crash re-renders the same message)."""
    await conn.executemany(
        INSERT,
        [
            (
                ids.to_db(m.event_id),
                m.message_id,
                str(m.channel),
                m.recipient,
                m.sender,
                m.subject,
                m.html,
                m.text,
                m.raw,
                m.created_at,
            )
            for m in messages
        ],
    )


LIST = sql(
    f"""SELECT {_COLUMNS} FROM outbox WHERE ($1::bigint IS NULL OR id < $1)
        AND ($2::text IS NULL OR recipient = $2) ORDER BY id DESC LIMIT $3""",
    sqlite=f"""SELECT {_COLUMNS} FROM outbox WHERE ($1 IS NULL OR id < $1)
        AND ($2 IS NULL OR recipient = $2) ORDER BY id DESC LIMIT $3""",
)


async def list_messages(
    conn: Connection, *, before_id: int | None, recipient: str | None, limit: int
) -> list[model.OutboxMessage]:
    """Outbox messages, newest first."""
    return [_message(r) for r in await conn.fetch(LIST, before_id, recipient, limit)]


GET = sql(f"SELECT {_COLUMNS} FROM outbox WHERE id = $1")


async def get_message(conn: Connection, message_id: int) -> model.OutboxMessage | None:
    """One outbox message by its outbox id."""
    row = await conn.fetchrow(GET, message_id)
    return None if row is None else _message(row)


FOR_EVENT = sql(f"SELECT {_COLUMNS} FROM outbox WHERE event_id = $1 ORDER BY id")


async def messages_for_event(conn: Connection, event_id: int) -> list[model.OutboxMessage]:
    """The outbox messages an event produced."""
    return [_message(r) for r in await conn.fetch(FOR_EVENT, ids.to_db(event_id))]
