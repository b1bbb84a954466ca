"""Proofs end to end on SQLite and PostgreSQL: a template version sent to the event type's seed
addresses through the real channel (an aiosmtpd server, the node-smpp SMSC), marked as a
proof, its result read back, and never counted in the reports or the dashboard; the errors
that refuse a proof and store nothing. Also the allowed channels, enforced at ingest."""

from __future__ import annotations

import asyncio
import email
import email.policy
import pathlib
from typing import Any

from tests import smsc
from tests.acceptance.conftest import Live, Serve
from tests.acceptance.test_channels import SMPP
from tests.acceptance.test_control import EMAIL, create_type, error, good_ctx, order_type, save
from tests.acceptance.test_delivery import smtp
from tests.acceptance.test_soap import fault, post, push_event
from tests.smtp_servers import Recorder, aiosmtpd_server
from tidings import model, reports
from tidings.store import catalog
from tidings.store.database import sql

SEEDS = {"email": ["proof-a@example.com", "proof-b@example.com"], "sms": ["+33612345678"]}
BASE = "/api/v1/event-types/orderConfirmation/templates"


async def wait_final(live: Live, path: str, within: float = 20.0) -> dict[str, Any]:
    """Poll a proof until every message is done."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        response = await live.client.get(path)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["final"]:
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"proof not final: {body}")
        await asyncio.sleep(0.05)


async def proof_count(live: Live) -> int:
    async with live.app.db.connection() as conn:
        return int(await conn.fetchval(sql("SELECT COUNT(*) FROM proofs")))


async def test_an_email_proof_goes_by_smtp_marked_and_is_never_counted(serve: Serve) -> None:
    handler = Recorder()
    async with aiosmtpd_server(handler) as server, serve(**smtp(server.port)) as live:
        await create_type(live, seeds=SEEDS)
        number = await save(live, EMAIL)  # a draft: never published
        saved = await live.client.put(
            "/api/v1/event-types/orderConfirmation/profiles/jill",
            json={"recipient": {"email": "jill@example.com"}, "ctx": good_ctx(firstName="Jill")},
        )
        assert saved.status_code == 200, saved.text

        sent = await live.client.post(
            f"{BASE}/email/versions/{number}/proofs", json={"profile": "jill"}
        )
        assert sent.status_code == 202, sent.text
        proof = sent.json()
        assert proof["version"] == number
        assert proof["profile"] == "jill"
        assert [r["address"] for r in proof["recipients"]] == SEEDS["email"]
        assert {r["status"] for r in proof["recipients"]} <= {"pending", "processing"}

        done = await wait_final(live, f"{BASE}/email/versions/{number}/proofs/{proof['id']}")
        assert [r["status"] for r in done["recipients"]] == ["processed", "processed"]
        for r in done["recipients"]:
            [delivery] = r["deliveries"]
            assert delivery["outcome"] == "delivered"
            assert delivery["reply"].startswith("250"), delivery

        assert sorted(m.rcpt_tos[0] for m in handler.received) == SEEDS["email"]
        for received in handler.received:
            assert b"\r\nX-Tidings-Proof: 1\r\n" in received.data
            parsed = email.message_from_bytes(received.data, policy=email.policy.default)
            assert parsed["Subject"] == "[Proof] Your order, Jill"
            assert parsed["X-Tidings-Proof"] == "1"

        # The version is still not published: an ordinary event finds no template.
        ordinary = await live.post_event(
            type="orderConfirmation", recipient={"email": "x@example.com"}, ctx=good_ctx()
        )
        await live.wait_status(ordinary["id"], "routingFailed")

        # Only the ordinary event counts.
        history = (await live.client.get("/api/v1/reports/event-history?period=hour")).json()
        assert sum(line["events"] for line in history["lines"]) == 1
        service = (await live.client.get("/api/v1/reports/service-level?period=hour")).json()
        assert sum(line["incoming"] for line in service["lines"]) == 1
        assert sum(line["outgoing"] for line in service["lines"]) == 0
        timing = (await live.client.get("/api/v1/reports/processing-time?period=hour")).json()
        assert timing["lines"] == []
        board = await reports.dashboard(live.app.db, live.app.settings)
        assert board.hour == {"routingFailed": 1}
        assert board.day == {"routingFailed": 1}
        assert sum(events for _, events, _, _ in board.day_history) == 1
        # Nor in the metrics: the two proof messages were processed, the counter saw none.
        assert live.app.metrics.statuses == {("orderConfirmation", "routingFailed"): 1}


async def test_an_sms_proof_reaches_the_smsc_prefixed(serve: Serve, tmp_path: pathlib.Path) -> None:
    with smsc.running(tmp_path) as server:
        async with serve(smpp_host="127.0.0.1", smpp_port=server.port, **SMPP) as live:
            await create_type(live, seeds=SEEDS)
            number = await save(live, {"type": "sms", "text": "Hi {{ ctx.firstName }}"}, "sms")
            sent = await live.client.post(f"{BASE}/sms/versions/{number}/proofs")
            assert sent.status_code == 202, sent.text
            path = f"{BASE}/sms/versions/{number}/proofs/{sent.json()['id']}"
            done = await wait_final(live, path)
            [recipient] = done["recipients"]
            assert recipient["status"] == "processed", recipient
            assert recipient["address"] == "+33612345678"
            [submit] = server.pdus("submit_sm")
            assert submit["destination_addr"] == "33612345678"
            # Without a profile the schema's examples fill the ctx.
            assert submit["short_message"]["message"] == "[Proof] Hi Jack"


async def test_proof_errors_store_nothing(live: Live) -> None:
    await create_type(live, seeds={"email": ["proof@example.com"]})
    good = await save(live, EMAIL)
    broken = await save(live, {**EMAIL, "subject": "Hi {{ ctx.nope }"})
    sms = await save(live, {"type": "sms", "text": "Hi"}, "sms")

    error(await live.client.post(f"{BASE}/sms/versions/{sms}/proofs"), 422, "no_seed_addresses")
    body = error(
        await live.client.post(f"{BASE}/email/versions/{broken}/proofs"), 422, "invalid_version"
    )
    assert body["issues"]
    assert body["issues"][0]["field"] == "subject"
    error(await live.client.post(f"{BASE}/email/versions/99/proofs"), 404, "unknown_version")
    error(
        await live.client.post(f"/api/v1/event-types/nope/templates/email/versions/{good}/proofs"),
        404,
        "unknown_event_type",
    )
    error(
        await live.client.post(f"{BASE}/email/versions/{good}/proofs", json={"profile": "nobody"}),
        404,
        "unknown_profile",
    )
    error(await live.client.post(f"{BASE}/fax/versions/{good}/proofs"), 404, "not_found")
    json_type = {"Content-Type": "application/json"}
    error(
        await live.client.post(
            f"{BASE}/email/versions/{good}/proofs", content=b"{", headers=json_type
        ),
        400,
        "malformed_json",
    )
    error(
        await live.client.post(f"{BASE}/email/versions/{good}/proofs", content=b"profile=x"),
        415,
        "unsupported_media_type",
    )
    error(
        await live.client.post(f"{BASE}/email/versions/{good}/proofs", json={"profil": "x"}),
        422,
        "unknown_field",
    )
    error(await live.client.get(f"{BASE}/email/versions/{good}/proofs/1"), 404, "unknown_proof")
    assert await live.stored_count() == 0
    assert await proof_count(live) == 0

    # Bad seed addresses are refused with the definition, naming the address.
    body = error(
        await live.client.put(
            "/api/v1/event-types/orderConfirmation",
            json={**order_type(), "seeds": {"email": ["proof@example.com", "not-an-address"]}},
        ),
        422,
        "invalid_field",
    )
    assert body["field"] == "$.seeds.email[1]"
    shown = (await live.client.get("/api/v1/event-types/orderConfirmation")).json()
    assert shown["seeds"] == {"email": ["proof@example.com"]}

    # A proof of another version is not this one's.
    sent = await live.client.post(f"{BASE}/email/versions/{good}/proofs")
    assert sent.status_code == 202, sent.text
    other = f"{BASE}/email/versions/{broken}/proofs/{sent.json()['id']}"
    error(await live.client.get(other), 404, "unknown_proof")


# ------------------------------------------------------------------ allowed channels at ingest


async def test_a_channel_the_type_does_not_allow_is_refused_at_ingest(live: Live) -> None:
    # orderConfirmation allows email (its default), sms and webhook: not push.
    await create_type(live)
    await live.app.refresh_routing()
    refused = await live.client.post(
        "/api/v1/events",
        json={
            "type": "orderConfirmation",
            "channel": "push",
            "recipient": {"pushToken": "fcm:abc"},
            "ctx": good_ctx(),
        },
    )
    body = error(refused, 422, "channel_not_allowed")
    assert body["field"] == "$.channel"
    assert "push" in body["message"]
    assert await live.stored_count() == 0
    batch = await live.client.post(
        "/api/v1/events/batch",
        json={
            "events": [
                {
                    "type": "orderConfirmation",
                    "channel": "sms",
                    "recipient": {"mobilePhone": "+33612345678"},
                    "ctx": good_ctx(),
                },
                {
                    "type": "orderConfirmation",
                    "channel": "push",
                    "recipient": {"pushToken": "fcm:abc"},
                    "ctx": good_ctx(),
                },
            ]
        },
    )
    # A batch takes the good items and answers per item.
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert results[0]["event"]["status"] == "pending"
    assert results[1]["error"]["code"] == "channel_not_allowed"
    assert results[1]["error"]["field"] == "$.events[1].channel"
    assert await live.stored_count() == 1

    # An allowed channel goes in.
    accepted = await live.post_event(
        type="orderConfirmation",
        channel="sms",
        recipient={"mobilePhone": "+33612345678"},
        ctx=good_ctx(),
    )
    assert accepted["status"] == "pending"

    # SOAP: wishedChannel 41 (iOS push) is a client fault naming the field.
    answer = await post(
        live,
        push_event(
            f"mc/{live.key}",
            '<rtEvent type="orderConfirmation" wishedChannel="41" registrationToken="tok">'
            "<ctx><firstName>Jack</firstName><items><item><name>Jacket</name>"
            "<price>125</price></item></items></ctx></rtEvent>",
        ),
    )
    code, _, detail = fault(answer)
    assert code == "SOAP-ENV:Client"
    assert "$.wishedChannel" in detail, detail
    assert "push" in detail, detail
    assert await live.stored_count() == 2


async def test_a_type_made_from_a_template_folder_allows_any_channel(live: Live) -> None:
    # Without a definition a type lists no allowed channels: nothing is refused.
    async with live.app.db.transaction() as conn:
        await catalog.upsert_event_type(conn, "folderType", "Folder", model.Channel.EMAIL, 0)
    await live.app.refresh_routing()
    accepted = await live.post_event(
        type="folderType", channel="push", recipient={"pushToken": "fcm:abc"}, ctx={}
    )
    assert accepted["status"] == "pending"
