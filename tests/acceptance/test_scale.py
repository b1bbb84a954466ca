"""Scale-out on PostgreSQL, as an operator runs it: `tidings api` and `tidings worker` as
separate OS processes on one database, email to an aiosmtpd server this test runs.

What each test looks at: what the SMTP server received (Message-IDs, recipients and the EHLO
name, which tells the worker that sent it), the rows in the database, and the HTTP answers.

- a worker in another process wakes on LISTEN/NOTIFY, not at its next poll;
- an API and two workers deliver every event once;
- three workers, 10,000 events: each delivered exactly once;
- ``kill -9`` of a worker mid-run: nothing lost; duplicates only among the events that worker
  had in flight (measured and bounded);
- PostgreSQL crashed and restarted mid-run (a disposable server of the test's own): the API
  answers 503 with Retry-After meanwhile and never acknowledges what was not committed, the
  workers reconnect, and everything is delivered once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import empty_postgres
from tests.conftest import test_settings as settings_for
from tests.smtp_servers import tracked_aiosmtpd_server
from tidings import ids as ids_
from tidings import server
from tidings.app import App
from tidings.store import migrate, notify

from .conftest import EXAMPLE_CTX

TIDINGS = str(Path(sys.executable).parent / "tidings")
TYPE = "cartAbandonment"
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*<([^>]+)>", re.IGNORECASE | re.MULTILINE)


# -- the SMTP side -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Got:
    """One message as the SMTP server took it."""

    helo: str  # the sending worker (each has its own TIDINGS_SMTP_HELO_NAME)
    message_id: str
    recipients: tuple[str, ...]
    at: float  # time.monotonic() when its data had arrived


class Counter:
    """An aiosmtpd handler that keeps who sent what (and can be slow to answer DATA)."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.got: list[Got] = []
        self.arrived = asyncio.Event()
        self.watch = ""  # an EHLO name: set ``watched`` when a message from it arrives
        self.watched = asyncio.Event()

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        arrived = time.monotonic()  # the whole message is here; a client may die meanwhile
        if session.host_name == self.watch:
            self.watched.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        found = _MESSAGE_ID.search(envelope.original_content)
        assert found is not None
        self.got.append(
            Got(
                session.host_name,
                found.group(1).decode(),
                tuple(envelope.rcpt_tos),
                arrived,
            )
        )
        self.arrived.set()
        return "250 2.0.0 Ok"

    def by_event(self) -> collections.Counter[str]:
        """How many messages arrived per event id (Message-IDs are ``<event id>.tidings@...``,
        the same for every attempt)."""
        return collections.Counter(event_of(g.message_id) for g in self.got)


def event_of(message_id: str) -> str:
    return message_id.split(".", 1)[0]


# -- processes ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Cluster:
    """An API process and worker processes on one database, and an SMTP server."""

    url: str
    api_url: str
    key: str
    smtp: Counter
    workers: list[subprocess.Popen[bytes]]
    api: subprocess.Popen[bytes]
    client: httpx.AsyncClient
    logs: Path

    async def post(self, n: int) -> str:
        response = await self.client.post(
            "/api/v1/events",
            json={"type": TYPE, "recipient": {"email": f"r{n}@example.org"}, "ctx": EXAMPLE_CTX},
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def post_batch(self, numbers: range) -> list[str]:
        events = [
            {"type": TYPE, "recipient": {"email": f"r{n}@example.org"}, "ctx": EXAMPLE_CTX}
            for n in numbers
        ]
        response = await self.client.post("/api/v1/events/batch", json={"events": events})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["rejected"] == 0, body
        return [str(r["event"]["id"]) for r in body["results"]]

    def log_tail(self) -> str:
        return "\n".join(
            f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:]
            for p in sorted(self.logs.glob("*.log"))
        )


def _env(url: str, **settings: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update({f"TIDINGS_{k.upper()}": str(v) for k, v in settings.items()})
    env["TIDINGS_DATABASE_URL"] = url
    return env


def _spawn(verb: str, logs: Path, name: str, url: str, **settings: Any) -> subprocess.Popen[bytes]:
    log = (logs / f"{name}.log").open("wb")
    return subprocess.Popen(
        [TIDINGS, verb],
        env=_env(url, **settings),
        cwd=logs,  # no tidings.toml there
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def _prepare(url: str) -> str:
    """The example event type published and an admin key (what `tidings serve` does on its
    first start); the key."""
    async with App.running(settings_for(url), run_worker=False, migrate_schema=False) as app:
        key = await server.first_start(app)
    assert key is not None
    return key


async def listeners(url: str) -> int:
    """How many notification listeners are connected to the database ``url`` names."""
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT COUNT(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = $1",
                notify.APPLICATION_NAME,
            )
        )
    finally:
        await conn.close()


async def until(check: Any, within: float, what: str, cluster: Cluster | None = None) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            tail = cluster.log_tail() if cluster is not None else ""
            raise AssertionError(f"{what}: not within {within} s\n{tail}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def cluster(
    url: str, workers: int, *, smtp_delay: float = 0.0, **settings: Any
) -> AsyncIterator[Cluster]:
    """Start `tidings api` and ``workers`` × `tidings worker` on ``url`` (migrated, empty)."""
    key = await _prepare(url)
    handler = Counter(smtp_delay)
    with tempfile.TemporaryDirectory(prefix="tidings-scale-") as tmp:
        logs = Path(tmp)
        async with tracked_aiosmtpd_server(handler) as smtp_server:
            common = {
                "email_transport": "smtp",
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp_server.port,
                "smtp_tls": "none",
                "smtp_timeout": 10.0,
                "log_level": "info",
                "retry_base": 0.2,
                "retry_max": 1.0,
                "shutdown_grace": 2.0,
            } | settings
            port = _free_port()
            api = _spawn("api", logs, "api", url, port=port, **common)
            procs = [
                _spawn("worker", logs, f"worker-{i}", url, smtp_helo_name=f"worker-{i}", **common)
                for i in range(workers)
            ]
            api_url = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(
                base_url=api_url,
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
                limits=httpx.Limits(max_connections=64),
            ) as client:
                running = Cluster(url, api_url, key, handler, procs, api, client, logs)
                try:

                    async def up() -> bool:
                        for p in [api, *procs]:
                            assert p.poll() is None, running.log_tail()
                        try:
                            healthy = (await client.get("/healthz")).status_code == 200
                        except httpx.TransportError:
                            return False
                        return healthy and await listeners(url) == workers

                    await until(up, 30, "processes up", running)
                    yield running
                finally:
                    for p in [api, *procs]:
                        if p.poll() is None:
                            p.send_signal(signal.SIGTERM)
                    for p in [api, *procs]:
                        try:
                            p.wait(15)
                        except subprocess.TimeoutExpired:
                            p.kill()
                            p.wait()


def _free_port() -> int:
    sock = server.listen("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    sock.close()
    return port


async def statuses(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT status, COUNT(*) FROM events GROUP BY status")
    finally:
        await conn.close()
    return {r[0]: int(r[1]) for r in rows}


async def all_processed(url: str, total: int) -> bool:
    return (await statuses(url)).get("processed", 0) == total


@pytest.fixture
def pg(postgres_url: str) -> str:
    """The run's PostgreSQL database, emptied."""
    asyncio.run(empty_postgres(postgres_url))
    return postgres_url


# -- wake-ups across processes ---------------------------------------------------------------


async def test_a_worker_in_another_process_wakes_on_notify(pg: str) -> None:
    """With a 5 s poll interval, an event POSTed to the API process is sent by the worker
    process within milliseconds: it was woken by NOTIFY, not by its poll."""
    async with cluster(pg, 1, poll_interval=5.0) as c:
        await asyncio.sleep(0.5)  # the worker's first poll is over; it sleeps for 5 s now
        latencies = []
        for n in range(8):
            c.smtp.arrived.clear()
            started = time.monotonic()
            await c.post(n)
            await asyncio.wait_for(c.smtp.arrived.wait(), 3)
            latencies.append(c.smtp.got[-1].at - started)
            await asyncio.sleep(0.2)
        print(f"POST to SMTP DATA, other process: {[round(x * 1000) for x in latencies]} ms")
        assert max(latencies) < 0.5, latencies
        assert len(c.smtp.got) == 8


async def test_api_and_two_workers_deliver_each_event_once(pg: str) -> None:
    total = 400
    async with cluster(pg, 2, poll_interval=5.0, claim_batch=10) as c:
        gate = asyncio.Semaphore(32)

        async def post(n: int) -> str:
            async with gate:
                return await c.post(n)

        ids = await asyncio.gather(*(post(n) for n in range(total)))
        await until(lambda: all_processed(pg, total), 60, "all processed", c)
        await until(lambda: _count(c.smtp, total), 10, "all received", c)
    sent = c.smtp.by_event()
    assert sent == dict.fromkeys(ids, 1)
    assert sorted(r for g in c.smtp.got for r in g.recipients) == sorted(
        f"r{n}@example.org" for n in range(total)
    )
    by_worker = collections.Counter(g.helo for g in c.smtp.got)
    print(f"sent per worker: {dict(by_worker)}")
    assert set(by_worker) == {"worker-0", "worker-1"}


async def _count(handler: Counter, total: int) -> bool:
    return len(handler.got) >= total


# -- many events, many workers -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_three_workers_deliver_ten_thousand_events_exactly_once(pg: str) -> None:
    total = 10_000
    async with cluster(pg, 3, poll_interval=1.0) as c:
        started = time.monotonic()
        ids: list[str] = []
        for first in range(0, total, 1000):
            ids += await c.post_batch(range(first, first + 1000))
        await until(lambda: all_processed(pg, total), 240, "all processed", c)
        await until(lambda: _count(c.smtp, total), 10, "all received", c)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.5)  # nothing more arrives
    sent = c.smtp.by_event()
    assert len(c.smtp.got) == total
    assert sent == dict.fromkeys(ids, 1)
    recipients = collections.Counter(r for g in c.smtp.got for r in g.recipients)
    assert recipients == {f"r{n}@example.org": 1 for n in range(total)}
    by_worker = collections.Counter(g.helo for g in c.smtp.got)
    print(f"{total} events in {elapsed:.1f} s; sent per worker: {dict(by_worker)}")
    assert set(by_worker) == {"worker-0", "worker-1", "worker-2"}


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_worker_killed_mid_run_loses_nothing(pg: str) -> None:
    """``kill -9`` one of three workers while it has events in flight.

    The bound: the only events claimed twice are those whose first lease ran out, i.e. those
    the killed worker held (claimed, outcome not committed) when it died; they were all
    ``processing`` at that moment. A duplicate email can only be one of them, sent first by
    the killed worker (its EHLO name) and then by a survivor, under the same Message-ID.
    """
    total = 3000
    lease = 4.0
    async with cluster(
        pg,
        3,
        smtp_delay=0.01,
        poll_interval=0.5,
        lease_seconds=lease,
        claim_batch=50,
        worker_concurrency=64,
    ) as c:
        ids: list[str] = []
        for first in range(0, total, 1000):
            ids += await c.post_batch(range(first, first + 1000))

        async def some_sent() -> bool:
            return sum(g.helo == "worker-0" for g in c.smtp.got) >= 200

        await until(some_sent, 60, "worker-0 busy", c)
        # Kill it while the server holds one of its messages without answering yet (the
        # handler's delay): it surely has events in flight then.
        c.smtp.watch = "worker-0"
        c.smtp.watched.clear()
        await asyncio.wait_for(c.smtp.watched.wait(), 10)
        victim = c.workers[0]
        victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        victim.wait()
        # Nothing can change the victim's claims before their leases run out: whatever it
        # held is among the events processing now (with the survivors' in-flight ones).
        conn = await asyncpg.connect(pg)
        try:
            processing = {
                str(ids_.from_db(r[0]))
                for r in await conn.fetch("SELECT id FROM events WHERE status = 'processing'")
            }
        finally:
            await conn.close()
        await until(lambda: all_processed(pg, total), 120, "all processed", c)
        await asyncio.sleep(0.5)
        conn = await asyncpg.connect(pg)
        try:
            rows = await conn.fetch("SELECT id, attempts FROM events")
        finally:
            await conn.close()
    attempts = {str(ids_.from_db(r[0])): int(r[1]) for r in rows}
    assert set(attempts) == set(ids)
    reclaimed = {i for i, a in attempts.items() if a > 1}
    sent = c.smtp.by_event()
    duplicates = {i for i in ids if sent[i] > 1}
    lost = [i for i in ids if sent[i] == 0]
    print(
        f"in flight at the kill (all workers): {len(processing)}; claimed again after the "
        f"lease ran out (the victim's): {len(reclaimed)}; sent twice: {len(duplicates)}"
    )
    assert lost == []
    assert reclaimed, "the victim held nothing when killed"
    assert reclaimed <= processing
    assert duplicates <= reclaimed
    assert len(duplicates) <= len(reclaimed)
    for i in duplicates:
        copies = [g for g in c.smtp.got if event_of(g.message_id) == i]
        assert len(copies) == 2
        assert copies[0].helo == "worker-0"
        assert copies[0].at <= killed_at
        assert copies[1].helo != "worker-0"
    # Nothing but the victim's in-flight events was claimed twice or sent twice.
    assert all(a == 1 for i, a in attempts.items() if i not in reclaimed)
    assert sum(sent.values()) == total + len(duplicates)


# -- PostgreSQL restarted mid-run --------------------------------------------------------------


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return candidates[-1].parent if candidates else None


class DisposablePostgres:
    """A PostgreSQL server of our own in a temporary directory, stopped and started at will
    (run as the ``postgres`` user when the tests run as root: initdb refuses root)."""

    def __init__(self, bin_dir: Path, root: Path):
        self.bin = bin_dir
        self.root = root
        self.data = root / "data"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
            "-o", options, "-w", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")


@pytest.fixture
def disposable_postgres() -> Iterator[DisposablePostgres]:
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("no pg_ctl/initdb on this machine")
    root = Path(tempfile.mkdtemp(prefix="tidings-pg-"))
    root.chmod(0o755)
    pg = DisposablePostgres(bin_dir, root)
    try:
        pg.init()
        pg.start()
    except (subprocess.CalledProcessError, OSError, LookupError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"cannot run a PostgreSQL server of our own: {exc}")
    try:
        migrate.upgrade(pg.url)
        yield pg
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            pg.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_postgres_crash_and_restart_mid_run(
    disposable_postgres: DisposablePostgres,
) -> None:
    """Clients keep POSTing while the server crashes (``pg_ctl stop -m immediate``), stays
    down two seconds and comes back."""
    pg = disposable_postgres
    answers: list[tuple[float, int, str | None, str | None]] = []  # (t, status, id, Retry-After)
    stop_posting = asyncio.Event()
    async with cluster(pg.url, 2, poll_interval=5.0, lease_seconds=10.0) as c:

        async def poster(k: int) -> None:
            n = 0
            while not stop_posting.is_set():
                n += 1
                body = {
                    "type": TYPE,
                    "recipient": {"email": f"p{k}-{n}@example.org"},
                    "ctx": EXAMPLE_CTX,
                }
                try:
                    response = await c.client.post("/api/v1/events", json=body)
                except httpx.TransportError:
                    answers.append((time.monotonic(), 0, None, None))
                    await asyncio.sleep(0.05)
                    continue
                event_id = response.json()["id"] if response.status_code == 201 else None
                answers.append(
                    (
                        time.monotonic(),
                        response.status_code,
                        event_id,
                        response.headers.get("Retry-After"),
                    )
                )
                await asyncio.sleep(0.01 if response.status_code == 201 else 0.1)

        posters = [asyncio.create_task(poster(k)) for k in range(8)]
        await asyncio.sleep(1.5)
        await asyncio.to_thread(pg.stop, "immediate")
        down_at = time.monotonic()
        await asyncio.sleep(2.0)
        await asyncio.to_thread(pg.start)
        up_at = time.monotonic()
        await asyncio.sleep(2.0)
        stop_posting.set()
        await asyncio.gather(*posters)

        # The workers' listeners reconnect (the wake-ups resume).
        await until(lambda: _listening(pg.url, 2), 30, "listeners back", c)
        conn = await asyncpg.connect(pg.url)
        try:
            stored = {str(ids_.from_db(r[0])) for r in await conn.fetch("SELECT id FROM events")}
        finally:
            await conn.close()
        await until(lambda: all_processed(pg.url, len(stored)), 60, "all processed", c)
        await until(lambda: _count(c.smtp, len(stored)), 10, "all received", c)
        await asyncio.sleep(0.5)

    acknowledged = {i for _, status, i, _ in answers if status == 201 and i is not None}
    refused = [(t, s, r) for t, s, _, r in answers if s != 201]
    during = [x for x in refused if down_at <= x[0] <= up_at]
    print(
        f"201: {len(acknowledged)}, 503: {sum(s == 503 for _, s, _ in refused)}, "
        f"other: {sorted({s for _, s, _ in refused} - {503})}; stored: {len(stored)} "
        f"(stored but not acknowledged: {len(stored - acknowledged)})"
    )
    assert acknowledged, "nothing was accepted"
    assert during, "the API answered nothing while PostgreSQL was down"
    assert all(s == 503 and r is not None and int(r) > 0 for _, s, r in refused), refused[:5]
    # Nothing acknowledged that was not committed.
    assert acknowledged <= stored
    # Everything stored was delivered, once.
    sent = c.smtp.by_event()
    assert {i: sent[i] for i in stored} == dict.fromkeys(stored, 1)
    assert sum(sent.values()) == len(stored)
    after = [g for g in c.smtp.got if g.at > up_at]
    assert after, "nothing was sent after the restart"


async def _listening(url: str, expected: int) -> bool:
    try:
        return await listeners(url) == expected
    except (OSError, asyncpg.PostgresError):
        return False
