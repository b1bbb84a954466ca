"""Retention: purge old events in small batches, keeping daily aggregates of what went.

Events that reached a final status and were received longer ago than the retention age go, with
their delivery log, outbox messages, bounces and status callbacks, ``batch`` events per
transaction (short transactions, a pause between them, so claims and ingest commits keep their
turn at the database). In the same transaction as the delete, each batch is counted into
``daily_stats`` (per UTC day of receipt, event type and final status: events, attempts, and for
processed events the sum of the times from due to sent). An event is therefore counted exactly
once: in ``daily_stats`` once purged, in the events table until then; :func:`daily_report` adds
the two. Aggregates are purged in turn after the (longer) report retention age, with the hourly
roll-ups (``store/rollups.py``); only events the roll-up has taken are purged.

Events still queued or paused are kept whatever their age: a purge never takes an event a
worker may hold. On PostgreSQL, one node purges at a time (a transaction-level advisory
lock); the others skip the round.
"""

from __future__ import annotations

import asyncio
import logging
import random

import msgspec

from tidings import clock, model
from tidings.store import callbacks as callbacks_store
from tidings.store import rollups
from tidings.store.database import Connection, Database, Unavailable, sql

log = logging.getLogger("tidings.retention")

DAY_US = 86_400 * 1_000_000
BATCH = 1_000
PAUSE = 0.05  # seconds between two batches
_LOCK_KEY = 0x7469_6469  # "tidi": the advisory lock purging nodes share
_FINAL = ", ".join(f"'{s}'" for s in sorted(model.FINAL_STATUSES))

TRY_LOCK = sql(f"SELECT pg_try_advisory_xact_lock({_LOCK_KEY})", sqlite="SELECT TRUE")

# Only events the hourly roll-up already took (store/rollups.py): the reports read them there.
_ROLLED = "finished_at < COALESCE((SELECT until FROM rollup_marks WHERE name = 'hourly'), 0)"
OLD_EVENTS = sql(
    f"""SELECT id FROM events WHERE received_at < $1 AND status IN ({_FINAL}) AND {_ROLLED}
        ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
    sqlite=f"""SELECT id FROM events WHERE received_at < $1 AND status IN ({_FINAL})
        AND {_ROLLED} ORDER BY received_at LIMIT $2""",
)

_SEND_US = (
    "SUM(CASE WHEN status = 'processed' AND sent_at IS NOT NULL "
    "THEN sent_at - {latest}(received_at, COALESCE(scheduled_at, received_at)) ELSE 0 END)"
)
_AGGREGATE = """INSERT INTO daily_stats (day, event_type, status, events, attempts, send_us)
    SELECT received_at - received_at % {day}, type, status, COUNT(*), SUM(attempts), {send_us}
    FROM events WHERE {ids} AND proof_id IS NULL
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (day, event_type, status) DO UPDATE SET
      events = daily_stats.events + excluded.events,
      attempts = daily_stats.attempts + excluded.attempts,
      send_us = daily_stats.send_us + excluded.send_us"""
_PG_IDS = "id = ANY($1::bigint[])"
_LITE_IDS = "id IN (SELECT value FROM json_each($1))"
AGGREGATE = sql(
    _AGGREGATE.format(day=DAY_US, send_us=_SEND_US.format(latest="GREATEST"), ids=_PG_IDS),
    sqlite=_AGGREGATE.format(day=DAY_US, send_us=_SEND_US.format(latest="max"), ids=_LITE_IDS),
)
DELETE_DELIVERIES = sql(
    "DELETE FROM deliveries WHERE event_" + _PG_IDS,
    sqlite="DELETE FROM deliveries WHERE event_" + _LITE_IDS,
)
DELETE_OUTBOX = sql(
    "DELETE FROM outbox WHERE event_" + _PG_IDS,
    sqlite="DELETE FROM outbox WHERE event_" + _LITE_IDS,
)
DELETE_BOUNCES = sql(
    "DELETE FROM bounces WHERE event_" + _PG_IDS,
    sqlite="DELETE FROM bounces WHERE event_" + _LITE_IDS,
)
DELETE_RECEIPTS = sql(
    "DELETE FROM receipts WHERE event_" + _PG_IDS,
    sqlite="DELETE FROM receipts WHERE event_" + _LITE_IDS,
)
DELETE_EVENTS = sql(
    "DELETE FROM events WHERE " + _PG_IDS, sqlite="DELETE FROM events WHERE " + _LITE_IDS
)
PURGE_STATS = sql("DELETE FROM daily_stats WHERE day < $1")
PURGE_ROLLUPS = sql("DELETE FROM hourly_stats WHERE hour < $1")


class Purged(msgspec.Struct, frozen=True):
    """What one :func:`purge` removed (``skipped``: another node was purging)."""

    events: int = 0
    batches: int = 0
    stats: int = 0
    skipped: bool = False
    rollups: int = 0


async def purge_batch(conn: Connection, older_than: int, limit: int = BATCH) -> int | None:
    """Count and delete up to ``limit`` final events received before ``older_than`` (with
    their deliveries, outbox messages, bounces, receipts and status callbacks), in the
    caller's transaction. Returns how many, or None if another node holds the purge lock."""
    if not await conn.fetchval(TRY_LOCK):
        return None
    doomed = [row[0] for row in await conn.fetch(OLD_EVENTS, older_than, limit)]
    if not doomed:
        return 0
    await conn.execute(AGGREGATE, doomed)
    await conn.execute(DELETE_DELIVERIES, doomed)
    await conn.execute(DELETE_OUTBOX, doomed)
    await conn.execute(DELETE_BOUNCES, doomed)
    await conn.execute(DELETE_RECEIPTS, doomed)
    await callbacks_store.purge_for_events(conn, doomed)
    return await conn.execute(DELETE_EVENTS, doomed)


PURGE_PROOFS = sql(
    """DELETE FROM proofs WHERE created_at < $1
       AND NOT EXISTS (SELECT 1 FROM events WHERE events.proof_id = proofs.id)"""
)


async def purge_proofs(conn: Connection, older_than: int) -> int:
    """Delete proofs made before ``older_than`` whose events are all purged."""
    return await conn.execute(PURGE_PROOFS, older_than)


async def purge_stats(conn: Connection, older_than: int) -> int:
    """Delete daily aggregates of days before ``older_than``; return how many rows."""
    return await conn.execute(PURGE_STATS, older_than)


async def purge_rollups(conn: Connection, older_than: int) -> int:
    """Delete the hourly roll-ups of hours before ``older_than``; return how many rows."""
    return await conn.execute(PURGE_ROLLUPS, older_than)


async def purge(
    db: Database,
    *,
    now: int,
    event_age: float,
    report_age: float,
    batch: int = BATCH,
    pause: float = PAUSE,
    rollup_lag: float = 10.0,
) -> Purged:
    """Purge everything past its retention age (ages in seconds; 0 keeps forever), one short
    transaction per batch, pausing ``pause`` seconds between batches. Finished events are
    rolled up first (only rolled-up events go)."""
    events = batches = 0
    if event_age > 0:
        async with db.transaction() as conn:
            await rollups.roll_up(conn, clock.now_us(), int(rollup_lag * 1_000_000))
        older_than = now - int(event_age * 1_000_000)
        while True:
            async with db.transaction() as conn:
                done = await purge_batch(conn, older_than, batch)
            if done is None:
                return Purged(events, batches, skipped=True)
            if done:
                events += done
                batches += 1
            if done < batch:
                break
            await asyncio.sleep(pause)
        async with db.transaction() as conn:
            await purge_proofs(conn, older_than)
    stats = hours = 0
    if report_age > 0:
        async with db.transaction() as conn:
            stats = await purge_stats(conn, now - int(report_age * 1_000_000))
            hours = await purge_rollups(conn, now - int(report_age * 1_000_000))
    return Purged(events, batches, stats, rollups=hours)


async def run_periodically(
    db: Database,
    *,
    interval: float,
    event_age: float,
    report_age: float,
    batch: int = BATCH,
    first_delay: float | None = None,
    rollup_lag: float = 10.0,
) -> None:
    """Purge every ``interval`` seconds until cancelled (the first round after a random
    delay of up to a minute, so that nodes started together do not purge together)."""
    delay = random.uniform(0, min(interval, 60.0)) if first_delay is None else first_delay
    while True:
        await asyncio.sleep(delay)
        delay = interval
        try:
            done = await purge(
                db,
                now=clock.now_us(),
                event_age=event_age,
                report_age=report_age,
                batch=batch,
                rollup_lag=rollup_lag,
            )
        except Unavailable as exc:
            log.warning("retention: database unavailable: %s", exc)
            continue
        except Exception:
            log.exception("retention: purge failed")
            continue
        if done.events or done.stats:
            log.info(
                "retention: purged %d events in %d batches, %d daily aggregates",
                done.events,
                done.batches,
                done.stats,
            )


# ---------------------------------------------------------------------------- reports


class DailyStat(msgspec.Struct, frozen=True):
    """Events of one UTC day, type and final status."""

    day: int
    event_type: str
    status: model.EventStatus
    events: int
    attempts: int
    send_us: int

    @property
    def average_send_us(self) -> float | None:
        """Mean time from due to sent of processed events."""
        if self.status is not model.EventStatus.PROCESSED or not self.events:
            return None
        return self.send_us / self.events


_REPORT = """SELECT day, event_type, status, SUM(events), SUM(attempts), SUM(send_us) FROM (
      SELECT received_at - received_at % {day} AS day, type AS event_type, status,
        COUNT(*) AS events, SUM(attempts) AS attempts, {send_us} AS send_us
      FROM events WHERE received_at >= $1 AND received_at < $2 AND status IN ({final})
        AND proof_id IS NULL
      GROUP BY 1, 2, 3
      UNION ALL
      SELECT day, event_type, status, events, attempts, send_us FROM daily_stats
      WHERE day >= $1 AND day < $2) AS both_
    GROUP BY day, event_type, status ORDER BY day, event_type, status"""
DAILY_REPORT = sql(
    _REPORT.format(day=DAY_US, send_us=_SEND_US.format(latest="GREATEST"), final=_FINAL),
    sqlite=_REPORT.format(day=DAY_US, send_us=_SEND_US.format(latest="max"), final=_FINAL),
)


def day_of(time_us: int) -> int:
    """The UTC midnight (µs since the epoch) starting the day ``time_us`` falls in."""
    return time_us - time_us % DAY_US


async def daily_report(conn: Connection, first_day: int, end_day: int) -> list[DailyStat]:
    """Final events per UTC day, type and status for the days from ``first_day`` up to, not
    including, ``end_day`` (both UTC midnights, see :func:`day_of`): the aggregates of purged
    events plus the events still stored."""
    rows = await conn.fetch(DAILY_REPORT, first_day, end_day)
    return [
        DailyStat(
            day=int(r[0]),
            event_type=r[1],
            status=model.EventStatus(r[2]),
            events=int(r[3]),
            attempts=int(r[4]),
            send_us=int(r[5]),
        )
        for r in rows
    ]
