"""Reports like Adobe Message Center's (the console and ``/api/v1/reports`` show these):
event history per event type, service level, processing time; and the dashboard's numbers
with their warning and alert thresholds.

A report covers a :class:`Period` ending now, in buckets (five minutes for the last hour,
an hour for the last day, a day for a week or a month). The queries and the meaning of
*sent*, *success*, *errors* and the times are in :mod:`tidings.store.reports`; windows of whole
hours (the day, week and month) are read from the hourly roll-ups instead
(:mod:`tidings.store.rollups`: the same numbers without scanning every event).
"""

from __future__ import annotations

import csv
import enum
import io
from collections.abc import Sequence
from typing import Any

import msgspec

from tidings import clock
from tidings.settings import THRESHOLDS, Settings
from tidings.store import queue, rollups
from tidings.store import reports as store
from tidings.store.database import Database

_MINUTE = 60 * 1_000_000
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR


class Period(enum.StrEnum):
    """How far back a report looks."""

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


#: (span, bucket) in µs for each period.
SPANS: dict[Period, tuple[int, int]] = {
    Period.HOUR: (_HOUR, 5 * _MINUTE),
    Period.DAY: (_DAY, _HOUR),
    Period.WEEK: (7 * _DAY, _DAY),
    Period.MONTH: (30 * _DAY, _DAY),
}


class Window(msgspec.Struct, frozen=True):
    """The receipt times ``[start, end)`` a report covers, in buckets of ``bucket`` µs."""

    period: Period
    start: int
    end: int
    bucket: int

    def buckets(self) -> list[int]:
        """Every bucket's start, oldest first (the empty ones too, for charts)."""
        return list(range(self.start, self.end, self.bucket))


def window(period: Period, now: int | None = None) -> Window:
    """The window of ``period`` ending with the bucket that holds ``now``."""
    span, bucket = SPANS[period]
    end = (clock.now_us() if now is None else now) // bucket * bucket + bucket
    return Window(period, end - span, end, bucket)


# ---------------------------------------------------------------------------- the reports


class HistoryLine(msgspec.Struct, frozen=True):
    """One line of the event history report."""

    time: str
    eventType: str
    events: int
    sent: int
    success: int


class ServiceLine(msgspec.Struct, frozen=True):
    """One line of the service level report; throughputs are per second over the bucket,
    ``errorRate`` in percent of the final events, ``averageSendingMs`` over processed ones."""

    time: str
    incoming: int
    outgoing: int
    incomingPerSecond: float
    outgoingPerSecond: float
    errors: int
    errorRate: float | None
    averageSendingMs: float | None


class TimingLine(msgspec.Struct, frozen=True):
    """One line of the processing time report, in milliseconds."""

    time: str
    events: int
    queueMinMs: float
    queueAvgMs: float
    queueMaxMs: float
    sendingMinMs: float
    sendingAvgMs: float
    sendingMaxMs: float
    processingMinMs: float
    processingAvgMs: float
    processingMaxMs: float


class Report(msgspec.Struct, frozen=True):
    """A report: its name, window and lines."""

    name: str
    period: Period
    start: str
    end: str
    bucketSeconds: int
    lines: Sequence[HistoryLine | ServiceLine | TimingLine]


NAMES = ("event-history", "service-level", "processing-time")


def _ms(us: float) -> float:
    return round(us / 1000, 3)


def _rolled(w: Window) -> bool:
    return rollups.covers(w.start, w.bucket)


def _report(name: str, w: Window, lines: Sequence[Any]) -> Report:
    return Report(
        name, w.period, clock.format_iso(w.start), clock.format_iso(w.end), w.bucket // 10**6, lines
    )


async def event_history(db: Database, w: Window, event_type: str | None = None) -> Report:
    """Events received per bucket and event type, how many were sent, how many succeeded."""
    async with db.connection() as conn:
        read = rollups.event_history if _rolled(w) else store.event_history
        rows = await read(conn, w.start, w.end, w.bucket, event_type)
    lines = [
        HistoryLine(clock.format_iso(r.bucket), r.event_type, r.events, r.sent, r.success)
        for r in rows
    ]
    return _report("event-history", w, lines)


async def service_level(db: Database, w: Window) -> Report:
    """Incoming and outgoing volume and throughput, errors, average sending time."""
    async with db.connection() as conn:
        read = rollups.service_level if _rolled(w) else store.service_level
        rows = await read(conn, w.start, w.end, w.bucket)
    seconds = w.bucket / 1_000_000
    lines = [
        ServiceLine(
            clock.format_iso(r.bucket),
            r.incoming,
            r.outgoing,
            round(r.incoming / seconds, 4),
            round(r.outgoing / seconds, 4),
            r.errors,
            round(100 * r.errors / r.final, 2) if r.final else None,
            _ms(r.sending_us / r.timed) if r.timed else None,
        )
        for r in rows
    ]
    return _report("service-level", w, lines)


async def processing_time(db: Database, w: Window) -> Report:
    """Time in queue, sending time and processing time: min, average and max per bucket."""
    async with db.connection() as conn:
        read = rollups.processing_times if _rolled(w) else store.processing_times
        rows = await read(conn, w.start, w.end, w.bucket)
    lines = [
        TimingLine(
            clock.format_iso(r.bucket),
            r.events,
            *(_ms(v) for v in (*r.queue, *r.sending, *r.processing)),
        )
        for r in rows
    ]
    return _report("processing-time", w, lines)


async def build(db: Database, name: str, w: Window, event_type: str | None = None) -> Report:
    """The report called ``name`` (one of :data:`NAMES`) over ``w``."""
    if name == "event-history":
        return await event_history(db, w, event_type)
    if name == "service-level":
        return await service_level(db, w)
    if name == "processing-time":
        return await processing_time(db, w)
    raise KeyError(name)


def to_csv(report: Report) -> str:
    """The report's lines as CSV, a header line first (the field names of its lines)."""
    kind = {
        "event-history": HistoryLine,
        "service-level": ServiceLine,
        "processing-time": TimingLine,
    }[report.name]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(kind.__struct_fields__)
    for line in report.lines:
        writer.writerow(["" if v is None else v for v in msgspec.structs.astuple(line)])
    return out.getvalue()


# ---------------------------------------------------------------------------- dashboard


class Gauge(msgspec.Struct, frozen=True):
    """A watched number with its thresholds; ``level`` is ok, warning or alert (``none``
    when there is nothing to measure)."""

    name: str
    label: str
    value: float | None
    unit: str
    warning: float
    alert: float
    level: str


_GAUGES = {
    "pending_queue": ("Pending queue", "events"),
    "error_rate": ("Error rate", "%"),
    "time_in_queue": ("Time in queue", "s"),
    "sending_time": ("Sending time", "s"),
    "processing_time": ("Processing time", "s"),
}


def gauge(settings: Settings, name: str, value: float | None) -> Gauge:
    """``value`` against the ``threshold_<name>`` setting."""
    warning, alert = settings.threshold(name)
    if value is None:
        level = "none"
    elif value >= alert:
        level = "alert"
    elif value >= warning:
        level = "warning"
    else:
        level = "ok"
    label, unit = _GAUGES[name]
    return Gauge(name, label, value, unit, warning, alert, level)


class Dashboard(msgspec.Struct, frozen=True):
    """What the dashboard shows: the last hour and day by status, the queue, the gauges
    (over the last hour), and the hourly history of the day for the chart."""

    hour: dict[str, int]
    day: dict[str, int]
    waiting: dict[str, int]
    due: int
    oldest_due_seconds: float
    gauges: list[Gauge]
    day_history: list[tuple[str, int, int, int]]


async def queue_state(db: Database) -> tuple[dict[str, int], int, float]:
    """(events pending, processing or paused; events due now; age of the oldest due, s)."""
    now = clock.now_us()
    async with db.connection() as conn:
        waiting = await store.waiting(conn)
        due, oldest = await queue.queue_depth(conn, now)
    return waiting, due, 0.0 if oldest is None else max(0, now - oldest) / 1e6


async def dashboard(db: Database, settings: Settings, now: int | None = None) -> Dashboard:
    """The dashboard's numbers, now. The day is read once (per hour and status); the gauges
    cover the last hour."""
    now = clock.now_us() if now is None else now
    day = window(Period.DAY, now)
    async with db.connection() as conn:
        last_hour = await store.statuses(conn, now - _HOUR, now + 1)
        read = rollups.status_history if _rolled(day) else store.status_history
        history = await read(conn, day.start, day.end, day.bucket)
        times = await store.processing_times(conn, now - _HOUR, now + 1, _DAY)
    waiting, due, oldest = await queue_state(db)
    last_day: dict[str, int] = {}
    per_hour: dict[int, list[int]] = {b: [0, 0, 0] for b in day.buckets()}
    for bucket, status, count in history:
        last_day[status] = last_day.get(status, 0) + count
        counts = per_hour.setdefault(bucket, [0, 0, 0])
        counts[0] += count
        if status == "processed":
            counts[1] += count
        elif status in store.ERRORS:
            counts[2] += count
    final = sum(n for s, n in last_hour.items() if s in store.FINAL)
    errors = sum(n for s, n in last_hour.items() if s in store.ERRORS)
    timed = sum(t.events for t in times)

    def average(part: int) -> float | None:
        if not timed:
            return None
        total = sum((t.queue, t.sending, t.processing)[part][1] * t.events for t in times)
        return round(total / timed / 1e6, 3)

    values: dict[str, float | None] = {
        "pending_queue": float(waiting.get("pending", 0)),
        "error_rate": round(100 * errors / final, 2) if final else None,
        "time_in_queue": average(0),
        "sending_time": average(1),
        "processing_time": average(2),
    }
    return Dashboard(
        hour=last_hour,
        day=last_day,
        waiting=waiting,
        due=due,
        oldest_due_seconds=oldest,
        gauges=[gauge(settings, name, values[name]) for name in THRESHOLDS],
        day_history=[
            (clock.format_iso(b), *per_hour[b])  # type: ignore[misc]
            for b in sorted(per_hour)
        ],
    )
