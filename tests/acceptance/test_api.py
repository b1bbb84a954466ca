"""The HTTP API over a real socket: the Campaign Standard route, the native events API,
idempotency, errors (that change nothing), hostile input, the OpenAPI document and the
operating routes (quarantine, event types, API keys).

Every test runs against the real uvicorn server with its worker, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tidings import apikeys, clock, ids
from tidings.control import folders

from .conftest import EXAMPLE_CTX, Live, Serve

ADOBE = "/local/campaign/mclocal"
CART = f"{ADOBE}/EVTcartAbandonment"
ADOBE_EXAMPLE: dict[str, Any] = {
    "email": "test@example.com",
    "scheduled": "2017-12-01 08:00:00.768Z",
    "expiration": "2017-12-31 08:00:00.768Z",
    "ctx": EXAMPLE_CTX,
}
JSON_UTF8 = {"Content-Type": "application/json;charset=utf-8"}
FINAL = ("processed", "ignored", "deliveryFailed", "routingFailed", "tooOld", "targetingFailed")
_ANY = object()


# ------------------------------------------------------------------------------ helpers


def assert_error(
    response: httpx.Response, status: int, code: str, field: object = _ANY
) -> dict[str, Any]:
    """The response is the documented error body with this status, code (and field)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert list(body) == ["error"], body
    error: dict[str, Any] = body["error"]
    assert set(error) <= {"status", "code", "message", "field"}, error
    assert error["status"] == status, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str), error
    assert error["message"], error
    if field is not _ANY:
        assert error.get("field") == field, error
    return error


def cart_event(address: str = "jack@example.com", **extra: Any) -> dict[str, Any]:
    """A native ``cartAbandonment`` event."""
    return {
        "type": "cartAbandonment",
        "recipient": {"email": address},
        "ctx": dict(EXAMPLE_CTX),
        **extra,
    }


async def post_bytes(
    live: Live,
    path: str,
    content: bytes,
    content_type: str | None = "application/json",
    **headers: str,
) -> httpx.Response:
    """POST raw bytes with the admin key."""
    sent = dict(headers)
    if content_type is not None:
        sent["Content-Type"] = content_type
    return await live.client.post(path, content=content, headers=sent)


@contextlib.asynccontextmanager
async def anonymous(live: Live, **headers: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends no key (or only the headers given)."""
    async with httpx.AsyncClient(base_url=live.url, headers=headers, timeout=15) as client:
        yield client


async def rows(live: Live) -> int:
    return await live.stored_count()


async def publish_type(live: Live, root: Path, name: str) -> None:
    """Publish one more email event type (its folder under ``root``)."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("Order {{ ctx.orderId }} has shipped\n")
    (folder / "email.txt").write_text(
        "Hi {{ ctx.firstName }}, order {{ ctx.orderId }} is on its way.\n"
    )
    await folders.publish_folder(live.app.db, root, author="tests", renderer=live.app.renderer)
    await live.app.refresh_routing()


def keyed_headers(keyed: bool) -> dict[str, str]:
    """A fresh ``Idempotency-Key`` (a keyed request takes the keyed commit path) or none."""
    return {"Idempotency-Key": secrets.token_hex(8)} if keyed else {}


KEYED = pytest.mark.parametrize("keyed", [False, True], ids=["unkeyed", "keyed"])


def in_seconds(seconds: float) -> str:
    return clock.format_iso(clock.now_us() + int(seconds * 1_000_000))


# ------------------------------------------------------------------ 1. Campaign Standard


async def test_adobe_documented_example_answers_201_then_ends_too_old(live: Live) -> None:
    response = await live.client.post(
        CART, content=json.dumps(ADOBE_EXAMPLE).encode(), headers=JSON_UTF8
    )
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    pkey = body["PKey"]
    assert pkey.isdigit()
    assert body == {
        "PKey": pkey,
        "ctx": EXAMPLE_CTX,
        "email": "test@example.com",
        "scheduled": "2017-12-01 08:00:00.768Z",
        "expiration": "2017-12-31 08:00:00.768Z",
        "href": f"mclocal/EVTcartAbandonment/{pkey}",
        "serverUrl": live.url,
        "status": "pending",
        "type": "transactional",
    }

    status: dict[str, Any] = {}
    deadline = asyncio.get_running_loop().time() + 10
    while status.get("status") != "tooOld":
        assert asyncio.get_running_loop().time() < deadline, status
        got = await live.client.get(f"{CART}/{pkey}")
        assert got.status_code == 200, got.text
        status = got.json()
        assert status["status"] in ("pending", "processing", "tooOld"), status
        await asyncio.sleep(0.02)
    assert status["PKey"] == pkey
    assert status["href"] == f"mclocal/EVTcartAbandonment/{pkey}"
    assert status["ctx"] == EXAMPLE_CTX
    assert status["email"] == "test@example.com"
    assert status["scheduled"] == "2017-12-01 08:00:00.768Z"
    assert status["expiration"] == "2017-12-31 08:00:00.768Z"
    assert status["reason"]
    native = await live.client.get(f"/api/v1/events/{pkey}")
    assert native.json()["deliveries"] == []  # expired: nothing was sent
    outbox = (await live.client.get("/api/v1/outbox")).json()
    assert outbox == {"items": [], "next": None}


async def test_adobe_event_without_dates_is_processed_into_the_outbox(live: Live) -> None:
    response = await live.client.post(
        CART,
        content=json.dumps({"email": "test@example.com", "ctx": EXAMPLE_CTX}).encode(),
        headers=JSON_UTF8,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    pkey = body["PKey"]
    assert body["status"] == "pending"
    assert "scheduled" not in body
    assert "expiration" not in body

    async def adobe_status() -> dict[str, Any]:
        got = await live.client.get(f"{CART}/{pkey}")
        assert got.status_code == 200, got.text
        result: dict[str, Any] = got.json()
        return result

    deadline = asyncio.get_running_loop().time() + 10
    while (state := await adobe_status())["status"] != "processed":
        assert state["status"] in ("pending", "processing"), state
        assert asyncio.get_running_loop().time() < deadline, state
        await asyncio.sleep(0.02)
    assert "reason" not in state

    listing = await live.client.get("/api/v1/outbox")
    assert listing.status_code == 200
    page = listing.json()
    assert page["next"] is None
    [item] = page["items"]
    assert item["eventId"] == pkey
    assert item["recipient"] == "test@example.com"
    assert item["channel"] == "email"
    assert "Jack" in item["subject"]
    for text in ("Jack", "$ 125", "Leather motorbike jacket"):
        assert text in item["text"]
        assert text in item["html"]

    detail = await live.client.get(f"/api/v1/outbox/{item['id']}")
    assert detail.status_code == 200, detail.text
    message = detail.json()
    assert {k: message[k] for k in item} == item
    raw = message["raw"]
    assert raw.isascii()
    parsed = email.message_from_bytes(raw.encode("ascii"), policy=email.policy.default)
    assert not parsed.defects
    assert parsed["To"].addresses[0].addr_spec == "test@example.com"
    assert parsed["From"].addresses[0].addr_spec == "shop@example.com"
    assert parsed["Subject"] == item["subject"]
    assert parsed["Message-ID"].strip("<>") == item["messageId"].strip("<>")
    plain = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert plain is not None
    assert html is not None
    for text in ("Jack", "$ 125", "Leather motorbike jacket"):
        assert text in plain.get_content()
        assert text in html.get_content()

    event = await live.wait_status(pkey, "processed")
    assert [d["messageId"] for d in event["deliveries"]] == [item["messageId"]]

    missing = await live.client.get("/api/v1/outbox/987654")
    assert_error(missing, 404, "not_found")


async def test_adobe_unknown_routes_types_and_pkeys_are_404(live: Live, tmp_path: Path) -> None:
    await publish_type(live, tmp_path, "orderShipped")
    body = json.dumps({"email": "test@example.com", "ctx": EXAMPLE_CTX}).encode()
    before = await rows(live)
    for path, code in [
        (f"{ADOBE}/EVTnope", "unknown_event_type"),
        (f"{ADOBE}/cartAbandonment", "unknown_event_type"),  # no EVT prefix
        (f"{ADOBE}/EVT", "unknown_event_type"),
        ("/elsewhere/campaign/mclocal/EVTcartAbandonment", "not_found"),
        ("/local/campaign/mcother/EVTcartAbandonment", "not_found"),
    ]:
        response = await live.client.post(path, content=body, headers=JSON_UTF8)
        assert_error(response, 404, code)
    assert await rows(live) == before

    cart = await live.client.post(CART, content=body, headers=JSON_UTF8)
    assert cart.status_code == 201, cart.text
    pkey = cart.json()["PKey"]
    shipped = await live.client.post(
        f"{ADOBE}/EVTorderShipped",
        json={"email": "test@example.com", "ctx": {"orderId": "A-1", "firstName": "Jack"}},
    )
    assert shipped.status_code == 201, shipped.text
    shipped_key = shipped.json()["PKey"]
    assert shipped.json()["href"] == f"mclocal/EVTorderShipped/{shipped_key}"

    assert (await live.client.get(f"{CART}/{pkey}")).status_code == 200
    assert (await live.client.get(f"{ADOBE}/EVTorderShipped/{shipped_key}")).status_code == 200
    for path, code in [
        (f"{CART}/{int(pkey) + 1}", "not_found"),  # no such event
        (f"{CART}/123", "not_found"),
        (f"{CART}/not-a-number", "not_found"),
        (f"{CART}/{shipped_key}", "not_found"),  # an event of another type
        (f"{ADOBE}/EVTorderShipped/{pkey}", "not_found"),
        (f"{ADOBE}/EVTnope/{pkey}", "unknown_event_type"),
        (f"/elsewhere/campaign/mclocal/EVTcartAbandonment/{pkey}", "not_found"),
        (f"/local/campaign/mcother/EVTcartAbandonment/{pkey}", "not_found"),
    ]:
        assert_error(await live.client.get(path), 404, code)

    event = await live.wait_status(shipped_key, "processed")
    assert event["type"] == "orderShipped"
    outbox = (await live.client.get("/api/v1/outbox", params={"limit": 10})).json()["items"]
    assert any(m["subject"] == "Order A-1 has shipped" for m in outbox)


async def test_adobe_bad_bodies_are_refused_and_store_nothing(live: Live) -> None:
    before = await rows(live)
    cases: list[tuple[bytes, str | None, int, str, object]] = [
        (b'{"email": "test@example.com", "ctx": ', "application/json", 400, "malformed_json", _ANY),
        (b'{"email": "x@"}', "application/json", 422, "invalid_email", "$.email"),
        (
            b'{"mobilePhone": "+33612345678"}',
            "application/json",
            422,
            "missing_recipient",
            "$.email",
        ),
        (b"{}", "application/json", 422, "missing_recipient", _ANY),
        (
            b'{"email": "test@example.com", "scheduled": "soon"}',
            "application/json",
            422,
            "invalid_date",
            "$.scheduled",
        ),
        (
            b'{"email": "test@example.com", "scheduled": "2030-01-02 00:00:00Z",'
            b' "expiration": "2030-01-01 00:00:00Z"}',
            "application/json",
            422,
            "expiration_before_scheduled",
            "$.expiration",
        ),
        (
            b'{"email": "test@example.com", "ctx": []}',
            "application/json",
            422,
            "invalid_field",
            "$.ctx",
        ),
        (b'{"email": "test@example.com"}', "text/plain", 415, "unsupported_media_type", _ANY),
    ]
    for content, content_type, status, code, field in cases:
        response = await post_bytes(live, CART, content, content_type)
        assert_error(response, status, code, field)
    async with anonymous(live) as client:
        response = await client.post(CART, json={"email": "test@example.com"})
        assert_error(response, 401, "unauthorized")
    assert await rows(live) == before


# ------------------------------------------------------------------------------ 2. ids


async def test_ids_carry_the_instance_id_and_increase(serve: Serve) -> None:
    async with serve(instance_id=7) as live:
        native = [(await live.post_event(**cart_event()))["id"] for _ in range(5)]
        adobe = await live.client.post(CART, json={"email": "test@example.com", "ctx": {}})
        assert adobe.status_code == 201, adobe.text
        batch = await live.client.post(
            "/api/v1/events/batch", json={"events": [cart_event(), cart_event()]}
        )
        assert batch.status_code == 200, batch.text
        batched = [r["event"]["id"] for r in batch.json()["results"]]
        await asyncio.sleep(0.01)
        later = (await live.post_event(**cart_event()))["id"]

        every = [*native, adobe.json()["PKey"], *batched, later]
        assert all(isinstance(i, str) and i.isdigit() for i in every)
        numbers = [int(i) for i in every]
        assert all(n >> 56 == 7 for n in numbers), [hex(n) for n in numbers]
        assert numbers == sorted(numbers)
        assert len(set(numbers)) == len(numbers)
        now_ms = clock.now_us() // 1000
        assert all(now_ms - 10_000 < ids.time_ms_of(n) <= now_ms for n in numbers)
        assert ids.time_ms_of(numbers[-1]) >= ids.time_ms_of(numbers[0]) + 10

        event = await live.wait_status(later, "processed")
        assert event["id"] == later
        adobe_state = await live.client.get(f"{CART}/{adobe.json()['PKey']}")
        assert adobe_state.status_code == 200, adobe_state.text


# ------------------------------------------------------------------------------ 3. native API


async def test_native_event_round_trip(live: Live) -> None:
    sent = {
        "type": "cartAbandonment",
        "channel": "email",
        "recipient": {
            "email": "jack@example.com",
            "mobilePhone": "+33 6 12 34 56 78",
            "pushToken": "push-token-1",
            "externalId": "customer-42",
        },
        "ctx": {**EXAMPLE_CTX, "items": [{"sku": "J-1", "qty": 1}], "vip": True, "n": 3.5},
        "scheduled": "2020-01-02 03:04:05.678Z",
        "expiration": "2099-12-31T23:59:59Z",
        "priority": 9,
    }
    response = await live.client.post("/api/v1/events", json=sent)
    assert response.status_code == 201, response.text
    body = response.json()
    event_id = body["id"]
    assert response.headers["location"] == f"/api/v1/events/{event_id}"
    assert body["href"] == f"/api/v1/events/{event_id}"
    assert body["type"] == "cartAbandonment"
    assert body["channel"] == "email"
    assert body["status"] == "pending"
    assert body["recipient"] == sent["recipient"]
    assert body["ctx"] == sent["ctx"]
    assert body["priority"] == 9
    assert body["scheduled"] == "2020-01-02T03:04:05.678Z"
    assert body["expiration"] == "2099-12-31T23:59:59.000Z"
    assert body["attempts"] == 0
    assert body["reason"] is None
    assert set(body["timeline"]) >= {"receivedAt"}

    done = await live.wait_status(event_id, "processed")
    assert {k: done[k] for k in ("id", "type", "channel", "recipient", "ctx", "priority")} == {
        k: body[k] for k in ("id", "type", "channel", "recipient", "ctx", "priority")
    }
    assert done["scheduled"] == body["scheduled"]
    assert done["expiration"] == body["expiration"]
    assert done["attempts"] == 1
    assert done["reason"] is None
    assert isinstance(done["templateVersionId"], int)
    timeline = done["timeline"]
    assert timeline["receivedAt"] == body["timeline"]["receivedAt"]
    moments = [timeline[k] for k in ("receivedAt", "claimedAt", "sentAt", "finishedAt")]
    assert all(moments), timeline
    assert moments == sorted(moments)
    [delivery] = done["deliveries"]
    assert delivery["attempt"] == 1
    assert delivery["channel"] == "email"
    assert delivery["transport"] == "outbox"
    assert delivery["address"] == "jack@example.com"
    assert delivery["outcome"] == "delivered"
    assert delivery["messageId"]
    assert delivery["renderMs"] >= 0
    assert delivery["sendMs"] >= 0
    assert delivery["at"] >= timeline["claimedAt"]

    outbox = (await live.client.get("/api/v1/outbox")).json()["items"]
    assert [(m["eventId"], m["messageId"]) for m in outbox] == [(event_id, delivery["messageId"])]

    for missing in (str(int(event_id) + 1), "0", "abc", "-1", "1" * 25):
        assert_error(await live.client.get(f"/api/v1/events/{missing}"), 404, "not_found")


async def test_unknown_type_is_stored_then_routing_failed(live: Live) -> None:
    body = await live.post_event(
        type="orderShipped", recipient={"email": "jack@example.com"}, ctx={"orderId": 1}
    )
    assert body["status"] == "pending"
    done = await live.wait_status(body["id"], *FINAL)
    assert done["status"] == "routingFailed"
    assert "orderShipped" in done["reason"]
    assert done["deliveries"] == []
    assert (await live.client.get("/api/v1/outbox")).json()["items"] == []


async def test_scheduled_event_waits_until_its_time(live: Live) -> None:
    scheduled = in_seconds(1.5)
    body = await live.post_event(**cart_event(scheduled=scheduled))
    assert body["scheduled"] == scheduled
    due = clock.parse_iso(scheduled)
    # Pending all along until (nearly) its time...
    while clock.now_us() < due - 150_000:
        state = (await live.client.get(f"/api/v1/events/{body['id']}")).json()
        assert state["status"] == "pending", state
        assert state["timeline"]["claimedAt"] is None
        await asyncio.sleep(0.05)
    # ...then sent, not before it.
    done = await live.wait_status(body["id"], "processed", within=5)
    assert done["timeline"]["claimedAt"] >= scheduled
    assert done["timeline"]["sentAt"] >= scheduled


async def test_dates_with_or_without_t_fraction_and_zone(live: Live) -> None:
    accepted = {
        "2031-01-02T03:04:05Z": "2031-01-02T03:04:05.000Z",
        "2031-01-02 03:04:05Z": "2031-01-02T03:04:05.000Z",
        "2031-01-02T03:04:05.768Z": "2031-01-02T03:04:05.768Z",
        "2031-01-02 03:04:05.768": "2031-01-02T03:04:05.768Z",
        "2031-01-02T03:04:05": "2031-01-02T03:04:05.000Z",
        "2031-01-02T03:04:05+02:00": "2031-01-02T01:04:05.000Z",
        "2031-01-02 03:04:05.5-01:30": "2031-01-02T04:34:05.500Z",
        "2031-01-02T03:04:05.123456+00:00": "2031-01-02T03:04:05.123Z",
        "2031-01-02": "2031-01-02T00:00:00.000Z",
    }
    for given, shown in accepted.items():
        body = await live.post_event(**cart_event(expiration=given))
        assert body["expiration"] == shown, given
        adobe = await live.client.post(CART, json={"email": "a@example.com", "expiration": given})
        assert adobe.status_code == 201, adobe.text
        assert adobe.json()["expiration"] == shown.replace("T", " "), given
        stored = (await live.client.get(f"/api/v1/events/{body['id']}")).json()
        assert stored["expiration"] == shown

    before = await rows(live)
    for bad in ("tomorrow", "2031-13-01", "2031-01-02T25:00:00", "", "  ", "2031/01/02", "1e9"):
        for field in ("scheduled", "expiration"):
            response = await live.client.post("/api/v1/events", json=cart_event(**{field: bad}))
            assert_error(response, 422, "invalid_date", f"$.{field}")
    assert await rows(live) == before


async def test_batch_mixed_items_one_result_each_in_order(live: Live) -> None:
    items: list[Any] = [
        cart_event("a@example.com"),
        cart_event("x@"),
        {"recipient": {"email": "b@example.com"}},
        42,
        {**cart_event(), "foo": 1},
        {"type": "orderShipped", "recipient": {"externalId": "cust-1"}},
        cart_event(scheduled="2030-01-02T00:00:00Z", expiration="2030-01-01T00:00:00Z"),
        cart_event("c@example.com", priority=9),
        {"type": "cartAbandonment", "recipient": {}},
    ]
    before = await rows(live)
    response = await live.client.post("/api/v1/events/batch", json={"events": items})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 3
    assert body["rejected"] == 6
    results = body["results"]
    assert [r["index"] for r in results] == list(range(len(items)))
    errors = {
        1: ("invalid_email", "$.events[1].recipient.email"),
        2: ("missing_field", "$.events[2].type"),
        3: ("invalid_field", "$.events[3]"),
        4: ("unknown_field", "$.events[4].foo"),
        6: ("expiration_before_scheduled", "$.events[6].expiration"),
        8: ("missing_recipient", "$.events[8].recipient"),
    }
    for index, result in enumerate(results):
        if index in errors:
            assert "event" not in result, result
            assert (result["error"]["code"], result["error"]["field"]) == errors[index]
            assert result["error"]["message"]
        else:
            assert "error" not in result, result
            assert result["event"]["status"] == "pending"
    stored = [results[i]["event"] for i in (0, 5, 7)]
    assert [e["recipient"] for e in stored] == [
        {"email": "a@example.com"},
        {"externalId": "cust-1"},
        {"email": "c@example.com"},
    ]
    assert stored[2]["priority"] == 9
    numbers = [int(e["id"]) for e in stored]
    assert numbers == sorted(set(numbers))
    assert await rows(live) == before + 3
    finals = [(await live.wait_status(e["id"], *FINAL))["status"] for e in stored]
    assert finals == ["processed", "routingFailed", "processed"]


async def test_batch_body_errors(live: Live) -> None:
    before = await rows(live)
    empty = await live.client.post("/api/v1/events/batch", json={"events": []})
    assert empty.status_code == 200, empty.text
    assert empty.json() == {"accepted": 0, "rejected": 0, "results": []}
    for content, status, code, field in [
        (b"{}", 422, "missing_field", "$.events"),
        (b'{"events": {}}', 422, "invalid_field", "$.events"),
        (b'{"events": [], "more": 1}', 422, "unknown_field", "$.more"),
        (b'{"events": [', 400, "malformed_json", _ANY),
    ]:
        response = await post_bytes(live, "/api/v1/events/batch", content)
        assert_error(response, status, code, field)
    assert await rows(live) == before


async def test_batch_over_the_limit_is_413_and_stores_nothing(serve: Serve) -> None:
    async with serve(max_batch_events=5) as live:
        too_many = await live.client.post(
            "/api/v1/events/batch", json={"events": [cart_event() for _ in range(6)]}
        )
        assert_error(too_many, 413, "batch_too_large")
        mixed = await live.client.post(
            "/api/v1/events/batch",
            json={"events": [cart_event(), 1, 2, cart_event("x@"), cart_event(), cart_event()]},
        )
        assert_error(mixed, 413, "batch_too_large")
        assert await rows(live) == 0
        full = await live.client.post(
            "/api/v1/events/batch", json={"events": [cart_event() for _ in range(5)]}
        )
        assert full.status_code == 200, full.text
        assert full.json()["accepted"] == 5
        assert await rows(live) == 5


async def test_list_filters_and_cursor_pagination(live: Live) -> None:
    first = await live.client.post(
        "/api/v1/events/batch",
        json={"events": [cart_event(f"a{i}@example.com") for i in range(12)]},
    )
    assert first.status_code == 200, first.text
    group_a = [r["event"]["id"] for r in first.json()["results"]]
    await asyncio.sleep(0.02)
    boundary = clock.format_iso(clock.now_us())
    await asyncio.sleep(0.02)
    group_b = []
    for i in range(5):
        body = await live.post_event(
            type="orderShipped",
            recipient={"externalId": f"cust-{i}", "mobilePhone": f"+3361234567{i}"},
            ctx={"orderId": i},
        )
        group_b.append(body["id"])
    everything = group_a + group_b
    for event_id in everything:
        await live.wait_status(event_id, *FINAL)

    async def listed(**params: Any) -> list[str]:
        response = await live.client.get("/api/v1/events", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["next"] is None, page
        return [e["id"] for e in page["items"]]

    newest_first = sorted(everything, key=int, reverse=True)
    assert await listed(limit=500) == newest_first
    assert await listed(status="processed", limit=100) == sorted(group_a, key=int, reverse=True)
    assert await listed(status="routingFailed") == sorted(group_b, key=int, reverse=True)
    assert await listed(status="pending") == []
    assert await listed(type="orderShipped") == sorted(group_b, key=int, reverse=True)
    assert await listed(type="cartAbandonment", status="routingFailed") == []
    assert await listed(type="nothing") == []
    assert await listed(recipient="a3@example.com") == [group_a[3]]
    assert await listed(recipient="cust-2") == [group_b[2]]
    assert await listed(recipient="+33612345674") == [group_b[4]]
    assert await listed(recipient="nobody@example.com") == []
    assert await listed(**{"from": boundary}) == sorted(group_b, key=int, reverse=True)
    assert await listed(to=boundary, limit=100) == sorted(group_a, key=int, reverse=True)
    assert await listed(**{"from": boundary, "to": boundary}) == []
    # Dates in the other documented forms.
    no_t = boundary.replace("T", " ").removesuffix("Z")
    assert await listed(**{"from": no_t}) == sorted(group_b, key=int, reverse=True)
    assert await listed(**{"from": "2020-01-01", "to": "2099-01-01"}, limit=100) == newest_first

    details = (await live.client.get("/api/v1/events", params={"recipient": "cust-2"})).json()
    [item] = details["items"]
    assert item["type"] == "orderShipped"
    assert item["status"] == "routingFailed"
    assert item["href"] == f"/api/v1/events/{group_b[2]}"
    assert "deliveries" not in item

    late: list[str] = []

    async def walk(size: int, *, interleave: bool = False, **params: Any) -> list[list[str]]:
        pages: list[list[str]] = []
        cursor = None
        while True:
            query = {**params, "limit": size, **({"cursor": cursor} if cursor else {})}
            response = await live.client.get("/api/v1/events", params=query)
            assert response.status_code == 200, response.text
            page = response.json()
            pages.append([e["id"] for e in page["items"]])
            if interleave and len(pages) == 2:
                # Events arriving mid-walk are newer: they do not disturb the walk.
                late.append((await live.post_event(**cart_event("late@example.com")))["id"])
            cursor = page["next"]
            if cursor is None:
                return pages
            assert len(page["items"]) == size
            assert len(pages) < 50

    pages = await walk(5, interleave=True)
    assert [len(p) for p in pages] == [5, 5, 5, 2]
    flat = [i for p in pages for i in p]
    assert flat == newest_first
    await live.wait_status(late[0], "processed")
    pages = await walk(5, status="processed")
    assert [len(p) for p in pages] == [5, 5, 3]
    assert [i for p in pages for i in p] == sorted(group_a + late, key=int, reverse=True)
    pages = await walk(18)  # an exact fit has no next page
    assert [len(p) for p in pages] == [18]
    pages = await walk(1, type="orderShipped")
    assert [i for p in pages for i in p] == sorted(group_b, key=int, reverse=True)


async def test_list_bad_filters_are_422(live: Live) -> None:
    for params, code, field in [
        ({"status": "bogus"}, "invalid_field", "status"),
        ({"status": "Processed"}, "invalid_field", "status"),
        ({"from": "yesterday"}, "invalid_date", "from"),
        ({"to": "2031-13-01"}, "invalid_date", "to"),
        ({"limit": "0"}, "invalid_field", "limit"),
        ({"limit": "501"}, "invalid_field", "limit"),
        ({"limit": "-1"}, "invalid_field", "limit"),
        ({"limit": "ten"}, "invalid_field", "limit"),
        ({"cursor": "abc"}, "invalid_field", "cursor"),
        ({"cursor": "0"}, "invalid_field", "cursor"),
        ({"cursor": "-5"}, "invalid_field", "cursor"),
        ({"cursor": "9" * 30}, "invalid_field", "cursor"),
        ({"recipient": "a\x00@example.com"}, "invalid_field", "recipient"),
        ({"type": "cart\x00Abandonment"}, "invalid_field", "type"),
    ]:
        response = await live.client.get("/api/v1/events", params=params)
        assert_error(response, 422, code, field)


# ------------------------------------------------------------------------------ 4. idempotency


async def test_idempotency_key_on_the_native_route(live: Live) -> None:
    body = json.dumps(cart_event()).encode()
    key = {"Idempotency-Key": "order-1001"}
    first = await post_bytes(live, "/api/v1/events", body, **key)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = await post_bytes(live, "/api/v1/events", body, **key)
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert await rows(live) == 1

    other_body = json.dumps(cart_event("someone@example.com")).encode()
    reused = await post_bytes(live, "/api/v1/events", other_body, **key)
    assert_error(reused, 422, "idempotency_key_reused", "Idempotency-Key")
    # The same key on another route is another request.
    elsewhere = await post_bytes(live, CART, b'{"email": "test@example.com"}', **key)
    assert_error(elsewhere, 422, "idempotency_key_reused")
    assert await rows(live) == 1

    # A refused request does not take the key: the corrected retry is stored.
    bad = await post_bytes(
        live, "/api/v1/events", b'{"type": "cartAbandonment"}', **{"Idempotency-Key": "order-1002"}
    )
    assert_error(bad, 422, "missing_field", "$.recipient")
    good = await post_bytes(live, "/api/v1/events", other_body, **{"Idempotency-Key": "order-1002"})
    assert good.status_code == 201, good.text
    assert await rows(live) == 2

    # Keys belong to an API key: another client's "order-1001" is its own.
    other_key, _ = await apikeys.create(live.app.db, "other shop", frozenset({"events"}))
    async with anonymous(live, Authorization=f"Bearer {other_key}") as client:
        theirs = await client.post(
            "/api/v1/events", content=body, headers={"Content-Type": "application/json", **key}
        )
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["id"] != first.json()["id"]
    assert await rows(live) == 3

    for bad_key in ("x" * 256, ""):
        response = await post_bytes(live, "/api/v1/events", body, **{"Idempotency-Key": bad_key})
        assert_error(response, 422, "invalid_field", "Idempotency-Key")
    assert await rows(live) == 3

    # Concurrent retries with one key: one event, every answer the same.
    racing = await asyncio.gather(
        *(post_bytes(live, "/api/v1/events", body, **{"Idempotency-Key": "race"}) for _ in range(8))
    )
    assert {r.status_code for r in racing} == {201}, [r.text for r in racing]
    assert len({r.json()["id"] for r in racing}) == 1
    assert await rows(live) == 4
    await live.wait_status(racing[0].json()["id"], "processed")
    assert len((await live.client.get("/api/v1/outbox")).json()["items"]) == 4


async def test_idempotency_key_on_the_batch_route(live: Live) -> None:
    body = json.dumps({"events": [cart_event("a@example.com"), cart_event("x@")]}).encode()
    key = {"Idempotency-Key": "batch-7"}
    first = await post_bytes(live, "/api/v1/events/batch", body, **key)
    assert first.status_code == 200, first.text
    assert first.json()["accepted"] == 1
    again = await post_bytes(live, "/api/v1/events/batch", body, **key)
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert await rows(live) == 1
    different = json.dumps({"events": [cart_event("b@example.com")]}).encode()
    reused = await post_bytes(live, "/api/v1/events/batch", different, **key)
    assert_error(reused, 422, "idempotency_key_reused", "Idempotency-Key")
    assert await rows(live) == 1


async def test_idempotency_key_on_the_adobe_route(live: Live) -> None:
    body = json.dumps(ADOBE_EXAMPLE).encode()
    key = {"Idempotency-Key": "adobe-1"}
    first = await post_bytes(live, CART, body, "application/json;charset=utf-8", **key)
    assert first.status_code == 201, first.text
    again = await post_bytes(live, CART, body, "application/json;charset=utf-8", **key)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert await rows(live) == 1
    changed = json.dumps({**ADOBE_EXAMPLE, "email": "other@example.com"}).encode()
    reused = await post_bytes(live, CART, changed, **key)
    assert_error(reused, 422, "idempotency_key_reused", "Idempotency-Key")
    assert await rows(live) == 1


# ------------------------------------------------------------------------------ 5. errors


@KEYED
async def test_malformed_json_is_400_and_stores_nothing(live: Live, keyed: bool) -> None:
    for content in (
        b"{",
        b'{"type": ',
        b"not json",
        b"",
        b'{"type": "cartAbandonment"} trailing',
        b'{"type": "cartAbandonment",}',
        b"{'type': 'cartAbandonment'}",
        # Documented: "the body is not JSON, or not an object".
        b"[]",
        b'[{"type": "cartAbandonment", "recipient": {"email": "a@example.com"}}]',
        b"null",
        b'"cartAbandonment"',
        b"42",
    ):
        for path in ("/api/v1/events", "/api/v1/events/batch", CART):
            response = await post_bytes(live, path, content, **keyed_headers(keyed))
            assert_error(response, 400, "malformed_json")
    assert await rows(live) == 0


FIELD_ERRORS: list[tuple[dict[str, Any], str, str]] = [
    ({"recipient": {"email": "a@example.com"}}, "missing_field", "$.type"),
    ({"type": "cartAbandonment"}, "missing_field", "$.recipient"),
    ({"type": 5, "recipient": {"email": "a@example.com"}}, "invalid_field", "$.type"),
    ({"type": "bad name!", "recipient": {"email": "a@example.com"}}, "invalid_field", "$.type"),
    ({"type": "", "recipient": {"email": "a@example.com"}}, "invalid_field", "$.type"),
    ({"type": "cartAbandonment", "recipient": "a@example.com"}, "invalid_field", "$.recipient"),
    ({"type": "cartAbandonment", "recipient": {}}, "missing_recipient", "$.recipient"),
    ({"type": "cartAbandonment", "recipient": {"email": 5}}, "invalid_field", "$.recipient.email"),
    (cart_event("x@"), "invalid_email", "$.recipient.email"),
    (cart_event("jack"), "invalid_email", "$.recipient.email"),
    (cart_event("jack@example"), "invalid_email", "$.recipient.email"),
    (cart_event("jack smith@example.com"), "invalid_email", "$.recipient.email"),
    (
        {"type": "cartAbandonment", "recipient": {"email": "a@example.com", "mobilePhone": "abc"}},
        "invalid_phone",
        "$.recipient.mobilePhone",
    ),
    (
        {"type": "cartAbandonment", "recipient": {"mobilePhone": "+33612345678"}},
        "missing_recipient",
        "$.recipient.email",
    ),
    (
        {**cart_event(), "channel": "sms"},
        "missing_recipient",
        "$.recipient.mobilePhone",
    ),
    (
        {"type": "cartAbandonment", "recipient": {"email": "a@example.com", "fax": "1"}},
        "unknown_field",
        "$.recipient.fax",
    ),
    ({**cart_event(), "ctx": []}, "invalid_field", "$.ctx"),
    ({**cart_event(), "ctx": "x"}, "invalid_field", "$.ctx"),
    ({**cart_event(), "ctx": None}, "invalid_field", "$.ctx"),
    ({**cart_event(), "priority": "high"}, "invalid_field", "$.priority"),
    ({**cart_event(), "priority": 10}, "invalid_field", "$.priority"),
    ({**cart_event(), "priority": -1}, "invalid_field", "$.priority"),
    ({**cart_event(), "priority": 1.5}, "invalid_field", "$.priority"),
    ({**cart_event(), "channel": "fax"}, "invalid_field", "$.channel"),
    ({**cart_event(), "scheduled": 5}, "invalid_field", "$.scheduled"),
    ({**cart_event(), "scheduled": "soon"}, "invalid_date", "$.scheduled"),
    ({**cart_event(), "expiration": "2031-02-30"}, "invalid_date", "$.expiration"),
    (
        cart_event(scheduled="2031-01-02 00:00:00Z", expiration="2031-01-01 23:59:59Z"),
        "expiration_before_scheduled",
        "$.expiration",
    ),
    (
        cart_event(scheduled="2031-01-02T00:00:00+01:00", expiration="2031-01-01T22:30:00Z"),
        "expiration_before_scheduled",
        "$.expiration",
    ),
    ({**cart_event(), "foo": 1}, "unknown_field", "$.foo"),
]


@KEYED
async def test_invalid_fields_are_422_naming_the_field_and_store_nothing(
    live: Live, keyed: bool
) -> None:
    for body, code, field in FIELD_ERRORS:
        response = await live.client.post("/api/v1/events", json=body, headers=keyed_headers(keyed))
        assert_error(response, 422, code, field)
    # The same items in a batch: the same codes, with paths inside the batch.
    response = await live.client.post(
        "/api/v1/events/batch",
        json={"events": [body for body, _, _ in FIELD_ERRORS]},
        headers=keyed_headers(keyed),
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert response.json()["accepted"] == 0
    for index, (result, (_, code, field)) in enumerate(zip(results, FIELD_ERRORS, strict=True)):
        assert result["error"]["code"] == code, result
        assert result["error"]["field"] == f"$.events[{index}]{field[1:]}", result
    assert await rows(live) == 0


async def test_bodies_over_the_limit_are_413(serve: Serve) -> None:
    async with serve(max_body_bytes=1024) as live:

        def padded(size: int) -> bytes:
            event = cart_event()
            event["ctx"] = {"pad": ""}
            base = len(json.dumps(event, separators=(",", ":")))
            event["ctx"] = {"pad": "x" * (size - base)}
            content = json.dumps(event, separators=(",", ":")).encode()
            assert len(content) == size
            return content

        fits = await post_bytes(live, "/api/v1/events", padded(1024))
        assert fits.status_code == 201, fits.text
        assert await rows(live) == 1
        for path in ("/api/v1/events", "/api/v1/events/batch", CART):
            response = await post_bytes(live, path, padded(1025))
            assert_error(response, 413, "body_too_large")

        async def chunks() -> AsyncIterator[bytes]:
            content = padded(4000)
            for start in range(0, len(content), 500):
                yield content[start : start + 500]

        chunked = await live.client.post(
            "/api/v1/events", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert "content-length" not in chunked.request.headers
        assert_error(chunked, 413, "body_too_large")
        assert await rows(live) == 1
        # The server is still fine.
        assert (await live.client.post("/api/v1/events", json=cart_event())).status_code == 201


async def test_default_body_limit_is_256_kib(live: Live) -> None:
    limit = 256 * 1024
    assert live.settings.max_body_bytes == limit

    def sized(size: int) -> bytes:
        event = cart_event()
        event["ctx"] = {"pad": ""}
        base = len(json.dumps(event, separators=(",", ":")))
        event["ctx"] = {"pad": "x" * (size - base)}
        content = json.dumps(event, separators=(",", ":")).encode()
        assert len(content) == size
        return content

    fits = await post_bytes(live, "/api/v1/events", sized(limit))
    assert fits.status_code == 201, fits.text
    too_big = await post_bytes(live, "/api/v1/events", sized(limit + 1))
    assert_error(too_big, 413, "body_too_large")
    much_too_big = await post_bytes(live, "/api/v1/events", sized(4 * limit))
    assert_error(much_too_big, 413, "body_too_large")
    assert await rows(live) == 1


async def test_content_type_must_be_json(live: Live) -> None:
    body = json.dumps(cart_event()).encode()
    for content_type in (
        "text/plain",
        None,
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonx",
    ):
        for path in ("/api/v1/events", "/api/v1/events/batch", CART):
            response = await post_bytes(live, path, body, content_type)
            assert_error(response, 415, "unsupported_media_type")
    assert await rows(live) == 0
    for content_type in (
        "application/json",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "APPLICATION/JSON",
        "application/vnd.shop.event+json",
    ):
        response = await post_bytes(live, "/api/v1/events", body, content_type)
        assert response.status_code == 201, (content_type, response.text)
    assert await rows(live) == 5


async def test_api_keys_authenticate_and_scope_requests(live: Live) -> None:
    body = cart_event()
    async with anonymous(live) as client:
        for method, path in [
            ("POST", "/api/v1/events"),
            ("POST", "/api/v1/events/batch"),
            ("GET", "/api/v1/events"),
            ("GET", "/api/v1/outbox"),
            ("GET", "/api/v1/keys"),
            ("POST", CART),
            ("GET", f"{CART}/1"),
        ]:
            response = await client.request(method, path, json=body)
            assert_error(response, 401, "unauthorized")
            assert response.headers["www-authenticate"].startswith("Bearer")
        # The key is checked before the body is read.
        response = await client.post(
            "/api/v1/events", content=b"{", headers={"Content-Type": "text/plain"}
        )
        assert_error(response, 401, "unauthorized")
        for headers in (
            {"Authorization": "Bearer nope"},
            {"Authorization": "Bearer tid_abcdefgh_" + "x" * 43},
            {"Authorization": f"Bearer {live.key}x"},
            {"Authorization": f"Basic {live.key}"},
            {"Authorization": live.key},
            {"X-Api-Key": "tid_abcdefgh_secret"},
            {"Authorization": "Bearer"},
        ):
            response = await client.post("/api/v1/events", json=body, headers=headers)
            assert_error(response, 401, "unauthorized")
    assert await rows(live) == 0

    async with anonymous(live, **{"X-Api-Key": live.key}) as client:
        assert (await client.post("/api/v1/events", json=body)).status_code == 201
        assert (await client.get("/api/v1/keys")).status_code == 200
    async with anonymous(live, Authorization=f"bearer {live.key}") as client:
        assert (await client.post("/api/v1/events", json=body)).status_code == 201
    # Campaign Standard clients send an IMS token and an API key: either may hold ours.
    async with anonymous(live, Authorization="Bearer ims-token", **{"X-Api-Key": live.key}) as c:
        assert (await c.post(CART, json={"email": "test@example.com"})).status_code == 201
    assert await rows(live) == 3

    events_key, record = await apikeys.create(live.app.db, "shop", frozenset({"events"}))
    async with anonymous(live, Authorization=f"Bearer {events_key}") as client:
        assert (await client.post("/api/v1/events", json=body)).status_code == 201
        assert (await client.get("/api/v1/events")).status_code == 200
        assert (await client.get("/api/v1/outbox")).status_code == 200
        assert (await client.get("/api/v1/event-types")).status_code == 200
        for method, path, payload in [
            ("GET", "/api/v1/keys", None),
            ("POST", "/api/v1/keys", {"name": "mine", "scopes": ["admin"]}),
            ("DELETE", f"/api/v1/keys/{record.prefix}", None),
            ("GET", "/api/v1/quarantine", None),
            ("POST", "/api/v1/quarantine", {"address": "a@example.com"}),
            ("DELETE", "/api/v1/quarantine/email/a@example.com", None),
            ("POST", "/api/v1/event-types/cartAbandonment/pause", None),
            ("POST", "/api/v1/event-types/cartAbandonment/resume", None),
        ]:
            response = await client.request(method, path, json=payload)
            assert_error(response, 403, "forbidden")
    keys = (await live.client.get("/api/v1/keys")).json()
    assert len(keys) == 2
    assert all("revokedAt" not in k for k in keys)
    assert (await live.client.get("/api/v1/quarantine")).json() == []

    revoked = await live.client.delete(f"/api/v1/keys/{record.prefix}")
    assert revoked.status_code == 204
    async with anonymous(live, Authorization=f"Bearer {events_key}") as client:
        assert_error(await client.post("/api/v1/events", json=body), 401, "unauthorized")
        assert_error(await client.get("/api/v1/events"), 401, "unauthorized")
    assert await rows(live) == 4


async def test_unknown_routes_and_methods_answer_json(live: Live) -> None:
    assert_error(await live.client.get("/api/v1/nothing"), 404, "not_found")
    assert_error(await live.client.get("/nothing"), 404, "not_found")
    assert_error(await live.client.put("/api/v1/events", json={}), 405, "method_not_allowed")
    assert_error(await live.client.delete("/api/v1/events/1"), 405, "method_not_allowed")
    async with anonymous(live) as client:
        health = await client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}


async def test_answers_are_not_held_back_by_delayed_acks(live: Live) -> None:
    # An answer written in two parts (head, body) on a socket without TCP_NODELAY waits for
    # the client's delayed ACK: >= 40 ms a request on Linux. Loopback answers take ~1 ms.
    body = json.dumps(cart_event()).encode()
    for method, path, content in [
        ("GET", "/healthz", None),
        ("GET", "/api/v1/events?limit=1", None),
        ("POST", "/api/v1/events", body),
        ("POST", "/api/v1/events", b"{"),
    ]:
        times = []
        for _ in range(15):
            started = asyncio.get_running_loop().time()
            response = await live.client.request(
                method, path, content=content, headers={"Content-Type": "application/json"}
            )
            times.append(asyncio.get_running_loop().time() - started)
            assert response.status_code < 500
        # Every request would wait for the ACK: the fastest of them says whether any did not
        # (a loaded machine slows some requests, never all of them by 40 ms).
        fastest = min(times)
        assert fastest < 0.035, (method, path, f"{fastest * 1000:.1f} ms")


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@KEYED
async def test_hostile_input_is_refused_or_accepted_consistently(live: Live, keyed: bool) -> None:
    head = '{"type":"cartAbandonment","recipient":{"email":"a@example.com"'

    def native(recipient_extra: str = "", ctx: str = "{}") -> bytes:
        return f'{head}{recipient_extra}}},"ctx":{ctx}}}'.encode()

    refused: list[tuple[str, bytes, int, str, object]] = [
        ("deep nesting", native(ctx=_nested(5000)), 400, "malformed_json", _ANY),
        ("non-UTF-8", native(ctx='{"x":"') + b"\xff\xfe" + b'"}}', 400, "malformed_json", _ANY),
        (
            "UTF-8-encoded surrogate",
            native().replace(b'"a@example.com"', b'"a@example.com","externalId":"\xed\xa0\x80"'),
            400,
            "malformed_json",
            _ANY,
        ),
        ("escaped lone surrogate", native(',"externalId":"\\udfff"'), 400, "malformed_json", _ANY),
        (
            "huge priority",
            native().replace(b',"ctx"', b',"priority":1' + b"0" * 40 + b',"ctx"'),
            422,
            "invalid_field",
            "$.priority",
        ),
        ("huge float", native(ctx='{"n":1e400}'), 422, "invalid_field", _ANY),
        (
            "NUL in externalId",
            native(',"externalId":"a\\u0000b"'),
            422,
            "invalid_field",
            "$.recipient.externalId",
        ),
        (
            "NUL in pushToken",
            native(',"pushToken":"a\\u0000b"'),
            422,
            "invalid_field",
            "$.recipient.pushToken",
        ),
        (
            "NUL in email",
            native().replace(b'"a@example', b'"a\\u0000@example'),
            422,
            "invalid_email",
            "$.recipient.email",
        ),
        (
            "NUL in type",
            native().replace(b"cartAbandonment", b"cart\\u0000Abandonment"),
            422,
            "invalid_field",
            "$.type",
        ),
        (
            "NUL in a date",
            native().replace(b',"ctx"', b',"scheduled":"2031-01-01\\u0000","ctx"'),
            422,
            "invalid_date",
            "$.scheduled",
        ),
        (
            "huge externalId",
            native(f',"externalId":"{secrets.token_hex(20_000)}"'),
            422,
            "invalid_field",
            "$.recipient.externalId",
        ),
    ]
    for name, content, status, code, field in refused:
        response = await post_bytes(live, "/api/v1/events", content, **keyed_headers(keyed))
        assert response.status_code < 500, (name, response.text)
        assert_error(response, status, code, field)
    assert await rows(live) == 0

    # The same, inside a batch: a whole body that cannot be read is a 400; a bad item is
    # refused alone and does not take its companions down.
    good = json.dumps(cart_event("good@example.com")).encode()
    for item in (native(ctx=_nested(5000)), native(ctx='{"x":"') + b"\xff" + b'"}'):
        content = b'{"events":[' + good + b"," + item + b"]}"
        response = await post_bytes(live, "/api/v1/events/batch", content, **keyed_headers(keyed))
        assert_error(response, 400, "malformed_json")
    assert await rows(live) == 0
    nul_item = native(',"externalId":"a\\u0000"')
    mixed = await post_bytes(
        live,
        "/api/v1/events/batch",
        b'{"events":[' + good + b"," + nul_item + b"]}",
        **keyed_headers(keyed),
    )
    assert mixed.status_code == 200, mixed.text
    assert mixed.json()["accepted"] == 1
    assert mixed.json()["results"][1]["error"]["field"] == "$.events[1].recipient.externalId"
    assert await rows(live) == 1
    # Concurrent requests share a commit: a hostile one must not fail the others.
    answers = await asyncio.gather(
        *(
            post_bytes(live, "/api/v1/events", content, **keyed_headers(keyed))
            for content in [json.dumps(cart_event()).encode()] * 5
            + [native(',"externalId":"a\\u0000b"'), native(f',"externalId":"{"z" * 5000}"')] * 3
        )
    )
    assert [a.status_code for a in answers] == [201] * 5 + [422] * 6, [a.text for a in answers]
    assert await rows(live) == 6

    # Accepted, and kept exactly as sent on both databases.
    accepted: list[tuple[str, bytes, dict[str, Any]]] = [
        ("moderate nesting", native(ctx=_nested(50)), json.loads(_nested(50))),
        (
            "big integer",
            native(ctx='{"n":123456789012345678901234567890}'),
            {"n": 123456789012345678901234567890},
        ),
        ("NUL in ctx", native(ctx='{"x":"a\\u0000b","k\\u0000":1}'), {"x": "a\x00b", "k\x00": 1}),
        ("control characters", native(ctx='{"x":"\\u0001\\u001f\\t\\n"}'), {"x": "\x01\x1f\t\n"}),
        (
            "emoji and RTL",
            native(ctx='{"x":"\\ud83d\\ude00 \\u05e9\\u05dc\\u05d5\\u05dd"}'),
            {"x": "😀 שלום"},
        ),
        ("duplicate keys", native(ctx='{"x":1,"x":2}'), {"x": 2}),
    ]
    for name, content, ctx in accepted:
        response = await post_bytes(live, "/api/v1/events", content, **keyed_headers(keyed))
        assert response.status_code == 201, (name, response.text)
        assert response.json()["ctx"] == ctx, name
        done = await live.wait_status(response.json()["id"], *FINAL)
        assert done["status"] == "processed", (name, done)
        assert done["ctx"] == ctx, name
    duplicate_type = await post_bytes(
        live,
        "/api/v1/events",
        b'{"type":"nope","type":"cartAbandonment","recipient":{"email":"a@example.com"}}',
    )
    assert duplicate_type.status_code == 201, duplicate_type.text
    assert duplicate_type.json()["type"] == "cartAbandonment"
    done = await live.wait_status(duplicate_type.json()["id"], *FINAL)
    assert done["type"] == "cartAbandonment"


async def test_hostile_input_on_operating_routes(live: Live) -> None:
    for path, body, field in [
        ("/api/v1/quarantine", {"address": "a\x00@example.com"}, "$.address"),
        ("/api/v1/quarantine", {"address": "a@example.com", "reason": "x\x00"}, "$.reason"),
        ("/api/v1/keys", {"name": "shop\x00"}, "$.name"),
    ]:
        response = await live.client.post(path, json=body)
        assert response.status_code < 500, response.text
        assert_error(response, 422, "invalid_field", field)
    for method, path in [
        ("GET", "/api/v1/outbox?recipient=a%00b"),
        ("GET", "/api/v1/quarantine?channel=email%00"),
        ("DELETE", "/api/v1/quarantine/email/a%00b@example.com"),
        ("DELETE", "/api/v1/keys/abcd%00efg"),
        ("POST", "/api/v1/event-types/cart%00Abandonment/pause"),
        ("GET", "/api/v1/events/1%00"),
    ]:
        response = await live.client.request(method, path)
        assert response.status_code < 500, response.text
        assert_error(response, 422, "invalid_field")
    assert (await live.client.get("/api/v1/quarantine")).json() == []
    assert len((await live.client.get("/api/v1/keys")).json()) == 1


# ------------------------------------------------------------------------------ 6. OpenAPI


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    assert isinstance(node, dict)
    return node


async def test_openapi_document_matches_the_server(live: Live) -> None:
    response = await live.client.get("/api/v1/openapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    try:
        from openapi_spec_validator import validate  # type: ignore[import-not-found]
    except ImportError:
        assert document["openapi"].startswith("3.")
        assert document["info"]["title"]
        assert document["info"]["version"]
        for path, item in document["paths"].items():
            assert path.startswith("/")
            for method, operation in item.items():
                assert method in {"get", "post", "put", "delete", "patch", "head", "options"}
                assert operation["responses"], (method, path)
                for code in operation["responses"]:
                    assert code.isdigit(), (method, path, code)
        operation_ids = [
            op["operationId"] for item in document["paths"].values() for op in item.values()
        ]
        assert len(operation_ids) == len(set(operation_ids))
    else:
        validate(document)
    for ref in _refs(document):
        _resolve(document, ref)

    called = {
        ("get", "/healthz"),
        ("post", "/api/v1/events"),
        ("get", "/api/v1/events"),
        ("post", "/api/v1/events/batch"),
        ("get", "/api/v1/events/{event_id}"),
        ("get", "/api/v1/outbox"),
        ("get", "/api/v1/outbox/{message_id}"),
        ("get", "/api/v1/quarantine"),
        ("post", "/api/v1/quarantine"),
        ("delete", "/api/v1/quarantine/{channel}/{address}"),
        ("get", "/api/v1/event-types"),
        ("post", "/api/v1/event-types/{name}/pause"),
        ("post", "/api/v1/event-types/{name}/resume"),
        ("get", "/api/v1/keys"),
        ("post", "/api/v1/keys"),
        ("delete", "/api/v1/keys/{prefix}"),
        ("post", "/{org}/campaign/{transactional_api}/{event_id}"),
        ("get", "/{org}/campaign/{transactional_api}/{event_id}/{pkey}"),
    }
    documented = {(m, p) for p, item in document["paths"].items() for m in item}
    assert called <= documented, called - documented
    listing = document["paths"]["/api/v1/events"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {
        "status",
        "type",
        "recipient",
        "from",
        "to",
        "limit",
        "cursor",
    }

    # POST /api/v1/events: the documented body is the one the server enforces.
    create = document["paths"]["/api/v1/events"]["post"]
    assert {"201", "400", "401", "413", "415", "422"} <= set(create["responses"])
    schema = _resolve(
        document, create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    )
    required = set(schema["required"])
    assert required == {"type", "recipient"}
    assert set(schema["properties"]) == {
        "type",
        "recipient",
        "ctx",
        "channel",
        "scheduled",
        "expiration",
        "priority",
    }
    complete = {
        "type": "cartAbandonment",
        "recipient": {"email": "a@example.com"},
        "ctx": {"firstName": "Jack"},
        "channel": "email",
        "scheduled": "2020-01-01T00:00:00Z",
        "expiration": "2099-01-01T00:00:00Z",
        "priority": 5,
    }
    assert (await live.client.post("/api/v1/events", json=complete)).status_code == 201
    for name in schema["properties"]:
        without = {k: v for k, v in complete.items() if k != name}
        response = await live.client.post("/api/v1/events", json=without)
        if name in required:
            assert_error(response, 422, "missing_field", f"$.{name}")
        else:
            assert response.status_code == 201, (name, response.text)
    if schema.get("additionalProperties") is False:
        response = await live.client.post("/api/v1/events", json={**complete, "extra": 1})
        assert_error(response, 422, "unknown_field", "$.extra")
    priority = schema["properties"]["priority"]
    for value, ok in [
        (priority["minimum"], True),
        (priority["maximum"], True),
        (priority["minimum"] - 1, False),
        (priority["maximum"] + 1, False),
    ]:
        response = await live.client.post("/api/v1/events", json={**complete, "priority": value})
        assert (response.status_code == 201) is ok, (value, response.text)
    recipient = _resolve(document, schema["properties"]["recipient"]["$ref"])
    assert set(recipient["properties"]) == {"email", "mobilePhone", "pushToken", "externalId"}

    # Observed answers of the event-submitting routes are documented.
    observed = {
        "/api/v1/events": {"201", "400", "401", "403", "413", "415", "422"},
        "/api/v1/events/batch": {"200", "400", "401", "403", "413", "415", "422"},
        "/{org}/campaign/{transactional_api}/{event_id}": {
            "201",
            "400",
            "401",
            "403",
            "404",
            "413",
            "415",
            "422",
        },
    }
    for path, codes in observed.items():
        answers = set(document["paths"][path]["post"]["responses"])
        assert codes <= answers, (path, codes - answers)
    batch = document["paths"]["/api/v1/events/batch"]["post"]
    batch_schema = _resolve(
        document, batch["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    )
    assert batch_schema["required"] == ["events"]
    adobe = document["paths"]["/{org}/campaign/{transactional_api}/{event_id}"]["post"]
    adobe_schema = _resolve(
        document, adobe["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    )
    assert set(adobe_schema["properties"]) == {
        "email",
        "mobilePhone",
        "ctx",
        "scheduled",
        "expiration",
    }
    error = _resolve(document, "#/components/schemas/ErrorBody")
    assert set(error["required"]) == {"status", "code", "message"}


# ------------------------------------------------------------------------------ 7. operations


async def test_quarantine_over_the_api(live: Live) -> None:
    assert (await live.client.get("/api/v1/quarantine")).json() == []
    added = await live.client.post(
        "/api/v1/quarantine", json={"address": " blocked@example.com ", "reason": "complained"}
    )
    assert added.status_code == 201, added.text
    entry = added.json()
    assert entry["channel"] == "email"
    assert entry["address"] == "blocked@example.com"
    assert entry["reason"] == "complained"
    assert entry["source"] == "operator"
    assert entry["expiresAt"] is None
    assert entry["eventId"] is None
    listed = (await live.client.get("/api/v1/quarantine")).json()
    assert listed == [entry]
    assert (await live.client.get("/api/v1/quarantine", params={"channel": "email"})).json() == [
        entry
    ]
    assert (await live.client.get("/api/v1/quarantine", params={"channel": "sms"})).json() == []

    ignored = await live.post_event(**cart_event("blocked@example.com"))
    done = await live.wait_status(ignored["id"], *FINAL)
    assert done["status"] == "ignored"
    assert "blocked@example.com" in done["reason"]
    assert done["deliveries"] == []
    adobe = await live.client.post(CART, json={"email": "blocked@example.com"})
    assert (await live.wait_status(adobe.json()["PKey"], *FINAL))["status"] == "ignored"
    assert (await live.client.get("/api/v1/outbox")).json()["items"] == []

    removed = await live.client.delete("/api/v1/quarantine/email/blocked@example.com")
    assert removed.status_code == 204, removed.text
    assert (await live.client.get("/api/v1/quarantine")).json() == []
    again = await live.client.delete("/api/v1/quarantine/email/blocked@example.com")
    assert_error(again, 404, "not_found")
    sent = await live.post_event(**cart_event("blocked@example.com"))
    assert (await live.wait_status(sent["id"], *FINAL))["status"] == "processed"

    for body, code, field in [
        ({"address": ""}, "invalid_field", "$.address"),
        ({"address": "   "}, "invalid_field", "$.address"),
        ({}, "missing_field", "$.address"),
        ({"address": "a@example.com", "channel": "fax"}, "invalid_field", "$.channel"),
        ({"address": "a@example.com", "expiresAt": "later"}, "invalid_date", "$.expiresAt"),
        ({"address": "a@example.com", "foo": 1}, "unknown_field", "$.foo"),
    ]:
        assert_error(await live.client.post("/api/v1/quarantine", json=body), 422, code, field)
    assert_error(
        await live.client.get("/api/v1/quarantine", params={"channel": "fax"}),
        422,
        "invalid_field",
        "channel",
    )
    assert_error(
        await live.client.delete("/api/v1/quarantine/fax/a@example.com"),
        422,
        "invalid_field",
        "channel",
    )
    assert (await live.client.get("/api/v1/quarantine")).json() == []

    # An entry that has expired no longer holds messages back.
    expired = await live.client.post(
        "/api/v1/quarantine",
        json={"address": "old@example.com", "expiresAt": "2020-01-01T00:00:00Z"},
    )
    assert expired.status_code == 201, expired.text
    assert expired.json()["expiresAt"] == "2020-01-01T00:00:00.000Z"
    assert (await live.client.get("/api/v1/quarantine")).json() == []
    old = await live.post_event(**cart_event("old@example.com"))
    assert (await live.wait_status(old["id"], *FINAL))["status"] == "processed"


async def test_pausing_an_event_type_holds_its_events_until_resumed(live: Live) -> None:
    types = await live.client.get("/api/v1/event-types")
    assert types.status_code == 200
    assert types.json() == [
        {
            "name": "cartAbandonment",
            "label": "Cart abandonment",
            "defaultChannel": "email",
            "paused": False,
        }
    ]
    paused = await live.client.post("/api/v1/event-types/cartAbandonment/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True
    assert (await live.client.get("/api/v1/event-types")).json()[0]["paused"] is True

    held = [await live.post_event(**cart_event(f"p{i}@example.com")) for i in range(2)]
    adobe = await live.client.post(CART, json={"email": "p2@example.com"})
    assert adobe.status_code == 201, adobe.text
    held_ids = [e["id"] for e in held] + [adobe.json()["PKey"]]
    for event_id in held_ids:
        state = await live.wait_status(event_id, *FINAL, "paused")
        assert state["status"] == "paused"
        assert "cartAbandonment" in state["reason"]
    listed = await live.client.get("/api/v1/events", params={"status": "paused"})
    assert sorted(e["id"] for e in listed.json()["items"]) == sorted(held_ids)
    assert (await live.client.get(f"{CART}/{held_ids[-1]}")).json()["status"] == "paused"
    assert (await live.client.get("/api/v1/outbox")).json()["items"] == []

    resumed = await live.client.post("/api/v1/event-types/cartAbandonment/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json() == {"name": "cartAbandonment", "resumed": 3}
    assert (await live.client.get("/api/v1/event-types")).json()[0]["paused"] is False
    for event_id in held_ids:
        assert (await live.wait_status(event_id, *FINAL))["status"] == "processed"
    assert len((await live.client.get("/api/v1/outbox")).json()["items"]) == 3
    again = await live.client.post("/api/v1/event-types/cartAbandonment/resume")
    assert again.json() == {"name": "cartAbandonment", "resumed": 0}

    for action in ("pause", "resume"):
        response = await live.client.post(f"/api/v1/event-types/nope/{action}")
        assert_error(response, 404, "not_found")


async def test_api_keys_over_the_api(live: Live) -> None:
    [first] = (await live.client.get("/api/v1/keys")).json()
    assert first["scopes"] == ["admin"]
    assert "key" not in first
    assert live.key.startswith(f"tid_{first['prefix']}_")

    created = await live.client.post("/api/v1/keys", json={"name": "shop", "scopes": ["events"]})
    assert created.status_code == 201, created.text
    key = created.json()
    assert set(key) == {"prefix", "name", "scopes", "createdAt", "key"}
    assert key["name"] == "shop"
    assert key["scopes"] == ["events"]
    assert key["key"].startswith(f"tid_{key['prefix']}_")
    default = await live.client.post("/api/v1/keys", json={"name": "default scopes"})
    assert default.status_code == 201, default.text
    assert default.json()["scopes"] == ["events"]

    listed = {k["prefix"]: k for k in (await live.client.get("/api/v1/keys")).json()}
    assert set(listed) == {first["prefix"], key["prefix"], default.json()["prefix"]}
    assert all("key" not in k for k in listed.values())
    assert {k: v for k, v in key.items() if k != "key"} == listed[key["prefix"]]

    async with anonymous(live, Authorization=f"Bearer {key['key']}") as client:
        assert (await client.post("/api/v1/events", json=cart_event())).status_code == 201
        assert_error(await client.get("/api/v1/keys"), 403, "forbidden")

    revoked = await live.client.delete(f"/api/v1/keys/{key['prefix']}")
    assert revoked.status_code == 204, revoked.text
    listed = {k["prefix"]: k for k in (await live.client.get("/api/v1/keys")).json()}
    assert listed[key["prefix"]]["revokedAt"]
    async with anonymous(live, **{"X-Api-Key": key["key"]}) as client:
        assert_error(await client.post("/api/v1/events", json=cart_event()), 401, "unauthorized")
    assert_error(await live.client.delete(f"/api/v1/keys/{key['prefix']}"), 404, "not_found")
    assert_error(await live.client.delete("/api/v1/keys/zzzzzzzz"), 404, "not_found")

    for body, code, field in [
        ({"name": "x", "scopes": ["root"]}, "invalid_field", "$.scopes"),
        ({"name": "x", "scopes": []}, "invalid_field", "$.scopes"),
        ({"name": "x", "scopes": "admin"}, "invalid_field", "$.scopes"),
        ({"scopes": ["events"]}, "missing_field", "$.name"),
        ({"name": "x", "role": "admin"}, "unknown_field", "$.role"),
    ]:
        assert_error(await live.client.post("/api/v1/keys", json=body), 422, code, field)
    assert len((await live.client.get("/api/v1/keys")).json()) == 3
    # An admin key made over the API can administer.
    admin = await live.client.post("/api/v1/keys", json={"name": "ops", "scopes": ["admin"]})
    async with anonymous(live, Authorization=f"Bearer {admin.json()['key']}") as client:
        assert (await client.get("/api/v1/keys")).status_code == 200


@pytest.mark.parametrize("header", ["Authorization", "X-Api-Key"])
async def test_either_header_carries_the_key_everywhere(live: Live, header: str) -> None:
    value = f"Bearer {live.key}" if header == "Authorization" else live.key
    async with anonymous(live, **{header: value}) as client:
        created = await client.post("/api/v1/events", json=cart_event())
        assert created.status_code == 201, created.text
        assert (await client.get(f"/api/v1/events/{created.json()['id']}")).status_code == 200
        assert (await client.post(CART, json={"email": "a@example.com"})).status_code == 201
        assert (await client.get("/api/v1/quarantine")).status_code == 200


async def test_openapi_lists_auth_errors_on_every_guarded_operation(live: Live) -> None:
    document = (await live.client.get("/api/v1/openapi.json")).json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path in ("/healthz", "/api/v1/openapi.json"):
                continue
            missing = {"401", "403"} - set(operation["responses"])
            assert not missing, f"{method.upper()} {path} does not document {missing}"
            # and the server does answer 401 there without a key
    response = await live.client.get("/api/v1/events", headers={"Authorization": ""})
    assert response.status_code == 401
