"""The queries behind the reports and the dashboard (``reports.py`` shapes them).

Every report reads the events of a window of receipt times through ``ix_events_received_at``
(one range scan, grouped in the database); the history and service-level reports add the
``daily_stats`` aggregates of events that retention already purged (``store/retention.py``), so
an event counts exactly once whether it is still stored or not. A purged day's aggregates fall
in the bucket holding that day's midnight.

Terms: *sent* are events whose message a transport was asked to deliver (they ended
``processed`` or ``deliveryFailed``); *success* are ``processed`` ones; *errors* are events
that ended ``deliveryFailed``, ``routingFailed`` or ``tooOld``. Proofs' events are never
counted (``proof_id`` is in the index, so leaving them out costs no row visit).
Times: *time in queue* runs
from when an event was due (received, or its schedule) to its last claim, *sending time* from
that claim to sent, *processing time* from due to sent.
"""

from __future__ import annotations

import msgspec

from tidings import model
from tidings.store.database import Connection, Row, sql

#: Final statuses that count as errors.
ERRORS = frozenset({"deliveryFailed", "routingFailed", "tooOld"})
FINAL = frozenset(str(s) for s in model.FINAL_STATUSES)
_SENT = "('processed', 'deliveryFailed')"
_ERRORS = "(" + ", ".join(f"'{s}'" for s in sorted(ERRORS)) + ")"
_FINAL = ", ".join(f"'{s}'" for s in sorted(FINAL))


class HistoryRow(msgspec.Struct, frozen=True):
    """Events of one type received in one bucket, and what became of them."""

    bucket: int
    event_type: str
    events: int
    sent: int
    success: int


class ServiceRow(msgspec.Struct, frozen=True):
    """Volumes of one bucket: received, sent successfully, errors, final; the total sending
    time of the processed events (µs) and how many of them carry one."""

    bucket: int
    incoming: int
    outgoing: int
    errors: int
    final: int
    sending_us: int
    timed: int


class TimingRow(msgspec.Struct, frozen=True):
    """Times (µs) of the processed events received in one bucket: min, average, max."""

    bucket: int
    events: int
    queue: tuple[int, float, int]
    sending: tuple[int, float, int]
    processing: tuple[int, float, int]


_HISTORY = f"""SELECT bucket, event_type, SUM(events), SUM(sent), SUM(success) FROM (
      SELECT received_at - received_at % $3 AS bucket, type AS event_type, COUNT(*) AS events,
        SUM(CASE WHEN status IN {_SENT} THEN 1 ELSE 0 END) AS sent,
        SUM(CASE WHEN status = 'processed' THEN 1 ELSE 0 END) AS success
      FROM events WHERE received_at >= $1 AND received_at < $2 AND proof_id IS NULL {{type_events}}
      GROUP BY 1, 2
      UNION ALL
      SELECT day - day % $3, event_type, SUM(events),
        SUM(CASE WHEN status IN {_SENT} THEN events ELSE 0 END),
        SUM(CASE WHEN status = 'processed' THEN events ELSE 0 END)
      FROM daily_stats WHERE day >= $1 AND day < $2 {{type_stats}}
      GROUP BY 1, 2) AS both_
    GROUP BY bucket, event_type ORDER BY bucket, event_type"""
HISTORY = sql(_HISTORY.format(type_events="", type_stats=""))
HISTORY_OF_TYPE = sql(
    _HISTORY.format(type_events="AND type = $4", type_stats="AND event_type = $4")
)


async def event_history(
    conn: Connection, start: int, end: int, bucket: int, event_type: str | None = None
) -> list[HistoryRow]:
    """Per bucket of ``bucket`` µs and event type: events received in ``[start, end)``."""
    if event_type is None:
        rows = await conn.fetch(HISTORY, start, end, bucket)
    else:
        rows = await conn.fetch(HISTORY_OF_TYPE, start, end, bucket, event_type)
    return [HistoryRow(int(r[0]), r[1], int(r[2]), int(r[3]), int(r[4])) for r in rows]


_DUE = "{latest}(received_at, COALESCE(scheduled_at, received_at))"
_SERVICE = f"""SELECT bucket, SUM(incoming), SUM(outgoing), SUM(errors), SUM(final),
      SUM(sending_us), SUM(timed) FROM (
      SELECT received_at - received_at % $3 AS bucket, COUNT(*) AS incoming,
        SUM(CASE WHEN status = 'processed' THEN 1 ELSE 0 END) AS outgoing,
        SUM(CASE WHEN status IN {_ERRORS} THEN 1 ELSE 0 END) AS errors,
        SUM(CASE WHEN status IN ({_FINAL}) THEN 1 ELSE 0 END) AS final,
        SUM(CASE WHEN status = 'processed' AND sent_at IS NOT NULL AND claimed_at IS NOT NULL
          THEN sent_at - claimed_at ELSE 0 END) AS sending_us,
        SUM(CASE WHEN status = 'processed' AND sent_at IS NOT NULL AND claimed_at IS NOT NULL
          THEN 1 ELSE 0 END) AS timed
      FROM events WHERE received_at >= $1 AND received_at < $2 AND proof_id IS NULL
      GROUP BY 1
      UNION ALL
      SELECT day - day % $3, SUM(events),
        SUM(CASE WHEN status = 'processed' THEN events ELSE 0 END),
        SUM(CASE WHEN status IN {_ERRORS} THEN events ELSE 0 END), SUM(events), 0, 0
      FROM daily_stats WHERE day >= $1 AND day < $2
      GROUP BY 1) AS both_
    GROUP BY bucket ORDER BY bucket"""
SERVICE = sql(_SERVICE)


async def service_level(conn: Connection, start: int, end: int, bucket: int) -> list[ServiceRow]:
    """Per bucket: volumes of the events received in ``[start, end)``."""
    rows = await conn.fetch(SERVICE, start, end, bucket)
    return [ServiceRow(*(int(v or 0) for v in r)) for r in rows]


_TIMES = """SELECT received_at - received_at % $3 AS bucket, COUNT(*),
      MIN(claimed_at - {due}), AVG(claimed_at - {due}), MAX(claimed_at - {due}),
      MIN(sent_at - claimed_at), AVG(sent_at - claimed_at), MAX(sent_at - claimed_at),
      MIN(sent_at - {due}), AVG(sent_at - {due}), MAX(sent_at - {due})
    FROM events WHERE received_at >= $1 AND received_at < $2 AND proof_id IS NULL
      AND status = 'processed'
      AND sent_at IS NOT NULL AND claimed_at IS NOT NULL
    GROUP BY 1 ORDER BY 1"""
TIMES = sql(
    _TIMES.format(due=_DUE.format(latest="GREATEST")),
    sqlite=_TIMES.format(due=_DUE.format(latest="max")),
)


async def processing_times(conn: Connection, start: int, end: int, bucket: int) -> list[TimingRow]:
    """Per bucket: times of the processed events received in ``[start, end)`` and still
    stored (purged days keep no per-event times)."""
    return [timing_row(r) for r in await conn.fetch(TIMES, start, end, bucket)]


def timing_row(r: Row) -> TimingRow:
    """A row of (bucket, events, then min, average and max of each time) as a TimingRow."""
    return TimingRow(
        int(r[0]),
        int(r[1]),
        (int(r[2]), float(r[3]), int(r[4])),
        (int(r[5]), float(r[6]), int(r[7])),
        (int(r[8]), float(r[9]), int(r[10])),
    )


STATUS_HISTORY = sql(
    """SELECT received_at - received_at % $3, status, COUNT(*) FROM events
       WHERE received_at >= $1 AND received_at < $2 AND proof_id IS NULL
       GROUP BY 1, 2 ORDER BY 1, 2"""
)


async def status_history(
    conn: Connection, start: int, end: int, bucket: int
) -> list[tuple[int, str, int]]:
    """(bucket, status, events) for the events received in ``[start, end)``."""
    rows = await conn.fetch(STATUS_HISTORY, start, end, bucket)
    return [(int(r[0]), r[1], int(r[2])) for r in rows]


STATUSES = sql(
    """SELECT status, COUNT(*) FROM events WHERE received_at >= $1 AND received_at < $2
       AND proof_id IS NULL GROUP BY status"""
)


async def statuses(conn: Connection, start: int, end: int) -> dict[str, int]:
    """How many of the events received in ``[start, end)`` are in each status."""
    return {r[0]: int(r[1]) for r in await conn.fetch(STATUSES, start, end)}


WAITING = sql(
    """SELECT status, COUNT(*) FROM events
       WHERE status IN ('pending', 'processing', 'paused') AND proof_id IS NULL
       GROUP BY status"""
)


async def waiting(conn: Connection) -> dict[str, int]:
    """How many events wait in the queue (``pending``, ``processing``) or are ``paused``."""
    return {r[0]: int(r[1]) for r in await conn.fetch(WAITING)}
