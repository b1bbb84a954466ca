"""The console's event type pages and template editor over plain HTTP (a real server, both
databases): roles, CSRF, refused input at its field path, live preview, versions, diff,
restore, publish and unpublish."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from tidings import model
from tidings.control import ctxschema, eventtypes, publishing, templates

from .conftest import Live
from .console import add_operator, sign_in

OPERATOR = model.OperatorRole.OPERATOR
DESIGNER = model.OperatorRole.DESIGNER
SCHEMA = [
    {"name": "firstName", "type": "string", "required": True, "example": "Jack"},
    {"name": "orderId", "type": "string", "example": "A-1001"},
]
EMAIL = {
    "subject": "Order {{ ctx.orderId }} is paid",
    "sender_name": "Shop",
    "sender_address": "shop@example.com",
    "html": "<p>Thank you, {{ ctx.firstName }}!</p>",
    "text": "Thank you, {{ ctx.firstName }}!",
}
TYPE = "/console/event-types/orderPaid"
EDITOR = f"{TYPE}/email"


@pytest.fixture
async def browser(live: Live) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie-keeping client with no API key."""
    async with httpx.AsyncClient(base_url=live.url, timeout=15) as client:
        yield client


def type_form(token: str, **changes: object) -> dict[str, object]:
    form: dict[str, object] = {
        "_csrf": token,
        "name": "orderPaid",
        "label": "Order paid",
        "description": "Sent when an order is paid",
        "defaultChannel": "email",
        "channels": ["email", "sms"],
        "validation": "strict",
        "ctxSchema": json.dumps(SCHEMA),
    }
    form.update(changes)
    return form


async def create_type(live: Live) -> None:
    await eventtypes.create(
        live.app.db,
        eventtypes.Definition(
            name="orderPaid",
            channels=(model.Channel.EMAIL, model.Channel.SMS),
            ctxSchema=tuple(
                ctxschema.Field(
                    name=f["name"], required=bool(f.get("required")), example=f["example"]
                )
                for f in SCHEMA
            ),
        ),
    )


async def save_email(live: Live) -> None:
    """Version 1 of orderPaid's email template."""
    draft = templates.Draft(model.EmailContent(**EMAIL))
    await templates.save(live.app.db, "orderPaid", model.Channel.EMAIL, draft, "dana")


async def test_designer_creates_an_event_type_and_sees_refusals_at_their_path(
    live: Live, browser: httpx.AsyncClient
) -> None:
    await add_operator(live, "dana", DESIGNER)
    token = await sign_in(browser, "dana")

    broken = await browser.post(
        "/console/event-types", data=type_form(token, ctxSchema='[\n  {"name": "a",}\n]')
    )
    assert broken.status_code == 422
    assert 'data-field="$.ctxSchema"' in broken.text
    assert "line 2, column" in broken.text
    wrong_type = json.dumps([{"name": "a"}, {"name": "b", "type": "colour"}])
    refused = await browser.post(
        "/console/event-types", data=type_form(token, ctxSchema=wrong_type)
    )
    assert refused.status_code == 422
    assert 'data-field="$.ctxSchema[1].type"' in refused.text
    twice = json.dumps([{"name": "a"}, {"name": "a"}])
    refused = await browser.post("/console/event-types", data=type_form(token, ctxSchema=twice))
    assert refused.status_code == 422
    assert 'data-field="$.ctxSchema[1].name"' in refused.text
    bad_name = await browser.post("/console/event-types", data=type_form(token, name="1 bad"))
    assert bad_name.status_code == 422
    assert 'data-field="$.name"' in bad_name.text
    assert [t.name for t in await eventtypes.list_all(live.app.db)] == ["cartAbandonment"]

    created = await browser.post("/console/event-types", data=type_form(token))
    assert created.status_code == 303
    assert created.headers["location"] == f"{TYPE}?created=1"
    info = await eventtypes.get(live.app.db, "orderPaid")
    assert info.channels == (model.Channel.EMAIL, model.Channel.SMS)
    assert info.validation is eventtypes.Validation.STRICT
    assert [f.name for f in info.ctxSchema] == ["firstName", "orderId"]
    again = await browser.post("/console/event-types", data=type_form(token))
    assert again.status_code == 409

    page = await browser.get(f"{TYPE}?created=1")
    assert page.status_code == 200
    assert "orderPaid is created." in page.text
    assert "/api/v1/events" in page.text
    assert "/campaign/" in page.text
    assert "EVTorderPaid" in page.text
    assert "curl -X POST" in page.text
    assert "A-1001" in page.text  # the examples come from the schema

    updated = await browser.post(TYPE, data=type_form(token, label="Paid orders"))
    assert updated.status_code == 200
    assert (await eventtypes.get(live.app.db, "orderPaid")).label == "Paid orders"
    unknown = await browser.get("/console/event-types/noSuchType")
    assert unknown.status_code == 404


async def test_editor_previews_saves_diffs_restores_publishes(
    live: Live, browser: httpx.AsyncClient
) -> None:
    await create_type(live)
    await add_operator(live, "dana", DESIGNER)
    token = await sign_in(browser, "dana")
    db = live.app.db

    empty = await browser.get(EDITOR)
    assert empty.status_code == 200
    assert "No version yet" in empty.text

    shown = await browser.post(
        f"{EDITOR}/preview", data={**EMAIL, "base": ""}, headers={"X-CSRF-Token": token}
    )
    assert shown.status_code == 200
    assert "Order A-1001 is paid" in shown.text
    assert "Thank you, Jack!" in shown.text
    assert "no findings" in shown.text
    framed = await browser.post(f"{EDITOR}/preview.html", data={**EMAIL, "_csrf": token})
    assert framed.status_code == 200
    assert "Thank you, Jack!" in framed.text
    assert framed.headers["content-security-policy"].startswith("sandbox")

    broken = {**EMAIL, "subject": "Hello {{ ctx.firstName", "html": "<p>\n  {{ ctx.nope }}</p>"}
    found = await browser.post(f"{EDITOR}/preview", data=broken, headers={"X-CSRF-Token": token})
    assert found.status_code == 200
    assert 'data-code="template_syntax"' in found.text
    assert 'data-code="unknown_variable"' in found.text
    assert "html · line 2, column" in found.text
    assert 'id="preview-failed"' in found.text
    blank = await browser.post(f"{EDITOR}/preview.html", data={**broken, "_csrf": token})
    assert "does not render yet" in blank.text
    assert await templates.versions(db, "orderPaid", model.Channel.EMAIL) == []

    saved = await browser.post(f"{EDITOR}/versions", data={**EMAIL, "base": "", "_csrf": token})
    assert saved.status_code == 303
    assert saved.headers["location"] == f"{EDITOR}?version=1&saved=1"
    second = {**EMAIL, "subject": "Paid: {{ ctx.orderId }}", "base": "1", "_csrf": token}
    assert (await browser.post(f"{EDITOR}/versions", data=second)).status_code == 303
    latest = await templates.get(db, "orderPaid", model.Channel.EMAIL, 2)
    assert isinstance(latest.content, model.EmailContent)
    assert latest.content.subject == "Paid: {{ ctx.orderId }}"
    assert latest.author == "dana"

    page = await browser.get(f"{EDITOR}?version=2&saved=1")
    assert "Version 2 is saved." in page.text
    assert 'data-version="1"' in page.text
    assert 'data-version="2"' in page.text
    diff = await browser.get(f"{EDITOR}/diff?from=1&to=2")
    assert diff.status_code == 200
    assert 'data-field="subject"' in diff.text
    assert "+Paid: {{ ctx.orderId }}" in diff.text
    assert (await browser.get(f"{EDITOR}/diff?from=1&to=9")).status_code == 404

    restored = await browser.post(f"{EDITOR}/versions/1/restore", data={"_csrf": token})
    assert restored.status_code == 303
    assert restored.headers["location"] == f"{EDITOR}?version=3&restored=1"
    third = await templates.get(db, "orderPaid", model.Channel.EMAIL, 3)
    assert third.content == (await templates.get(db, "orderPaid", model.Channel.EMAIL, 1)).content

    published = await browser.post(f"{EDITOR}/publish", data={"version": "3", "_csrf": token})
    assert published.status_code == 200
    assert "Version 3 is published." in published.text
    assert 'id="publish-result"' in published.text
    bundle = await publishing.publication(db, "orderPaid", model.Channel.EMAIL)
    assert bundle.versionNumber == 3

    # A version that fails validation is refused, with its findings listed.
    bad = {**EMAIL, "subject": "", "base": "3", "_csrf": token}
    assert (await browser.post(f"{EDITOR}/versions", data=bad)).status_code == 303
    refused = await browser.post(f"{EDITOR}/publish", data={"version": "4", "_csrf": token})
    assert refused.status_code == 422
    assert 'data-code="missing_subject"' in refused.text
    assert (await publishing.publication(db, "orderPaid", model.Channel.EMAIL)).versionNumber == 3

    gone = await browser.post(f"{EDITOR}/unpublish", data={"_csrf": token})
    assert gone.status_code == 303
    assert (await browser.get(gone.headers["location"])).text.count("not published") >= 1
    again = await browser.post(f"{EDITOR}/unpublish", data={"_csrf": token})
    assert again.status_code == 404


async def test_sms_preview_counts_segments(live: Live, browser: httpx.AsyncClient) -> None:
    await create_type(live)
    await add_operator(live, "dana", DESIGNER)
    token = await sign_in(browser, "dana")
    headers = {"X-CSRF-Token": token}
    short = await browser.post(
        f"{TYPE}/sms/preview", data={"text": "Hi {{ ctx.firstName }}"}, headers=headers
    )
    assert short.status_code == 200
    assert "1 segment</span> GSM-7, 7 characters" in short.text
    long = await browser.post(f"{TYPE}/sms/preview", data={"text": "€" * 81}, headers=headers)
    assert "2 segments</span> GSM-7, 162 characters" in long.text
    ucs2 = await browser.post(f"{TYPE}/sms/preview", data={"text": "日本" * 40}, headers=headers)
    assert "2 segments</span> UCS-2, 80 characters" in ucs2.text
    assert 'data-code="sms_ucs2"' in ucs2.text
    # Push and webhook are not allowed for this type.
    assert (await browser.get(f"{TYPE}/push")).status_code == 404
    assert (await browser.get(f"{TYPE}/fax")).status_code == 404


async def test_an_operator_reads_but_cannot_change(live: Live, browser: httpx.AsyncClient) -> None:
    await create_type(live)
    await save_email(live)
    await add_operator(live, "olga", OPERATOR)
    token = await sign_in(browser, "olga")
    for path in ("/console/event-types", TYPE, EDITOR, f"{EDITOR}/diff?from=1&to=1"):
        page = await browser.get(path)
        assert page.status_code == 200, path
    assert 'id="save"' not in (await browser.get(EDITOR)).text
    preview = await browser.post(f"{EDITOR}/preview", data=EMAIL, headers={"X-CSRF-Token": token})
    assert preview.status_code == 200
    for path, data in (
        ("/console/event-types", type_form(token, name="other")),
        (TYPE, type_form(token)),
        (f"{EDITOR}/versions", {**EMAIL, "_csrf": token}),
        (f"{EDITOR}/versions/1/restore", {"_csrf": token}),
        (f"{EDITOR}/publish", {"version": "1", "_csrf": token}),
        (f"{EDITOR}/unpublish", {"_csrf": token}),
    ):
        refused = await browser.post(path, data=data)
        assert refused.status_code == 403, path
        assert "designer" in refused.text
    assert len(await templates.versions(live.app.db, "orderPaid", model.Channel.EMAIL)) == 1
    with pytest.raises(publishing.errors.NotFound):
        await publishing.publication(live.app.db, "orderPaid", model.Channel.EMAIL)


async def test_new_posts_need_the_csrf_token(live: Live, browser: httpx.AsyncClient) -> None:
    await create_type(live)
    await add_operator(live, "ada")
    token = await sign_in(browser, "ada")
    assert (
        await browser.post(f"{EDITOR}/versions", data={**EMAIL, "_csrf": token})
    ).status_code == 303
    for path, data in (
        ("/console/event-types", type_form("", name="other")),
        (TYPE, type_form("forged")),
        (f"{EDITOR}/preview", EMAIL),
        (f"{EDITOR}/preview.html", EMAIL),
        (f"{EDITOR}/versions", EMAIL),
        (f"{EDITOR}/versions/1/restore", {}),
        (f"{EDITOR}/publish", {"version": "1"}),
        (f"{EDITOR}/unpublish", {"_csrf": "forged"}),
    ):
        refused = await browser.post(path, data=data)
        assert refused.status_code == 403, path
        assert "expired" in refused.text
    assert [t.name for t in await eventtypes.list_all(live.app.db)] == [
        "cartAbandonment",
        "orderPaid",
    ]
    assert len(await templates.versions(live.app.db, "orderPaid", model.Channel.EMAIL)) == 1
    assert (await eventtypes.get(live.app.db, "orderPaid")).label == "orderPaid"


async def test_push_and_webhook_previews_with_a_test_profile(
    live: Live, browser: httpx.AsyncClient
) -> None:
    await eventtypes.create(
        live.app.db,
        eventtypes.Definition(
            name="shipped",
            defaultChannel=model.Channel.PUSH,
            channels=(model.Channel.WEBHOOK,),
            ctxSchema=(ctxschema.Field(name="firstName", example="Jack"),),
        ),
    )
    await eventtypes.put_profile(
        live.app.db,
        "shipped",
        eventtypes.Profile(
            "zoe", model.Recipient(pushToken="fcm:abc", externalId="c-7"), {"firstName": "Zoé"}
        ),
    )
    await add_operator(live, "dana", DESIGNER)
    headers = {"X-CSRF-Token": await sign_in(browser, "dana")}
    editor = await browser.get("/console/event-types/shipped/push")
    assert '<option value="zoe">zoe</option>' in editor.text
    push = {"title": "Shipped", "body": "On its way, {{ ctx.firstName }}"}
    example = await browser.post(
        "/console/event-types/shipped/push/preview", data=push, headers=headers
    )
    assert "On its way, Jack" in example.text
    chosen = await browser.post(
        "/console/event-types/shipped/push/preview",
        data={**push, "profile": "zoe"},
        headers=headers,
    )
    assert "On its way, Zoé" in chosen.text
    unknown = await browser.post(
        "/console/event-types/shipped/push/preview",
        data={**push, "profile": "nobody"},
        headers=headers,
    )
    assert 'id="preview-failed"' in unknown.text
    assert "no test profile" in unknown.text

    hook = {"url": "https://hooks.example.com/{{ recipient.externalId }}", "body": '{"n": 1}'}
    rendered = await browser.post(
        "/console/event-types/shipped/webhook/preview",
        data={**hook, "profile": "zoe"},
        headers=headers,
    )
    assert "https://hooks.example.com/c-7" in rendered.text
    not_json = await browser.post(
        "/console/event-types/shipped/webhook/preview",
        data={**hook, "body": "{not json"},
        headers=headers,
    )
    assert 'data-code="webhook_body_not_json"' in not_json.text
    # Hostile input is shown as text, never as markup.
    hostile = await browser.post(
        "/console/event-types/shipped/push/preview",
        data={"title": "<script>alert(1)</script>", "body": "x"},
        headers=headers,
    )
    assert "<script>alert(1)</script>" not in hostile.text
    assert "&lt;script&gt;" in hostile.text


async def test_seed_addresses_and_a_proof_from_the_editor(
    live: Live, browser: httpx.AsyncClient
) -> None:
    await add_operator(live, "dana", DESIGNER)
    token = await sign_in(browser, "dana")
    seeds = "qa@example.com\n\n  lead@example.com\n"
    refused = await browser.post(
        "/console/event-types", data=type_form(token, **{"seeds.email": "qa@example.com\nnope"})
    )
    assert refused.status_code == 422
    assert 'data-field="$.seeds.email[1]"' in refused.text
    created = await browser.post(
        "/console/event-types", data=type_form(token, **{"seeds.email": seeds})
    )
    assert created.status_code == 303
    info = await eventtypes.get(live.app.db, "orderPaid")
    assert info.seeds.email == ("qa@example.com", "lead@example.com")
    page = await browser.get(TYPE)
    assert "qa@example.com\nlead@example.com</textarea>" in page.text

    await save_email(live)
    editor = await browser.get(EDITOR)
    assert 'id="send-proof"' in editor.text
    sent = await browser.post(f"{EDITOR}/proofs", data={"version": "1", "_csrf": token})
    assert sent.status_code == 200, sent.text
    assert 'data-address="qa@example.com"' in sent.text
    assert 'data-address="lead@example.com"' in sent.text
    fragment = sent.text
    for _ in range(200):
        if 'data-final="yes"' in fragment:
            break
        assert 'hx-trigger="load delay:500ms"' in fragment  # it reloads itself until done
        path = fragment.split('hx-get="', 1)[1].split('"', 1)[0]
        answer = await browser.get(path)
        assert answer.status_code == 200
        fragment = answer.text
        await asyncio.sleep(0.05)
    assert 'data-final="yes"' in fragment
    assert fragment.count('data-status="processed"') == 2
    assert "hx-get" not in fragment

    # No SMS seeds: refused in the fragment, nothing queued.
    await templates.save(
        live.app.db, "orderPaid", model.Channel.SMS, templates.Draft(model.SmsContent("Hi")), "dana"
    )
    none = await browser.post(f"{TYPE}/sms/proofs", data={"version": "1", "_csrf": token})
    assert none.status_code == 422
    assert 'id="proof-error"' in none.text
    assert "no sms seed addresses" in none.text
    assert await live.stored_count() == 2

    # An operator watches but does not send.
    await add_operator(live, "olga", OPERATOR)
    async with httpx.AsyncClient(base_url=live.url, timeout=15) as other:
        olga = await sign_in(other, "olga")
        forbidden = await other.post(f"{EDITOR}/proofs", data={"version": "1", "_csrf": olga})
        assert forbidden.status_code == 403
        assert (await other.get(path)).status_code == 200
    assert await live.stored_count() == 2
