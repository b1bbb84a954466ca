"""Bulk profile import: rows a second into SQLite and PostgreSQL, the way
``tidings profiles import`` does it (parse in 256 KiB pieces, 1,000 profiles a transaction).

    .venv/bin/python bench/profiles.py                       # both databases, 100,000 rows
    .venv/bin/python bench/profiles.py --db sqlite --rows 200000 --format csv

Each run imports into a fresh, migrated database (a temporary SQLite file; a temporary
PostgreSQL database on 127.0.0.1:5432, or ``TIDINGS_BENCH_POSTGRES_URL``), then imports the
same file again (every row an update). Results are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from tidings import profiles
from tidings.store import database, migrate

ADMIN = os.environ.get(
    "TIDINGS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
CHUNK = 1 << 18


def sample(rows: int, fmt: profiles.Format) -> bytes:
    """``rows`` profiles with an email, a phone, a push token, a language, three attributes."""
    if fmt is profiles.Format.CSV:
        lines = ["externalId,email,mobilePhone,pushTokens,language,firstName,lastName,tier"]
        lines += [
            f"c-{i},user{i}@example.com,+3361{i:08d},fcm:token-{i},fr,First{i},Last{i},{i % 5}"
            for i in range(rows)
        ]
    else:
        lines = [
            f'{{"externalId":"c-{i}","email":"user{i}@example.com","mobilePhone":"+3361{i:08d}",'
            f'"pushTokens":["fcm:token-{i}"],"language":"fr","attributes":{{"firstName":'
            f'"First{i}","lastName":"Last{i}","tier":{i % 5}}}}}'
            for i in range(rows)
        ]
    return ("\n".join(lines) + "\n").encode()


async def run_import(url: str, data: bytes, fmt: profiles.Format) -> tuple[int, float]:
    db = await database.connect(url)
    try:
        started = time.perf_counter()
        parser = profiles.Parser(fmt)
        importer = profiles.Importer(db)
        for i in range(0, len(data), CHUNK):
            await importer.add(parser.feed(data[i : i + CHUNK]))
        await importer.add(parser.finish())
        result = await importer.finish()
        return result.imported, time.perf_counter() - started
    finally:
        await db.close()


async def postgres_database() -> tuple[str, str]:
    name = f"tidings_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(ADMIN)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return name, ADMIN.rsplit("/", 1)[0] + f"/{name}"


async def drop(name: str) -> None:
    conn = await asyncpg.connect(ADMIN)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--format", choices=["json", "csv"], default="json")
    args = parser.parse_args()
    fmt = profiles.Format(args.format)
    data = sample(args.rows, fmt)
    print(f"{args.rows:,} profiles, {args.format}, {len(data) / 1e6:.1f} MB\n")
    print("| database | pass | rows | seconds | rows/s |")
    print("|---|---|---:|---:|---:|")
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    for kind in kinds:
        with tempfile.TemporaryDirectory() as tmp:
            name = ""
            if kind == "sqlite":
                url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            else:
                name, url = asyncio.run(postgres_database())
            try:
                migrate.upgrade(url)
                for label in ("insert", "update"):
                    rows, seconds = asyncio.run(run_import(url, data, fmt))
                    print(
                        f"| {kind} | {label} | {rows:,} | {seconds:.2f} | {rows / seconds:,.0f} |"
                    )
            finally:
                if name:
                    asyncio.run(drop(name))


if __name__ == "__main__":
    main()
