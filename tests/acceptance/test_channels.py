"""Events by SMS, push and webhook, end to end: posted through the API, routed to the
published template of their channel, rendered and delivered by the real transport to a real
peer on loopback (node-smpp SMSC, HTTP/2 push gateways, an HTTP receiver)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme

from tests import http_receivers, push_servers, smsc
from tidings import signing
from tidings.control import folders

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
    await folders.publish_folder(live.app.db, root, author="tests", renderer=live.app.renderer)
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


# -- mobile push ---------------------------------------------------------------------------------

APNS_DEVICE = "a1" * 32
FCM_DEVICE = "fcm-token:" + "x" * 40


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@contextlib.asynccontextmanager
async def gateways(ca: trustme.CA) -> AsyncIterator[tuple[Any, Any, dict[str, Any]]]:
    """Local APNs and FCM servers, and the settings that point Tidings at them."""
    pem, public = push_servers.apns_key()
    apple = push_servers.ApnsServer(public, topic="com.example.shop")
    google = push_servers.FcmServer()
    async with (
        push_servers.serving(apple, ca) as apns_at,
        push_servers.serving(google, ca) as fcm_at,
    ):
        account, account_key = push_servers.service_account(f"{fcm_at.url}/token")
        google.trust(account, account_key)
        yield (
            apple,
            google,
            {
                "apns_key": pem,
                "apns_key_id": "KEYID12345",
                "apns_team_id": "TEAMID1234",
                "apns_topic": "com.example.shop",
                "apns_endpoint": apns_at.url,
                "apns_ca_file": apns_at.ca_file,
                "fcm_service_account": account,
                "fcm_endpoint": fcm_at.url,
                "fcm_ca_file": fcm_at.ca_file,
            },
        )


async def publish_push(live: Live, root: pathlib.Path) -> None:
    await publish(
        live,
        root,
        "orderShipped",
        **{
            "template.toml": '[push]\ntitle = "Order {{ ctx.id }}"\nbadge = "{{ ctx.count }}"\n'
            'collapse_id = "order-{{ ctx.id }}"\n[push.data]\norderId = "{{ ctx.id }}"\n',
            "push.txt": "Hi {{ ctx.name }}, it has shipped.",
        },
    )


async def test_push_events_go_to_apns_and_fcm_by_their_token(
    serve: Serve, tmp_path: pathlib.Path, ca: trustme.CA
) -> None:
    async with gateways(ca) as (apple, google, settings), serve(**settings) as live:
        await publish_push(live, tmp_path / "t")
        ctx = {"id": "A-42", "name": "Jo", "count": 2}
        to_apple = await live.post_event(
            type="orderShipped", recipient={"pushToken": APNS_DEVICE}, ctx=ctx
        )
        to_google = await live.post_event(
            type="orderShipped", recipient={"pushToken": FCM_DEVICE}, ctx=ctx
        )
        apple_event = await live.wait_status(to_apple["id"], "processed")
        google_event = await live.wait_status(to_google["id"], "processed")

        [request] = apple.requests
        assert request.path == f"/3/device/{APNS_DEVICE}"
        assert request.http_version == "2"
        assert request.headers["apns-collapse-id"] == "order-A-42"
        payload = request.json()
        assert payload["aps"]["alert"] == {"title": "Order A-42", "body": "Hi Jo, it has shipped."}
        assert payload["aps"]["badge"] == 2
        assert payload["orderId"] == "A-42"
        assert apple_event["deliveries"][0]["providerId"] == request.headers["apns-id"]

        [sent] = [r for r in google.requests if r.path.endswith("messages:send")]
        message = sent.json()["message"]
        assert message["token"] == FCM_DEVICE
        assert message["notification"] == {"title": "Order A-42", "body": "Hi Jo, it has shipped."}
        assert message["data"] == {"orderId": "A-42"}
        assert google_event["deliveries"][0]["providerId"].startswith("projects/")


async def test_an_unregistered_device_token_is_quarantined(
    serve: Serve, tmp_path: pathlib.Path, ca: trustme.CA
) -> None:
    async with gateways(ca) as (apple, _, settings), serve(**settings) as live:
        await publish_push(live, tmp_path / "t")
        apple.script(APNS_DEVICE, push_servers.apns_reason(410, "Unregistered", timestamp=1))
        ctx = {"id": "1", "name": "Jo", "count": 1}
        first = await live.post_event(
            type="orderShipped", recipient={"pushToken": APNS_DEVICE}, ctx=ctx
        )
        event = await live.wait_status(first["id"], "deliveryFailed")
        assert "Unregistered" in event["reason"]
        quarantine = (await live.client.get("/api/v1/quarantine?channel=push")).json()
        assert [q["address"] for q in quarantine] == [APNS_DEVICE]
        # The next event to that device is not sent.
        second = await live.post_event(
            type="orderShipped", recipient={"pushToken": APNS_DEVICE}, ctx=ctx
        )
        await live.wait_status(second["id"], "ignored")
        assert len(apple.requests) == 1
