"""The events table as a queue: claim due events with a lease, record what became of them.

An event is *due* when its status is ``pending`` (or ``processing`` with a lease that ran out)
and ``due_at`` has passed. Claiming sets ``processing``, counts the attempt and moves
``due_at`` to the lease's end, all in one statement; a worker that dies simply lets the lease
run out and the event is claimed again. The attempt number doubles as a fencing token: an
outcome is recorded only if the event is still under the same claim.

Claims take the highest priority first (0-9, 9 first) and, within a priority, the longest-due
first. Each priority level is read by its own index range so that events scheduled for later
(or waiting for a retry) are never scanned: on SQLite a ``UNION ALL`` of one sub-select per
level, on PostgreSQL a ``LATERAL`` join over the levels with ``FOR UPDATE SKIP LOCKED`` so
that many workers claim disjoint events without waiting on each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import msgspec

from tidings import ids, model
from tidings.store import callbacks as callbacks_store
from tidings.store import catalog, database
from tidings.store import events as events_store
from tidings.store import quarantine as quarantine_store
from tidings.store.database import Connection, Database, Row, sql

PRIORITIES = range(9, -1, -1)
_QUEUED = "status IN ('pending', 'processing')"

_sqlite_due = " UNION ALL ".join(
    f"SELECT id FROM (SELECT id FROM events WHERE {_QUEUED} AND priority = {p} "
    f"AND due_at <= $1 ORDER BY due_at LIMIT $3)"
    for p in PRIORITIES
)

# Each claimed row ends with whether its own addresses are quarantined and with the routing
# revision (store/catalog.py), read by the same statement: a worker knows what it needs to
# send without more round trips (each was ~1.3 ms of the ~10 of a busy worker's claim-to-250
# on PostgreSQL, see BENCHMARKS.md).
_OWN_ADDRESSES = (
    (model.Channel.EMAIL, "email"),
    (model.Channel.SMS, "mobile_phone"),
    (model.Channel.PUSH, "push_token"),
)
_WIDTH = len(events_store.COLUMNS.split(","))
_HELD = ", ".join(
    quarantine_store.held(channel, f"events.{column}", "$1") for channel, column in _OWN_ADDRESSES
)
_REVISION = f"(SELECT value FROM revisions WHERE name = '{catalog.ROUTING}')"
CLAIM_DUE = sql(
    f"""WITH due AS (
          SELECT e.id FROM generate_series(9, 0, -1) AS p(level)
          CROSS JOIN LATERAL (
            SELECT id FROM events
            WHERE {_QUEUED} AND priority = p.level AND due_at <= $1
            ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED) e
          LIMIT $3)
        UPDATE events SET status = 'processing', attempts = attempts + 1,
          claimed_at = $1, due_at = $2
        FROM due WHERE events.id = due.id
        RETURNING {", ".join("events." + c.strip() for c in events_store.COLUMNS.split(","))},
          {_HELD}, {_REVISION}""",
    sqlite=f"""UPDATE events SET status = 'processing', attempts = attempts + 1,
          claimed_at = $1, due_at = $2
        WHERE id IN (SELECT id FROM ({_sqlite_due}) LIMIT $3)
        RETURNING {events_store.COLUMNS}, {_HELD}, {_REVISION}""",
)


class Claim(NamedTuple):
    """What one claim took, and what its sends need to know as of the claim."""

    #: Highest priority first, then by id.
    events: list[model.Event]
    #: Which of the events' own addresses (email, mobile phone, push token) are quarantined.
    quarantined: set[str]
    #: The routing revision (0 before anything was published; None when nothing was claimed).
    revision: int | None


async def claim_due_events(
    conn: Connection, *, now: int, lease_until: int, limit: int
) -> list[model.Event]:
    """Take up to ``limit`` due events for this worker until ``lease_until``."""
    return _claimed(await conn.fetch(CLAIM_DUE, now, lease_until, limit)).events


async def claim_due(db: Database, *, now: int, lease_until: int, limit: int) -> Claim:
    """:func:`claim_due_events` as its own transaction, in one round trip (the worker's way)."""
    return _claimed(await db.write_fetch(CLAIM_DUE, now, lease_until, limit))


def _claimed(rows: Sequence[Row]) -> Claim:
    claimed: list[model.Event] = []
    held: set[str] = set()
    for row in rows:
        event = events_store.event_from_row(row[:_WIDTH])
        claimed.append(event)
        own = (event.recipient.email, event.recipient.mobilePhone, event.recipient.pushToken)
        held.update(a for a, flag in zip(own, row[_WIDTH:], strict=False) if flag and a)
    claimed.sort(key=lambda e: (-e.priority, e.id))
    return Claim(claimed, held, int(rows[0][-1] or 0) if rows else None)


class Completion(msgspec.Struct, frozen=True):
    """What became of one claimed event: its next status and what to log about it.

    ``attempt`` is the event's ``attempts`` as claimed (the fencing token). ``due_at`` matters
    for ``pending`` (the next attempt) and ``paused``.
    """

    event_id: int
    attempt: int
    status: model.EventStatus
    due_at: int
    reason: str | None = None
    sent_at: int | None = None
    finished_at: int | None = None
    publication_id: int | None = None
    template_version_id: int | None = None
    delivery: model.Delivery | None = None
    quarantine: model.QuarantineEntry | None = None
    #: The event as claimed; with it, a final status enqueues its status callbacks.
    event: model.Event | None = None


# A worker decides ``paused`` from its routing snapshot; if the type was resumed since (the
# resume requeued only the events already ``paused``), the event goes back to ``pending``
# rather than staying paused for good. On PostgreSQL the FOR SHARE lock on the type's row
# orders this with a concurrent resume: this waits for the resume to commit, or the resume
# waits for this transaction and then finds the event paused. SQLite serialises writes.
_TYPE_PAUSED = "(SELECT t.paused FROM event_types t WHERE t.name = events.type{lock})"
# What an outcome sets, from ``{status}``, ``{due_at}``... : the parameters of one row, or the
# columns of an ``unnest`` of the whole batch.
_OUTCOME_FIELDS = (
    "id", "attempt", "status", "due_at", "reason", "sent_at", "finished_at", "publication_id",
    "template_version_id",
)  # fmt: skip
_OUTCOME_SET = """status = CASE WHEN {status} = 'paused' AND {type_paused} = FALSE
           THEN 'pending' ELSE {status} END,
         due_at = {due_at}, reason = {reason},
         sent_at = COALESCE({sent_at}, events.sent_at), finished_at = {finished_at},
         publication_id = COALESCE({publication_id}, events.publication_id),
         template_version_id = COALESCE({template_version_id}, events.template_version_id)"""
_ROW = {name: f"${n}" for n, name in enumerate(_OUTCOME_FIELDS, 1)}
_RECORD_OUTCOME = f"""UPDATE events SET {_OUTCOME_SET}
       WHERE id = {{id}} AND attempts = {{attempt}} AND status = 'processing'"""
RECORD_OUTCOME = sql(
    _RECORD_OUTCOME.format(**_ROW, type_paused=_TYPE_PAUSED.format(lock=" FOR SHARE")),
    sqlite=_RECORD_OUTCOME.format(**_ROW, type_paused=_TYPE_PAUSED.format(lock="")),
)

# PostgreSQL: a whole batch of outcomes in one statement a table, one array a column. Run once
# a row (``executemany``), each row is its own execution in the server, and with two updates of
# an event's row and its indexes that per-row overhead was a third of the server's CPU time a
# delivered email (BENCHMARKS.md). The fencing and the paused check are the same as above.
RECORD_OUTCOMES_UNNEST = sql(
    f"""UPDATE events SET {_OUTCOME_SET}
       FROM unnest($1::bigint[], $2::integer[], $3::text[], $4::bigint[], $5::text[],
         $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])
         AS o ({", ".join(_OUTCOME_FIELDS)})
       WHERE events.id = o.id AND events.attempts = o.attempt
         AND events.status = 'processing'""".format(
        **{name: f"o.{name}" for name in _OUTCOME_FIELDS},
        type_paused=_TYPE_PAUSED.format(lock=" FOR SHARE"),
    )
)

_DELIVERY_COLUMNS = """event_id, attempt, channel, transport, address, message_id, outcome,
       reply, render_us, send_us, created_at"""
INSERT_DELIVERY = sql(
    f"""INSERT INTO deliveries ({_DELIVERY_COLUMNS})
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"""
)
#: The same with the provider's id for the message (receipts name it).
INSERT_DELIVERY_WITH_PROVIDER_ID = sql(
    f"""INSERT INTO deliveries ({_DELIVERY_COLUMNS}, provider_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"""
)
#: The same for a batch, one array a column (PostgreSQL).
INSERT_DELIVERIES_UNNEST = sql(
    f"""INSERT INTO deliveries ({_DELIVERY_COLUMNS}, provider_id)
       SELECT * FROM unnest($1::bigint[], $2::integer[], $3::text[], $4::text[], $5::text[],
         $6::text[], $7::text[], $8::text[], $9::integer[], $10::integer[], $11::bigint[],
         $12::text[])"""
)

QUARANTINE_ADDRESS = sql(
    """INSERT INTO quarantine (channel, address, reason, source, event_id, created_at,
       expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (channel, address) DO NOTHING"""
)


async def record_outcomes(conn: Connection, completions: Sequence[Completion]) -> None:
    """Write the outcomes of claimed events, their delivery log, any quarantined address and
    the status callbacks of final statuses."""
    await database.run_steps(conn, outcome_steps(completions, conn.dialect))


def outcome_steps(completions: Sequence[Completion], dialect: str) -> list[database.Step]:
    """The statements and rows :func:`record_outcomes` runs (for ``Database.write_many``), on
    PostgreSQL one statement a table for the whole batch.

    The status callbacks are built and enqueued only if a subscription is active when the
    transaction runs: without one (the usual case) the worker spends nothing on them."""
    updates = []
    deliveries = []
    quarantined = []
    for c in completions:
        model.check_transition(model.EventStatus.PROCESSING, c.status)
        updates.append(
            (
                ids.to_db(c.event_id),
                c.attempt,
                str(c.status),
                c.due_at,
                c.reason,
                c.sent_at,
                c.finished_at,
                c.publication_id,
                c.template_version_id,
            )
        )
        if (d := c.delivery) is not None:
            deliveries.append(
                (
                    ids.to_db(d.event_id),
                    d.attempt,
                    str(d.channel),
                    d.transport,
                    d.address,
                    d.message_id,
                    str(d.outcome),
                    d.reply,
                    d.render_us,
                    d.send_us,
                    d.created_at,
                    d.provider_id,
                )
            )
        if (q := c.quarantine) is not None:
            quarantined.append(
                (
                    str(q.channel),
                    q.address,
                    q.reason,
                    q.source,
                    None if q.event_id is None else ids.to_db(q.event_id),
                    q.created_at,
                    q.expires_at,
                )
            )
    batched = dialect == "postgresql"
    return [
        database.unnest(RECORD_OUTCOMES_UNNEST, updates) if batched else (RECORD_OUTCOME, updates),
        database.unnest(INSERT_DELIVERIES_UNNEST, deliveries)
        if batched
        else (INSERT_DELIVERY_WITH_PROVIDER_ID, deliveries),
        (QUARANTINE_ADDRESS, quarantined),
        (
            callbacks_store.ENQUEUE,
            database.OnlyIf(
                callbacks_store.ANY_ACTIVE, lambda: callbacks_store.status_rows(completions)
            ),
        ),
    ]


RELEASE = sql(
    """UPDATE events SET status = 'pending', due_at = $3, attempts = attempts - 1
       WHERE id = $1 AND attempts = $2 AND status = 'processing'"""
)


async def release_events(conn: Connection, claims: Sequence[tuple[int, int]], now: int) -> None:
    """Give back claimed events that were not tried (shutdown): ``(event_id, attempt)`` pairs."""
    await conn.executemany(RELEASE, [(ids.to_db(i), a, now) for i, a in claims])


RESUME_PAUSED = sql(
    "UPDATE events SET status = 'pending', due_at = $2 WHERE type = $1 AND status = 'paused'"
)


async def resume_paused(conn: Connection, event_type: str, now: int) -> int:
    """Put the paused events of a type back in the queue; return how many."""
    return await conn.execute(RESUME_PAUSED, event_type, now)


QUEUE_DEPTH = sql(f"""SELECT COUNT(*), MIN(due_at) FROM events WHERE {_QUEUED} AND due_at <= $1""")


async def queue_depth(conn: Connection, now: int) -> tuple[int, int | None]:
    """How many events are due now, and since when the oldest one is."""
    row = await conn.fetchrow(QUEUE_DEPTH, now)
    assert row is not None
    return int(row[0]), (None if row[1] is None else int(row[1]))
