"""Compiling content for publication: blocks, MJML, CSS inlining and text parts, with the
Jinja markup kept where it stands."""

from __future__ import annotations

import pytest

from tidings import model
from tidings.control import bundle, errors


def test_css_is_inlined_and_a_loop_between_rows_stays_in_its_table() -> None:
    html = (
        "<html><head><style>td { color: red }</style></head><body><table>"
        "{% for i in ctx.items %}<tr><td>{{ i.name }} {{ 1 < 2 }}</td></tr>{% endfor %}"
        "</table></body></html>"
    )
    out = bundle.inline_css(html)
    assert '<td style="color: red;">{{ i.name }} {{ 1 < 2 }}</td>' in out
    assert out.index("<table>") < out.index("{% for i in ctx.items %}") < out.index("<tr>")
    assert "<style" not in out


def test_remote_stylesheets_are_not_fetched() -> None:
    html = '<html><head><link rel="stylesheet" href="http://127.0.0.1:9/x.css"></head><body><p>x</p></body></html>'
    assert "<p>x</p>" in bundle.inline_css(html + "<style>p{}</style>")


def test_mjml_compiles_with_jinja_inside() -> None:
    source = (
        "<mjml><mj-body><mj-section><mj-column>{% for i in ctx.items %}"
        "<mj-text>{{ i.name }}</mj-text>{% endfor %}</mj-column></mj-section></mj-body></mjml>"
    )
    html = bundle.compile_mjml(source)
    assert "<mj-" not in html
    assert "{% for i in ctx.items %}" in html
    assert "{{ i.name }}" in html
    with pytest.raises(errors.Invalid) as caught:
        bundle.compile_mjml("<mjml><mj-body><mj-section></mj-body></mjml>")
    assert caught.value.code == "mjml_error"


def test_text_part_is_generated_when_empty() -> None:
    content = model.EmailContent(
        subject="s",
        html="<h1>Order</h1><table>{% for i in ctx.items %}<tr><td>{{ i.name }}</td></tr>"
        "{% endfor %}</table><p>Bye</p>",
    )
    compiled = bundle.compile_content(content, {})
    assert isinstance(compiled, model.EmailContent)
    text = compiled.text
    assert text.index("Order") < text.index("{% for i in ctx.items %}") < text.index("{{ i.name }}")
    assert text.index("{% endfor %}") < text.index("Bye")
    kept = bundle.compile_content(model.EmailContent(subject="s", html="<p>x</p>", text="mine"), {})
    assert isinstance(kept, model.EmailContent)
    assert kept.text == "mine"


def test_blocks_are_resolved_nested_and_missing_ones_refused() -> None:
    used: dict[str, str] = {}
    content = model.SmsContent(text='Hi {% include "block:sig" %}')
    compiled = bundle.compile_content(
        content, {"sig": "-- {% include 'block:name' %}", "name": "Shop"}, used
    )
    assert compiled == model.SmsContent(text="Hi -- Shop")
    assert set(used) == {"sig", "name"}
    with pytest.raises(errors.Invalid) as caught:
        bundle.compile_content(content, {})
    assert caught.value.code == "unknown_block"
    with pytest.raises(errors.Invalid) as caught:
        bundle.compile_content(content, {"sig": '{% include "block:sig" %}'})
    assert caught.value.code == "block_too_deep"
