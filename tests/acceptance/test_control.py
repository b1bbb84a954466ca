"""The control instance over the admin API, end to end against a live server on SQLite and
PostgreSQL: event types with ctx schemas, ctx validation on the three ingest routes,
template versions, diff and restore, validation, preview, blocks, languages, publishing
with MJML, and the audit log."""

from __future__ import annotations

from typing import Any

import msgspec

from tests.acceptance.conftest import Live
from tests.acceptance.test_soap import cart_event, fault, pl_id, post, push_event
from tidings.store import events as events_store

ORDER_SCHEMA: list[dict[str, Any]] = [
    {"name": "firstName", "type": "string", "required": True, "example": "Jack"},
    {"name": "orderDate", "type": "date", "example": "2026-11-23"},
    {"name": "vip", "type": "boolean"},
    {"name": "language", "type": "string"},
    {
        "name": "items",
        "type": "collection",
        "required": True,
        "fields": [
            {"name": "name", "type": "string", "required": True, "example": "Jacket"},
            {"name": "price", "type": "number", "required": True, "example": 125},
        ],
    },
]


def order_type(name: str = "orderConfirmation", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "label": "Order confirmation",
        "description": "Sent when an order is paid",
        "defaultChannel": "email",
        "channels": ["sms", "webhook"],
        "validation": "strict",
        "ctxSchema": ORDER_SCHEMA,
    }
    body.update(changes)
    return body


def good_ctx(**changes: Any) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "firstName": "Jack",
        "orderDate": "2026-11-23",
        "items": [{"name": "Jacket", "price": 125}, {"name": "Gloves", "price": 25.5}],
    }
    ctx.update(changes)
    return ctx


EMAIL = {
    "type": "email",
    "subject": "Your order, {{ ctx.firstName }}",
    "html": "<p>Hello {{ ctx.firstName }}</p><ul>{% for item in ctx.items %}"
    "<li>{{ item.name }}: {{ item.price }}</li>{% endfor %}</ul>",
    "sender_address": "shop@example.com",
    "sender_name": "Shop",
}


async def create_type(live: Live, **changes: Any) -> dict[str, Any]:
    response = await live.client.post("/api/v1/event-types", json=order_type(**changes))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def save(live: Live, content: dict[str, Any], channel: str = "email", **extra: Any) -> int:
    response = await live.client.post(
        f"/api/v1/templates/orderConfirmation/{channel}/versions",
        json={"content": content, **extra},
    )
    assert response.status_code == 201, response.text
    return int(response.json()["number"])


def error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] == code, body
    return body


# ------------------------------------------------------------------ event types
async def test_event_type_crud_with_its_schema(live: Live) -> None:
    created = await create_type(live)
    assert created["name"] == "orderConfirmation"
    assert created["channels"] == ["email", "sms", "webhook"]
    assert created["validation"] == "strict"
    assert created["ctxSchema"][4]["fields"][1] == {
        "name": "price",
        "type": "number",
        "required": True,
        "example": 125,
    }
    got = (await live.client.get("/api/v1/event-types/orderConfirmation")).json()
    assert got == created
    listed = (await live.client.get("/api/v1/event-types")).json()
    assert "orderConfirmation" in [t["name"] for t in listed]

    updated = await live.client.put(
        "/api/v1/event-types/orderConfirmation",
        json=order_type(label="Order paid", validation="lenient"),
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["label"] == "Order paid"
    assert updated.json()["validation"] == "lenient"

    assert (await live.client.delete("/api/v1/event-types/orderConfirmation")).status_code == 204
    error(await live.client.get("/api/v1/event-types/orderConfirmation"), 404, "unknown_event_type")


async def test_bad_event_type_definitions_are_refused_and_change_nothing(live: Live) -> None:
    await create_type(live)
    error(
        await live.client.post("/api/v1/event-types", json=order_type()),
        409,
        "duplicate_event_type",
    )
    error(
        await live.client.post("/api/v1/event-types", json=order_type("ORDERCONFIRMATION")),
        409,
        "duplicate_event_type",
    )
    body = error(
        await live.client.post("/api/v1/event-types", json=order_type("1bad-name")),
        422,
        "invalid_name",
    )
    assert body["field"] == "$.name"
    cases = [
        ([{"name": "a"}, {"name": "a"}], "$.ctxSchema[1].name"),
        ([{"name": "list", "type": "collection"}], "$.ctxSchema[0].fields"),
        ([{"name": "n", "type": "number", "example": "many"}], "$.ctxSchema[0].example"),
        ([{"name": "bad name"}], "$.ctxSchema[0].name"),
    ]
    for schema, field in cases:
        body = error(
            await live.client.post(
                "/api/v1/event-types", json=order_type("other", ctxSchema=schema)
            ),
            422,
            "invalid_schema",
        )
        assert body["field"] == field
    body = error(
        await live.client.post(
            "/api/v1/event-types",
            json=order_type("other", ctxSchema=[{"name": "a", "type": "money"}]),
        ),
        422,
        "invalid_field",
    )
    assert body["field"] == "$.ctxSchema[0].type"
    error(await live.client.get("/api/v1/event-types/nope"), 404, "unknown_event_type")
    error(
        await live.client.put("/api/v1/event-types/nope", json=order_type("nope")),
        404,
        "unknown_event_type",
    )
    names = [t["name"] for t in (await live.client.get("/api/v1/event-types")).json()]
    assert "other" not in names
    assert "nope" not in names


async def test_delete_is_refused_while_events_are_queued(live: Live) -> None:
    await create_type(live)
    await live.post_event(
        type="orderConfirmation",
        recipient={"email": "a@example.com"},
        ctx=good_ctx(),
        scheduled="2099-01-01T00:00:00Z",  # stays pending
    )
    error(
        await live.client.delete("/api/v1/event-types/orderConfirmation"),
        409,
        "event_type_in_use",
    )
    assert (await live.client.get("/api/v1/event-types/orderConfirmation")).status_code == 200


async def test_example_requests_for_both_routes_are_accepted(live: Live) -> None:
    await create_type(live)
    examples = (await live.client.get("/api/v1/event-types/orderConfirmation/example")).json()
    native, adobe = examples["native"], examples["campaignStandard"]
    assert native["url"].endswith("/api/v1/events")
    assert native["body"]["ctx"] == {
        "firstName": "Jack",
        "orderDate": "2026-11-23",
        "vip": True,
        "language": "text",
        "items": [{"name": "Jacket", "price": 125}],
    }
    settings = live.settings
    assert adobe["url"].endswith(
        f"/{settings.org}/campaign/{settings.transactional_api}/EVTorderConfirmation"
    )
    assert adobe["body"]["email"] == "someone@example.com"
    assert "curl -X POST" in native["curl"]
    # The examples pass the strict schema on both routes.
    accepted = await live.client.post("/api/v1/events", json=native["body"])
    assert accepted.status_code == 201, accepted.text
    path = adobe["url"].split("://", 1)[1].split("/", 1)[1]
    accepted = await live.client.post("/" + path, json=adobe["body"])
    assert accepted.status_code == 201, accepted.text


# ------------------------------------------------------------------ ingest validation
async def test_strict_ctx_is_checked_on_the_native_route(live: Live) -> None:
    await create_type(live)
    ctx = good_ctx()
    ctx["items"][1]["price"] = "cheap"
    ctx["items"].append({"name": "Hat", "price": "free"})
    response = await live.client.post(
        "/api/v1/events",
        json={"type": "orderConfirmation", "recipient": {"email": "a@example.com"}, "ctx": ctx},
    )
    body = error(response, 422, "invalid_ctx")
    assert body["message"] == "ctx.items[1].price: expected a number"
    assert body["field"] == "$.ctx.items[1].price"
    for bad, message in [
        ({"orderDate": "yesterday"}, "ctx.orderDate: expected an ISO 8601 date"),
        ({"unknownField": 1}, "ctx.unknownField: not in the event type's ctx schema"),
        ({"vip": "yes"}, "ctx.vip: expected true or false"),
    ]:
        response = await live.client.post(
            "/api/v1/events",
            json={
                "type": "orderConfirmation",
                "recipient": {"email": "a@example.com"},
                "ctx": good_ctx(**bad),
            },
        )
        assert error(response, 422, "invalid_ctx")["message"] == message
    missing = {"firstName": "Jack"}
    response = await live.client.post(
        "/api/v1/events",
        json={"type": "orderConfirmation", "recipient": {"email": "a@example.com"}, "ctx": missing},
    )
    assert error(response, 422, "invalid_ctx")["message"] == "ctx.items: required field is missing"
    assert await live.stored_count() == 0
    await live.post_event(
        type="orderConfirmation", recipient={"email": "a@example.com"}, ctx=good_ctx()
    )
    # A batch refuses the bad item alone, naming it.
    batch = await live.client.post(
        "/api/v1/events/batch",
        json={
            "events": [
                {
                    "type": "orderConfirmation",
                    "recipient": {"email": "a@example.com"},
                    "ctx": good_ctx(),
                },
                {"type": "orderConfirmation", "recipient": {"email": "a@example.com"}, "ctx": {}},
            ]
        },
    )
    results = batch.json()["results"]
    assert "event" in results[0]
    assert results[1]["error"]["code"] == "invalid_ctx"
    assert results[1]["error"]["field"] == "$.events[1].ctx.firstName"
    assert await live.stored_count() == 2


async def test_strict_ctx_on_the_campaign_standard_route_is_a_400(live: Live) -> None:
    await create_type(live)
    settings = live.settings
    url = f"/{settings.org}/campaign/{settings.transactional_api}/EVTorderConfirmation"
    response = await live.client.post(url, json={"email": "a@example.com", "ctx": good_ctx(x=1)})
    body = error(response, 400, "invalid_ctx")
    assert body["message"] == "ctx.x: not in the event type's ctx schema"
    assert await live.stored_count() == 0
    response = await live.client.post(url, json={"email": "a@example.com", "ctx": good_ctx()})
    assert response.status_code == 201, response.text


async def test_strict_ctx_on_soap_is_a_client_fault_and_xml_strings_count_as_numbers(
    live: Live,
) -> None:
    # The server's first start made cartAbandonment: give it a strict schema.
    schema = [
        {"name": "firstName", "type": "string", "required": True},
        {"name": "lastProduct", "type": "string"},
        {"name": "cartAmount", "type": "number"},
    ]
    response = await live.client.put(
        "/api/v1/event-types/cartAbandonment",
        json=order_type("cartAbandonment", ctxSchema=schema, channels=[]),
    )
    assert response.status_code == 200, response.text
    token = f"mc/{live.key}"
    code, _, detail = fault(await post(live, push_event(token, cart_event())))
    assert code == "SOAP-ENV:Client"
    assert "ctx.cartAmount: expected a number" in detail
    event = cart_event().replace("$ 125", "125.50")
    assert pl_id(await post(live, push_event(token, event))) > 0
    code, _, detail = fault(
        await post(live, push_event(token, event.replace("<firstName>Jack</firstName>", "")))
    )
    assert "ctx.firstName: required field is missing" in detail
    assert await live.stored_count() == 1


async def test_lenient_ctx_is_accepted_and_the_mismatch_recorded(live: Live) -> None:
    await create_type(live, validation="lenient")
    stored = await live.post_event(
        type="orderConfirmation", recipient={"email": "a@example.com"}, ctx=good_ctx(vip="yes")
    )
    detail = (await live.client.get(f"/api/v1/events/{stored['id']}")).json()
    assert detail["ctxIssues"] == ["ctx.vip: expected true or false"]
    settings = live.settings
    url = f"/{settings.org}/campaign/{settings.transactional_api}/EVTorderConfirmation"
    response = await live.client.post(url, json={"email": "a@example.com", "ctx": {"x": 1}})
    assert response.status_code == 201, response.text
    detail = (await live.client.get(f"/api/v1/events/{response.json()['PKey']}")).json()
    assert "ctx.items: required field is missing" in detail["ctxIssues"]
    assert "ctx.x: not in the event type's ctx schema" in detail["ctxIssues"]
    good = await live.post_event(
        type="orderConfirmation", recipient={"email": "a@example.com"}, ctx=good_ctx()
    )
    assert (await live.client.get(f"/api/v1/events/{good['id']}")).json()["ctxIssues"] == []
    async with live.app.db.connection() as conn:
        event = await events_store.get_event(conn, int(good["id"]))
    assert event is not None
    assert event.ctx_issues is None


# ------------------------------------------------------------------ versions
async def test_versions_diff_and_restore(live: Live) -> None:
    await create_type(live)
    first = await save(live, EMAIL)
    second = await save(
        live, {**EMAIL, "subject": "Order {{ ctx.firstName }} paid", "headers": {"X-Tag": "order"}}
    )
    assert (first, second) == (1, 2)
    versions = (await live.client.get("/api/v1/templates/orderConfirmation/email/versions")).json()
    assert [v["number"] for v in versions] == [2, 1]
    assert all(v["author"] == "admin" or v["author"] for v in versions)
    diff = (
        await live.client.get(
            "/api/v1/templates/orderConfirmation/email/diff", params={"from": 1, "to": 2}
        )
    ).json()
    assert [d["field"] for d in diff] == ["subject", "headers"]
    assert "-Your order, {{ ctx.firstName }}\n+Order {{ ctx.firstName }} paid\n" in diff[0]["diff"]
    assert diff[0]["diff"].startswith("--- v1/subject\n+++ v2/subject\n")
    restored = await live.client.post(
        "/api/v1/templates/orderConfirmation/email/versions/1/restore"
    )
    assert restored.status_code == 201
    assert restored.json()["number"] == 3
    assert restored.json()["content"]["subject"] == EMAIL["subject"]
    same = (
        await live.client.get(
            "/api/v1/templates/orderConfirmation/email/diff", params={"from": 1, "to": 3}
        )
    ).json()
    assert same == []
    error(
        await live.client.get("/api/v1/templates/orderConfirmation/email/versions/9"),
        404,
        "unknown_version",
    )
    error(await live.client.get("/api/v1/templates/nope/email/versions"), 404, "unknown_event_type")
    error(
        await live.client.post(
            "/api/v1/templates/orderConfirmation/push/versions",
            json={"content": {"type": "push", "title": "t", "body": "b"}},
        ),
        422,
        "channel_not_allowed",
    )
    error(
        await live.client.post(
            "/api/v1/templates/orderConfirmation/sms/versions", json={"content": EMAIL}
        ),
        422,
        "wrong_channel",
    )
    versions = (await live.client.get("/api/v1/templates/orderConfirmation/sms/versions")).json()
    assert versions == []


# ------------------------------------------------------------------ validation
async def test_validation_names_line_and_column(live: Live) -> None:
    await create_type(live)
    html = (
        "<div>\n"
        "<p>Hello {{ ctx.firstName }} {{ ctx.lastName }}</p>\n"
        "{% for item in ctx.items %}<b>{{ item.price }} {{ item.sku }}</b>{% endfor %}\n"
        '{% include "block:footer" %}\n'
        "<span>\n"
        "</div>"
    )
    number = await save(live, {"type": "email", "subject": "Hi {{ ctx.firstName ", "html": html})
    response = await live.client.post(
        f"/api/v1/templates/orderConfirmation/email/versions/{number}/validate"
    )
    result = response.json()
    assert result["valid"] is False
    found = {(i["code"], i["field"], i.get("line"), i.get("column")) for i in result["issues"]}
    assert ("template_syntax", "subject", 1, 4) in found
    assert ("unknown_variable", "html", 2, 33) in found
    assert ("unknown_variable", "html", 3, 51) in found  # item.sku: items have no sku
    assert ("unknown_block", "html", 4, 13) in found
    assert ("unclosed_tag", "html", 5, 1) in found
    assert any(code == "missing_sender" for code, *_ in found) is False  # default sender set
    messages = {i["message"] for i in result["issues"]}
    assert "ctx.lastName is not in the event type's ctx schema" in messages
    # Publishing it is refused with the same issues; nothing is published.
    refused = await live.client.post(
        f"/api/v1/templates/orderConfirmation/email/versions/{number}/publish"
    )
    body = error(refused, 422, "invalid_version")
    assert {i["code"] for i in body["issues"]} >= {"template_syntax", "unknown_block"}
    error(
        await live.client.get("/api/v1/templates/orderConfirmation/email/publication"),
        404,
        "not_published",
    )
    # Only the example the first start published is in the log.
    audit = (await live.client.get("/api/v1/publications/audit")).json()
    assert [(a["eventType"], a["actor"]) for a in audit] == [("cartAbandonment", "tidings")]


async def test_sms_and_webhook_validation(live: Live) -> None:
    await create_type(live)
    number = await save(live, {"type": "sms", "text": "Hi {{ ctx.firstName }}, paid ✓"}, "sms")
    issues = (
        await live.client.post(
            f"/api/v1/templates/orderConfirmation/sms/versions/{number}/validate"
        )
    ).json()["issues"]
    codes = {i["code"]: i for i in issues}
    assert codes["sms_segments"]["severity"] == "info"
    assert "1 segment(s), UCS-2" in codes["sms_segments"]["message"]
    assert codes["sms_ucs2"]["severity"] == "warning"
    number = await save(
        live,
        {
            "type": "webhook",
            "url": "https://hooks.example.com/x",
            "body": '{"name": {{ ctx.firstName }}}',
        },
        "webhook",
    )
    result = (
        await live.client.post(
            f"/api/v1/templates/orderConfirmation/webhook/versions/{number}/validate"
        )
    ).json()
    assert result["valid"] is False
    assert result["issues"][0]["code"] == "webhook_body_not_json"


# ------------------------------------------------------------------ preview
async def test_preview_per_channel_with_a_test_profile(live: Live) -> None:
    await create_type(live, channels=["sms", "webhook", "push"])
    profile = {
        "recipient": {
            "email": "anna@example.com",
            "mobilePhone": "+33612345678",
            "pushToken": "fcm:abc",
        },
        "ctx": good_ctx(firstName="Anna"),
    }
    saved = await live.client.put(
        "/api/v1/event-types/orderConfirmation/profiles/anna", json=profile
    )
    assert saved.status_code == 200, saved.text
    assert (await live.client.get("/api/v1/event-types/orderConfirmation/profiles")).json()[0][
        "name"
    ] == "anna"

    async def preview(channel: str, number: int, **params: str) -> dict[str, Any]:
        response = await live.client.post(
            f"/api/v1/templates/orderConfirmation/{channel}/versions/{number}/preview",
            params=params,
        )
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    email = await preview("email", await save(live, EMAIL), profile="anna")
    assert email["message"]["subject"] == "Your order, Anna"
    assert "<li>Gloves: 25.5</li>" in email["message"]["html"]
    assert "Gloves: 25.5" in email["message"]["text"]  # generated from the HTML
    assert email["message"]["to"]["address"] == "anna@example.com"
    sms = await preview(
        "sms",
        await save(live, {"type": "sms", "text": "Hi {{ ctx.firstName }}"}, "sms"),
        profile="anna",
    )
    assert sms["message"]["text"] == "Hi Anna"
    assert (sms["segments"], sms["encoding"], sms["characters"]) == (1, "GSM-7", 7)
    push = await preview(
        "push",
        await save(
            live,
            {
                "type": "push",
                "title": "Paid",
                "body": "{{ ctx.items|length }} items",
                "data": {"first": "{{ ctx.items[0].name }}"},
            },
            "push",
        ),
        profile="anna",
    )
    assert push["message"]["body"] == "2 items"
    assert push["message"]["data"] == {"first": "Jacket"}
    hook = await preview(
        "webhook",
        await save(
            live,
            {
                "type": "webhook",
                "url": "https://hooks.example.com/o",
                "body": '{"name": {{ ctx.firstName|tojson }}}',
            },
            "webhook",
        ),
    )
    assert hook["message"]["body"] == {"name": "Jack"}  # the schema's example
    error(
        await live.client.post(
            "/api/v1/templates/orderConfirmation/email/versions/1/preview",
            params={"profile": "nobody"},
        ),
        404,
        "unknown_profile",
    )
    assert (
        await live.client.delete("/api/v1/event-types/orderConfirmation/profiles/anna")
    ).status_code == 204


async def test_a_test_profile_whose_ctx_does_not_fit_the_schema_is_refused(live: Live) -> None:
    await create_type(live)
    url = "/api/v1/event-types/orderConfirmation/profiles/bad"
    ctx = good_ctx()
    ctx["items"][0]["price"] = "cheap"
    body = error(
        await live.client.put(url, json={"recipient": {"email": "a@example.com"}, "ctx": ctx}),
        422,
        "invalid_ctx",
    )
    assert body["field"] == "$.ctx.items[0].price"
    assert (await live.client.get(url)).status_code == 404  # nothing saved


# ------------------------------------------------------------------ blocks, languages, MJML
FOOTER = "<mj-section><mj-column><mj-text>{text}</mj-text></mj-column></mj-section>"


async def test_publishing_compiles_mjml_inlines_css_and_freezes_blocks(live: Live) -> None:
    await create_type(live, languageField="ctx.language", fallbackLanguage="en")
    block = await live.client.put(
        "/api/v1/blocks/footer",
        json={"source": FOOTER.format(text="Shop Ltd, {{ ctx.firstName }}")},
    )
    assert block.status_code == 200, block.text
    assert block.json()["number"] == 1
    mjml = (
        '<mjml><mj-head><mj-style inline="inline">.total { color: #c00; }</mj-style></mj-head>'
        "<mj-body><mj-section><mj-column>"
        '<mj-text css-class="total">Hello {{ ctx.firstName }}</mj-text>'
        "</mj-column></mj-section>"
        '{% include "block:footer" %}</mj-body></mjml>'
    )
    french = {**EMAIL, "subject": "Votre commande, {{ ctx.firstName }}", "html": "<p>Bonjour</p>"}
    number = await save(live, {**EMAIL, "html": mjml}, variants={"fr": french})
    published = await live.client.post(
        f"/api/v1/templates/orderConfirmation/email/versions/{number}/publish"
    )
    assert published.status_code == 200, published.text
    result = published.json()
    assert result["blocks"] == {"footer": 1}
    assert len(result["contentHash"]) == 64
    bundle = (await live.client.get("/api/v1/templates/orderConfirmation/email/publication")).json()
    html = bundle["content"]["html"]
    assert "<mjml" not in html
    assert "<mj-" not in html
    assert "color: #c00" in html  # CSS inlined
    assert "Shop Ltd, {{ ctx.firstName }}" in html  # the block's text, frozen
    assert "Hello {{ ctx.firstName }}" in bundle["content"]["text"]
    assert bundle["variants"]["fr"]["subject"] == "Votre commande, {{ ctx.firstName }}"
    assert (bundle["languageField"], bundle["fallbackLanguage"]) == ("ctx.language", "en")

    # A later block change reaches messages only when published again.
    await live.client.put(
        "/api/v1/blocks/footer",
        json={"source": FOOTER.format(text="New Ltd")},
    )
    bundle = (await live.client.get("/api/v1/templates/orderConfirmation/email/publication")).json()
    assert "Shop Ltd" in bundle["content"]["html"]

    # The routed content renders: events are delivered into the outbox with the MJML output.
    event = await live.post_event(
        type="orderConfirmation", recipient={"email": "a@example.com"}, ctx=good_ctx()
    )
    await live.wait_status(event["id"], "processed")
    items = (await live.client.get("/api/v1/outbox")).json()["items"]
    assert "Shop Ltd, Jack" in items[0]["html"]
    assert items[0]["subject"] == "Your order, Jack"

    # Languages: the preview picks the variant from ctx.language, with the fallback.
    await live.client.put(
        "/api/v1/event-types/orderConfirmation/profiles/fr",
        json={"recipient": {"email": "a@example.com"}, "ctx": good_ctx(language="fr-CA")},
    )
    shown = (
        await live.client.post(
            f"/api/v1/templates/orderConfirmation/email/versions/{number}/preview",
            params={"profile": "fr"},
        )
    ).json()
    assert (shown["language"], shown["message"]["subject"]) == ("fr", "Votre commande, Jack")
    shown = (
        await live.client.post(
            f"/api/v1/templates/orderConfirmation/email/versions/{number}/preview"
        )
    ).json()
    assert (shown["language"], shown["message"]["subject"]) == ("en", "Your order, Jack")

    # And delivery does the same: an event in fr-CA gets the French variant, one in German
    # (no variant) the fallback.
    for language in ("fr-CA", "de"):
        event = await live.post_event(
            type="orderConfirmation",
            recipient={"email": f"{language}@example.com"},
            ctx=good_ctx(language=language),
        )
        await live.wait_status(event["id"], "processed")
    items = (await live.client.get("/api/v1/outbox")).json()["items"]
    sent = {i["recipient"]: (i["subject"], i["html"]) for i in items}
    assert sent["fr-CA@example.com"][0] == "Votre commande, Jack"
    assert "Bonjour" in sent["fr-CA@example.com"][1]
    assert sent["de@example.com"][0] == "Your order, Jack"


async def test_publish_rollback_unpublish_and_the_audit_log(live: Live) -> None:
    await create_type(live)
    first = await save(live, EMAIL)
    second = await save(live, {**EMAIL, "subject": "Second {{ ctx.firstName }}"})
    base = "/api/v1/templates/orderConfirmation/email"
    one = (await live.client.post(f"{base}/versions/{first}/publish")).json()
    two = (await live.client.post(f"{base}/versions/{second}/publish")).json()
    again = (await live.client.post(f"{base}/versions/{second}/publish")).json()
    assert again["publicationId"] == two["publicationId"]
    assert again["changed"] is False
    event = await live.post_event(
        type="orderConfirmation", recipient={"email": "a@example.com"}, ctx=good_ctx()
    )
    await live.wait_status(event["id"], "processed")
    rollback = (await live.client.post(f"{base}/versions/{first}/publish")).json()
    assert rollback["contentHash"] == one["contentHash"]
    assert rollback["publicationId"] not in (one["publicationId"], two["publicationId"])
    event = await live.post_event(
        type="orderConfirmation", recipient={"email": "b@example.com"}, ctx=good_ctx()
    )
    await live.wait_status(event["id"], "processed")
    subjects = [i["subject"] for i in (await live.client.get("/api/v1/outbox")).json()["items"]]
    assert subjects == ["Your order, Jack", "Second Jack"]
    assert (await live.client.delete(f"{base}/publication")).status_code == 204
    error(await live.client.delete(f"{base}/publication"), 404, "not_published")
    event = await live.post_event(
        type="orderConfirmation", recipient={"email": "c@example.com"}, ctx=good_ctx()
    )
    done = await live.wait_status(event["id"], "routingFailed")
    assert "no published email template" in done["reason"]
    audit = (
        await live.client.get("/api/v1/publications/audit", params={"type": "orderConfirmation"})
    ).json()
    assert [(a["action"], a["version"]) for a in audit] == [
        ("unpublish", None),
        ("publish", 1),
        ("publish", 2),
        ("publish", 1),
    ]
    assert all(a["actor"] for a in audit)
    assert audit[1]["contentHash"] == one["contentHash"]


async def test_admin_routes_need_the_admin_scope(live: Live) -> None:
    key = (
        await live.client.post("/api/v1/keys", json={"name": "site", "scopes": ["events"]})
    ).json()["key"]
    response = await live.client.post(
        "/api/v1/event-types", json=order_type(), headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 403
    response = await live.client.get("/api/v1/blocks", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 403
    document = (await live.client.get("/api/v1/openapi.json")).json()
    for path in (
        "/api/v1/event-types/{name}",
        "/api/v1/event-types/{name}/example",
        "/api/v1/templates/{event_type}/{channel}/versions/{number}/preview",
        "/api/v1/publications/audit",
    ):
        assert path in document["paths"], sorted(document["paths"])
    assert msgspec.json.encode(document)
