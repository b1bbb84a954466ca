"""Hourly roll-ups: the reports over a day, a week or a month read a few hundred rows.

``hourly_stats`` holds, per UTC hour of receipt, event type and final status, the events that
*finished* before the watermark ``rollup_marks.until``: how many, and for the timed ones
(``processed`` with a claim and a sent time) the sums, minimums and maximums of their time in
queue, sending time and processing time (the terms of :mod:`tidings.store.reports`). A report
adds the events the roll-up has not taken yet, read from the events table through two small
indexes: the final events that finished since the watermark (``ix_events_finished_at``) and
the events still queued or paused (``ix_events_status_id``). Final statuses never change, so
an event counts exactly once, in the hour it was received, however late it finished.

:func:`roll_up` moves the watermark forward in one transaction, to ``lag`` before now but never
past the claim of an event still ``processing`` (a worker holding an outcome it could not
record yet, or one whose clock runs a little behind, writes a ``finished_at`` older than the
moment it commits; the claim bounds it). On PostgreSQL concurrent roll-ups are ordered by the
watermark row: the second one finds it moved and does nothing.

Proof events are never rolled up (nor counted anywhere). Retention purges only events the
roll-up has passed (``store/retention.py``), and purges roll-ups older than the report
retention age like the daily aggregates.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec

from tidings import clock, model
from tidings.store import reports as scan
from tidings.store.database import Connection, Database, Query, Row, Unavailable, sql

log = logging.getLogger("tidings.rollups")

HOUR_US = 3600 * 1_000_000
NAME = "hourly"
_FINAL = ", ".join(f"'{s}'" for s in sorted(scan.FINAL))
_OPEN = ", ".join(
    f"'{s}'" for s in sorted(str(s) for s in model.EventStatus) if s not in scan.FINAL
)
_SENT = "('processed', 'deliveryFailed')"
_ERRORS = "(" + ", ".join(f"'{s}'" for s in sorted(scan.ERRORS)) + ")"

_DUE = "{latest}(received_at, COALESCE(scheduled_at, received_at))"
_TIMED = "status = 'processed' AND sent_at IS NOT NULL AND claimed_at IS NOT NULL"
_QUEUE = f"CASE WHEN {_TIMED} THEN claimed_at - {_DUE} END"
_SENDING = f"CASE WHEN {_TIMED} THEN sent_at - claimed_at END"
_PROCESSING = f"CASE WHEN {_TIMED} THEN sent_at - {_DUE} END"


MARK = sql("SELECT until FROM rollup_marks WHERE name = $1")
#: The migration writes the row; a database emptied by hand gets it back at the next roll-up.
START = sql("INSERT INTO rollup_marks (name, until) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING")
ADVANCE = sql("UPDATE rollup_marks SET until = $3 WHERE name = $1 AND until = $2")
OLDEST_CLAIM = sql("SELECT MIN(claimed_at) FROM events WHERE status = 'processing'")


def _merge(column: str, pick: str) -> str:
    # min/max that skip NULLs on both databases (SQLite's scalar min() returns NULL on one).
    return (
        f"{column} = {pick}(COALESCE(hourly_stats.{column}, excluded.{column}), "
        f"COALESCE(excluded.{column}, hourly_stats.{column}))"
    )


_TIME_COLUMNS = ("queue", "sending", "processing")
_ROLL_UP = f"""INSERT INTO hourly_stats (hour, event_type, status, events, timed,
      queue_sum, queue_min, queue_max, sending_sum, sending_min, sending_max,
      processing_sum, processing_min, processing_max)
    SELECT received_at - received_at % {HOUR_US}, type, status, COUNT(*),
      SUM(CASE WHEN {_TIMED} THEN 1 ELSE 0 END),
      COALESCE(SUM({_QUEUE}), 0), MIN({_QUEUE}), MAX({_QUEUE}),
      COALESCE(SUM({_SENDING}), 0), MIN({_SENDING}), MAX({_SENDING}),
      COALESCE(SUM({_PROCESSING}), 0), MIN({_PROCESSING}), MAX({_PROCESSING})
    FROM events WHERE finished_at >= $1 AND finished_at < $2 AND status IN ({_FINAL})
      AND proof_id IS NULL
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (hour, event_type, status) DO UPDATE SET
      events = hourly_stats.events + excluded.events,
      timed = hourly_stats.timed + excluded.timed,
      {", ".join(f"{c}_sum = hourly_stats.{c}_sum + excluded.{c}_sum" for c in _TIME_COLUMNS)},
      {", ".join(_merge(f"{c}_min", "{least}") for c in _TIME_COLUMNS)},
      {", ".join(_merge(f"{c}_max", "{greatest}") for c in _TIME_COLUMNS)}"""
ROLL_UP = sql(
    _ROLL_UP.replace("{latest}", "GREATEST")
    .replace("{least}", "LEAST")
    .replace("{greatest}", "GREATEST"),
    sqlite=_ROLL_UP.replace("{latest}", "max")
    .replace("{least}", "min")
    .replace("{greatest}", "max"),
)


class RolledUp(msgspec.Struct, frozen=True):
    """What one :func:`roll_up` did: the watermark before and after, and how many
    (hour, type, status) rows it wrote."""

    since: int
    until: int
    rows: int


async def mark(conn: Connection) -> int:
    """The watermark: every final event that finished before it is in ``hourly_stats``."""
    return int(await conn.fetchval(MARK, NAME) or 0)


async def roll_up(conn: Connection, now: int, lag: int) -> RolledUp:
    """Take the final events that finished since the watermark into ``hourly_stats`` and move
    the watermark to ``now - lag`` (or to the oldest claim still ``processing``), in the
    caller's transaction."""
    await conn.execute(START, NAME)
    since = await mark(conn)
    oldest = await conn.fetchval(OLDEST_CLAIM)
    until = now - lag if oldest is None else min(now - lag, int(oldest))
    if until <= since or not await conn.execute(ADVANCE, NAME, since, until):
        return RolledUp(since, since, 0)
    rows = await conn.execute(ROLL_UP, since, until)
    return RolledUp(since, until, rows)


async def run_periodically(db: Database, *, interval: float, lag: float) -> None:
    """Roll up every ``interval`` seconds until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            async with db.transaction() as conn:
                await roll_up(conn, clock.now_us(), int(lag * 1_000_000))
        except Unavailable as exc:
            log.warning("roll-up: database unavailable: %s", exc)
        except Exception:
            log.exception("roll-up failed")


# ---------------------------------------------------------------------------- the reports

# One (bucket, type, status) source for every report: the roll-ups of the window's hours, the
# final events that finished since the watermark, and the events not final yet. The unary +
# keeps the planners off ix_events_received_at (a scan of the whole window) for the two small
# sets, which ix_events_finished_at and ix_events_status_id find (SQLite is told so: its
# planner prefers scanning the covering index).
_PARTS = f"""WITH parts AS (
      SELECT hour - hour % $3 AS bucket, event_type, status, events, timed,
        queue_sum, queue_min, queue_max, sending_sum, sending_min, sending_max,
        processing_sum, processing_min, processing_max
      FROM hourly_stats WHERE hour >= $1 AND hour < $2 {{type_stats}}
      UNION ALL
      SELECT received_at - received_at % $3, type, status, 1,
        CASE WHEN {_TIMED} THEN 1 ELSE 0 END,
        {_QUEUE}, {_QUEUE}, {_QUEUE}, {_SENDING}, {_SENDING}, {_SENDING},
        {_PROCESSING}, {_PROCESSING}, {_PROCESSING}
      FROM events {{by_finish}} WHERE finished_at >= $4
        AND +received_at >= $1 AND +received_at < $2 AND status IN ({_FINAL})
        AND proof_id IS NULL {{type_events}}
      UNION ALL
      SELECT received_at - received_at % $3, type, status, 1, 0,
        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
      FROM events {{by_status}} WHERE status IN ({_OPEN})
        AND +received_at >= $1 AND +received_at < $2 AND proof_id IS NULL {{type_events}})
    """


def _reading(select: str, type_events: str = "", type_stats: str = "") -> Query:
    text = _PARTS.replace("{type_events}", type_events).replace("{type_stats}", type_stats)
    text += select
    pg = text.replace("{latest}", "GREATEST").replace("{by_finish}", "")
    lite = text.replace("{latest}", "max").replace(
        "{by_finish}", "INDEXED BY ix_events_finished_at"
    )
    return sql(
        pg.replace("{by_status}", ""),
        sqlite=lite.replace("{by_status}", "INDEXED BY ix_events_status_id"),
    )


_HISTORY_SELECT = f"""SELECT bucket, event_type, SUM(events),
      SUM(CASE WHEN status IN {_SENT} THEN events ELSE 0 END),
      SUM(CASE WHEN status = 'processed' THEN events ELSE 0 END)
    FROM parts GROUP BY bucket, event_type ORDER BY bucket, event_type"""
HISTORY = _reading(_HISTORY_SELECT)
HISTORY_OF_TYPE = _reading(_HISTORY_SELECT, "AND type = $5", "AND event_type = $5")
_SERVICE_SELECT = f"""SELECT bucket, SUM(events),
      SUM(CASE WHEN status = 'processed' THEN events ELSE 0 END),
      SUM(CASE WHEN status IN {_ERRORS} THEN events ELSE 0 END),
      SUM(CASE WHEN status IN ({_FINAL}) THEN events ELSE 0 END),
      SUM(CASE WHEN status = 'processed' THEN COALESCE(sending_sum, 0) ELSE 0 END),
      SUM(CASE WHEN status = 'processed' THEN timed ELSE 0 END)
    FROM parts GROUP BY bucket ORDER BY bucket"""
SERVICE = _reading(_SERVICE_SELECT)
_TIMES_SELECT = """SELECT bucket, SUM(timed),
      MIN(queue_min), SUM(queue_sum) * 1.0 / SUM(timed), MAX(queue_max),
      MIN(sending_min), SUM(sending_sum) * 1.0 / SUM(timed), MAX(sending_max),
      MIN(processing_min), SUM(processing_sum) * 1.0 / SUM(timed), MAX(processing_max)
    FROM parts WHERE status = 'processed' AND timed > 0
    GROUP BY bucket ORDER BY bucket"""
TIMES = _reading(_TIMES_SELECT)
_STATUS_SELECT = "SELECT bucket, status, SUM(events) FROM parts GROUP BY 1, 2 ORDER BY 1, 2"
STATUS_HISTORY = _reading(_STATUS_SELECT)


def covers(start: int, bucket: int) -> bool:
    """Whether a window starting at ``start`` in buckets of ``bucket`` µs can be read from the
    roll-ups (whole hours)."""
    return start % HOUR_US == 0 and bucket % HOUR_US == 0


async def _consistent(conn: Connection, query: Query, *args: Any) -> list[Row]:
    # A roll-up committing between reading the watermark and the report would count its
    # events twice (rolled up, and finished since the old watermark): read again if it moved.
    while True:
        until = await mark(conn)
        rows = await conn.fetch(query, *args[:3], until, *args[3:])
        if await mark(conn) == until:
            return rows


async def event_history(
    conn: Connection, start: int, end: int, bucket: int, event_type: str | None = None
) -> list[scan.HistoryRow]:
    """:func:`tidings.store.reports.event_history`, read from the roll-ups."""
    if event_type is None:
        rows = await _consistent(conn, HISTORY, start, end, bucket)
    else:
        rows = await _consistent(conn, HISTORY_OF_TYPE, start, end, bucket, event_type)
    return [scan.HistoryRow(int(r[0]), r[1], int(r[2]), int(r[3]), int(r[4])) for r in rows]


async def service_level(
    conn: Connection, start: int, end: int, bucket: int
) -> list[scan.ServiceRow]:
    """:func:`tidings.store.reports.service_level`, read from the roll-ups."""
    rows = await _consistent(conn, SERVICE, start, end, bucket)
    return [scan.ServiceRow(*(int(v or 0) for v in r)) for r in rows]


async def processing_times(
    conn: Connection, start: int, end: int, bucket: int
) -> list[scan.TimingRow]:
    """:func:`tidings.store.reports.processing_times`, read from the roll-ups (which also
    keep the times of events retention purged)."""
    return [scan.timing_row(r) for r in await _consistent(conn, TIMES, start, end, bucket)]


async def status_history(
    conn: Connection, start: int, end: int, bucket: int
) -> list[tuple[int, str, int]]:
    """:func:`tidings.store.reports.status_history`, read from the roll-ups."""
    rows = await _consistent(conn, STATUS_HISTORY, start, end, bucket)
    return [(int(r[0]), r[1], int(r[2])) for r in rows]
