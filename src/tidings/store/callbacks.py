"""Status callbacks: the outbox of callbacks and the log of attempts.

A callback row is written in the transaction that records an event's final status
(:func:`status_rows`, one step of ``queue.outcome_steps``) or a delivery receipt
(:func:`enqueue_status`), one row per matching active subscription
(:mod:`tidings.store.subscriptions`): the payload is fixed then. The statement itself checks
that the event is in the status the payload tells (under the same claim), so an outcome the
queue's fence refused enqueues nothing, and a final status is enqueued once per subscription.
The sender claims due rows with a lease as the worker claims events (``FOR UPDATE SKIP LOCKED``
on PostgreSQL) and records each attempt.

Payload: ``{"kind", "eventId", "PKey", "type", "status", "reason", "channel", "recipient",
"finishedAt", ...extra, "deliveries": [...]}``; ``deliveries`` lists every attempt, oldest
first: built from the completion on a first attempt, else read in the same statement from the
delivery log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from tidings import clock, ids, model
from tidings.store.database import Connection, Database, Query, Row, sql

if TYPE_CHECKING:
    from tidings.store import queue

_encode = msgspec.json.Encoder().encode
S = model.EventStatus

# ---------------------------------------------------------------------------- enqueueing

_MATCH_LITE = "instr(',' || {column} || ',', ',' || {param} || ',') > 0"
_MATCH_PG = "strpos(',' || {column} || ',', ',' || {param}::text || ',') > 0"
_DELIVERIES_LITE = """(SELECT json_group_array(json(item)) FROM (SELECT json_object(
       'attempt', d.attempt, 'channel', d.channel, 'transport', d.transport,
       'address', d.address, 'messageId', d.message_id, 'outcome', d.outcome,
       'reply', d.reply,
       'at', strftime('%Y-%m-%dT%H:%M:%fZ', d.created_at / 1000000.0, 'unixepoch')) AS item
       FROM deliveries d WHERE d.event_id = $1 ORDER BY d.id))"""
_DELIVERIES_PG = """(SELECT COALESCE(json_agg(json_build_object(
       'attempt', d.attempt, 'channel', d.channel, 'transport', d.transport,
       'address', d.address, 'messageId', d.message_id, 'outcome', d.outcome,
       'reply', d.reply,
       'at', to_char(to_timestamp(d.created_at / 1000000.0) AT TIME ZONE 'UTC',
                     'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')) ORDER BY d.id), '[]'::json)::text
       FROM deliveries d WHERE d.event_id = $1)"""
# $1 event id, $2 kind, $3 the payload, or its head without the deliveries when $9 is 1 (then
# the statement reads them from the delivery log), $4 now, $5 event type, $6 the final status
# or the receipt's state (matched against the subscription's filter for that kind), $7 and $8
# the event's attempts and status (the fence).
_ENQUEUE = """INSERT INTO callbacks (subscription_id, event_id, kind, payload, attempts,
       next_at, last_reply, state, created_at)
       SELECT s.id, $1, $2, {prefix} || CASE WHEN {read} = 1 THEN {deliveries} || '}}'
         ELSE '' END, 0, $4, '', 'pending', $4
       FROM callback_subscriptions s
       WHERE s.active = TRUE
         AND {kind_match}
         AND (s.event_types = '' OR {type_match})
         AND ({wanted} = '' OR {status_match})
         AND EXISTS (SELECT 1 FROM events e WHERE e.id = $1 AND e.attempts = $7
                     AND e.status = $8)
         AND ({kind} <> 'status' OR NOT EXISTS (SELECT 1 FROM callbacks c
              WHERE c.event_id = $1 AND c.subscription_id = s.id AND c.kind = 'status'))"""
_WANTED = "(CASE WHEN {kind} = 'receipt' THEN s.receipt_states ELSE s.statuses END)"
_WANTED_PG = _WANTED.format(kind="$2::text")
_WANTED_LITE = _WANTED.format(kind="$2")
ENQUEUE = sql(
    _ENQUEUE.format(
        prefix="$3::text",
        read="$9::int",
        deliveries=_DELIVERIES_PG,
        kind="$2::text",
        kind_match=_MATCH_PG.format(column="s.kinds", param="$2"),
        type_match=_MATCH_PG.format(column="s.event_types", param="$5"),
        wanted=_WANTED_PG,
        status_match=_MATCH_PG.format(column=_WANTED_PG, param="$6"),
    ),
    sqlite=_ENQUEUE.format(
        prefix="$3",
        read="$9",
        deliveries=_DELIVERIES_LITE,
        kind="$2",
        kind_match=_MATCH_LITE.format(column="s.kinds", param="$2"),
        type_match=_MATCH_LITE.format(column="s.event_types", param="$5"),
        wanted=_WANTED_LITE,
        status_match=_MATCH_LITE.format(column=_WANTED_LITE, param="$6"),
    ),
)


def payload_head(
    event: model.Event,
    *,
    kind: str,
    status: str,
    reason: str | None,
    channel: model.Channel | None,
    finished_at: int | None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """The payload's JSON up to ``"deliveries":`` (the statement appends the list)."""
    body: dict[str, Any] = {
        "kind": kind,
        "eventId": str(event.id),
        "PKey": str(event.id),
        "type": event.type,
        "status": status,
        "reason": reason,
        "channel": None if channel is None else str(channel),
        "recipient": msgspec.to_builtins(event.recipient),
        "finishedAt": None if finished_at is None else clock.format_iso(finished_at),
    }
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body and k != "deliveries"})
    return _encode(body)[:-1].decode() + ',"deliveries":'


def _row(
    event: model.Event,
    *,
    kind: str,
    status: str,
    fence: tuple[int, model.EventStatus],
    payload: str,
    read_deliveries: bool,
    now: int,
) -> tuple[Any, ...]:
    return (
        ids.to_db(event.id),
        kind,
        payload,
        now,
        event.type,
        status,
        fence[0],
        str(fence[1]),
        1 if read_deliveries else 0,
    )


def _delivery_json(d: model.Delivery) -> dict[str, Any]:
    return {
        "attempt": d.attempt,
        "channel": str(d.channel),
        "transport": d.transport,
        "address": d.address,
        "messageId": d.message_id,
        "outcome": str(d.outcome),
        "reply": d.reply,
        "at": clock.format_iso(d.created_at),
    }


#: Whether any subscription is active: without one, an outcome enqueues no status callback.
ANY_ACTIVE = sql("SELECT 1 FROM callback_subscriptions WHERE active = TRUE LIMIT 1")


def status_rows(completions: Sequence[queue.Completion]) -> list[tuple[Any, ...]]:
    """:data:`ENQUEUE` rows for the completions that give an event its final status (for
    the transaction that records them)."""
    rows = []
    for c in completions:
        event = c.event
        if event is None or c.status not in model.FINAL_STATUSES or event.proof_id is not None:
            continue  # proofs fire no status callbacks
        channel = c.delivery.channel if c.delivery is not None else event.channel
        head = payload_head(
            event,
            kind="status",
            status=str(c.status),
            reason=c.reason,
            channel=channel,
            finished_at=c.finished_at,
        )
        now = c.finished_at or clock.now_us()
        # On a first attempt the delivery log holds at most this completion's delivery: the
        # payload is complete here, which spares the statement reading the log back.
        first = c.attempt == 1
        if first:
            listed = [] if c.delivery is None else [_delivery_json(c.delivery)]
            head += _encode(listed).decode() + "}"
        rows.append(
            _row(
                event,
                kind="status",
                status=str(c.status),
                fence=(c.attempt, c.status),
                payload=head,
                read_deliveries=not first,
                now=now,
            )
        )
    return rows


async def enqueue_status(
    conn: Connection,
    event: model.Event,
    *,
    status: str | None = None,
    reason: str | None = None,
    channel: model.Channel | None = None,
    kind: str = "status",
    extra: Mapping[str, Any] | None = None,
    now: int | None = None,
) -> int:
    """Enqueue a callback about ``event`` (as stored now: its attempts and status) to every
    matching subscription, in the caller's transaction; return how many.

    For a delivery receipt see :func:`enqueue_receipt`. A ``status`` callback is enqueued at
    most once per subscription and event.
    """
    when = clock.now_us() if now is None else now
    told = str(event.status) if status is None else status
    head = payload_head(
        event,
        kind=kind,
        status=told,
        reason=event.reason if reason is None else reason,
        channel=channel or event.channel,
        finished_at=event.finished_at,
        extra=extra,
    )
    row = _row(
        event,
        kind=kind,
        status=told,
        fence=(event.attempts, event.status),
        payload=head,
        read_deliveries=True,
        now=when,
    )
    return await conn.execute(ENQUEUE, *row)


#: PostgreSQL: in the transaction that records outcomes, tell every process's callback sender
#: (``LISTEN tidings_callbacks``, :mod:`tidings.store.notify`) when there is a subscription to
#: enqueue for; delivered at commit, and costing no round trip of its own.
NOTIFY_SENDERS = sql(
    """SELECT pg_notify('tidings_callbacks', '')
       WHERE EXISTS (SELECT 1 FROM callback_subscriptions WHERE active = TRUE)""",
    sqlite="SELECT 1 WHERE 0",
)


async def enqueue_receipt(conn: Connection, event: model.Event, receipt: model.Receipt) -> int:
    """Enqueue a ``receipt`` callback about ``event`` to every subscription that wants
    receipts in ``receipt.state``, in the caller's transaction (the one keeping the receipt);
    return how many. The payload tells the event's status as stored now and, under
    ``receipt``, the receipt's state, provider id, error code, connector and time. A
    proof's receipts fire none."""
    if event.proof_id is not None:
        return 0
    when = receipt.received_at
    head = payload_head(
        event,
        kind="receipt",
        status=str(event.status),
        reason=event.reason,
        channel=receipt.channel,
        finished_at=event.finished_at,
        extra={
            "receipt": {
                "state": receipt.state,
                "providerId": receipt.provider_id,
                "error": receipt.error,
                "transport": receipt.transport,
                "attempt": receipt.attempt,
                "receivedAt": clock.format_iso(receipt.received_at),
            }
        },
    )
    row = _row(
        event,
        kind="receipt",
        status=receipt.state,
        fence=(event.attempts, event.status),
        payload=head,
        read_deliveries=True,
        now=when,
    )
    return await conn.execute(ENQUEUE, *row)


# ---------------------------------------------------------------------------- sending

_CB_COLUMNS = (
    "id, subscription_id, event_id, kind, payload, attempts, next_at, last_reply, state, "
    "created_at, delivered_at"
)


def _callback(row: Row) -> model.Callback:
    return model.Callback(
        id=int(row[0]),
        subscription_id=int(row[1]),
        event_id=ids.from_db(row[2]),
        kind=row[3],
        payload=row[4],
        attempts=int(row[5]),
        next_at=int(row[6]),
        last_reply=row[7],
        state=model.CallbackState(row[8]),
        created_at=int(row[9]),
        delivered_at=None if row[10] is None else int(row[10]),
    )


CLAIM_DUE = sql(
    f"""UPDATE callbacks SET attempts = attempts + 1, next_at = $2
       WHERE id IN (SELECT id FROM callbacks WHERE state = 'pending' AND next_at <= $1
                    ORDER BY next_at LIMIT $3 FOR UPDATE SKIP LOCKED)
       RETURNING {_CB_COLUMNS}""",
    sqlite=f"""UPDATE callbacks SET attempts = attempts + 1, next_at = $2
       WHERE id IN (SELECT id FROM callbacks WHERE state = 'pending' AND next_at <= $1
                    ORDER BY next_at LIMIT $3)
       RETURNING {_CB_COLUMNS}""",
)


ANY_DUE = sql("SELECT 1 FROM callbacks WHERE state = 'pending' AND next_at <= $1 LIMIT 1")


async def any_due(conn: Connection, now: int) -> bool:
    """Whether a callback is due (a read: no write transaction when there is nothing to do)."""
    return await conn.fetchrow(ANY_DUE, now) is not None


async def claim_due(
    db: Database, *, now: int, lease_until: int, limit: int
) -> list[model.Callback]:
    """Take up to ``limit`` due callbacks until ``lease_until`` (one statement, its own
    transaction); each claim counts an attempt."""
    rows = await db.write_fetch(CLAIM_DUE, now, lease_until, limit)
    return sorted(map(_callback, rows), key=lambda c: c.id)


RECORD = sql(
    """UPDATE callbacks SET state = $3, next_at = $4, last_reply = $5, delivered_at = $6
       WHERE id = $1 AND attempts = $2 AND state = 'pending'"""
)
INSERT_ATTEMPT = sql(
    """INSERT INTO callback_attempts (callback_id, attempt, outcome, reply, duration_us,
       created_at) VALUES ($1, $2, $3, $4, $5, $6)"""
)


async def record_attempt(
    conn: Connection,
    attempt: model.CallbackAttempt,
    *,
    state: model.CallbackState,
    next_at: int,
) -> bool:
    """Log one attempt and move its callback on (only under the same claim); False if the
    claim was lost (the lease ran out and another sender took it)."""
    delivered = attempt.created_at if state is model.CallbackState.DELIVERED else None
    changed = await conn.execute(
        RECORD,
        attempt.callback_id,
        attempt.attempt,
        str(state),
        next_at,
        attempt.reply,
        delivered,
    )
    await conn.execute(
        INSERT_ATTEMPT,
        attempt.callback_id,
        attempt.attempt,
        str(attempt.outcome),
        attempt.reply,
        attempt.duration_us,
        attempt.created_at,
    )
    return bool(changed)


def attempt_steps(
    results: Sequence[tuple[model.CallbackAttempt, model.CallbackState, int]],
) -> list[tuple[Query, list[tuple[Any, ...]]]]:
    """The statements and rows that record many ``(attempt, state, next_at)`` at once, as
    :func:`record_attempt` does one (for ``Database.write_many``: one transaction)."""
    updates = []
    attempts = []
    for attempt, state, next_at in results:
        delivered = attempt.created_at if state is model.CallbackState.DELIVERED else None
        updates.append(
            (attempt.callback_id, attempt.attempt, str(state), next_at, attempt.reply, delivered)
        )
        attempts.append(
            (
                attempt.callback_id,
                attempt.attempt,
                str(attempt.outcome),
                attempt.reply,
                attempt.duration_us,
                attempt.created_at,
            )
        )
    return [(RECORD, updates), (INSERT_ATTEMPT, attempts)]


# ---------------------------------------------------------------------------- the log

LIST_LOG = sql(
    f"""SELECT {_CB_COLUMNS} FROM callbacks
       WHERE ($1::bigint IS NULL OR subscription_id = $1)
         AND ($2::bigint IS NULL OR event_id = $2)
         AND ($3::text IS NULL OR state = $3)
         AND ($4::bigint IS NULL OR id < $4)
       ORDER BY id DESC LIMIT $5""",
    sqlite=f"""SELECT {_CB_COLUMNS} FROM callbacks
       WHERE ($1 IS NULL OR subscription_id = $1)
         AND ($2 IS NULL OR event_id = $2)
         AND ($3 IS NULL OR state = $3)
         AND ($4 IS NULL OR id < $4)
       ORDER BY id DESC LIMIT $5""",
)


async def list_log(
    conn: Connection,
    *,
    subscription_id: int | None = None,
    event_id: int | None = None,
    state: model.CallbackState | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[model.Callback]:
    """Callbacks, newest first, filtered; ``before_id`` pages."""
    rows = await conn.fetch(
        LIST_LOG,
        subscription_id,
        None if event_id is None else ids.to_db(event_id),
        None if state is None else str(state),
        before_id,
        limit,
    )
    return [_callback(r) for r in rows]


ATTEMPTS_OF = sql(
    """SELECT callback_id, attempt, outcome, reply, duration_us, created_at
       FROM callback_attempts WHERE callback_id = ANY($1::bigint[]) ORDER BY id""",
    sqlite="""SELECT callback_id, attempt, outcome, reply, duration_us, created_at
       FROM callback_attempts WHERE callback_id IN (SELECT value FROM json_each($1))
       ORDER BY id""",
)


async def attempts_of(
    conn: Connection, callback_ids: Sequence[int]
) -> dict[int, list[model.CallbackAttempt]]:
    """The logged attempts of these callbacks, oldest first, by callback id."""
    found: dict[int, list[model.CallbackAttempt]] = {i: [] for i in callback_ids}
    if not callback_ids:
        return found
    for r in await conn.fetch(ATTEMPTS_OF, list(callback_ids)):
        found[int(r[0])].append(
            model.CallbackAttempt(
                callback_id=int(r[0]),
                attempt=int(r[1]),
                outcome=model.OutcomeKind(r[2]),
                reply=r[3],
                duration_us=int(r[4]),
                created_at=int(r[5]),
            )
        )
    return found


# ---------------------------------------------------------------------------- retention

_OF_EVENTS_PG = "event_id = ANY($1::bigint[])"
_OF_EVENTS_LITE = "event_id IN (SELECT value FROM json_each($1))"
DELETE_ATTEMPTS_OF_EVENTS = sql(
    f"DELETE FROM callback_attempts WHERE callback_id IN (SELECT id FROM callbacks WHERE "
    f"{_OF_EVENTS_PG})",
    sqlite=f"DELETE FROM callback_attempts WHERE callback_id IN (SELECT id FROM callbacks "
    f"WHERE {_OF_EVENTS_LITE})",
)
DELETE_OF_EVENTS = sql(
    f"DELETE FROM callbacks WHERE {_OF_EVENTS_PG}",
    sqlite=f"DELETE FROM callbacks WHERE {_OF_EVENTS_LITE}",
)


async def purge_for_events(conn: Connection, stored_ids: list[int]) -> int:
    """Delete the callbacks (and their attempts) of events being purged; ``stored_ids`` are
    the ids as stored. Returns how many callbacks."""
    await conn.execute(DELETE_ATTEMPTS_OF_EVENTS, stored_ids)
    return await conn.execute(DELETE_OF_EVENTS, stored_ids)
