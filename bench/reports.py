"""How long the reports and the dashboard take on 1,000,000 stored events.

    .venv/bin/python bench/reports.py                         # SQLite and PostgreSQL
    .venv/bin/python bench/reports.py --db sqlite --events 200000 --repeat 3

For each database, on a fresh one migrated to the head revision, ``--events`` events are
written straight into the events table (the fastest way there: ``executemany`` on SQLite,
``COPY`` on PostgreSQL): half received within the last 24 hours, the rest spread over the 29
days before, of 5 event types; 90 % ``processed`` (with claim and sent times), the rest
``deliveryFailed``, ``ignored``, ``routingFailed``, ``tooOld`` and a few ``pending``. Then
each report (event history, service level, processing time) over the last hour, day, week and
month, and the dashboard, run ``--repeat`` times through the same functions the console and
the API call; the median and the slowest are printed as a Markdown table, with how many events
each window covered.

Each window of whole hours (day, week, month) is timed twice on the same data: by scanning the
events (``tidings.store.reports``, how every report was read before the hourly roll-ups) and
from the roll-ups (``tidings.store.rollups``, what the reports read now), after one roll-up of
everything that finished up to a minute ago (timed too). The dashboard, as the console reads it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).parent))

import run
from tidings import clock, ids, reports
from tidings.settings import Settings
from tidings.store import database, migrate, rollups
from tidings.store import reports as scan

DAY = 86_400 * 1_000_000
TYPES = ["cartAbandonment", "orderConfirmation", "passwordReset", "shipping", "welcome"]
STATUSES = (
    ["processed"] * 90
    + ["deliveryFailed"] * 3
    + ["ignored"] * 3
    + ["routingFailed", "tooOld"]
    + ["pending"] * 2
)
COLUMNS = (
    "id, type, channel, email, mobile_phone, push_token, external_id, ctx, priority, status, "
    "source, received_at, scheduled_at, expires_at, due_at, attempts, claimed_at, sent_at, "
    "finished_at, publication_id, template_version_id, reason"
)


def rows(count: int, now: int) -> list[tuple[object, ...]]:
    rng = random.Random(7)
    made = []
    start_ms = ids.clock_ms() - 40 * 86_400_000
    generator = ids.IdGenerator(9, 0, start_ms, ids.clock_ms() + 10**9)
    for n in range(count):
        age = rng.randrange(DAY) if n % 2 else DAY + rng.randrange(29 * DAY)
        received = now - age
        status = rng.choice(STATUSES)
        final = status != "pending"
        claimed = received + rng.randrange(1_000, 3_000_000) if final else None
        sent = (
            claimed + rng.randrange(5_000, 500_000)
            if claimed is not None and status in ("processed", "deliveryFailed")
            else None
        )
        made.append(
            (
                ids.to_db(generator.next()),
                rng.choice(TYPES),
                None,
                f"user{n}@example.com",
                None,
                None,
                None,
                '{"firstName":"Jack"}',
                5,
                status,
                "api",
                received,
                None,
                None,
                received,
                1 if final else 0,
                claimed,
                sent,
                sent or claimed,
                1 if final else None,
                1 if final else None,
                None,
            )
        )
    return made


def fill_sqlite(url: str, made: list[tuple[object, ...]]) -> None:
    conn = sqlite3.connect(database.sqlite_path(url))
    marks = ", ".join("?" * len(made[0]))
    with conn:
        conn.executemany(f"INSERT INTO events ({COLUMNS}) VALUES ({marks})", made)
    conn.execute("ANALYZE")
    conn.close()


async def fill_postgres(url: str, made: list[tuple[object, ...]]) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table(
            "events", records=made, columns=[c.strip() for c in COLUMNS.split(",")]
        )
        await conn.execute("ANALYZE events")
    finally:
        await conn.close()


async def _scan(db: database.Database, name: str, w: reports.Window) -> int:
    async with db.connection() as conn:
        if name == "event-history":
            rows = await scan.event_history(conn, w.start, w.end, w.bucket)
            return sum(r.events for r in rows)
        if name == "service-level":
            return len(await scan.service_level(conn, w.start, w.end, w.bucket))
        return len(await scan.processing_times(conn, w.start, w.end, w.bucket))


Result = tuple[str, str, str, int, float, float]


async def measure(url: str, repeat: int) -> list[Result]:
    db = await database.connect(url)
    settings = Settings.from_mapping({"database_url": url})
    results: list[Result] = []
    try:
        began = time.perf_counter()
        async with db.transaction() as conn:
            await rollups.roll_up(conn, clock.now_us(), 60_000_000)
        took = time.perf_counter() - began
        results.append(("roll-up of every finished event", "", "once", 0, took, took))
        for period in reports.Period:
            w = reports.window(period)
            for name in reports.NAMES:
                ways = ["scan", "roll-ups"] if rollups.covers(w.start, w.bucket) else ["scan"]
                for way in ways:
                    times = []
                    covered = 0
                    for _ in range(repeat):
                        began = time.perf_counter()
                        if way == "scan":
                            count = await _scan(db, name, w)
                        else:
                            report = await reports.build(db, name, w)
                            count = sum(getattr(line, "events", 0) for line in report.lines)
                        times.append(time.perf_counter() - began)
                        covered = count if name == "event-history" else 0
                    median = statistics.median(times)
                    results.append((name, str(period), way, covered, median, max(times)))
        times = []
        for _ in range(repeat):
            began = time.perf_counter()
            await reports.dashboard(db, settings)
            times.append(time.perf_counter() - began)
        median = statistics.median(times)
        results.append(("dashboard", "hour + day", "roll-ups", 0, median, max(times)))
    finally:
        await db.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    now = clock.now_us()
    print(f"generating {args.events:,} events...", file=sys.stderr)
    made = rows(args.events, now)
    lines = [
        "| database | report | period | read by | events in window | median | slowest |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as folder:
        for kind in args.db.split(","):
            with run.fresh_database(kind, Path(folder)) as url:
                migrate.upgrade(url)
                began = time.perf_counter()
                if kind == "sqlite":
                    fill_sqlite(url, made)
                else:
                    asyncio.run(fill_postgres(url, made))
                print(f"{kind}: wrote in {time.perf_counter() - began:.0f} s", file=sys.stderr)
                for name, period, way, covered, median, slowest in asyncio.run(
                    measure(url, args.repeat)
                ):
                    events = f"{covered:,}" if covered else ""
                    lines.append(
                        f"| {kind} | {name} | {period} | {way} | {events} | "
                        f"{median * 1000:,.1f} ms | {slowest * 1000:,.1f} ms |"
                    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
