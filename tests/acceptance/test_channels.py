"""Events by SMS, push and webhook, end to end: posted through the API, routed to the
published template of their channel, rendered and delivered by the real transport to a real
peer on loopback (node-smpp SMSC, HTTP/2 push gateways, an HTTP receiver)."""

from __future__ import annotations

import asyncio
import json
import pathlib
from typing import Any

from tests import http_receivers, smsc
from tidings import signing
from tidings.control import files

from .conftest import Live, Serve

SMPP = {
    "smpp_system_id": "tidings",
    "smpp_password": "secret",
    "smpp_source": "Shop",
    "smpp_timeout": 5.0,
    "smpp_reconnect_min": 0.2,
}


async def publish(live: Live, root: pathlib.Path, name: str, **texts: str) -> None:
    """Publish a template folder ``name`` holding ``texts`` (file name → text)."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for file, text in texts.items():
        (folder / file).write_text(text)
    await files.publish_folder(live.app.db, root, author="tests", renderer=live.app.renderer)
    await live.app.refresh_routing()


async def detail(live: Live, event_id: str) -> dict[str, Any]:
    response = await live.client.get(f"/api/v1/events/{event_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_sms_event_reaches_the_smsc_and_its_receipt_the_event(
    serve: Serve, tmp_path: pathlib.Path
) -> None:
    with smsc.running(tmp_path, receipt="DELIVRD", receipt_tlvs=True) as server:
        async with serve(smpp_host="127.0.0.1", smpp_port=server.port, **SMPP) as live:
            await publish(
                live,
                tmp_path / "templates",
                "orderShipped",
                **{
                    "template.toml": '[sms]\nsender = "ShopFR"\n',
                    "sms.txt": "Bonjour {{ ctx.firstName }}, commande {{ ctx.id }} expédiée.\n",
                },
            )
            body = await live.post_event(
                type="orderShipped",
                recipient={"mobilePhone": "+33 6 12 34 56 78"},
                ctx={"firstName": "Zoë", "id": "A-42"},
            )
            event = await live.wait_status(body["id"], "processed")
            [submit] = server.pdus("submit_sm")
            assert submit["destination_addr"] == "33612345678"
            assert submit["source_addr"] == "ShopFR"
            assert submit["short_message"]["message"] == "Bonjour Zoë, commande A-42 expédiée."
            assert submit["data_coding"] == 8  # ë is not in GSM-7: UCS-2
            [delivery] = event["deliveries"]
            assert delivery["channel"] == "sms"
            assert delivery["outcome"] == "delivered"
            assert delivery["providerId"]

            # The SMSC's receipt lands on the event.
            for _ in range(250):
                receipts = (await detail(live, body["id"]))["receipts"]
                if receipts:
                    break
                await asyncio.sleep(0.02)
            assert [(r["providerId"], r["state"]) for r in receipts] == [
                (delivery["providerId"], "delivered")
            ]


async def test_an_invalid_phone_number_fails_the_event_with_the_reason(
    serve: Serve, tmp_path: pathlib.Path
) -> None:
    with smsc.running(tmp_path) as server:
        async with serve(smpp_host="127.0.0.1", smpp_port=server.port, **SMPP) as live:
            await publish(live, tmp_path / "t", "otp", **{"sms.txt": "Code {{ ctx.code }}"})
            body = await live.post_event(
                type="otp", recipient={"mobilePhone": "+999 123"}, ctx={"code": "1234"}
            )
            event = await live.wait_status(body["id"], "deliveryFailed")
            assert "number" in event["reason"]
            assert server.pdus("submit_sm") == []


async def test_an_sms_event_without_an_sms_transport_is_a_routing_failure(
    serve: Serve, tmp_path: pathlib.Path
) -> None:
    async with serve() as live:
        await publish(live, tmp_path / "t", "otp", **{"sms.txt": "Code {{ ctx.code }}"})
        body = await live.post_event(
            type="otp", recipient={"mobilePhone": "+33612345678"}, ctx={"code": "1"}
        )
        event = await live.wait_status(body["id"], "routingFailed")
        assert event["reason"] == "no transport for the sms channel"


# -- webhooks ------------------------------------------------------------------------------------

WEBHOOK_SETTINGS = {"webhook_secret": "s3cret", "webhook_allow_private": True}


async def publish_webhook(live: Live, root: pathlib.Path, url: str) -> None:
    await publish(
        live,
        root,
        "orderShipped",
        **{
            "template.toml": f'[webhook]\nurl = "{url}/orders/{{{{ ctx.id }}}}"\n'
            '[webhook.headers]\nX-Kind = "{{ event.type }}"\n',
            "webhook.json": '{"order": {{ ctx.id|tojson }}, "who": {{ ctx.name|tojson }}, '
            '"items": {{ ctx["items"]|tojson }}}',
        },
    )


async def test_a_webhook_event_is_posted_signed_to_its_url(
    serve: Serve, tmp_path: pathlib.Path
) -> None:
    async with http_receivers.receiver() as hook, serve(**WEBHOOK_SETTINGS) as live:
        await publish_webhook(live, tmp_path / "t", hook.url)
        hostile = 'Jo "</script>\\'
        body = await live.post_event(
            type="orderShipped",
            recipient={"externalId": "c-1"},
            ctx={"id": "A-42", "name": hostile, "items": [{"sku": "J1", "qty": 2}]},
        )
        event = await live.wait_status(body["id"], "processed")
        [request] = hook.requests
        assert (request.method, request.path) == ("POST", "/orders/A-42")
        assert request.headers["x-kind"] == "orderShipped"
        assert json.loads(request.body) == {
            "order": "A-42",
            "who": hostile,
            "items": [{"sku": "J1", "qty": 2}],
        }
        signing.verify("s3cret", request.headers["tidings-signature"], request.body)
        [delivery] = event["deliveries"]
        assert (delivery["channel"], delivery["outcome"]) == ("webhook", "delivered")
        assert delivery["address"] == hook.url + "/orders/A-42"


async def test_a_webhook_answering_500_is_retried_and_404_fails(
    serve: Serve, tmp_path: pathlib.Path
) -> None:
    script = [http_receivers.Answer(500, b"busy"), http_receivers.Answer(200)]
    settings = WEBHOOK_SETTINGS | {"retry_base": 0.1, "retry_max": 0.2}
    async with (
        http_receivers.receiver(script=script) as hook,
        serve(**settings) as live,
    ):
        await publish_webhook(live, tmp_path / "t", hook.url)
        ok = await live.post_event(
            type="orderShipped", recipient={"externalId": "c"}, ctx={"id": "1", "items": []}
        )
        event = await live.wait_status(ok["id"], "processed")
        assert [d["outcome"] for d in event["deliveries"]] == ["retry", "delivered"]
        assert event["deliveries"][0]["reply"].startswith("500")

        hook.default = http_receivers.Answer(404, b"no such order")
        gone = await live.post_event(
            type="orderShipped", recipient={"externalId": "c"}, ctx={"id": "2", "items": []}
        )
        event = await live.wait_status(gone["id"], "deliveryFailed")
        assert event["reason"].startswith("404")


async def test_a_webhook_to_loopback_is_refused_unless_allowed(
    serve: Serve, tmp_path: pathlib.Path
) -> None:
    async with http_receivers.receiver() as hook, serve(webhook_secret="s") as live:
        await publish_webhook(live, tmp_path / "t", hook.url)
        body = await live.post_event(
            type="orderShipped", recipient={"externalId": "c"}, ctx={"id": "1", "items": []}
        )
        event = await live.wait_status(body["id"], "deliveryFailed")
        assert "127.0.0.1" in event["reason"]
        assert hook.requests == []


async def test_a_webhook_body_that_does_not_render_to_json_fails_before_sending(
    serve: Serve, tmp_path: pathlib.Path
) -> None:
    async with http_receivers.receiver() as hook, serve(**WEBHOOK_SETTINGS) as live:
        await publish(
            live,
            tmp_path / "t",
            "orderShipped",
            **{
                "template.toml": f'[webhook]\nurl = "{hook.url}/x"\n',
                "webhook.json": '{"who": {{ ctx.name }}}',
            },
        )
        body = await live.post_event(
            type="orderShipped", recipient={"externalId": "c"}, ctx={"name": "Jo"}
        )
        event = await live.wait_status(body["id"], "deliveryFailed")
        assert "not JSON" in event["reason"]
        assert hook.requests == []
