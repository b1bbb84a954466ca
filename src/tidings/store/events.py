"""Events: insert (the ingest side of the queue), look up, list, and their delivery log."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from tidings import ids, model
from tidings.store.database import Connection, Query, Row, sql

_ctx_decoder = msgspec.json.Decoder(dict[str, Any])
encode_json = msgspec.json.Encoder().encode

COLUMNS = (
    "id, type, channel, email, mobile_phone, push_token, external_id, ctx, priority, status, "
    "source, received_at, scheduled_at, expires_at, due_at, attempts, claimed_at, sent_at, "
    "finished_at, publication_id, template_version_id, reason, proof_id"
)


class NewEvent(msgspec.Struct, frozen=True, array_like=True):
    """An accepted event, ready to be written (status ``pending``)."""

    id: int
    type: str
    channel: str | None
    email: str | None
    mobile_phone: str | None
    push_token: str | None
    external_id: str | None
    ctx: bytes
    priority: int
    source: str
    received_at: int
    scheduled_at: int | None
    expires_at: int | None
    due_at: int
    #: JSON list of ctx mismatches a lenient event type let through.
    ctx_issues: str | None = None

    def row(self) -> tuple[Any, ...]:
        """The INSERT parameters."""
        return (
            ids.to_db(self.id),
            self.type,
            self.channel,
            self.email,
            self.mobile_phone,
            self.push_token,
            self.external_id,
            self.ctx.decode(),
            self.priority,
            "pending",
            self.source,
            self.received_at,
            self.scheduled_at,
            self.expires_at,
            self.due_at,
            0,
            self.ctx_issues,
        )


# Enum lookups by value through a dict: ``EventStatus(text)`` is ~20x slower, and the worker
# turns every claimed row into an Event.
_STATUS = {str(s): s for s in model.EventStatus}
_CHANNEL = {str(c): c for c in model.Channel}


def event_from_row(row: Row) -> model.Event:
    """A domain event from a row selected with :data:`COLUMNS`."""
    return model.Event(
        id=ids.from_db(row[0]),
        type=row[1],
        channel=_CHANNEL[row[2]] if row[2] else None,
        recipient=model.Recipient(
            email=row[3], mobilePhone=row[4], pushToken=row[5], externalId=row[6]
        ),
        ctx=_ctx_decoder.decode(row[7]),
        priority=row[8],
        status=_STATUS[row[9]],
        source=row[10],
        received_at=row[11],
        scheduled_at=row[12],
        expires_at=row[13],
        due_at=row[14],
        attempts=row[15],
        claimed_at=row[16],
        sent_at=row[17],
        finished_at=row[18],
        publication_id=row[19],
        template_version_id=row[20],
        reason=row[21],
        proof_id=row[22],
        ctx_issues=row[23] if len(row) > 23 else None,
    )


INSERT_EVENT = sql(
    """INSERT INTO events (id, type, channel, email, mobile_phone, push_token, external_id,
       ctx, priority, status, source, received_at, scheduled_at, expires_at, due_at, attempts,
       ctx_issues)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"""
)


# PostgreSQL: a whole batch in one statement, one array a column (``executemany`` runs the
# statement once a row: ~3x the server's work for a batch of 500, see BENCHMARKS.md).
INSERT_EVENTS_UNNEST = sql(
    """INSERT INTO events (id, type, channel, email, mobile_phone, push_token, external_id,
       ctx, priority, status, source, received_at, scheduled_at, expires_at, due_at, attempts,
       ctx_issues)
       SELECT id, type, channel, email, mobile_phone, push_token, external_id, ctx, priority,
       'pending', source, received_at, scheduled_at, expires_at, due_at, 0, ctx_issues
       FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
       $7::text[], $8::text[], $9::smallint[], $10::text[], $11::bigint[], $12::bigint[],
       $13::bigint[], $14::bigint[], $15::text[])
       AS batch (id, type, channel, email, mobile_phone, push_token, external_id, ctx,
       priority, source, received_at, scheduled_at, expires_at, due_at, ctx_issues)"""
)


async def insert_events(conn: Connection, events: Sequence[NewEvent]) -> None:
    """Write accepted events; they are due from their ``due_at``."""
    for step in insert_steps(events, conn.dialect):
        await conn.executemany(*step)


def insert_step(events: Sequence[NewEvent]) -> tuple[Query, list[tuple[Any, ...]]]:
    """The statement and rows writing ``events`` one row each (for
    :meth:`Database.write_many`; SQLite turns it into one multi-row ``INSERT``)."""
    return INSERT_EVENT, [e.row() for e in events]


def insert_steps(
    events: Sequence[NewEvent], dialect: str
) -> list[tuple[Query, list[tuple[Any, ...]]]]:
    """The fastest way to write ``events`` on ``dialect``, as steps for
    :meth:`Database.write_many`."""
    if dialect != "postgresql" or len(events) < 2:
        return [insert_step(events)] if events else []
    columns = (
        [ids.to_db(e.id) for e in events],
        [e.type for e in events],
        [e.channel for e in events],
        [e.email for e in events],
        [e.mobile_phone for e in events],
        [e.push_token for e in events],
        [e.external_id for e in events],
        [e.ctx.decode() for e in events],
        [e.priority for e in events],
        [e.source for e in events],
        [e.received_at for e in events],
        [e.scheduled_at for e in events],
        [e.expires_at for e in events],
        [e.due_at for e in events],
        [e.ctx_issues for e in events],
    )
    return [(INSERT_EVENTS_UNNEST, [columns])]


#: The queue claims :data:`COLUMNS`; one event's view adds what only the API shows.
DETAIL_COLUMNS = COLUMNS + ", ctx_issues"
GET_EVENT = sql(f"SELECT {DETAIL_COLUMNS} FROM events WHERE id = $1")


async def get_event(conn: Connection, event_id: int) -> model.Event | None:
    """One event by id."""
    row = await conn.fetchrow(GET_EVENT, ids.to_db(event_id))
    return None if row is None else event_from_row(row)


class EventFilter(msgspec.Struct, frozen=True):
    """What ``GET /api/v1/events`` may filter on. ``before_id`` is the pagination cursor."""

    status: model.EventStatus | None = None
    type: str | None = None
    recipient: str | None = None
    received_from: int | None = None
    received_to: int | None = None
    before_id: int | None = None


async def list_events(conn: Connection, where: EventFilter, limit: int) -> list[model.Event]:
    """Events matching ``where``, newest first, at most ``limit``."""
    clauses: list[str] = []
    args: list[Any] = []

    def add(clause: str, *values: Any) -> None:
        for value in values:
            args.append(value)
            clause = clause.replace("?", f"${len(args)}", 1)
        clauses.append(clause)

    if where.status is not None:
        add("status = ?", str(where.status))
    if where.type is not None:
        add("type = ?", where.type)
    if where.recipient is not None:
        r = where.recipient
        add("(email = ? OR mobile_phone = ? OR external_id = ?)", r, r, r)
    if where.received_from is not None:
        add("received_at >= ?", where.received_from)
    if where.received_to is not None:
        add("received_at < ?", where.received_to)
    if where.before_id is not None:
        add("id < ?", ids.to_db(where.before_id))
    args.append(limit)
    text = f"SELECT {COLUMNS} FROM events"
    if clauses:
        text += " WHERE " + " AND ".join(clauses)
    text += f" ORDER BY id DESC LIMIT ${len(args)}"
    rows = await conn.fetch(sql(text), *args)
    return [event_from_row(row) for row in rows]


GET_DELIVERIES = sql(
    """SELECT event_id, attempt, channel, transport, address, message_id, outcome, reply,
       render_us, send_us, created_at, provider_id FROM deliveries WHERE event_id = $1
       ORDER BY id"""
)


async def get_deliveries(conn: Connection, event_id: int) -> list[model.Delivery]:
    """The delivery log of one event, oldest attempt first."""
    rows = await conn.fetch(GET_DELIVERIES, ids.to_db(event_id))
    return [
        model.Delivery(
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
            provider_id=r[11] or "",
        )
        for r in rows
    ]


COUNT_BY_STATUS = sql("SELECT status, COUNT(*) FROM events GROUP BY status")


async def count_by_status(conn: Connection) -> dict[str, int]:
    """How many events are in each status."""
    return {row[0]: row[1] for row in await conn.fetch(COUNT_BY_STATUS)}
