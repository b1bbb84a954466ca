"""Execution instances stay consistent with their control instance: deleting an event type
reaches them, they check a definition and targeting as control does, older changes arriving
late are refused (and recorded as superseded), sync sends definition-only changes and stops
at the first instance that stops answering, a 2xx that is not the expected result is a
failure, and the registry's URL rules and history.

Execution instances run on each kind of database; the control instance on a SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from tidings.store import design

from .conftest import Live, live_server
from .test_control import EMAIL, create_type, error, save
from .test_instances import (
    control_server,
    counts,
    held,
    publish,
    publish_key,
    register,
    shipment_of,
)

PATH = "/api/v1/execution/publications/orderConfirmation/email"
Handler = Callable[[str, str, bytes], Awaitable[tuple[int, bytes] | None]]


@contextlib.asynccontextmanager
async def publisher(execution: Live) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``execution`` holding a key with the publish scope."""
    key = await publish_key(execution)
    async with httpx.AsyncClient(
        base_url=execution.url, headers={"Authorization": f"Bearer {key}"}, timeout=15
    ) as client:
        yield client


@contextlib.asynccontextmanager
async def fake_instance(handle: Handler) -> AsyncIterator[tuple[str, list[str]]]:
    """A bare HTTP server on a loopback port: ``handle(method, path, body)`` answers (status,
    JSON body), or None to close the connection without answering. Yields its URL and the
    requests seen ("METHOD path")."""
    seen: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target = head.decode().split(" ", 2)[:2]
            length = 0
            for line in head.decode().split("\r\n"):
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            seen.append(f"{method} {target}")
            answer = await handle(method, target, body)
            if answer is not None:
                status, text = answer
                writer.write(
                    b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (status, len(text), text)
                )
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen
    finally:
        server.close()


@contextlib.asynccontextmanager
async def published(
    database_url: str, tmp_path: Path, *, registered: bool = True
) -> AsyncIterator[tuple[Live, Live]]:
    """A control instance (with orderConfirmation's email template published) and an
    execution instance, registered there as ``paris`` unless told otherwise."""
    async with (
        control_server(tmp_path) as control,
        live_server(database_url) as execution,
    ):
        if registered:
            await register(control, "paris", execution.url, await publish_key(execution))
        await create_type(control)
        await publish(control, await save(control, EMAIL))
        yield control, execution


async def create_other_type(control: Live) -> None:
    """A second event type, ``shipping``, with a published email template."""
    await create_type(control, name="shipping")
    saved = await control.client.post(
        "/api/v1/templates/shipping/email/versions", json={"content": EMAIL}
    )
    assert saved.status_code == 201, saved.text
    done = await control.client.post("/api/v1/templates/shipping/email/versions/1/publish")
    assert done.status_code == 200, done.text


# -- 1: deleting an event type ---------------------------------------------------------------


async def test_deleting_an_event_type_unpublishes_it_on_the_instances(
    database_url: str, tmp_path: Path
) -> None:
    async with published(database_url, tmp_path) as (control, execution):
        assert ("orderConfirmation", "email") in await held(execution)

        gone = await control.client.delete("/api/v1/event-types/orderConfirmation")
        assert gone.status_code == 204, gone.text
        assert ("orderConfirmation", "email") not in await held(execution)
        [line, _] = (await control.client.get("/api/v1/publications/audit")).json()[:2]
        assert (line["eventType"], line["action"], line["instances"]) == (
            "orderConfirmation",
            "unpublish",
            ["paris"],
        )
        detail = (await control.client.get("/api/v1/instances/paris")).json()
        latest = detail["deliveries"][0]
        assert (latest["action"], latest["outcome"]) == ("unpublish", "ok")


async def test_sync_unpublishes_what_is_not_routed_here_whatever_the_audit_says(
    database_url: str, tmp_path: Path
) -> None:
    """A pair stopped here without an unpublish line (as deletions did) is still removed."""
    async with published(database_url, tmp_path) as (control, execution):
        async with control.app.db.transaction() as conn:
            await conn.execute(design.DEACTIVATE_ALL, "orderConfirmation")
        synced = await control.client.post("/api/v1/instances/paris/sync")
        assert synced.status_code == 200, synced.text
        [result] = synced.json()
        assert (result["action"], result["outcome"], result["httpStatus"]) == (
            "unpublish",
            "ok",
            200,
        )
        assert ("orderConfirmation", "email") not in await held(execution)
        # What the instance published itself (never from here) is left alone.
        assert (await control.client.post("/api/v1/instances/paris/sync")).json() == []


# -- 2: the execution side checks as control does ----------------------------------------------


async def test_an_instance_refuses_what_control_would_refuse(
    database_url: str, tmp_path: Path
) -> None:
    async with published(database_url, tmp_path, registered=False) as (control, execution):
        shipment = await shipment_of(control)
        definition = shipment["eventType"]
        good_targeting = {"event_type": "orderConfirmation"}

        def with_targeting(**fields: Any) -> dict[str, Any]:
            targeting = {**good_targeting, **fields}
            return {**shipment, "eventType": {**definition, "targeting": targeting}}

        def with_definition(**fields: Any) -> dict[str, Any]:
            return {**shipment, "eventType": {**definition, **fields}}

        async with publisher(execution) as client:
            before = await counts(execution)
            for body, code, field in (
                (
                    with_targeting(enrichment_url="gopher://internal:70/x"),
                    "invalid_field",
                    "$.eventType.targeting.enrichment_url",
                ),
                (
                    with_targeting(
                        enrichment_url="https://crm.example.com", enrichment_timeout=-1.0
                    ),
                    "invalid_field",
                    "$.eventType.targeting.enrichment_timeout",
                ),
                (
                    with_targeting(enrichment_headers={"X-A": "1\r\nX-Injected: yes"}),
                    "invalid_field",
                    "$.eventType.targeting.enrichment_headers.X-A",
                ),
                (with_definition(label="x" * 100_000), "invalid_field", "$.eventType.label"),
                (
                    with_definition(
                        spec={**definition["spec"], "languageField": "ctx.a b"},
                    ),
                    "invalid_field",
                    "$.eventType.spec.languageField",
                ),
                (
                    with_definition(
                        defaultChannel="sms", spec={**definition["spec"], "channels": ["sms"]}
                    ),
                    "channel_not_allowed",
                    "$.eventType.spec.channels",
                ),
            ):
                found = error(await client.put(PATH, json=body), 422, code)
                assert found["field"] == field, found
            assert await counts(execution) == before
            async with execution.app.db.connection() as conn:
                assert await design.get_event_type(conn, "orderConfirmation") is None
            # Good targeting goes through, as control would store it.
            fine = with_targeting(enrichment_url="https://crm.example.com/x", enrichment_ttl=5.0)
            applied = await client.put(PATH, json=fine)
            assert applied.status_code == 200, applied.text
        targeting = await execution.client.get("/api/v1/event-types/orderConfirmation/targeting")
        assert targeting.status_code == 200, targeting.text
        assert targeting.json()["enrichmentUrl"] == "https://crm.example.com/x"


# -- 3 and 7: order of changes, concurrent applies ----------------------------------------------


async def test_older_changes_are_refused_and_recorded_as_superseded(
    database_url: str, tmp_path: Path
) -> None:
    async with published(database_url, tmp_path, registered=False) as (control, execution):
        shipment = await shipment_of(control)
        async with publisher(execution) as client:
            assert (await client.put(PATH, json={**shipment, "sequence": 50})).status_code == 200
            before = await counts(execution)
            found = error(
                await client.put(PATH, json={**shipment, "sequence": 49}), 409, "stale_publication"
            )
            assert found["field"] == "$.sequence"
            error(await client.delete(f"{PATH}?sequence=10"), 409, "stale_publication")
            assert ("orderConfirmation", "email") in await held(execution)
            assert await counts(execution) == before
            # The same sequence again (a retry) is no conflict; a newer one applies.
            again = await client.put(PATH, json={**shipment, "sequence": 50})
            assert (again.status_code, again.json()["changed"]) == (200, False)
            gone = await client.delete(f"{PATH}?sequence=51")
            assert (gone.status_code, gone.json()["changed"]) == (200, True)
            error(
                await client.put(PATH, json={**shipment, "sequence": 50}), 409, "stale_publication"
            )
            assert ("orderConfirmation", "email") not in await held(execution)
            found = error(await client.delete(f"{PATH}?sequence=-1"), 422, "invalid_field")
            assert found["field"] == "sequence"

            # Control's own change, older than what the instance applied: superseded.
            await register(control, "paris", execution.url, client.headers["Authorization"][7:])
            await client.put(PATH, json={**shipment, "sequence": 1000})
            number = await save(control, {**EMAIL, "subject": "Order {{ ctx.firstName }}"})
            done = await publish(control, number)
            [result] = done["instances"]
            assert (result["outcome"], result["httpStatus"]) == ("superseded", 409)
            assert "stale_publication" in result["error"]
            listed = (await control.client.get("/api/v1/instances")).json()
            assert listed[0]["lastOutcome"] == "ok"


async def test_concurrent_applies_of_one_publication_all_succeed(
    database_url: str, tmp_path: Path
) -> None:
    """The same new publication applied many times at once over an older one (a retry racing
    the first try): each answers 200, one of them changes something."""
    async with published(database_url, tmp_path, registered=False) as (control, execution):
        older = await shipment_of(control)
        await publish(control, await save(control, {**EMAIL, "subject": "Newer"}))
        newer = await shipment_of(control)
        async with publisher(execution) as client:
            assert (await client.put(PATH, json=older)).status_code == 200
            before = await counts(execution)
            answers = await asyncio.gather(*(client.put(PATH, json=newer) for _ in range(20)))
        assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers]
        assert sum(a.json()["changed"] for a in answers) == 1
        after = await counts(execution)
        assert (after[0], after[1]) == (before[0] + 1, before[1] + 1)
        assert (await held(execution))[("orderConfirmation", "email")] == newer["contentHash"]


def applied(body: bytes, content_hash: str | None = None) -> tuple[int, bytes]:
    """A well-behaved instance's answer to a PUT of ``body``."""
    sent = json.loads(body)
    answer = {
        "eventType": sent["eventType"]["name"],
        "channel": "email",
        "contentHash": sent["contentHash"] if content_hash is None else content_hash,
        "changed": True,
    }
    return 200, json.dumps(answer).encode()


async def test_sync_sends_each_publication_as_it_is_when_it_sends(tmp_path: Path) -> None:
    """A publish made while a sync runs is what the sync sends for that pair, not the version
    it found when it started."""
    async with control_server(tmp_path) as control:
        await create_type(control)
        await publish(control, await save(control, EMAIL))
        await create_other_type(control)
        newer = await control.client.post(
            "/api/v1/templates/shipping/email/versions",
            json={"content": {**EMAIL, "subject": "Shipped"}},
        )
        assert newer.status_code == 201, newer.text
        sent: dict[str, str] = {}

        async def handle(method: str, path: str, body: bytes) -> tuple[int, bytes] | None:
            if method == "GET":
                return 200, b"[]"
            shipment = json.loads(body)
            if path.endswith("/orderConfirmation/email") and "shipping" not in sent:
                # Published meanwhile (its own delivery reaches this server too).
                done = await control.client.post(
                    "/api/v1/templates/shipping/email/versions/2/publish"
                )
                assert done.status_code == 200, done.text
                sent["published"] = done.json()["contentHash"]
            sent[shipment["eventType"]["name"]] = shipment["contentHash"]
            return applied(body)

        async with fake_instance(handle) as (url, _):
            await register(control, "paris", url, "tid_x_y")
            synced = await control.client.post("/api/v1/instances/paris/sync")
            assert synced.status_code == 200, synced.text
        results = {r["eventType"]: r for r in synced.json()}
        assert results["shipping"]["contentHash"] == sent["published"]
        assert sent["shipping"] == sent["published"]


# -- 4: definition-only changes ------------------------------------------------------------------


async def test_sync_sends_a_definition_changed_since(database_url: str, tmp_path: Path) -> None:
    async with published(database_url, tmp_path) as (control, execution):
        assert (await control.client.post("/api/v1/instances/paris/sync")).json() == []
        updated = await control.client.put(
            "/api/v1/event-types/orderConfirmation",
            json={"name": "orderConfirmation", "label": "Paid orders", "validation": "lenient"},
        )
        assert updated.status_code == 200, updated.text
        targeting = await control.client.put(
            "/api/v1/event-types/orderConfirmation/targeting",
            json={"enrichmentUrl": "https://crm.example.com/x", "enrichmentTimeout": 1.5},
        )
        assert targeting.status_code == 200, targeting.text
        synced = await control.client.post("/api/v1/instances/paris/sync")
        assert synced.status_code == 200, synced.text
        [result] = synced.json()
        assert (result["action"], result["outcome"]) == ("publish", "ok")
        there = await execution.client.get("/api/v1/event-types/orderConfirmation")
        assert (there.json()["label"], there.json()["validation"]) == ("Paid orders", "lenient")
        enrichment = await execution.client.get("/api/v1/event-types/orderConfirmation/targeting")
        assert enrichment.json()["enrichmentTimeout"] == 1.5
        assert (await control.client.post("/api/v1/instances/paris/sync")).json() == []


# -- 5 and 9: an instance that stops answering, answers that are not the result ---------------


async def test_sync_stops_at_the_first_instance_that_stops_answering(tmp_path: Path) -> None:
    async def handle(method: str, path: str, body: bytes) -> tuple[int, bytes] | None:
        return (200, b"[]") if method == "GET" else None  # PUT: the connection drops

    async with control_server(tmp_path, instance_timeout=2) as control:
        await create_type(control)
        await publish(control, await save(control, EMAIL))
        await create_other_type(control)
        async with fake_instance(handle) as (url, seen):
            await register(control, "paris", url, "tid_x_y")
            synced = await control.client.post("/api/v1/instances/paris/sync")
        assert synced.status_code == 200, synced.text
        # The first start's example is published too: three publications to send.
        first, *rest = synced.json()
        assert (first["outcome"], first["httpStatus"], first["attempts"]) == ("failed", None, 2)
        assert {r["eventType"] for r in [first, *rest]} >= {"orderConfirmation", "shipping"}
        assert len(rest) == 2
        for r in rest:
            assert (r["outcome"], r["attempts"]) == ("failed", 0)
            assert r["error"] == "not attempted: the instance stopped answering"
        assert [s.split()[0] for s in seen] == ["GET", "PUT", "PUT"]


async def test_a_2xx_that_is_not_the_result_sent_is_a_failure(tmp_path: Path) -> None:
    answers: list[tuple[int, bytes]] = []

    async def handle(method: str, path: str, body: bytes) -> tuple[int, bytes] | None:
        return answers.pop(0) if answers else applied(body, "0" * 64)

    async with control_server(tmp_path) as control:
        await create_type(control)
        async with fake_instance(handle) as (url, _):
            await register(control, "paris", url, "tid_x_y")
            answers.append((200, b"<html>welcome to the proxy</html>"))
            done = await publish(control, await save(control, EMAIL))
            [result] = done["instances"]
            assert (result["outcome"], result["httpStatus"]) == ("failed", 200)
            assert result["error"] == "the answer is not the result of applying the change"
            number = await save(control, {**EMAIL, "subject": "Other"})
            done = await publish(control, number)
            [result] = done["instances"]
            assert result["outcome"] == "failed"
            assert result["error"].startswith(f"the instance holds {'0' * 64}, not the ")
            listed = (await control.client.get("/api/v1/instances")).json()
            assert listed[0]["lastOutcome"] == "failed"


# -- 8 and 10: the registry ----------------------------------------------------------------------


async def test_plain_http_is_taken_for_loopback_hosts_only(tmp_path: Path) -> None:
    async with control_server(tmp_path) as control:
        for name, url in (
            ("local", "http://127.0.0.1:9"),
            ("localhost", "http://localhost:9"),
            ("ipv6", "http://[::1]:9"),
            ("secure", "https://exec.example.com"),
        ):
            await register(control, name, url, "tid_x_y")
        for url in ("http://exec.example.com", "http://10.0.0.5:8000", "http://127.0.0.1.nip.io"):
            body = {"name": "remote", "baseUrl": url, "credential": "tid_x_y"}
            found = error(
                await control.client.post("/api/v1/instances", json=body), 422, "invalid_url"
            )
            assert found["field"] == "$.baseUrl"
            assert "https://" in found["message"]
        for url in ("https://exec.example.com/?a=1", "https://exec.example.com/#x"):
            body = {"name": "remote", "baseUrl": url, "credential": "tid_x_y"}
            error(await control.client.post("/api/v1/instances", json=body), 422, "invalid_url")
        names = {i["name"] for i in (await control.client.get("/api/v1/instances")).json()}
        assert names == {"local", "localhost", "ipv6", "secure"}
    (tmp_path / "open").mkdir()
    async with control_server(tmp_path / "open", instance_allow_http=True) as control:
        await register(control, "remote", "http://exec.example.com", "tid_x_y")


async def test_a_name_registered_again_starts_without_history(tmp_path: Path) -> None:
    async with control_server(tmp_path) as control:
        await register(control, "paris", "http://127.0.0.1:9", "tid_x_y")
        await create_type(control)
        await publish(control, await save(control, EMAIL))
        assert len((await control.client.get("/api/v1/instances/paris")).json()["deliveries"]) == 1
        assert (await control.client.delete("/api/v1/instances/paris")).status_code == 204
        await register(control, "paris", "http://127.0.0.1:9", "tid_x_y")
        detail = (await control.client.get("/api/v1/instances/paris")).json()
        assert detail["deliveries"] == []
