"""Rendering: sandboxed Jinja2, compiled once per version, lenient on missing data."""

from __future__ import annotations

import pytest

from tidings import model
from tidings.engine import render

S = model.EventStatus


def event(ctx: dict[str, object], email: str = "jack@example.com") -> model.Event:
    return model.Event(
        id=123456789,
        type="cartAbandonment",
        channel=None,
        recipient=model.Recipient(email=email),
        ctx=ctx,
        priority=5,
        status=S.PROCESSING,
        source="api",
        received_at=1_700_000_000_000_000,
        scheduled_at=None,
        expires_at=None,
        due_at=0,
        attempts=1,
    )


def publication(version_id: int = 1, **content: object) -> model.Publication:
    values: dict[str, object] = {
        "subject": "Hi {{ ctx.firstName }}",
        "html": "<p>{{ ctx.firstName }}</p>",
        "text": "Hi {{ ctx.firstName }}",
    }
    values.update(content)
    return model.Publication(
        1, "cartAbandonment", model.Channel.EMAIL, version_id, model.EmailContent(**values)
    )  # type: ignore[arg-type]


@pytest.fixture
def renderer() -> render.Renderer:
    return render.Renderer(default_sender="Shop <shop@example.com>")


def test_renders_ctx_and_recipient(renderer: render.Renderer) -> None:
    pub = publication(
        html="<p>{{ ctx.firstName }} {{ recipient.email }} "
        "{% for i in ctx.items %}[{{ i.name }}]{% endfor %}</p>"
    )
    msg = renderer.render_email(
        renderer.compile_email(pub),
        event({"firstName": "Jack", "items": [{"name": "a"}, {"name": "b"}]}),
    )
    assert msg.subject == "Hi Jack"
    assert msg.html == "<p>Jack jack@example.com [a][b]</p>"
    assert msg.text == "Hi Jack"
    assert msg.to == model.EmailAddress("jack@example.com")
    assert msg.sender == model.EmailAddress("shop@example.com", "Shop")
    assert msg.message_id == "123456789.tidings@example.com"


def test_html_is_escaped_text_is_not(renderer: render.Renderer) -> None:
    msg = renderer.render_email(
        renderer.compile_email(publication()), event({"firstName": "<b>Jo & Co</b>"})
    )
    assert msg.html == "<p>&lt;b&gt;Jo &amp; Co&lt;/b&gt;</p>"
    assert msg.text == "Hi <b>Jo & Co</b>"


def test_missing_values_render_empty(renderer: render.Renderer) -> None:
    pub = publication(subject="Hi {{ ctx.customer.name }}!")
    msg = renderer.render_email(renderer.compile_email(pub), event({}))
    assert msg.subject == "Hi !"


def test_subject_cannot_carry_newlines(renderer: render.Renderer) -> None:
    msg = renderer.render_email(
        renderer.compile_email(publication()), event({"firstName": "x\r\nBcc: evil@example.com"})
    )
    assert "\n" not in msg.subject
    assert "\r" not in msg.subject


def test_sandbox_blocks_python_internals(renderer: render.Renderer) -> None:
    pub = publication(subject="{{ ctx.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(render.RenderError):
        renderer.render_email(renderer.compile_email(pub), event({}))


def test_syntax_errors_name_the_part_and_line(renderer: render.Renderer) -> None:
    with pytest.raises(render.RenderError, match="html: line 2"):
        renderer.check_email(model.EmailContent(subject="x", html="ok\n{% if %}"))


def test_compiled_once_per_version(renderer: render.Renderer) -> None:
    assert renderer.compile_email(publication(1)) is renderer.compile_email(publication(1))
    assert renderer.compile_email(publication(2)) is not renderer.compile_email(publication(1))


def test_template_sender_and_headers(renderer: render.Renderer) -> None:
    pub = publication(
        sender_name="Care",
        sender_address="care@example.org",
        reply_to="Help <help@example.org>",
        headers={"X-Order": "{{ ctx.id }}"},
    )
    msg = renderer.render_email(renderer.compile_email(pub), event({"id": 42}))
    assert msg.sender == model.EmailAddress("care@example.org", "Care")
    assert msg.reply_to == model.EmailAddress("help@example.org", "Help")
    assert msg.headers == (("X-Order", "42"),)
