"""Tidings benchmarks: ingest, batch ingest, end to end to smtp-sink, and latency at a fixed rate.

    .venv/bin/python bench/run.py                      # every scenario, SQLite and PostgreSQL
    .venv/bin/python bench/run.py --db sqlite --scenarios ingest,latency --seconds 10

Each scenario starts Tidings as its own process (``tidings api`` or ``tidings serve``) on a
fresh database, exactly as a user would run it, and drives it over loopback:

- ``ingest``: single-event ``POST /api/v1/events`` from wrk (keep-alive, 64 connections); each
  answer comes after the event is committed. The API runs alone (``tidings api``) so that the
  number is the API's; the rows are counted afterwards and must match wrk's requests.
- ``batch``: ``POST /api/v1/events/batch`` with 500 events a request (``--batch-size``),
  4 connections.
- ``e2e``: ``tidings serve`` delivering by SMTP to Postfix's ``smtp-sink`` while wrk POSTs
  events for the run's length; throughput = events / (last SMTP 250 - first event received),
  the backlog drained included, i.e. the rate at which the single process delivers.
- ``delivery``: the worker alone, as django-post-office's ``send_queued_mail`` is measured:
  ``tidings api`` takes POSTs from wrk for the run's length and stops; then ``tidings worker``
  drains the queue to ``smtp-sink``; rate = events delivered / (last SMTP 250 - first), and
  over the time from the worker's start to an empty queue (its start-up included).
- ``latency``: the same set-up as ``e2e``, events POSTed at a fixed rate (open loop, default 200/s);
  latency = the event's SMTP 250 (``sent_at``, written by the worker when the server accepted
  the message) minus the moment the client had its 201.

``--processes 1,2`` runs each scenario but the latency one once per process count (``tidings
api|serve --processes N``). Results are printed as a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import pwd
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import asyncpg

sys.path.insert(0, str(Path(__file__).parent))

import load
from tidings import ids

ROOT = Path(__file__).resolve().parent.parent
TIDINGS = str(Path(sys.executable).parent / "tidings")
PG_ADMIN = os.environ.get(
    "TIDINGS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
CTX = {"cartAmount": "$ 125", "lastProduct": "Leather motorbike jacket", "firstName": "Jack"}


def event_body(n: int) -> bytes:
    return json.dumps(
        {"type": "cartAbandonment", "recipient": {"email": f"user{n}@example.com"}, "ctx": CTX}
    ).encode()


# -- the parts: databases, smtp-sink, a Tidings process -----------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def fresh_database(kind: str, folder: Path) -> Iterator[str]:
    if kind == "sqlite":
        path = folder / f"bench-{time.time_ns()}.db"
        yield f"sqlite:///{path}"
        return
    name = f"tidings_bench_{os.getpid()}"

    async def run(statement: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def smtp_sink() -> Iterator[int]:
    program = shutil.which("smtp-sink") or shutil.which("smtp-sink", path="/usr/sbin")
    if not program:
        sys.exit("smtp-sink is missing: install Debian's postfix (scripts/test-services does)")
    port = free_port()
    user = ["-u", pwd.getpwuid(65534).pw_name] if os.geteuid() == 0 else []
    process = subprocess.Popen(
        [program, *user, f"127.0.0.1:{port}", "1024"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=5)


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on port {port}")
        time.sleep(0.05)


@dataclass
class Running:
    url: str
    key: str
    database_url: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def tidings(
    verb: str,
    database_url: str,
    folder: Path,
    smtp_port: int | None = None,
    processes: int = 1,
    serves_http: bool = True,
) -> Iterator[Running]:
    """``tidings VERB`` running; with ``serves_http`` (not ``tidings worker``), once it has
    printed its API key and answers ``/healthz``."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        TIDINGS_DATABASE_URL=database_url,
        TIDINGS_PORT=str(port),
        TIDINGS_LOG_LEVEL="warning",
        TIDINGS_PROCESSES=str(processes),
    )
    if smtp_port is not None:
        env.update(
            TIDINGS_SMTP_HOST="127.0.0.1", TIDINGS_SMTP_PORT=str(smtp_port), TIDINGS_SMTP_TLS="none"
        )
    log = folder / f"tidings-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [TIDINGS, verb], env=env, cwd=folder, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        key = None if serves_http else ""
        while key is None:
            if process.poll() is not None:
                raise RuntimeError(f"tidings {verb} exited:\n{log.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"tidings {verb} did not start:\n{log.read_text()}")
            found = re.search(r"tid_[a-z0-9]+_[A-Za-z0-9_-]+", log.read_text())
            key = found.group(0) if found else None
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        while serves_http:
            with contextlib.suppress(OSError), urlopen(url + "/healthz", timeout=1):
                break
            time.sleep(0.05)
        yield Running(url, key, database_url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


# -- reading results out of the database ---------------------------------------------------


def sql(database_url: str, statement: str) -> list[tuple[Any, ...]]:
    """Run ``statement`` on SQLite or PostgreSQL (committed); the rows it returns."""
    if database_url.startswith("sqlite"):
        path = database_url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(path, timeout=60)) as conn:
            rows = conn.execute(statement).fetchall()
            conn.commit()
            return rows

    async def go() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(database_url)
        try:
            return [tuple(r) for r in await conn.fetch(statement)]
        finally:
            await conn.close()

    return asyncio.run(go())


def event_rows(database_url: str) -> list[tuple[int, str, int | None]]:
    """(event id, status, sent_at µs) of every event."""
    rows = sql(database_url, "SELECT id, status, sent_at FROM events")
    return [(ids.from_db(i), status, sent) for i, status, sent in rows]


QUEUED = "FROM events WHERE status IN ('pending', 'processing')"


def queue_left(database_url: str) -> int:
    """How many events are still pending or processing."""
    return int(sql(database_url, f"SELECT COUNT(*) {QUEUED}")[0][0])


def queue_drained(database_url: str) -> bool:
    """Whether no event is pending or processing (found by reading one index entry, not by
    counting: a count while the queue drains is work for the database being measured)."""
    return not sql(database_url, f"SELECT 1 {QUEUED} LIMIT 1")


def wait_done(
    database_url: str, count: int, timeout: float = 600.0
) -> list[tuple[int, str, int | None]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = event_rows(database_url)
        if len(rows) >= count and all(s not in ("pending", "processing") for _, s, _ in rows):
            return rows
        if time.monotonic() > deadline:
            raise RuntimeError("events were not all delivered in time")
        time.sleep(0.25)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# -- scenarios -------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    db: str
    value: str
    detail: str
    #: The scenario's figures as numbers, by name, for scripts that compute with them.
    figures: dict[str, float] = field(default_factory=dict)


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
wrk.body = '{body}'
"""


@dataclass
class Wrk:
    rate: float
    requests: int
    errors: int
    p50: str
    p99: str


def wrk(
    script: Path, target: str, seconds: float, connections: int = CONNECTIONS, warm_up: bool = True
) -> Wrk:
    """wrk posting ``script``'s body to ``target`` for ``seconds`` (after a 2 s warm-up)."""
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk (make bench installs it)")
    command = ["wrk", "-t1", "--latency", "-s", str(script)]
    if warm_up:  # connections, caches, the first growth of the database files
        subprocess.run([*command, "-c16", "-d2s", target], check=True, capture_output=True)
    output = subprocess.run(
        [*command, f"-c{connections}", f"-d{int(seconds)}s", target],
        check=True,
        capture_output=True,
        text=True,
    ).stdout

    def find(pattern: str) -> str:
        found = re.search(pattern, output)
        return found.group(1) if found else "?"

    errors = find(r"Non-2xx or 3xx responses: (\d+)")
    return Wrk(
        rate=float(find(r"Requests/sec:\s+([\d.]+)")),
        requests=int(find(r"(\d+) requests in")),
        errors=int(errors) if errors.isdigit() else 0,
        p50=find(r"\s50%\s+([\d.]+\w+)"),
        p99=find(r"\s99%\s+([\d.]+\w+)"),
    )


def post_script(folder: Path, key: str) -> Path:
    script = folder / "post.lua"
    script.write_text(WRK_SCRIPT.format(key=key, body=event_body(0).decode()))
    return script


def scenario_ingest(db: str, folder: Path, seconds: float, processes: int = 1) -> Row:
    with (
        fresh_database(db, folder) as url,
        tidings("api", url, folder, processes=processes) as running,
    ):
        script = post_script(folder, running.key)
        target = running.url + "/api/v1/events"
        wrk(script, target, 2, warm_up=False)
        before = len(event_rows(url))
        result = wrk(script, target, seconds, warm_up=False)
        stored = len(event_rows(url)) - before
    acknowledged = result.requests - result.errors
    detail = (
        f"{result.requests} requests, {stored} rows stored, {result.errors} non-2xx; "
        f"latency p50 {result.p50}, p99 {result.p99} (wrk -t1 -c{CONNECTIONS}, API alone, "
        f"{processes} process{'es' if processes > 1 else ''})"
    )
    if stored < acknowledged:
        detail += f" — MISSING {acknowledged - stored} acknowledged events"
    return Row("single-event ingest", db, f"{result.rate:,.0f} events/s", detail)


def scenario_batch(
    db: str, folder: Path, seconds: float, processes: int = 1, size: int = 500
) -> Row:
    batch = [json.loads(event_body(n)) for n in range(size)]
    body = json.dumps({"events": batch}).encode()
    with (
        fresh_database(db, folder) as url,
        tidings("api", url, folder, processes=processes) as running,
    ):
        target = running.url + "/api/v1/events/batch"
        count = max(20, int(seconds * 30_000 / size))
        asyncio.run(load.closed_loop(target, running.key, lambda n: body, count=4, connections=2))
        result = asyncio.run(_batches(target, running.key, body, count))
        stored = len(event_rows(url))
    events = result[0] * size
    rate = events / result[1]
    return Row(
        "batch ingest",
        db,
        f"{rate:,.0f} events/s",
        f"{result[0]} batches of {size} in {result[1]:.1f} s, {stored} rows stored "
        f"(4 connections, {processes} process{'es' if processes > 1 else ''})",
    )


async def _batches(target: str, key: str, body: bytes, count: int) -> tuple[int, float]:
    parts = target.split("/", 3)
    host, port = parts[2].split(":")
    raw = load.post_request(target, key, body)
    done = 0

    async def client() -> None:
        nonlocal done
        conn = await load.Connection.open(host, int(port))
        try:
            while done < count:
                done += 1
                status, answer = await conn.request(raw)
                if status != 200:
                    raise RuntimeError(f"batch answered {status}: {answer[:200]!r}")
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(4)))
    return done, time.perf_counter() - start


def scenario_e2e(db: str, folder: Path, seconds: float, processes: int = 1) -> Row:
    with (
        fresh_database(db, folder) as url,
        smtp_sink() as sink,
        tidings("serve", url, folder, smtp_port=sink, processes=processes) as running,
    ):
        script = post_script(folder, running.key)
        posted = wrk(script, running.url + "/api/v1/events", seconds, warm_up=False)
        rows = wait_done(url, posted.requests - posted.errors)
        received = event_received(url)
    sent = [s for _, status, s in rows if status == "processed" and s is not None]
    rate = len(sent) / ((max(sent) - min(received.values())) / 1e6)
    return Row(
        "end to end (POST → SMTP 250)",
        db,
        f"{rate:,.0f} emails/s",
        f"{len(sent)}/{len(rows)} events delivered to smtp-sink, from the first POST to the "
        f"last 250, while wrk posted for {seconds:.0f} s (at {posted.rate:,.0f}/s; the backlog "
        f"is drained at the delivery rate); tidings serve, {processes} process"
        f"{'es' if processes > 1 else ''}",
    )


def scenario_delivery(db: str, folder: Path, seconds: float, processes: int = 1) -> Row:
    with fresh_database(db, folder) as url, smtp_sink() as sink:
        with tidings("api", url, folder) as running:
            script = post_script(folder, running.key)
            wrk(script, running.url + "/api/v1/events", seconds, warm_up=False)
        queued = queue_left(url)
        start, started_at = time.perf_counter(), time.time()
        worker = tidings("worker", url, folder, sink, processes, serves_http=False)
        with worker as running:
            deadline = start + 600
            while not queue_drained(url):
                if running.process.poll() is not None:
                    raise RuntimeError(f"tidings worker exited ({running.process.returncode})")
                if time.perf_counter() > deadline:
                    raise RuntimeError("the queue was not drained in 600 s")
                time.sleep(0.1)
            took = time.perf_counter() - start
        rows = event_rows(url)
    sent = [s for _, status, s in rows if status == "processed" and s is not None]
    span = (max(sent) - min(sent)) / 1e6 if sent else 0.0
    active = len(sent) / span if span else float("nan")
    first = min(sent) / 1e6 - started_at if sent else float("nan")
    return Row(
        "delivery (worker alone)",
        db,
        f"{len(sent) / took:,.0f} emails/s",
        f"{len(sent)}/{queued} queued events delivered to smtp-sink in {took:.1f} s from the "
        f"start of tidings worker (its start-up included: first SMTP 250 after {first:.2f} s; "
        f"{active:,.0f}/s from the first 250 to the last); queue filled beforehand through the "
        f"API by wrk for {seconds:.0f} s; {processes} process{'es' if processes > 1 else ''}",
        {"wall": len(sent) / took, "active": active, "first": first},
    )


def event_received(database_url: str) -> dict[int, int]:
    rows = sql(database_url, "SELECT id, received_at FROM events")
    return {ids.from_db(i): r for i, r in rows}


def scenario_latency(db: str, folder: Path, seconds: float, rate: float) -> Row:
    with (
        fresh_database(db, folder) as url,
        smtp_sink() as sink,
        tidings("serve", url, folder, smtp_port=sink) as running,
    ):
        target = running.url + "/api/v1/events"
        asyncio.run(load.open_loop(target, running.key, event_body, rate=rate, seconds=1))
        result = asyncio.run(
            load.open_loop(target, running.key, event_body, rate=rate, seconds=seconds)
        )
        rows = wait_done(url, len(result.accepted))
        claims = dict(sql(url, "SELECT id, claimed_at FROM events WHERE status = 'processed'"))
    sent = {i: s for i, status, s in rows if status == "processed" and s is not None}
    latencies = [(sent[i] - t) / 1000 for i, t in result.accepted if i in sent]
    # Where it goes: from the 201 to the worker's claim (the wake-up, the claim's commit),
    # and from the claim to the 250 (render, MIME, the SMTP conversation).
    waits = [(claims[ids.to_db(i)] - t) / 1000 for i, t in result.accepted if i in sent]
    sends = [(sent[i] - claims[ids.to_db(i)]) / 1000 for i, _ in result.accepted if i in sent]
    unsent = len(result.accepted) - len(latencies)
    problems = (f"; client errors {result.errors}" if result.errors else "") + (
        f"; {unsent} accepted events not processed" if unsent else ""
    )
    return Row(
        f"latency at {rate:.0f} events/s",
        db,
        f"p99 {percentile(latencies, 99):.1f} ms",
        f"POST accepted → SMTP 250 over {len(latencies)} events: p50 "
        f"{statistics.median(latencies):.1f} ms, p90 {percentile(latencies, 90):.1f} ms, "
        f"p99 {percentile(latencies, 99):.1f} ms, max {max(latencies):.1f} ms; of which 201 → "
        f"claimed p50 {statistics.median(waits):.1f}, p99 {percentile(waits, 99):.1f} ms, "
        f"claimed → 250 p50 {statistics.median(sends):.1f}, p99 {percentile(sends, 99):.1f} ms"
        f"{problems}",
    )


# -- main ------------------------------------------------------------------------------------


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} × {cpu}, Linux {platform.release()}, Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--scenarios", default="ingest,batch,e2e,delivery,latency")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of timed runs")
    parser.add_argument("--rate", type=float, default=200.0, help="rate of the latency run")
    parser.add_argument(
        "--processes", default="1", help="comma-separated process counts (TIDINGS_PROCESSES)"
    )
    parser.add_argument("--batch-size", type=int, default=500, help="events a batch request")
    args = parser.parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
        folder = Path(tmp)
        for db in args.db.split(","):
            for name in args.scenarios.split(","):
                for n in (int(p) for p in args.processes.split(",")):
                    if name == "ingest":
                        row = scenario_ingest(db, folder, args.seconds, n)
                    elif name == "batch":
                        row = scenario_batch(db, folder, args.seconds, n, args.batch_size)
                    elif name == "e2e":
                        row = scenario_e2e(db, folder, args.seconds, n)
                    elif name == "delivery":
                        row = scenario_delivery(db, folder, args.seconds, n)
                    elif name == "latency":
                        row = scenario_latency(db, folder, args.seconds, args.rate)
                    else:
                        sys.exit(f"unknown scenario {name!r}")
                    print(f"{row.scenario} [{row.db}]: {row.value} — {row.detail}", flush=True)
                    rows.append(row)
    print(f"\nMachine: {machine()}\n")
    print("| scenario | database | result | detail |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row.scenario} | {row.db} | {row.value} | {row.detail} |")


if __name__ == "__main__":
    main()
