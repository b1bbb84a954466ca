"""The console's design pages in a real browser (Chromium, both databases): code fields
highlighted by CodeMirror while the form and the live preview keep working, test profiles,
language variants and content blocks; screenshots of each in ``test-artifacts/screenshots/``."""

from __future__ import annotations

from playwright.async_api import Page, expect

from . import test_console_browser as shared
from .conftest import Live
from .console import add_operator, fill_code
from .test_control import order_type

# The Chromium and page fixtures, screenshots and sign-in of the console's browser tests.
browser = shared.browser
page = shared.page
shoot = shared.shoot
shoot_editor = shared.shoot_editor
sign_in = shared.sign_in

JACK = '{\n  "firstName": "Jack",\n  "items": [{"name": "Leather jacket", "price": 125}]\n}'


async def test_code_fields_are_highlighted_and_still_feed_the_preview(
    live: Live, page: Page
) -> None:
    await live.client.post("/api/v1/event-types", json=order_type(channels=["email"]))
    await add_operator(live, "ada")
    await sign_in(page)
    await page.goto("/console/event-types/orderConfirmation/email")
    await expect(page.locator("html.code-enhanced")).to_have_count(1)
    html = page.locator('.CodeMirror[data-field="html"]')
    await expect(html).to_be_visible()
    await expect(page.locator("#editor textarea[name=html]")).to_be_hidden()
    # Typing into the highlighted field reaches the textarea and the preview.
    await html.click()
    await page.keyboard.type("<h1>Hello {{ ctx.firstName }}</h1>")
    await expect(html.locator(".cm-tag").first).to_be_visible()
    await expect(html.locator(".cm-jinja")).to_have_text("{{ ctx.firstName }}")
    frame = page.frame_locator("iframe[name=email-preview]")
    await expect(frame.locator("h1")).to_have_text("Hello Jack")
    assert (
        "Hello {{ ctx.firstName }}"
        in await page.locator("#editor textarea[name=html]").input_value()
    )
    await page.locator("#editor input[name=subject]").fill("Your order")
    await page.click("#save")
    await expect(page.locator(".notice.good")).to_have_text("Version 1 is saved.")
    await expect(html).to_contain_text("Hello {{ ctx.firstName }}")
    await shoot_editor(page, "editor-highlighted")


async def test_test_profiles_languages_and_blocks(live: Live, page: Page) -> None:
    await live.client.post("/api/v1/event-types", json=order_type(channels=["email"]))
    await add_operator(live, "ada")
    await sign_in(page)
    await page.goto("/console/event-types/orderConfirmation")

    # A test profile whose ctx misses a required field is refused at its path.
    await page.click("#new-profile summary")
    new = page.locator("#new-profile form")
    await new.locator("input[name=name]").fill("jack")
    await fill_code(new.locator("textarea[name=ctx]"), '{"firstName": "Jack"}')
    await new.locator("button[type=submit]").click()
    await expect(page.locator('.fielderror[data-field="$.ctx.items"]')).to_be_visible()
    await expect(page.locator(".notice.bad")).to_contain_text("required field is missing")
    await shoot(page, "test-profile-refused")
    await fill_code(page.locator("#new-profile textarea[name=ctx]"), JACK)
    await page.locator("#new-profile button[type=submit]").click()
    await expect(page.locator(".notice.good")).to_have_text("Test profile jack is saved.")
    await page.click('[data-profile="jack"] summary')
    await expect(page.locator('[data-profile="jack"] .CodeMirror').last).to_contain_text(
        "Leather jacket"
    )
    await shoot(page, "test-profiles")

    # The editor previews with it; a French variant is added, previewed and saved.
    await page.click('#templates [data-channel="email"]')
    editor = page.locator("#editor")
    await editor.locator("select[name=profile]").select_option("jack")
    await editor.locator("input[name=subject]").fill("Order for {{ ctx.firstName }}")
    await fill_code(
        editor.locator("textarea[name=html]"),
        "<h1>Thank you, {{ ctx.firstName }}</h1>\n<p>{{ ctx['items'][0].name }}</p>",
    )
    frame = page.frame_locator("iframe[name=email-preview]")
    await expect(frame.locator("p")).to_have_text("Leather jacket")
    await page.click("#save")
    await expect(page.locator(".notice.good")).to_have_text("Version 1 is saved.")
    await page.locator("#add-language input[name=language]").fill("fr")
    await page.locator("#add-language button").click()
    await expect(page.locator('#languages [data-language="fr"]')).to_have_class("active")
    await expect(page.locator("#language-hint")).to_contain_text("copy of the default content")
    await fill_code(
        page.locator("#editor textarea[name=html]"), "<h1>Merci, {{ ctx.firstName }}</h1>"
    )
    await expect(frame.locator("h1")).to_have_text("Merci, Jack")
    await page.click("#save")
    await expect(page.locator(".notice.good")).to_have_text("Version 2 is saved.")
    await expect(page.locator('#languages [data-language="fr"]')).to_have_class("active")
    await shoot_editor(page, "editor-language")
    await page.click('#languages [data-language=""]')
    await expect(frame.locator("h1")).to_have_text("Thank you, Jack")

    # A content block, included by the template, lists it.
    await page.click("nav >> text=Content blocks")
    form = page.locator("#create-block")
    await form.locator("input[name=name]").fill("footer")
    await fill_code(
        form.locator("textarea[name=source]"), "<p>Tidings shop · {{ ctx.firstName }}</p>"
    )
    await form.locator("button[type=submit]").click()
    await expect(page.locator(".notice.good")).to_have_text("footer is saved.")
    await page.goto("/console/event-types/orderConfirmation/email")
    await fill_code(
        page.locator("#editor textarea[name=html]"),
        '<h1>Thank you, {{ ctx.firstName }}</h1>\n{% include "block:footer" %}',
    )
    await expect(frame.locator("p")).to_have_text("Tidings shop · Jack")
    await page.click("#save")
    await expect(page.locator(".notice.good")).to_have_text("Version 3 is saved.")
    await page.goto("/console/blocks/footer")
    await fill_code(
        page.locator("#edit-block textarea[name=source]"), "<p>Tidings shop, Lyon · see you</p>"
    )
    await page.click("#save-block")
    await expect(page.locator("#history tbody tr")).to_have_count(2)
    await expect(page.locator("#usages")).to_contain_text("orderConfirmation")
    await shoot(page, "block")
    await page.click("nav >> text=Content blocks")
    await expect(page.locator('#blocks [data-block="footer"]')).to_contain_text("v2")
    await shoot(page, "blocks")
