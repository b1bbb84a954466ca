"""Rendering SMS, push and webhook templates, and template folders with several channels."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tidings import model
from tidings.control import files
from tidings.engine import render, route

S = model.EventStatus
APNS_TOKEN = "a1" * 32
FCM_TOKEN = "dXk3:APA91bH-x_y" + "Q" * 140


def event(ctx: dict[str, object], **recipient: str) -> model.Event:
    return model.Event(
        id=987654321,
        type="orderShipped",
        channel=None,
        recipient=model.Recipient(**recipient),
        ctx=ctx,
        priority=5,
        status=S.PROCESSING,
        source="api",
        received_at=1_700_000_000_000_000,
        scheduled_at=None,
        expires_at=1_800_000_000_000_000,
        due_at=0,
        attempts=1,
    )


def publication(content: model.Content, version_id: int = 7) -> model.Publication:
    return model.Publication(
        1, "orderShipped", model.CONTENT_CHANNEL[type(content)], version_id, content
    )


@pytest.fixture
def renderer() -> render.Renderer:
    return render.Renderer(default_sender="Shop <shop@example.com>")


def rendered(renderer: render.Renderer, content: model.Content, ev: model.Event) -> object:
    return renderer.render(renderer.compile(publication(content)), ev)


def test_sms_renders_text_sender_and_expiry(renderer: render.Renderer) -> None:
    content = model.SmsContent(text="Hi {{ ctx.firstName }}, order {{ ctx.id }} shipped.\n")
    msg = rendered(renderer, content, event({"firstName": "Zoë", "id": 42}, mobilePhone="+336"))
    assert msg == model.SmsMessage(
        event_id=987654321,
        reference="987654321",
        to="+336",
        text="Hi Zoë, order 42 shipped.",
        sender="",
        expires_at=1_800_000_000_000_000,
    )


def test_sms_text_is_not_html_escaped(renderer: render.Renderer) -> None:
    msg = rendered(renderer, model.SmsContent("{{ ctx.x }}"), event({"x": "<b>&"}))
    assert isinstance(msg, model.SmsMessage)
    assert msg.text == "<b>&"


def test_push_renders_every_field(renderer: render.Renderer) -> None:
    content = model.PushContent(
        title="Hi\n{{ ctx.firstName }}",
        body="Your {{ ctx.item }} is on its way",
        data={"orderId": "{{ ctx.id }}", "screen": "orders"},
        sound="chime.caf",
        badge="{{ ctx.count }}",
        collapse_id="order-{{ ctx.id }}",
    )
    ev = event({"firstName": "Jo", "item": "jacket", "id": 42, "count": 3}, pushToken=APNS_TOKEN)
    msg = rendered(renderer, content, ev)
    assert isinstance(msg, model.PushMessage)
    assert msg.platform is model.PushPlatform.APNS
    assert msg.token == APNS_TOKEN
    assert (msg.title, msg.body) == ("Hi Jo", "Your jacket is on its way")
    assert msg.data == {"orderId": "42", "screen": "orders"}
    assert (msg.sound, msg.badge, msg.collapse_id) == ("chime.caf", 3, "order-42")
    assert msg.expires_at == 1_800_000_000_000_000
    assert uuid.UUID(msg.message_id).version == 5
    # The same event gets the same id on every attempt.
    assert rendered(renderer, content, ev).message_id == msg.message_id  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("token", "platform", "bare"),
    [
        (APNS_TOKEN, model.PushPlatform.APNS, APNS_TOKEN),
        (APNS_TOKEN.upper(), model.PushPlatform.APNS, APNS_TOKEN.upper()),
        (FCM_TOKEN, model.PushPlatform.FCM, FCM_TOKEN),
        ("fcm:" + APNS_TOKEN, model.PushPlatform.FCM, APNS_TOKEN),
        ("apns:short", model.PushPlatform.APNS, "short"),
        ("a1" * 31, model.PushPlatform.FCM, "a1" * 31),
    ],
)
def test_push_platform_from_token(token: str, platform: model.PushPlatform, bare: str) -> None:
    assert render.push_platform(token) is platform
    assert render.push_token(token) == bare


def test_push_badge_must_be_a_number(renderer: render.Renderer) -> None:
    content = model.PushContent(title="t", body="b", badge="{{ ctx.n }}")
    with pytest.raises(render.RenderError, match="badge: 'three' is not a whole number"):
        rendered(renderer, content, event({"n": "three"}, pushToken=FCM_TOKEN))
    msg = rendered(renderer, content, event({}, pushToken=FCM_TOKEN))
    assert isinstance(msg, model.PushMessage)
    assert msg.badge is None


def test_webhook_renders_json_url_and_headers(renderer: render.Renderer) -> None:
    content = model.WebhookContent(
        url="https://hooks.example.com/orders/{{ ctx.id }}",
        body='{"name": {{ ctx.name|tojson }}, "items": {{ ctx["items"]|tojson }}}',
        headers={"X-Order": "{{ ctx.id }}"},
    )
    hostile = 'Jo "</script>\n\u2028'
    ev = event({"id": 42, "name": hostile, "items": [1, 2]}, externalId="c-1")
    msg = rendered(renderer, content, ev)
    assert isinstance(msg, model.WebhookMessage)
    assert msg.url == "https://hooks.example.com/orders/42"
    assert json.loads(msg.body) == {"name": hostile, "items": [1, 2]}
    assert msg.headers == (("X-Order", "42"),)


def test_webhook_body_that_is_not_json_fails_to_render(renderer: render.Renderer) -> None:
    content = model.WebhookContent(url="https://h.example.com", body='{"name": {{ ctx.name }}}')
    with pytest.raises(render.RenderError, match="not JSON"):
        rendered(renderer, content, event({"name": "Jo"}, externalId="c-1"))


def test_compile_errors_name_the_field(renderer: render.Renderer) -> None:
    with pytest.raises(render.RenderError, match="title: line 1"):
        renderer.check(model.PushContent(title="{% if %}", body=""))
    with pytest.raises(render.RenderError, match="url: line 1"):
        renderer.check(model.WebhookContent(url="{{", body="{}"))


def test_compile_email_refuses_another_channel(renderer: render.Renderer) -> None:
    with pytest.raises(render.RenderError, match="not an email template"):
        renderer.compile_email(publication(model.SmsContent("x")))


def test_webhook_routes_to_its_url_without_a_recipient_address() -> None:
    pub = publication(model.WebhookContent(url="https://h.example.com/x", body="{}"))
    types = [model.EventType("orderShipped", "Order shipped", model.Channel.WEBHOOK, False)]
    routing = route.Routing.build(1, types, [pub])
    decision = route.decide(
        event({}, externalId="c-1"), routing, quarantined=set(), now=0, deadline=1
    )
    assert decision == route.Deliver(pub, model.Channel.WEBHOOK, "https://h.example.com/x")


# ---------------------------------------------------------------- template folders


def folder(tmp_path: Path, toml: str = "", **texts: str) -> Path:
    path = tmp_path / "orderShipped"
    path.mkdir()
    (path / "template.toml").write_text(toml)
    for name, text in texts.items():
        (path / name.replace("_", ".")).write_text(text)
    return path


def test_folder_with_every_channel(tmp_path: Path) -> None:
    toml = """
label = "Order shipped"
default_channel = "sms"
[email]
sender = "Shop <shop@example.com>"
[sms]
sender = "SHOP"
[push]
title = "Shipped"
badge = "1"
[push.data]
orderId = "{{ ctx.id }}"
[webhook]
url = "https://hooks.example.com/x"
[webhook.headers]
X-Kind = "shipped"
"""
    path = folder(
        tmp_path,
        toml,
        subject_txt="Order {{ ctx.id }}",
        email_txt="Shipped",
        sms_txt="Order {{ ctx.id }} shipped\n",
        push_txt="Order {{ ctx.id }}",
        webhook_json='{"id": {{ ctx.id|tojson }}}',
    )
    read = files.read_folder(path)
    assert read.label == "Order shipped"
    assert read.default_channel is model.Channel.SMS
    assert read.contents[model.Channel.SMS] == model.SmsContent(
        "Order {{ ctx.id }} shipped", "SHOP"
    )
    assert read.contents[model.Channel.PUSH] == model.PushContent(
        title="Shipped", body="Order {{ ctx.id }}", data={"orderId": "{{ ctx.id }}"}, badge="1"
    )
    assert read.contents[model.Channel.WEBHOOK] == model.WebhookContent(
        url="https://hooks.example.com/x",
        body='{"id": {{ ctx.id|tojson }}}',
        headers={"X-Kind": "shipped"},
    )
    email = read.contents[model.Channel.EMAIL]
    assert isinstance(email, model.EmailContent)
    assert email.sender_address == "shop@example.com"


def test_folder_default_channel_is_email_then_first(tmp_path: Path) -> None:
    path = folder(tmp_path, '[push]\ntitle = "t"\n', sms_txt="x", push_txt="y")
    assert files.read_folder(path).default_channel is model.Channel.SMS


@pytest.mark.parametrize(
    ("toml", "texts", "message"),
    [
        ("", {"push_txt": "b"}, "a push template needs \\[push\\] title"),
        ("", {"webhook_json": "{}"}, "a webhook template needs \\[webhook\\] url"),
        ("", {"sms_txt": "  \n"}, "sms.txt is empty"),
        ('default_channel = "fax"', {"sms_txt": "x"}, "'fax' is not one of"),
        ('default_channel = "email"', {"sms_txt": "x"}, "has no subject.txt"),
        ("[sms]\nsender = 1\n[sms.x", {"sms_txt": "x"}, "template.toml"),
        ("sms = 3", {"sms_txt": "x"}, "\\[sms\\] must be a table"),
        ('[webhook]\nurl = "u"\nheaders = 3', {"webhook_json": "{}"}, "webhook.headers"),
    ],
)
def test_folder_errors_name_the_file(
    tmp_path: Path, toml: str, texts: dict[str, str], message: str
) -> None:
    with pytest.raises(files.TemplateFolderError, match=message):
        files.read_folder(folder(tmp_path, toml, **texts))


def test_folder_without_any_template(tmp_path: Path) -> None:
    path = folder(tmp_path, "", notes_md="x")
    with pytest.raises(files.TemplateFolderError, match="has no template"):
        files.read_folder(path)
    assert files.find_folders(tmp_path) == []


def test_tojson_writes_a_missing_value_as_null(renderer: render.Renderer) -> None:
    content = model.WebhookContent(
        url="https://h.example.com",
        body='{"a": {{ ctx.missing|tojson }}, "b": {{ ctx.x.y|tojson }}}',
    )
    msg = rendered(renderer, content, event({}, externalId="c-1"))
    assert isinstance(msg, model.WebhookMessage)
    assert json.loads(msg.body) == {"a": None, "b": None}
