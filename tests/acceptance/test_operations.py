"""Operations: /readyz, /metrics, JSON logs with event ids, rate limits and load shedding,
against the real server over loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import test_settings as settings_for
from tests.smtp_servers import Recorder, tracked_aiosmtpd_server
from tidings import apikeys, server
from tidings.app import App
from tidings.engine import worker as worker_module
from tidings.settings import Settings
from tidings.store import database, migrate
from tidings.store import events as store_events

from .conftest import EXAMPLE_CTX, Live, Serve, eventually, live_server

TYPE = "cartAbandonment"
ADOBE = "/local/campaign/mclocal/EVTcartAbandonment"


def native(address: str = "jack@example.org", **fields: Any) -> dict[str, Any]:
    return {"type": TYPE, "recipient": {"email": address}, "ctx": EXAMPLE_CTX} | fields


# -- helpers ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def http_for(app: App, key: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """Serve ``app``'s API (started or not) on a loopback port; a client for it."""
    sock = server.listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    http = server.http_server(app)
    http.config.install_signal_handlers = False  # type: ignore[attr-defined]
    task = asyncio.create_task(http.serve(sockets=[sock]))
    try:
        while not http.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.005)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=15
        ) as client:
            yield client
    finally:
        http.should_exit = True
        await task
        sock.close()


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[App, httpx.AsyncClient]]:
    """A started App (worker included) with ``settings`` and a client without a key."""
    async with App.running(settings, migrate_schema=False) as app:
        await server.first_start(app)
        async with http_for(app) as client:
            yield app, client


def scrape_values(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return scrape_values(response.text)


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def set_revision(url: str, revision: str | None) -> None:
    """Write (or, with None, delete) the schema revision Alembic keeps in the database."""
    if url.startswith("sqlite:"):
        with contextlib.closing(sqlite3.connect(database.sqlite_path(url))) as conn, conn:
            conn.execute("DELETE FROM alembic_version")
            if revision is not None:
                conn.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
        return
    conn = await asyncpg.connect(database.postgres_dsn(url))
    try:
        async with conn.transaction():
            await conn.execute("DELETE FROM alembic_version")
            if revision is not None:
                await conn.execute("INSERT INTO alembic_version VALUES ($1)", revision)
    finally:
        await conn.close()


class Proxy:
    """A TCP forwarder to PostgreSQL that can be stopped (every connection cut, the port
    refusing) and started again on the same port: a database going away and coming back."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


# -- /healthz and /readyz ----------------------------------------------------------------------


async def test_readyz_answers_200_when_the_database_is_current(live: Live) -> None:
    response = await live.client.get("/readyz", headers={"Authorization": ""})
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "migrations": "ok"}}
    assert (await live.client.get("/healthz")).status_code == 200


async def test_readyz_answers_503_while_the_schema_is_behind(live: Live) -> None:
    url = live.settings.database_url
    head = migrate.head()
    try:
        await set_revision(url, "0000_older")
        response = await live.client.get("/readyz")
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "5"
        body = response.json()
        assert body["error"]["code"] == "not_ready"
        assert body["checks"] == {
            "database": "ok",
            "migrations": f"at 0000_older, head is {head}; run `tidings migrate`",
        }
        await set_revision(url, None)
        body = (await live.client.get("/readyz")).json()
        assert body["checks"]["migrations"].startswith("not migrated")
        # The process itself is up all along.
        assert (await live.client.get("/healthz")).status_code == 200
    finally:
        await set_revision(url, head)
    assert (await live.client.get("/readyz")).status_code == 200


async def test_readyz_on_a_database_never_migrated(database_url: str, tmp_path: Path) -> None:
    if database_url.startswith("sqlite:"):
        url = f"sqlite:///{tmp_path / 'empty.db'}"
        sqlite3.connect(database.sqlite_path(url)).close()
        drop = None
    else:
        parts = urlsplit(database_url)
        name = f"tidings_empty_{uuid.uuid4().hex[:8]}"
        admin = database_url.rsplit("/", 1)[0] + "/postgres"
        url = parts._replace(path=f"/{name}").geturl()
        conn = await asyncpg.connect(admin)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        drop = (admin, name)
    try:
        # An App that cannot start on this database still answers its probes.
        app = App(settings_for(url), await database.connect(url))
        try:
            async with http_for(app) as client:
                assert (await client.get("/healthz")).status_code == 200
                response = await client.get("/readyz")
                assert response.status_code == 503
                assert response.json()["checks"] == {
                    "database": "ok",
                    "migrations": f"not migrated (head is {migrate.head()}); run `tidings migrate`",
                }
                await asyncio.to_thread(migrate.upgrade, url)
                assert (await client.get("/readyz")).status_code == 200
        finally:
            await app.close()
    finally:
        if drop is not None:
            conn = await asyncpg.connect(drop[0])
            await conn.execute(f'DROP DATABASE IF EXISTS "{drop[1]}" WITH (FORCE)')
            await conn.close()


async def test_readyz_answers_503_while_the_database_is_unreachable(
    database_url: str, tmp_path: Path
) -> None:
    if database_url.startswith("sqlite:"):
        folder = tmp_path / "data"
        url = f"sqlite:///{folder / 'tidings.db'}"
        await asyncio.to_thread(migrate.upgrade, url)
        async with live_server(url) as live:
            assert (await live.client.get("/readyz")).status_code == 200
            folder.rename(tmp_path / "elsewhere")  # the volume went away
            try:
                response = await live.client.get("/readyz")
                assert response.status_code == 503, response.text
                assert response.json()["checks"]["database"].startswith("no database file")
            finally:
                (tmp_path / "elsewhere").rename(folder)
            assert (await live.client.get("/readyz")).status_code == 200
        return
    parts = urlsplit(database_url)
    assert parts.hostname is not None
    assert parts.port is not None
    proxy = Proxy(parts.hostname, parts.port)
    await proxy.start()
    url = parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl()
    async with live_server(url) as live:
        assert (await live.client.get("/readyz")).status_code == 200
        await proxy.stop()  # PostgreSQL stopped: connections cut, the port refuses
        try:
            response = await live.client.get("/readyz")
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "5"
            body = response.json()
            assert body["error"]["code"] == "not_ready"
            assert body["checks"]["database"].startswith("unreachable")
            assert (await live.client.get("/healthz")).status_code == 200
        finally:
            await proxy.start()
        await eventually(
            lambda: _status_is(live.client, "/readyz", 200), within=10
        )  # and it is ready again


async def _status_is(client: httpx.AsyncClient, path: str, status: int) -> bool:
    return (await client.get(path)).status_code == status


# -- /metrics --------------------------------------------------------------------------------


async def test_metrics_count_events_statuses_latencies_and_the_smtp_pool(serve: Serve) -> None:
    handler = Recorder(pipelining=True)
    settings = {
        "email_transport": "smtp",
        "smtp_host": "127.0.0.1",
        "smtp_tls": "none",
        "smtp_helo_name": "tidings.test",
        "smtp_timeout": 5.0,
        "smtp_pool_size": 2,
    }
    async with (
        tracked_aiosmtpd_server(handler) as smtp,
        serve(**settings, smtp_port=smtp.port) as live,
    ):
        before = await scrape(live.client)
        assert value(before, "tidings_events_received_total", type=TYPE, source="api") == 0
        ids = [str((await live.post_event(**native(f"u{i}@example.org")))["id"]) for i in range(5)]
        adobe = await live.client.post(ADOBE, json={"email": "a@example.org", "ctx": EXAMPLE_CTX})
        assert adobe.status_code == 201, adobe.text
        batch = await live.client.post(
            "/api/v1/events/batch",
            json={"events": [native(f"b{i}@example.org") for i in range(3)]},
        )
        assert batch.json()["accepted"] == 3
        unknown = await live.post_event(
            type="noSuchType", recipient={"email": "x@example.org"}, ctx={}
        )
        ids += [adobe.json()["PKey"], str(unknown["id"])]
        ids += [str(r["event"]["id"]) for r in batch.json()["results"]]
        for event_id in ids:
            await live.wait_status(event_id, "processed", "routingFailed")

        async def all_counted() -> bool:
            samples = await scrape(live.client)
            return value(samples, "tidings_events_status_total", type=TYPE, status="processed") == 9

        await eventually(all_counted)
        samples = await scrape(live.client)

    assert value(samples, "tidings_events_received_total", type=TYPE, source="api") == 8
    assert value(samples, "tidings_events_received_total", type=TYPE, source="adobe") == 1
    assert value(samples, "tidings_events_received_total", type="noSuchType", source="api") == 1
    assert (
        value(samples, "tidings_events_status_total", type="noSuchType", status="routingFailed")
        == 1
    )
    # Every committed event is in exactly one group commit.
    assert value(samples, "tidings_ingest_commit_batch_size_sum") == 10
    assert 1 <= value(samples, "tidings_ingest_commit_batch_size_count") <= 10
    assert value(samples, "tidings_ingest_commit_batch_size_bucket", le="+Inf") == value(
        samples, "tidings_ingest_commit_batch_size_count"
    )
    # Nine messages rendered and sent over SMTP.
    assert value(samples, "tidings_render_seconds_count") == 9
    assert 0 < value(samples, "tidings_render_seconds_sum") < 9
    assert value(samples, "tidings_send_seconds_count", transport="smtp") == 9
    assert value(samples, "tidings_send_seconds_bucket", transport="smtp", le="+Inf") == 9
    assert value(samples, "tidings_send_seconds_bucket", transport="smtp", le="30.0") == 9
    # The pool: connections stay open between messages, none busy now, nothing queued.
    assert 1 <= value(samples, "tidings_smtp_connections", state="open") <= 2
    assert value(samples, "tidings_smtp_connections", state="busy") == 0
    assert value(samples, "tidings_smtp_queued_messages") == 0
    # Nothing is due any more.
    assert value(samples, "tidings_queue_depth") == 0
    assert value(samples, "tidings_queue_oldest_due_age_seconds") == 0
    assert value(samples, "tidings_database_up") == 1
    assert value(samples, "tidings_requests_rejected_total", reason="rate_limited") == 0
    assert value(samples, "process_resident_memory_bytes") > 0
    assert len(handler.received) == 9


# -- JSON logs -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_json_logs_carry_the_event_id(database_url: str, tmp_path: Path) -> None:
    db = await database.connect(database_url)
    try:
        key, _ = await apikeys.create(db, "test", frozenset({"admin"}))
    finally:
        await db.close()
    port = free_port()
    env = os.environ | {
        "TIDINGS_DATABASE_URL": database_url,
        "TIDINGS_PORT": str(port),
        "TIDINGS_LOG_FORMAT": "json",
        "TIDINGS_LOG_LEVEL": "debug",
        "TIDINGS_POLL_INTERVAL": "0.05",
    }
    output = tmp_path / "tidings.log"
    with output.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "tidings"),
            "serve",
            cwd=tmp_path,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
        ) as client:

            async def up() -> bool:
                with contextlib.suppress(httpx.TransportError):
                    return (await client.get("/healthz")).status_code == 200
                return False

            await eventually(up, within=30)
            failed = await client.post(
                "/api/v1/events",
                json={"type": "noSuchType", "recipient": {"email": "x@example.org"}, "ctx": {}},
            )
            sent = await client.post("/api/v1/events", json=native())
            assert failed.status_code == sent.status_code == 201
            ids = {failed.json()["id"]: "routingFailed", sent.json()["id"]: "processed"}

            async def finished() -> bool:
                for event_id, status in ids.items():
                    body = (await client.get(f"/api/v1/events/{event_id}")).json()
                    if body["status"] != status:
                        return False
                return True

            await eventually(finished)
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    lines = [json.loads(line) for line in output.read_text().splitlines() if line.startswith("{")]
    about_events = [
        line
        for line in lines
        if line["logger"] == "tidings.worker" and line["message"].startswith("event ")
    ]
    assert about_events, lines
    for line in about_events:
        # "event <id>: ..." and the event_id field agree, on every line about an event.
        assert line["event_id"] == line["message"].split()[1].rstrip(":")
    by_event = {line["event_id"]: line for line in about_events}
    failed_id = failed.json()["id"]
    assert by_event[failed_id]["level"] == "info"
    assert by_event[failed_id]["message"].startswith(f"event {failed_id}: routingFailed: ")
    assert by_event[sent.json()["id"]]["level"] == "debug"
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)


# -- rate limits -----------------------------------------------------------------------------


async def test_rate_limits_per_key_on_both_lanes(database_url: str) -> None:
    db = await database.connect(database_url)
    try:
        limited, _ = await apikeys.create(db, "limited", frozenset({"events"}))
        big, big_record = await apikeys.create(db, "big", frozenset({"events"}))
        free, free_record = await apikeys.create(db, "free", frozenset({"events"}))
    finally:
        await db.close()
    settings = settings_for(
        database_url,
        rate_limit=2,
        rate_limit_burst=3,
        rate_limits=f"{big_record.prefix}:1000/50, {free_record.prefix}:0",
    )

    def auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    async with running(settings) as (app, client):
        # The burst of three, then 429 on the fast lane...
        for _ in range(3):
            response = await client.post("/api/v1/events", json=native(), headers=auth(limited))
            assert response.status_code == 201, response.text
        refused = await client.post("/api/v1/events", json=native(), headers=auth(limited))
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "rate_limited"
        # ... on the Campaign Standard route, and on the routes Litestar serves (an
        # Idempotency-Key sends the POST there; reads too), with the same answer.
        adobe = await client.post(
            ADOBE, json={"email": "a@example.org", "ctx": {}}, headers=auth(limited)
        )
        keyed = await client.post(
            "/api/v1/events",
            json=native(),
            headers=auth(limited) | {"Idempotency-Key": "k1"},
        )
        read = await client.get("/api/v1/events", headers=auth(limited))
        for answer in (adobe, keyed, read):
            assert answer.status_code == 429, answer.text
            assert answer.headers["retry-after"] == "1"
            assert answer.json() == refused.json()
        # Another key is not slowed by this one; its own limit is higher, or none.
        for key in (big, free):
            for _ in range(20):
                response = await client.post("/api/v1/events", json=native(), headers=auth(key))
                assert response.status_code == 201, response.text
        # The bucket refills at 2 a second.
        await asyncio.sleep(0.6)
        again = await client.post("/api/v1/events", json=native(), headers=auth(limited))
        assert again.status_code == 201, again.text
        # A bad key is still a 401, not charged to anyone.
        assert (await client.get("/api/v1/events", headers=auth("tid_nope_x"))).status_code == 401

        samples = await scrape(client)
        assert value(samples, "tidings_requests_rejected_total", reason="rate_limited") == 4
        async with app.db.connection() as conn:
            stored = sum((await store_events.count_by_status(conn)).values())
        assert stored == 3 + 40 + 1  # nothing of the refused requests


# -- load shedding ---------------------------------------------------------------------------

SOAP_PUSH_EVENT = """<?xml version="1.0" encoding="utf-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:urn="urn:nms:rtEvent">
  <SOAP-ENV:Body>
    <urn:PushEvent>
      <urn:sessiontoken>mc/{key}</urn:sessiontoken>
      <urn:domEvent>
        <rtEvent type="cartAbandonment" email="a@example.org">
          <ctx><firstName>Jack</firstName></ctx>
        </rtEvent>
      </urn:domEvent>
    </urn:PushEvent>
  </SOAP-ENV:Body>
</SOAP-ENV:Envelope>"""


async def test_ingest_sheds_load_while_the_queue_is_behind(serve: Serve) -> None:
    async with serve(shed_queue_age=0.3) as live:
        assert live.app.worker is not None
        await live.app.worker.stop()  # the workers are down: the queue stops moving
        stuck = await live.post_event(**native())

        async def shedding() -> bool:
            response = await live.client.post("/api/v1/events", json=native())
            assert response.status_code in (201, 503), response.text
            return response.status_code == 503

        await eventually(shedding, within=5)
        stored = await live.stored_count()
        refused = [
            await live.client.post("/api/v1/events", json=native()),
            await live.client.post(
                "/api/v1/events", json=native(), headers={"Idempotency-Key": "k"}
            ),
            await live.client.post("/api/v1/events/batch", json={"events": [native()]}),
            await live.client.post(ADOBE, json={"email": "a@example.org", "ctx": EXAMPLE_CTX}),
        ]
        for response in refused:
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "1"
            assert response.json()["error"]["code"] == "overloaded"
        soap = await live.client.post(
            "/nl/jsp/soaprouter.jsp",
            content=SOAP_PUSH_EVENT.format(key=live.key).encode(),
            headers={
                "Content-Type": "text/xml; charset=utf-8",
                "SOAPAction": "nms:rtEvent#PushEvent",
            },
        )
        assert soap.status_code == 503, soap.text
        assert soap.headers["retry-after"] == "1"
        assert "SOAP-ENV:Fault" in soap.text
        assert "too far behind" in soap.text
        assert await live.stored_count() == stored  # nothing stored
        # Reads still work, and the gauges say why.
        assert (await live.client.get(f"/api/v1/events/{stuck['id']}")).status_code == 200
        samples = await scrape(live.client)
        assert value(samples, "tidings_queue_depth") == stored
        assert value(samples, "tidings_queue_oldest_due_age_seconds") > 0.3
        assert value(samples, "tidings_requests_rejected_total", reason="overloaded") >= 5

        # A worker comes back, drains the queue, and ingest resumes by itself.
        app = live.app
        app.worker = worker_module.Worker(
            app.db,
            app.settings,
            transports=app.transports,
            renderer=app.renderer,
            counters=app.metrics,
        )
        app.worker.start()
        await live.wait_status(stuck["id"], "processed")

        async def accepting() -> bool:
            response = await live.client.post("/api/v1/events", json=native())
            return response.status_code == 201

        await eventually(accepting, within=5)
