"""The worker alone draining a full queue to smtp-sink: CPU time per email.

    .venv/bin/python bench/worker.py                     # SQLite and PostgreSQL, 20,000 events
    .venv/bin/python bench/worker.py --db sqlite --events 50000

The events (``bench/run.py``'s ``cartAbandonment`` body, each with its own recipient) are
committed through the batch intake first; then one :class:`tidings.engine.worker.Worker`
(claims, routing, rendering, MIME, pipelined SMTP to Postfix's ``smtp-sink``, outcome
commits) runs on uvloop until the queue is empty. Printed: this process's CPU time (user +
system, the SQLite writer thread included) per delivered email, PostgreSQL's (every process of
the server on this machine: its backends, WAL writer, checkpointer, autovacuum) per email, and
the wall-clock rate, which other work on the machine distorts more.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).parent))

import run
from tidings import server
from tidings.api import events as api_events
from tidings.app import App
from tidings.engine import worker
from tidings.settings import Settings
from tidings.store import database

_TICK = os.sysconf("SC_CLK_TCK")


def server_cpu() -> float:
    """CPU seconds (user + system) every ``postgres`` process on this machine has used."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:  # ended meanwhile
            continue
        name, rest = stat[stat.index("(") + 1 :].split(")", 1)
        if name == "postgres":
            fields = rest.split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / _TICK


QUEUED = database.sql(f"SELECT 1 {run.QUEUED} LIMIT 1")  # not a count: see run.queue_drained


async def drain(database_url: str, sink: int, count: int) -> tuple[float, float, float, float]:
    """(CPU µs per email, of which the event loop's thread, the database server's CPU µs per
    email, emails per second) for ``count`` events."""
    size = 500
    bodies = [
        json.dumps(
            {"events": [json.loads(run.event_body(b * size + n)) for n in range(size)]}
        ).encode()
        for b in range(count // size)
    ]
    settings = Settings.load().replace(
        database_url=database_url,
        max_batch_events=size,
        smtp_host="127.0.0.1",
        smtp_port=sink,
        smtp_tls="none",
    )
    async with App.running(settings, run_worker=False) as app:
        await server.first_start(app)
        for body in bodies:
            await app.ingest.commit(api_events.prepare_batch(app, body).events)
        server.freeze_heap()  # as a started server does
        w = worker.Worker(
            app.db,
            settings,
            transports=app.transports,
            renderer=app.renderer,
            counters=app.metrics,
            enricher=app.enricher,
        )
        cpu, loop_cpu, wall = time.process_time(), time.thread_time(), time.perf_counter()
        db_cpu = server_cpu()
        w.start()
        left = True
        while left:
            await asyncio.sleep(0.05)
            async with app.db.connection() as conn:
                left = await conn.fetchval(QUEUED) is not None
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        loop_cpu, db_cpu = time.thread_time() - loop_cpu, server_cpu() - db_cpu
        await w.stop()
    return cpu / count * 1e6, loop_cpu / count * 1e6, db_cpu / count * 1e6, count / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    print(
        "| database | events | CPU µs/email | of which the event loop's thread "
        "| PostgreSQL's CPU µs/email | emails/s |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp, run.smtp_sink() as sink:
        for db in args.db.split(","):
            with run.fresh_database(db, Path(tmp)) as url:
                cpu, loop_cpu, db_cpu, rate = uvloop.run(drain(url, sink, args.events))
            server = f"{db_cpu:.1f}" if db.startswith("postgres") else "—"
            print(
                f"| {db} | {args.events:,} | {cpu:.1f} | {loop_cpu:.1f} | {server} | {rate:,.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
