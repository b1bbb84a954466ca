"""What each index of the ``events`` table costs the batch insert, on SQLite.

    .venv/bin/python bench/indexes.py                          # 300,000 rows, distinct recipients
    .venv/bin/python bench/indexes.py --recipients repeated    # the 500 emails bench/run.py posts

A database holding ``--rows`` events (the declared schema, every index) is built once; each
variant then starts from a copy of it, drops the indexes it leaves out and inserts
``--batches`` batches of ``--size`` events as the group commit writes them (one multi-row
``INSERT`` a transaction, WAL, ``synchronous=FULL``). The figure is this process's CPU time
(user + system: SQLite's page writes to the WAL are system time) per inserted event, the
median of five rounds. The events look like ``bench/run.py``'s; ``--recipients distinct``
gives each one its own email address, as real traffic does, ``repeated`` cycles through the
same 500 addresses (what ``bench/run.py``'s batch scenario and ``bench/batch.py`` send).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from tidings.store import schema

COLUMNS = (
    "id, type, channel, email, mobile_phone, push_token, external_id, ctx, priority, status, "
    "source, received_at, scheduled_at, expires_at, due_at, attempts, ctx_issues"
)
CTX = json.dumps(
    {
        "firstName": "Ada",
        "cartAmount": "129.90",
        "items": [{"name": "Lamp", "price": "39.90"}, {"name": "Chair", "price": "90.00"}],
        "url": "https://shop.example.com/cart/123",
    }
)


def ddl() -> tuple[str, dict[str, str]]:
    """The events table and each of its indexes, as SQLite creates them."""
    dialect = sqlite_dialect.dialect()
    table = str(CreateTable(schema.events).compile(dialect=dialect))
    indexes = {
        str(i.name): str(CreateIndex(i).compile(dialect=dialect)) for i in schema.events.indexes
    }
    return table, indexes


class Events:
    """Event rows in id order, with distinct or repeated recipients."""

    def __init__(self, recipients: str):
        self.n = 0
        self.distinct = recipients == "distinct"
        self.rng = random.Random(1)

    def batch(self, size: int) -> Iterator[object]:
        for k in range(size):
            self.n += 1
            at = 1_700_000_000_000_000 + self.n * 10
            who = self.rng.randrange(10**9) if self.distinct else k
            yield from (self.n * 4096 + 7, "cartAbandonment", None, f"user{who}@example.com")
            yield from (None, None, None, CTX, 1, "pending", "api", at, None, None, at, 0, None)


def insert_sql(size: int) -> str:
    row = "(" + ",".join("?" * 17) + ")"
    return f"INSERT INTO events ({COLUMNS}) VALUES " + ",".join([row] * size)


def build(path: Path, rows: int, size: int, events: Events) -> None:
    table, indexes = ddl()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(table)
    for statement in indexes.values():
        conn.execute(statement)
    statement = insert_sql(size)
    for _ in range(rows // size):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(statement, list(events.batch(size)))
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def measure(
    base: Path, work: Path, drop: list[str], events: Events, args: argparse.Namespace
) -> float:
    shutil.copy(base, work)
    conn = sqlite3.connect(work, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    for name in drop:
        conn.execute(f"DROP INDEX {name}")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    statement = insert_sql(args.size)
    rounds = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(args.batches):
            params = list(events.batch(args.size))
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(statement, params)
            conn.execute("COMMIT")
        rounds.append((time.process_time() - started) / (args.batches * args.size) * 1e6)
    conn.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{work}{suffix}").unlink(missing_ok=True)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300_000, help="events already stored")
    parser.add_argument("--size", type=int, default=500, help="events a batch")
    parser.add_argument("--batches", type=int, default=20, help="batches a round")
    parser.add_argument("--recipients", choices=["distinct", "repeated"], default="distinct")
    args = parser.parse_args()
    _, indexes = ddl()
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
        base, work = Path(tmp) / "base.db", Path(tmp) / "work.db"
        events = Events(args.recipients)
        build(base, args.rows, args.size, events)
        variants = {"every index": [], "primary key only": list(indexes)}
        variants.update({f"without {name}": [name] for name in indexes})
        print(f"{args.rows:,} rows stored, {args.recipients} recipients, batches of {args.size}")
        print("| indexes | CPU µs/event |")
        print("|---|---:|")
        for label, drop in variants.items():
            cost = measure(base, work, drop, events, args)
            print(f"| {label} | {cost:.1f} |", flush=True)


if __name__ == "__main__":
    main()
