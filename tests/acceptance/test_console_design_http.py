"""The console's design pages over plain HTTP (a real server, both databases): test profiles
on the event type page, content blocks, and the editor's language variants; who may change
them, CSRF, and refused input at its field path changing nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import markupsafe
import pytest

from tidings import model
from tidings.control import blocks, eventtypes, templates

from .conftest import Live
from .console import add_operator, sign_in
from .test_control import order_type

OPERATOR = model.OperatorRole.OPERATOR
DESIGNER = model.OperatorRole.DESIGNER
ITEMS = [{"name": "Jacket", "price": 125}]


@pytest.fixture
async def browser(live: Live) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie-keeping client with no API key."""
    async with httpx.AsyncClient(base_url=live.url, timeout=15) as client:
        yield client


async def designer_in(live: Live, browser: httpx.AsyncClient) -> str:
    created = await live.client.post("/api/v1/event-types", json=order_type())
    assert created.status_code == 201, created.text
    await add_operator(live, "dana", DESIGNER)
    return await sign_in(browser, "dana")


def profile_form(token: str, name: str = "jack", **ctx: object) -> dict[str, str]:
    return {
        "_csrf": token,
        "name": name,
        "recipient": '{"email": "jack@example.com"}',
        "ctx": json.dumps({"firstName": "Jack", "items": ITEMS, **ctx}),
    }


async def test_test_profiles_are_listed_created_edited_and_deleted(
    live: Live, browser: httpx.AsyncClient
) -> None:
    token = await designer_in(live, browser)
    url = "/console/event-types/orderConfirmation"
    page = await browser.get(url)
    assert 'id="profiles"' in page.text
    assert "No test profiles yet" in page.text

    saved = await browser.post(f"{url}/profiles", data=profile_form(token))
    assert saved.status_code == 303
    assert saved.headers["location"].endswith("profile=jack&done=saved#profiles")
    page = await browser.get(saved.headers["location"])
    assert "Test profile jack is saved." in page.text
    assert 'data-profile="jack"' in page.text
    (stored,) = await eventtypes.profiles(live.app.db, "orderConfirmation")
    assert stored.recipient.email == "jack@example.com"
    assert stored.ctx["items"] == ITEMS

    # Editing replaces it; the editor offers it.
    edited = await browser.post(f"{url}/profiles", data=profile_form(token, vip=True))
    assert edited.status_code == 303
    (stored,) = await eventtypes.profiles(live.app.db, "orderConfirmation")
    assert stored.ctx["vip"] is True
    editor = await browser.get(f"{url}/email")
    assert '<option value="jack"' in editor.text

    deleted = await browser.post(f"{url}/profiles/jack/delete", data={"_csrf": token})
    assert deleted.status_code == 303
    assert await eventtypes.profiles(live.app.db, "orderConfirmation") == []
    gone = await browser.post(f"{url}/profiles/jack/delete", data={"_csrf": token})
    assert gone.status_code == 404


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"ctx": '{"firstName": "Jack"}'}, "$.ctx.items", "required field is missing"),
        (
            {"ctx": json.dumps({"firstName": "Jack", "items": [{"name": "x", "price": "a"}]})},
            "$.ctx.items[0].price",
            "expected a number",
        ),
        ({"ctx": '{"firstName": "Jack",\n "items": [}'}, "$.ctx", "at line 2, column 12"),
        ({"ctx": '{"firstName": "Jack", "items": []'}, "$.ctx", "truncated"),
        ({"ctx": "[1, 2]"}, "$.ctx", "Expected `object`"),
        ({"recipient": '{"email": 5}'}, "$.recipient.email", "Expected `str | null`"),
        ({"name": "no spaces"}, "$.name", "a profile name"),
    ],
)
async def test_a_refused_test_profile_names_its_field_and_changes_nothing(
    live: Live, browser: httpx.AsyncClient, change: dict[str, str], field: str, words: str
) -> None:
    token = await designer_in(live, browser)
    form = {**profile_form(token), **change}
    refused = await browser.post("/console/event-types/orderConfirmation/profiles", data=form)
    assert refused.status_code == 422
    assert f'data-field="{field}"' in refused.text
    assert words in refused.text
    # The form comes back as typed, open.
    assert str(markupsafe.escape(form["ctx"])) in refused.text
    assert await eventtypes.profiles(live.app.db, "orderConfirmation") == []


async def test_operators_read_test_profiles_and_blocks_but_change_nothing(
    live: Live, browser: httpx.AsyncClient
) -> None:
    await live.client.post("/api/v1/event-types", json=order_type())
    await eventtypes.put_profile(
        live.app.db,
        "orderConfirmation",
        eventtypes.Profile(
            "jack", model.Recipient(email="j@example.com"), {"firstName": "J", "items": ITEMS}
        ),
    )
    await blocks.save(live.app.db, "footer", "<p>Bye</p>", "api")
    await add_operator(live, "olga", OPERATOR)
    token = await sign_in(browser, "olga")
    page = await browser.get("/console/event-types/orderConfirmation")
    assert 'data-profile="jack"' in page.text
    assert "Your role reads test profiles" in page.text
    assert (await browser.get("/console/blocks")).status_code == 200
    assert (await browser.get("/console/blocks/footer")).status_code == 200
    for path, data in (
        ("/console/event-types/orderConfirmation/profiles", profile_form(token, "eve")),
        ("/console/event-types/orderConfirmation/profiles/jack/delete", {"_csrf": token}),
        ("/console/blocks", {"_csrf": token, "name": "header", "source": "<p>Hi</p>"}),
        ("/console/blocks/footer", {"_csrf": token, "source": "<p>changed</p>"}),
        (
            "/console/event-types/orderConfirmation/email/languages/fr/delete",
            {"_csrf": token},
        ),
    ):
        refused = await browser.post(path, data=data)
        assert refused.status_code == 403, path
        assert "needs the designer role" in refused.text
    assert [p.name for p in await eventtypes.profiles(live.app.db, "orderConfirmation")] == ["jack"]
    assert [b.name for b in await blocks.latest(live.app.db)] == ["footer"]
    assert [b.number for b in await blocks.versions(live.app.db, "footer")] == [1]


async def test_design_posts_without_the_csrf_token_change_nothing(
    live: Live, browser: httpx.AsyncClient
) -> None:
    await designer_in(live, browser)
    for path, data in (
        ("/console/event-types/orderConfirmation/profiles", profile_form("forged")),
        ("/console/blocks", {"_csrf": "forged", "name": "header", "source": "x"}),
        ("/console/blocks", {"name": "header", "source": "x"}),
    ):
        refused = await browser.post(path, data=data)
        assert refused.status_code == 403, path
        assert "expired" in refused.text
    assert await eventtypes.profiles(live.app.db, "orderConfirmation") == []
    assert await blocks.latest(live.app.db) == []


async def test_blocks_are_created_versioned_and_show_where_they_are_used(
    live: Live, browser: httpx.AsyncClient
) -> None:
    token = await designer_in(live, browser)
    page = await browser.get("/console/blocks")
    assert "No content blocks yet" in page.text
    created = await browser.post(
        "/console/blocks",
        data={"_csrf": token, "name": "footer", "source": "<p>Bye {{ firstName }}</p>"},
    )
    assert created.status_code == 303
    assert created.headers["location"] == "/console/blocks/footer?saved=1"
    again = await browser.post(
        "/console/blocks/footer", data={"_csrf": token, "source": "<p>Goodbye</p>"}
    )
    assert again.status_code == 303
    assert [b.number for b in await blocks.versions(live.app.db, "footer")] == [2, 1]
    # A template including it is listed on the block's page.
    draft = templates.Draft(
        model.SmsContent(text='Hello {% include "block:footer" %}'), variants={}
    )
    await templates.save(live.app.db, "orderConfirmation", model.Channel.SMS, draft, "api")
    page = await browser.get("/console/blocks/footer")
    assert page.status_code == 200
    assert "Goodbye" in page.text
    assert 'data-version="1"' in page.text
    assert 'data-version="2"' in page.text
    assert 'href="/console/event-types/orderConfirmation/sms"' in page.text
    listed = await browser.get("/console/blocks")
    assert 'data-block="footer"' in listed.text
    # An older version is shown on request.
    old = await browser.get("/console/blocks/footer?version=1")
    assert "Bye {{ firstName }}" in old.text


@pytest.mark.parametrize(
    ("path", "data", "status", "words"),
    [
        ("/console/blocks", {"name": "1bad", "source": "x"}, 422, "a block name starts"),
        ("/console/blocks", {"name": "ok", "source": "a\x00b"}, 422, "without NUL"),
        ("/console/blocks/missing", {"source": "x"}, 404, "no content block"),
    ],
)
async def test_refused_blocks_change_nothing(
    live: Live,
    browser: httpx.AsyncClient,
    path: str,
    data: dict[str, str],
    status: int,
    words: str,
) -> None:
    token = await designer_in(live, browser)
    refused = await browser.post(path, data={"_csrf": token, **data})
    assert refused.status_code == status
    assert words in refused.text
    assert await blocks.latest(live.app.db) == []
    assert (await browser.get("/console/blocks/missing")).status_code == 404


async def test_language_variants_are_added_previewed_edited_and_removed(
    live: Live, browser: httpx.AsyncClient
) -> None:
    token = await designer_in(live, browser)
    editor = "/console/event-types/orderConfirmation/sms"
    saved = await browser.post(
        f"{editor}/versions", data={"_csrf": token, "text": "Hello {{ firstName }}"}
    )
    assert saved.status_code == 303
    # A new variant starts from the default content.
    page = await browser.get(f"{editor}?language=fr")
    assert 'name="language" value="fr"' in page.text
    assert "It starts as a copy of the default content" in page.text
    assert "Hello {{ firstName }}" in page.text
    form = {"_csrf": token, "base": "1", "language": "fr", "text": "Bonjour {{ firstName }}"}
    shown = await browser.post(f"{editor}/preview", data=form)
    assert shown.status_code == 200
    assert 'class="bubble">Bonjour' in shown.text
    saved = await browser.post(f"{editor}/versions", data=form)
    assert saved.status_code == 303
    assert saved.headers["location"].endswith("version=2&saved=1&language=fr")
    version = await templates.get(live.app.db, "orderConfirmation", model.Channel.SMS, 2)
    assert version.content == model.SmsContent(text="Hello {{ firstName }}")
    assert version.variants == {"fr": model.SmsContent(text="Bonjour {{ firstName }}")}
    page = await browser.get(saved.headers["location"])
    assert 'data-language="fr" class="active"' in page.text
    assert "Bonjour {{ firstName }}" in page.text
    # The default content is edited without touching the variant.
    default = {"_csrf": token, "base": "2", "language": "", "text": "Hi {{ firstName }}"}
    assert (await browser.post(f"{editor}/versions", data=default)).status_code == 303
    version = await templates.get(live.app.db, "orderConfirmation", model.Channel.SMS, 3)
    assert version.content == model.SmsContent(text="Hi {{ firstName }}")
    assert set(version.variants) == {"fr"}

    removed = await browser.post(f"{editor}/languages/fr/delete", data={"_csrf": token})
    assert removed.status_code == 303
    assert removed.headers["location"].endswith("version=4&removed=fr")
    version = await templates.get(live.app.db, "orderConfirmation", model.Channel.SMS, 4)
    assert version.variants == {}
    assert version.content == model.SmsContent(text="Hi {{ firstName }}")
    again = await browser.post(f"{editor}/languages/fr/delete", data={"_csrf": token})
    assert again.status_code == 404


async def test_a_bad_language_tag_is_refused_and_saves_nothing(
    live: Live, browser: httpx.AsyncClient
) -> None:
    token = await designer_in(live, browser)
    editor = "/console/event-types/orderConfirmation/sms"
    page = await browser.get(f"{editor}?language=not+a+tag")
    assert page.status_code == 422
    assert "is not a language tag" in page.text
    refused = await browser.post(
        f"{editor}/versions", data={"_csrf": token, "language": "x!", "text": "Hi"}
    )
    assert refused.status_code == 422
    assert "is not a language tag" in refused.text
    assert await templates.versions(live.app.db, "orderConfirmation", model.Channel.SMS) == []
