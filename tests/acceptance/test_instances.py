"""Publishing from a control instance to execution instances, each a real server with its own
database: the execution side's endpoint (apply once, idempotent, hash mismatch, credentials,
malformed bodies changing nothing, unpublish), delivery to several instances with one down,
the retry that catches it up, the audit log naming the instances, and the registry's errors.

The execution instance runs on each kind of database; the control instance on a SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec

from tidings import apikeys, clock, model
from tidings.control import instances
from tidings.store import design, keys, migrate
from tidings.store.database import sql

from .conftest import Live, live_server
from .console import add_operator, sign_in
from .test_cli import run
from .test_control import EMAIL, create_type, error, good_ctx, order_type, save
from .test_processes import free_port


@contextlib.asynccontextmanager
async def control_server(folder: Path, **overrides: Any) -> AsyncIterator[Live]:
    """A control instance on its own SQLite file."""
    url = f"sqlite:///{folder / 'control.db'}"
    migrate.upgrade(url)
    settings: dict[str, Any] = {"instance_attempts": 2, "instance_timeout": 5, **overrides}
    async with live_server(url, **settings) as live:
        yield live


def sqlite_file(folder: Path, name: str) -> str:
    """A migrated SQLite database in ``folder``."""
    url = f"sqlite:///{folder / name}"
    migrate.upgrade(url)
    return url


async def publish_key(live: Live) -> str:
    """A key of ``live`` with the publish scope (what a control instance is given)."""
    key, _ = await apikeys.create(live.app.db, "control", frozenset({"publish"}))
    return key


async def register(control: Live, name: str, url: str, credential: str) -> None:
    response = await control.client.post(
        "/api/v1/instances", json={"name": name, "baseUrl": url, "credential": credential}
    )
    assert response.status_code == 201, response.text


async def publish(control: Live, number: int) -> dict[str, Any]:
    response = await control.client.post(
        f"/api/v1/templates/orderConfirmation/email/versions/{number}/publish"
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def held(execution: Live) -> dict[tuple[str, str], str]:
    response = await execution.client.get("/api/v1/execution/publications")
    assert response.status_code == 200, response.text
    return {(h["eventType"], h["channel"]): h["contentHash"] for h in response.json()}


async def shipment_of(control: Live) -> dict[str, Any]:
    """What the control instance sends for orderConfirmation's email (read from its store)."""
    async with control.app.db.connection() as conn:
        current = await design.active_publication(conn, "orderConfirmation", "email")  # type: ignore[arg-type]
        row = await design.get_event_type(conn, "orderConfirmation")
    assert current is not None
    assert current.bundle is not None
    assert row is not None
    return {
        "eventType": {
            "name": row.name,
            "label": row.label,
            "defaultChannel": str(row.default_channel),
            "spec": msgspec.json.decode(row.spec or "{}"),
        },
        "contentHash": current.content_hash,
        "bundle": current.bundle,
    }


async def counts(execution: Live) -> tuple[int, int, int]:
    """(template versions, publications, audit lines) stored on an execution instance."""
    async with execution.app.db.connection() as conn:
        versions = await conn.fetchval(sql("SELECT COUNT(*) FROM template_versions"))
        publications = await conn.fetchval(sql("SELECT COUNT(*) FROM publications"))
        audit = await conn.fetchval(sql("SELECT COUNT(*) FROM publication_audit"))
    return int(versions), int(publications), int(audit)


async def test_an_execution_instance_applies_a_publication_once(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        control_server(tmp_path) as control,
        live_server(database_url) as execution,
    ):
        await register(control, "paris", execution.url, await publish_key(execution))
        await create_type(control)
        number = await save(control, EMAIL)
        done = await publish(control, number)
        [result] = done["instances"]
        assert result["instance"] == "paris"
        assert (result["outcome"], result["httpStatus"], result["error"]) == ("ok", 200, "")
        assert result["contentHash"] == done["contentHash"]
        assert (await held(execution))[("orderConfirmation", "email")] == done["contentHash"]

        # The execution instance validates and routes with the definition it received.
        sent = await execution.post_event(
            type="orderConfirmation",
            recipient={"email": "jack@example.com"},
            ctx=good_ctx(),
        )
        final = await execution.wait_status(sent["id"], "processed")
        assert final["status"] == "processed"
        refused = await execution.client.post(
            "/api/v1/events",
            json={
                "type": "orderConfirmation",
                "recipient": {"email": "jack@example.com"},
                "ctx": good_ctx(unknown=1),
            },
        )
        error(refused, 422, "invalid_ctx")

        # The same publication again: 200, nothing changes.
        shipment = await shipment_of(control)
        before = await counts(execution)
        path = "/api/v1/execution/publications/orderConfirmation/email"
        again = await execution.client.put(path, json=shipment)
        assert again.status_code == 200, again.text
        assert again.json()["changed"] is False
        assert await counts(execution) == before
        republished = await publish(control, number)
        assert republished["changed"] is False
        assert republished["instances"][0]["outcome"] == "ok"
        assert await counts(execution) == before


async def test_bad_publications_change_nothing(database_url: str, tmp_path: Path) -> None:
    async with (
        control_server(tmp_path) as control,
        live_server(database_url) as execution,
    ):
        await create_type(control)
        await publish(control, await save(control, EMAIL))
        shipment = await shipment_of(control)
        key = await publish_key(execution)
        path = "/api/v1/execution/publications/orderConfirmation/email"
        async with httpx.AsyncClient(
            base_url=execution.url, headers={"Authorization": f"Bearer {key}"}, timeout=15
        ) as publisher:
            before = await counts(execution)
            wrong_hash = {**shipment, "contentHash": hashlib.sha256(b"other").hexdigest()}
            found = error(await publisher.put(path, json=wrong_hash), 422, "hash_mismatch")
            assert found["field"] == "$.bundle"
            changed = {**shipment, "bundle": shipment["bundle"].replace("Hello", "Hullo")}
            error(await publisher.put(path, json=changed), 422, "hash_mismatch")
            not_a_bundle = '{"eventType": "orderConfirmation"}'
            error(
                await publisher.put(
                    path,
                    json={
                        **shipment,
                        "bundle": not_a_bundle,
                        "contentHash": hashlib.sha256(not_a_bundle.encode()).hexdigest(),
                    },
                ),
                422,
                "invalid_bundle",
            )
            twice = shipment["eventType"]["spec"]["ctxSchema"][0]
            spec = {**shipment["eventType"]["spec"], "ctxSchema": [twice, twice]}
            bad_schema = {**shipment, "eventType": {**shipment["eventType"], "spec": spec}}
            found = error(await publisher.put(path, json=bad_schema), 422, "invalid_schema")
            assert found["field"] == "$.eventType.spec.ctxSchema[1].name"
            other = "/api/v1/execution/publications/orderConfirmation/sms"
            error(await publisher.put(other, json=shipment), 422, "wrong_publication")
            error(
                await publisher.put(path, json={**shipment, "contentHash": "x"}),
                422,
                "invalid_field",
            )
            error(
                await publisher.put(
                    path, content=b"{not json", headers={"Content-Type": "application/json"}
                ),
                400,
                "malformed_json",
            )
            missing = {k: v for k, v in shipment.items() if k != "bundle"}
            error(await publisher.put(path, json=missing), 422, "missing_field")
            error(
                await publisher.put(path, content=b"x", headers={"Content-Type": "text/plain"}),
                415,
                "unsupported_media_type",
            )
            assert await counts(execution) == before
            assert ("orderConfirmation", "email") not in await held(execution)
            async with execution.app.db.connection() as conn:
                assert await design.get_event_type(conn, "orderConfirmation") is None

            # The good one applies; unpublishing twice changes something once.
            applied = await publisher.put(path, json=shipment)
            assert applied.status_code == 200, applied.text
            assert applied.json()["changed"] is True
            assert (await publisher.get("/api/v1/execution/publications")).status_code == 200
            removed = await publisher.delete(path)
            assert removed.status_code == 200, removed.text
            assert removed.json()["changed"] is True
            assert (await publisher.delete(path)).json()["changed"] is False

        # Credentials: none, unknown, revoked, or an ingest key.
        async with httpx.AsyncClient(base_url=execution.url, timeout=15) as anonymous:
            error(await anonymous.put(path, json=shipment), 401, "unauthorized")
            error(await anonymous.get("/api/v1/execution/publications"), 401, "unauthorized")
            bogus = {"Authorization": "Bearer tid_abcdefgh_" + "x" * 43}
            error(await anonymous.put(path, json=shipment, headers=bogus), 401, "unauthorized")
            ingest_key, _ = await apikeys.create(execution.app.db, "shop", frozenset({"events"}))
            events_only = {"Authorization": f"Bearer {ingest_key}"}
            error(await anonymous.put(path, json=shipment, headers=events_only), 403, "forbidden")
            error(await anonymous.delete(path, headers=events_only), 403, "forbidden")
            # A publish key is good for nothing else.
            publisher_only = {"Authorization": f"Bearer {key}"}
            sent = await anonymous.post(
                "/api/v1/events",
                json={"type": "orderConfirmation", "recipient": {"email": "a@example.com"}},
                headers=publisher_only,
            )
            error(sent, 403, "forbidden")
        assert ("orderConfirmation", "email") not in await held(execution)


async def test_unpublishing_reaches_the_instances(database_url: str, tmp_path: Path) -> None:
    async with (
        control_server(tmp_path) as control,
        live_server(database_url) as execution,
    ):
        await register(control, "paris", execution.url, await publish_key(execution))
        await create_type(control)
        await publish(control, await save(control, EMAIL))
        assert ("orderConfirmation", "email") in await held(execution)
        gone = await control.client.delete("/api/v1/templates/orderConfirmation/email/publication")
        assert gone.status_code == 204, gone.text
        assert ("orderConfirmation", "email") not in await held(execution)
        sent = await execution.post_event(
            type="orderConfirmation", recipient={"email": "jack@example.com"}, ctx=good_ctx()
        )
        final = await execution.wait_status(sent["id"], "routingFailed")
        assert final["status"] == "routingFailed"
        detail = await control.client.get("/api/v1/instances/paris")
        assert detail.status_code == 200, detail.text
        latest = detail.json()["deliveries"][0]
        assert (latest["action"], latest["outcome"], latest["httpStatus"]) == (
            "unpublish",
            "ok",
            200,
        )
        [unpublished, published] = (
            await control.client.get("/api/v1/publications/audit?type=orderConfirmation")
        ).json()[:2]
        assert unpublished["action"] == "unpublish"
        assert unpublished["instances"] == ["paris"]
        assert published["action"] == "publish"
        assert published["instances"] == ["paris"]


async def test_an_instance_that_was_down_catches_up(database_url: str, tmp_path: Path) -> None:
    down_port = free_port()  # nothing listens there yet: connections are refused
    lyon_url = sqlite_file(tmp_path, "lyon.db")
    async with (
        control_server(tmp_path) as control,
        live_server(database_url) as paris,
    ):
        await register(control, "paris", paris.url, await publish_key(paris))
        await register(control, "lyon", f"http://127.0.0.1:{down_port}", "tid_abcdefgh_" + "x" * 43)
        unreachable = await control.client.post("/api/v1/instances/lyon/sync")
        error(unreachable, 502, "instance_unreachable")
        await create_type(control)
        done = await publish(control, await save(control, EMAIL))
        results = {r["instance"]: r for r in done["instances"]}
        assert results["paris"]["outcome"] == "ok"
        lyon = results["lyon"]
        assert (lyon["outcome"], lyon["httpStatus"], lyon["attempts"]) == ("failed", None, 2)
        assert "cannot connect" in lyon["error"]
        listed = {i["name"]: i for i in (await control.client.get("/api/v1/instances")).json()}
        assert listed["lyon"]["lastOutcome"] == "failed"
        assert listed["lyon"]["contactedAt"] is None
        assert listed["paris"]["lastOutcome"] == "ok"
        assert "credential" not in listed["paris"]
        [entry] = (
            await control.client.get("/api/v1/publications/audit?type=orderConfirmation")
        ).json()
        assert entry["instances"] == ["paris"]

        async with live_server(lyon_url, port=down_port) as lyon_server:
            # The wrong credential: the instance answers 401, the retry says so.
            refused = await control.client.post("/api/v1/instances/lyon/sync")
            found = error(refused, 502, "instance_unreachable")
            assert "unauthorized" in found["message"]
            await control.client.delete("/api/v1/instances/lyon")
            await register(control, "lyon", lyon_server.url, await publish_key(lyon_server))
            synced = await control.client.post("/api/v1/instances/lyon/sync")
            assert synced.status_code == 200, synced.text
            [result] = synced.json()
            assert (result["instance"], result["outcome"], result["httpStatus"]) == (
                "lyon",
                "ok",
                200,
            )
            assert result["contentHash"] == done["contentHash"]
            assert (await held(lyon_server))[("orderConfirmation", "email")] == done["contentHash"]
            again = await control.client.post("/api/v1/instances/lyon/sync")
            assert again.status_code == 200, again.text
            assert again.json() == []
            sent = await lyon_server.post_event(
                type="orderConfirmation", recipient={"email": "jack@example.com"}, ctx=good_ctx()
            )
            assert (await lyon_server.wait_status(sent["id"], "processed"))["status"] == (
                "processed"
            )
        [entry] = (
            await control.client.get("/api/v1/publications/audit?type=orderConfirmation")
        ).json()
        assert entry["instances"] == ["lyon", "paris"]


async def test_the_registry_refuses_bad_input(tmp_path: Path) -> None:
    async with control_server(tmp_path) as control:
        good = {"name": "paris", "baseUrl": "http://127.0.0.1:9", "credential": "tid_x_y"}
        assert (await control.client.post("/api/v1/instances", json=good)).status_code == 201
        error(await control.client.post("/api/v1/instances", json=good), 409, "duplicate_instance")
        for changes, code, field in (
            ({"name": "bad name"}, "invalid_name", "$.name"),
            ({"name": "lyon", "baseUrl": "ftp://example.com"}, "invalid_url", "$.baseUrl"),
            ({"name": "lyon", "baseUrl": "http://u:p@example.com"}, "invalid_url", "$.baseUrl"),
            ({"name": "lyon", "baseUrl": "not a url"}, "invalid_url", "$.baseUrl"),
            ({"name": "lyon", "credential": ""}, "invalid_field", "$.credential"),
            ({"name": "lyon", "credential": "a b"}, "invalid_field", "$.credential"),
        ):
            found = error(
                await control.client.post("/api/v1/instances", json={**good, **changes}),
                422,
                code,
            )
            assert found["field"] == field
        missing = {"name": "lyon", "baseUrl": "http://127.0.0.1:9"}
        error(await control.client.post("/api/v1/instances", json=missing), 422, "missing_field")
        error(
            await control.client.post("/api/v1/instances", json={**good, "extra": 1}),
            422,
            "unknown_field",
        )
        listed = (await control.client.get("/api/v1/instances")).json()
        assert [i["name"] for i in listed] == ["paris"]
        error(await control.client.get("/api/v1/instances/lyon"), 404, "unknown_instance")
        error(await control.client.delete("/api/v1/instances/lyon"), 404, "unknown_instance")
        error(await control.client.post("/api/v1/instances/lyon/sync"), 404, "unknown_instance")
        assert (await control.client.delete("/api/v1/instances/paris")).status_code == 204
        assert (await control.client.get("/api/v1/instances")).json() == []


async def test_only_admin_keys_manage_the_registry(tmp_path: Path) -> None:
    async with control_server(tmp_path) as control:
        key, _ = await apikeys.create(control.app.db, "shop", frozenset({"events", "publish"}))
        async with httpx.AsyncClient(
            base_url=control.url, headers={"Authorization": f"Bearer {key}"}, timeout=15
        ) as other:
            error(await other.get("/api/v1/instances"), 403, "forbidden")
            error(
                await other.post(
                    "/api/v1/instances",
                    json={"name": "x", "baseUrl": "http://127.0.0.1:9", "credential": "k"},
                ),
                403,
                "forbidden",
            )


async def test_the_console_lists_instances_and_retries_one(
    database_url: str, tmp_path: Path
) -> None:
    down_port = free_port()
    async with (
        control_server(tmp_path) as control,
        httpx.AsyncClient(base_url=control.url, timeout=15) as browser,
    ):
        await add_operator(control, "ada")
        token = await sign_in(browser, "ada")
        down = f"http://127.0.0.1:{down_port}"
        bad = await browser.post(
            "/console/instances",
            data={"name": "paris", "base_url": "ftp://x", "credential": "k", "_csrf": token},
        )
        assert bad.status_code == 422
        assert "baseUrl: the URL must start with http:// or https://" in bad.text
        assert await instances.list_all(control.app.db) == []

        # The instance's key, made before it starts (it is down for now).
        credential, prefix = apikeys.generate()
        # The instance is down: it is registered, and the publication fails there.
        added = await browser.post(
            "/console/instances",
            data={"name": "paris", "base_url": down, "credential": credential, "_csrf": token},
        )
        assert added.status_code == 201, added.text
        assert 'data-instance="paris"' in added.text
        assert "nothing sent yet" in added.text
        await create_type(control)
        number = await save(control, EMAIL)
        published = await browser.post(
            "/console/event-types/orderConfirmation/email/publish",
            data={"version": str(number), "_csrf": token},
        )
        assert published.status_code == 200, published.text
        assert 'id="publish-result"' in published.text
        assert 'data-instance="paris" data-outcome="failed"' in published.text
        page = await browser.get("/console/instances")
        row = page.text[page.text.index('<tr data-instance="paris">') :]
        row = row[: row.index("</tr>")]
        assert "failed" in row
        assert "cannot connect" in row
        assert "never" in row  # it never answered

        # Designers retry; operators may not.
        await add_operator(control, "olga", model.OperatorRole.OPERATOR)
        async with httpx.AsyncClient(base_url=control.url, timeout=15) as other:
            other_token = await sign_in(other, "olga")
            refused = await other.post(
                "/console/instances/sync", data={"name": "paris", "_csrf": other_token}
            )
            assert refused.status_code == 403

        async with live_server(database_url, port=down_port) as execution:
            async with execution.app.db.transaction() as conn:
                await keys.insert_key(
                    conn,
                    "control",
                    prefix,
                    apikeys.hash_secret(credential),
                    frozenset({"publish"}),
                    clock.now_us(),
                )
            synced = await browser.post(
                "/console/instances/sync", data={"name": "paris", "_csrf": token}
            )
            assert synced.status_code == 200, synced.text
            assert 'id="sync-result"' in synced.text
            assert 'data-instance="paris" data-outcome="ok"' in synced.text
            row = synced.text[synced.text.index('<tr data-instance="paris">') :]
            assert '<span class="badge good">ok</span>' in row[: row.index("</tr>")]
            assert ("orderConfirmation", "email") in await held(execution)
        unknown = await browser.post(
            "/console/instances/sync", data={"name": "lyon", "_csrf": token}
        )
        assert unknown.status_code == 404
        removed = await browser.post(
            "/console/instances/remove", data={"name": "paris", "_csrf": token}
        )
        assert removed.status_code == 200
        assert "None: publishing applies to this instance only." in removed.text


async def test_the_cli_registers_publishes_and_syncs(database_url: str, tmp_path: Path) -> None:
    definition = tmp_path / "type.json"
    definition.write_text(json.dumps(order_type()))
    draft = tmp_path / "v1.json"
    draft.write_text(json.dumps({"content": EMAIL}))

    async def tidings(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(run, tmp_path, *args, check=False)

    async with live_server(database_url) as execution:
        key = await publish_key(execution)
        assert (await tidings("event-types", "create", str(definition))).returncode == 0
        assert (
            await tidings("templates", "save", "orderConfirmation", "email", str(draft))
        ).returncode == 0
        added = await tidings("instances", "add", "paris", execution.url, "--credential", key)
        assert added.returncode == 0, added.stderr
        again = await tidings("instances", "add", "paris", execution.url, "--credential", key)
        assert again.returncode == 1
        assert "duplicate_instance" in again.stderr
        bad = await tidings("instances", "add", "lyon", "nowhere", "--credential", key)
        assert bad.returncode == 1
        assert "invalid_url" in bad.stderr
        down = f"http://127.0.0.1:{free_port()}"
        assert (
            await tidings("instances", "add", "lyon", down, "--credential", "k")
        ).returncode == 0

        published = await tidings("templates", "publish", "orderConfirmation", "email", "1")
        assert published.returncode == 3, published.stderr
        assert "paris: ok (publish, HTTP 200)" in published.stdout
        assert "lyon: failed (publish, no answer, 3 attempt(s)): cannot connect" in published.stdout
        assert "tidings instances sync NAME" in published.stderr
        assert ("orderConfirmation", "email") in await held(execution)
        listed = (await tidings("instances", "list")).stdout
        assert "paris" in listed
        assert "lyon" in listed
        assert "failed" in listed
        unreachable = await tidings("instances", "sync", "lyon")
        assert unreachable.returncode == 1
        assert "instance_unreachable" in unreachable.stderr
        assert (await tidings("instances", "remove", "lyon")).returncode == 0
        unknown = await tidings("instances", "remove", "lyon")
        assert unknown.returncode == 1
        assert "unknown_instance" in unknown.stderr
        synced = await tidings("instances", "sync", "paris")
        assert synced.returncode == 0, synced.stderr
        assert "paris: up to date" in synced.stdout
        audit = await tidings("templates", "audit")
        assert "paris" in audit.stdout

        gone = await tidings("templates", "unpublish", "orderConfirmation", "email")
        assert gone.returncode == 0, gone.stderr
        assert "paris: ok (unpublish, HTTP 200)" in gone.stdout
        assert ("orderConfirmation", "email") not in await held(execution)


async def test_silent_and_failing_instances_are_reported(tmp_path: Path) -> None:
    """An instance that never answers fails after the timeout; one answering 503 is tried
    again, then fails with its status."""
    seen = {"silent": 0, "failing": 0}
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen["silent"] += 1
        await reader.read(65536)
        await release.wait()
        writer.close()

    async def failing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen["failing"] += 1
        await reader.readuntil(b"\r\n\r\n")
        body = b'{"error": {"status": 503, "code": "unavailable", "message": "down"}}'
        writer.write(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    silent_server = await asyncio.start_server(silent, "127.0.0.1", 0)
    failing_server = await asyncio.start_server(failing, "127.0.0.1", 0)
    try:
        async with control_server(tmp_path, instance_timeout=0.5) as control:
            for name, srv in (("silent", silent_server), ("failing", failing_server)):
                port = srv.sockets[0].getsockname()[1]
                await register(control, name, f"http://127.0.0.1:{port}", "tid_x_y")
            await create_type(control)
            started = asyncio.get_running_loop().time()
            done = await publish(control, await save(control, EMAIL))
            took = asyncio.get_running_loop().time() - started
        results = {r["instance"]: r for r in done["instances"]}
        assert results["silent"]["outcome"] == "failed"
        assert results["silent"]["httpStatus"] is None
        assert results["silent"]["error"] == "no answer within 0.5 s"
        assert results["silent"]["attempts"] == 2
        assert results["failing"]["outcome"] == "failed"
        assert results["failing"]["httpStatus"] == 503
        assert results["failing"]["error"] == "unavailable: down"
        assert results["failing"]["attempts"] == 2
        assert seen == {"silent": 2, "failing": 2}
        assert took < 10  # bounded by the timeout, not by the silent server
    finally:
        release.set()
        silent_server.close()
        failing_server.close()
