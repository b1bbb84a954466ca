"""The console in a real browser: Playwright driving Debian's Chromium (``/usr/bin/chromium``,
headless) against a live server, on both databases. Each test leaves screenshots of the pages
it saw in ``test-artifacts/screenshots/``.

``scripts/test-services`` installs Chromium; without it these tests fail and say so.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tidings import model

from .conftest import EXAMPLE_CTX, Live
from .console import PASSWORD, add_operator, fill_code

CHROMIUM = os.environ.get("TIDINGS_TEST_CHROMIUM", "/usr/bin/chromium")
HAVE_CHROMIUM = Path(CHROMIUM).is_file()
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium."""
    if not HAVE_CHROMIUM:
        pytest.fail(f"no Chromium at {CHROMIUM}: run scripts/test-services (apt-get chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser, live: Live, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A fresh browser page at 1400x900 whose script errors fail the test."""
    context = await browser.new_context(
        viewport={"width": 1400, "height": 900}, base_url=live.url, accept_downloads=True
    )
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    # Script errors and CSP violations; a refused request (401, 403) is what some tests want.
    opened.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    try:
        yield opened
    finally:
        await context.close()
    assert errors == [], errors


async def shoot(page: Page, name: str) -> None:
    """Keep a screenshot of the whole page (test-artifacts/screenshots/<name>-<db>.png)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.wait_for_load_state("networkidle")  # framed messages painted too
    db = "postgresql" if "postgresql" in os.environ.get("PYTEST_CURRENT_TEST", "") else "sqlite"
    await page.screenshot(path=str(SHOTS / f"{name}-{db}.png"), full_page=True)


async def sign_in(page: Page, name: str = "ada", password: str = PASSWORD) -> None:
    await page.goto("/console/")
    await expect(page).to_have_url(re.compile(r"/console/login"))
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")


async def post_cart(live: Live, address: str) -> str:
    event = await live.post_event(
        type="cartAbandonment", recipient={"email": address}, ctx=dict(EXAMPLE_CTX)
    )
    return str(event["id"])


async def test_sign_in(live: Live, page: Page) -> None:
    await add_operator(live, "ada")
    await sign_in(page, "ada", "not the password")
    await expect(page.locator(".notice.bad")).to_have_text("wrong name or password")
    await shoot(page, "login-refused")

    # A form whose CSRF token was tampered with is refused, whatever the password.
    await page.fill("input[name=name]", "ada")
    await page.fill("input[name=password]", PASSWORD)
    await page.locator("input[name=_csrf]").evaluate("field => { field.value = 'forged'; }")
    await page.click("button[type=submit]")
    await expect(page.locator(".notice.bad")).to_contain_text("expired")
    await expect(page).to_have_url(re.compile(r"/console/login"))

    await page.fill("input[name=name]", "ada")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Dashboard")
    await expect(page.locator(".who strong")).to_have_text("ada")
    await page.click("text=Sign out")
    await expect(page).to_have_url(re.compile(r"/console/login"))
    await shoot(page, "login")


async def test_dashboard_matches_events_posted_through_the_api(live: Live, page: Page) -> None:
    await add_operator(live, "ada", model.OperatorRole.OPERATOR)
    await live.client.post("/api/v1/quarantine", json={"address": "gone@example.com"})
    sent = [await post_cart(live, f"d{i}@example.com") for i in range(3)]
    ignored = await post_cart(live, "gone@example.com")
    for event_id in sent:
        await live.wait_status(event_id, "processed")
    await live.wait_status(ignored, "ignored")

    await sign_in(page)
    received = page.locator("#received")
    await expect(received.locator('[data-status="processed"] [data-period="hour"]')).to_have_text(
        "3"
    )
    await expect(received.locator('[data-status="ignored"] [data-period="hour"]')).to_have_text("1")
    await expect(received.locator('[data-status="processed"] [data-period="day"]')).to_have_text(
        "3"
    )
    await expect(received.locator('[data-total="hour"]')).to_have_text("4")
    await expect(page.locator('[data-gauge="pending_queue"] .value')).to_contain_text("0")
    await expect(page.locator('[data-gauge="error_rate"] .badge')).to_have_text("ok")
    await expect(page.locator('[data-gauge="pending_queue"] .thresholds')).to_contain_text(
        "warning 100 · alert 400"
    )
    # The queue card is refreshed by HTMX polling.
    async with page.expect_response(re.compile(r"/console/queue$")) as polled:
        pass
    assert (await polled.value).status == 200
    await expect(page.locator('[data-queue="pending"]')).to_have_text("0")
    await expect(page.locator("#chart-day")).to_be_visible()
    await shoot(page, "dashboard")


async def test_explorer_finds_an_event_and_opens_its_message(live: Live, page: Page) -> None:
    await add_operator(live, "ada")
    other = await post_cart(live, "someone@example.com")
    event_id = await post_cart(live, "jack@example.com")
    await live.wait_status(event_id, "processed")
    await live.wait_status(other, "processed")

    await sign_in(page)
    await page.click("nav >> text=Events")
    await page.fill("input[name=recipient]", "jack@example.com")
    await page.click("text=Search")
    rows = page.locator("#events tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator(".badge")).to_have_text("processed")
    await shoot(page, "events")
    await rows.first.locator("a").click()

    await expect(page.locator("#status")).to_have_text("processed")
    await expect(page.locator("#deliveries")).to_contain_text("delivered")
    await expect(page.locator("pre.code").first).to_contain_text("Leather motorbike jacket")
    await shoot(page, "event")

    await page.click("#outbox-link")
    await expect(page.locator("h1")).to_contain_text("Jack")
    frame = page.locator("iframe.message")
    assert await frame.get_attribute("sandbox") == ""
    await expect(page.frame_locator("iframe.message").locator("body")).to_contain_text(
        "Leather motorbike jacket"
    )
    await expect(page.locator("dl.facts")).to_contain_text("jack@example.com")
    await shoot(page, "message")

    await page.click("nav >> text=Outbox")
    await expect(page.locator("#outbox tbody tr")).to_have_count(2)
    await shoot(page, "outbox")


async def test_quarantine_an_address_then_its_event_ends_ignored(live: Live, page: Page) -> None:
    await add_operator(live, "ada", model.OperatorRole.OPERATOR)
    await sign_in(page)
    await page.click("nav >> text=Quarantine")
    await expect(page.locator(".empty")).to_contain_text("No address is quarantined")
    await page.fill("#add-quarantine input[name=address]", "blocked@example.com")
    await page.fill("#add-quarantine input[name=reason]", "asked us to stop")
    await page.click("#add-quarantine button")
    await expect(page.locator(".notice.good")).to_contain_text("blocked@example.com")
    await expect(page.locator('#quarantine [data-address="blocked@example.com"]')).to_contain_text(
        "console:ada"
    )
    await shoot(page, "quarantine")

    event_id = await post_cart(live, "blocked@example.com")
    await live.wait_status(event_id, "ignored")
    await page.goto(f"/console/events/{event_id}")
    await expect(page.locator("#status")).to_have_text("ignored")

    await page.goto("/console/quarantine")
    await page.click('#quarantine [data-address="blocked@example.com"] button')
    await expect(page.locator(".notice.good")).to_contain_text("released")
    again = await post_cart(live, "blocked@example.com")
    await live.wait_status(again, "processed")


async def test_create_and_revoke_an_api_key(live: Live, page: Page) -> None:
    await add_operator(live, "ada")
    await sign_in(page)
    await page.click("nav >> text=API keys")
    await page.fill("#create-key input[name=name]", "shop backend")
    await page.click("#create-key button")
    key = (await page.locator("#new-key").inner_text()).strip()
    assert key.startswith("tid_")
    await shoot(page, "keys")

    event = {"type": "cartAbandonment", "recipient": {"email": "k@example.com"}, "ctx": {}}
    async with httpx.AsyncClient(
        base_url=live.url, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        assert (await client.post("/api/v1/events", json=event)).status_code == 201
        prefix = key.split("_")[1]
        await page.goto("/console/keys")
        await expect(page.locator("#new-key")).to_have_count(0)  # shown once only
        await page.click(f'#keys [data-prefix="{prefix}"] button')
        await expect(page.locator(f'#keys [data-prefix="{prefix}"]')).to_contain_text("revoked")
        refused = await client.post("/api/v1/events", json=event)
        assert refused.status_code == 401


async def test_reports_csv_downloads_the_right_rows(live: Live, page: Page, tmp_path: Path) -> None:
    await add_operator(live, "ada")
    ids = [await post_cart(live, f"csv{i}@example.com") for i in range(4)]
    for event_id in ids:
        await live.wait_status(event_id, "processed")
    await sign_in(page)
    await page.click("nav >> text=Reports")
    await page.click("text=last hour")
    await expect(page.locator("#report-event-history tbody tr")).to_have_count(1)
    await shoot(page, "reports")
    async with page.expect_download() as downloading:
        await page.click("#csv-event-history")
    download = await downloading.value
    assert download.suggested_filename == "event-history-hour.csv"
    saved = tmp_path / "history.csv"
    await download.save_as(saved)
    rows = list(csv.DictReader(saved.open()))
    assert [(r["eventType"], r["events"], r["sent"], r["success"]) for r in rows] == [
        ("cartAbandonment", "4", "4", "4")
    ]


async def test_other_pages(live: Live, page: Page) -> None:
    await add_operator(live, "ada")
    await sign_in(page)
    await page.click("nav >> text=Instances")
    await expect(page.locator("#readiness")).to_have_text("ready")
    await shoot(page, "instances")
    await page.click("nav >> text=Operators")
    await expect(page.locator("#operators")).to_contain_text("ada")
    await shoot(page, "operators")
    await page.goto("/console/no-such-page")
    await expect(page.locator("h1")).to_have_text("Page not found")
    await shoot(page, "not-found")


async def shoot_editor(page: Page, name: str) -> None:
    """A screenshot of the template editor once its preview frame shows a document (the
    frame is re-posted on each preview, which keeps "network idle" from being a signal)."""
    await expect(page.frame_locator("iframe[name=email-preview]").locator("body")).to_be_visible()
    db = "postgresql" if "postgresql" in os.environ.get("PYTEST_CURRENT_TEST", "") else "sqlite"
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}-{db}.png"), full_page=True)


ORDER_SCHEMA = (
    '[{"name": "firstName", "type": "string", "required": true, "example": "Jack"},\n'
    ' {"name": "orderId", "type": "string", "example": "A-1001"}]'
)


async def test_design_publish_and_deliver_an_email_template(live: Live, page: Page) -> None:
    await add_operator(live, "ada")
    await sign_in(page)
    await page.click("nav >> text=Event types")
    await expect(page.locator('#event-types [data-type="cartAbandonment"]')).to_be_visible()
    form = page.locator("#create-type")
    await form.locator("input[name=name]").fill("orderPaid")
    await form.locator("input[name=label]").fill("Order paid")
    await form.locator("input[name=description]").fill("Sent when an order is paid")
    await fill_code(
        form.locator("textarea[name=ctxSchema]"), '[{"name": "firstName", "type": "colour"}]'
    )
    await form.locator("button[type=submit]").click()
    await expect(page.locator('.fielderror[data-field="$.ctxSchema[0].type"]')).to_be_visible()
    await shoot(page, "event-types-refused")
    await fill_code(page.locator("#create-type textarea[name=ctxSchema]"), ORDER_SCHEMA)
    await page.locator("#create-type input[value=strict]").check()
    await page.locator('#create-type textarea[name="seeds.email"]').fill("qa@example.com\n")
    await page.locator("#create-type button[type=submit]").click()
    await expect(page.locator(".notice.good")).to_have_text("orderPaid is created.")
    await expect(page.locator("#example-native")).to_contain_text("A-1001")
    await expect(page.locator("#examples")).to_contain_text("EVTorderPaid")
    await shoot(page, "event-type")

    await page.click('#templates [data-channel="email"]')
    editor = page.locator("#editor")
    await editor.locator("input[name=subject]").fill("Order {{ ctx.orderId }} is paid")
    await editor.locator("input[name=sender_address]").fill("shop@example.com")
    await fill_code(
        editor.locator("textarea[name=html]"),
        "<h1>Thank you, {{ ctx.firstName }}!</h1>\n<p>Order {{ ctx.orderId }} is on its way.</p>",
    )
    await fill_code(editor.locator("textarea[name=text]"), "Thank you, {{ ctx.firstName }}!")
    await expect(page.locator("#preview-subject")).to_have_text("Order A-1001 is paid")
    email = page.frame_locator("iframe[name=email-preview]")
    await expect(email.locator("h1")).to_have_text("Thank you, Jack!")
    # The preview follows the subject as it is typed.
    await editor.locator("input[name=subject]").fill("Paid: order {{ ctx.orderId }}")
    await expect(page.locator("#preview-subject")).to_have_text("Paid: order A-1001")
    await page.click('#widths [data-width="mobile"]')
    await expect(page.locator("#framewrap")).to_have_class(re.compile("mobile"))
    await shoot_editor(page, "editor-mobile")
    await page.click('#widths [data-width="desktop"]')

    # A broken template: the finding names the field, line and column.
    await fill_code(editor.locator("textarea[name=html]"), "<h1>Hi</h1>\n<p>{{ ctx.firstName </p>")
    syntax = page.locator('#issues [data-code="template_syntax"]')
    await expect(syntax).to_contain_text("html · line 2")
    await expect(page.locator("#preview-failed")).to_be_visible()
    await shoot_editor(page, "editor-invalid")
    await fill_code(
        editor.locator("textarea[name=html]"),
        "<h1>Thank you, {{ ctx.firstName }}!</h1>\n<p>Order {{ ctx.orderId }} is on its way.</p>",
    )
    await expect(page.locator("#issues")).to_contain_text("no findings")

    await page.click("#save")
    await expect(page.locator(".notice.good")).to_have_text("Version 1 is saved.")
    await expect(page.locator("#published")).to_have_text("not published")
    # A proof of the unpublished draft goes to the seed address; its result refreshes itself.
    await expect(page.locator("#publishing")).to_contain_text("qa@example.com")
    await page.click("#send-proof")
    seed = page.locator('#proof-result [data-address="qa@example.com"]')
    await expect(seed.locator("[data-status]")).to_have_text("processed", timeout=15_000)
    await expect(page.locator("#proof-result")).to_have_attribute("data-final", "yes")
    await shoot_editor(page, "editor-proof")
    await editor.locator("input[name=subject]").fill("Order {{ ctx.orderId }}: paid, thank you")
    await expect(page.locator("#preview-subject")).to_have_text("Order A-1001: paid, thank you")
    await page.click("#save")
    await expect(page.locator(".notice.good")).to_have_text("Version 2 is saved.")
    await page.click("#publish")
    await expect(page.locator(".notice.good")).to_have_text("Version 2 is published.")
    await expect(page.locator("#publish-result")).to_contain_text("#")
    await expect(page.locator("#published")).to_have_text("v2 published")
    await shoot_editor(page, "editor")
    await page.click("#compare")
    await expect(page.locator('.diff[data-field="subject"] .add')).to_contain_text(
        "paid, thank you"
    )
    await shoot(page, "template-diff")

    event = await live.post_event(
        type="orderPaid",
        recipient={"email": "jack@example.com"},
        ctx={"firstName": "Jack", "orderId": "B-2002"},
    )
    await live.wait_status(event["id"], "processed")
    await page.click("nav >> text=Events")
    await page.fill("input[name=recipient]", "jack@example.com")
    await page.click("text=Search")
    row = page.locator("#events tbody tr").first
    await expect(row.locator(".badge")).to_have_text("processed")
    await row.locator("a").click()
    await expect(page.locator("#status")).to_have_text("processed")
    await page.click("#outbox-link")
    await expect(page.locator("h1")).to_have_text("Order B-2002: paid, thank you")
    await expect(page.frame_locator("iframe.message").locator("h1")).to_have_text(
        "Thank you, Jack!"
    )
    await shoot(page, "editor-delivered")
