"""Translating Adobe Campaign's personalisation syntax into Tidings templates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import pytest
from typer.testing import CliRunner

from tidings import cli
from tidings.control import adobe_import, adobe_js
from tidings.engine import render


def _render(template: str, ctx: dict[str, Any], **recipient: str) -> str:
    env = render._environment(autoescape=False)
    return env.from_string(template).render(
        ctx=ctx, recipient=recipient, event={"id": "1", "type": "t", "receivedAt": "now"}
    )


def _clean(source: str) -> str:
    translation = adobe_import.translate(source)
    assert translation.problems == [], translation.problems
    return translation.text


@pytest.mark.parametrize(
    ("adobe", "jinja"),
    [
        ("<%= rtEvent.ctx.firstName %>", "{{ ctx.firstName }}"),
        ("<%=rtEvent.email%>", "{{ recipient.email }}"),
        ("<%= rtEvent.mobilePhone %>", "{{ recipient.mobilePhone }}"),
        ("<%= rtEvent.externalId %>", "{{ recipient.externalId }}"),
        ("<%= rtEvent.registrationToken %>", "{{ recipient.pushToken }}"),
        ("<%= batchEvent.ctx.a.b %>", "{{ ctx.a.b }}"),
        ("<%= rtEvent.id %> <%= rtEvent.type %>", "{{ event.id }} {{ event.type }}"),
        ("<%= rtEvent.origin %>", "{{ ctx._rtEvent.origin }}"),
        ("<%= rtEvent.mobileApp.@uuid %>", "{{ ctx._rtEvent.mobileApp['@uuid'] }}"),
        ("<%= rtEvent.ctx.article.@num %>", "{{ ctx.article['@num'] }}"),
        ("<%= rtEvent.ctx['first-name'] %>", "{{ ctx['first-name'] }}"),
        ("<%= rtEvent.ctx.items[0].name %>", "{{ ctx.items[0].name }}"),
        ("<%= rtEvent.ctx.name.toUpperCase() %>", "{{ (ctx.name)|upper }}"),
        ("<%= rtEvent.ctx.items.length %>", "{{ (ctx.items)|length }}"),
        ("<%= escapeUrl(rtEvent.ctx.url) %>", "{{ (ctx.url)|urlencode }}"),
        ("<%= parseInt(rtEvent.ctx.n) + 1 %>", "{{ (ctx.n)|int + 1 }}"),
        ('<%= "Dear " + rtEvent.ctx.name %>', "{{ 'Dear ' ~ ctx.name }}"),
        ("<%= rtEvent.ctx.a ? 'yes' : 'no' %>", "{{ ('yes' if ctx.a else 'no') }}"),
        ("<%= rtEvent.ctx.a === null %>", "{{ ctx.a == none }}"),
    ],
)
def test_expressions(adobe: str, jinja: str) -> None:
    assert _clean(adobe) == jinja


def test_conditions_render_as_adobe_would() -> None:
    template = _clean(
        '<% if (rtEvent.ctx.vip == "1" && !rtEvent.ctx.blocked) { %>VIP'
        "<% } else if (rtEvent.ctx.amount > 100 || rtEvent.ctx.gold) { %>big"
        "<% } else { %>plain<% } %>"
    )
    assert template.startswith("{% if ctx.vip == '1' and not ctx.blocked %}VIP{% elif ")
    assert _render(template, {"vip": "1"}) == "VIP"
    assert _render(template, {"vip": "1", "blocked": "x"}) == "plain"
    assert _render(template, {"amount": 150}) == "big"
    assert _render(template, {}) == "plain"


def test_for_each_loops_over_one_item_or_many() -> None:
    template = _clean(
        "<% for each (var a in rtEvent.ctx.orderdetails.article) { %>"
        "[<%= a.name %>#<%= a.@num %>]<% } %>"
    )
    one = {"orderdetails": {"article": {"@num": "1", "name": "Key"}}}
    two = {
        "orderdetails": {"article": [{"@num": "1", "name": "Key"}, {"@num": "2", "name": "Cable"}]}
    }
    assert _render(template, one) == "[Key#1]"
    assert _render(template, two) == "[Key#1][Cable#2]"
    assert _render(template, {}) == ""
    assert (
        _render(
            _clean("<% for each (var s in rtEvent.ctx.tags) { %><%= s %>,<% } %>"), {"tags": "solo"}
        )
        == "solo,"
    )


def test_counting_and_key_loops_and_variables() -> None:
    counting = _clean(
        "<% for (var i = 0; i < rtEvent.ctx.items.length; i++) { %>"
        "<%= i %>=<%= rtEvent.ctx.items[i] %> <% } %>"
    )
    assert _render(counting, {"items": ["a", "b"]}) == "0=a 1=b "
    keys = _clean("<% for (var k in rtEvent.ctx.m) { %><%= k %>;<% } %>")
    assert _render(keys, {"m": {"x": "1", "y": "2"}}) == "x;y;"
    assert _render(keys, {"m": ["p", "q"]}) == "0;1;"
    variables = _clean('<% var who = rtEvent.ctx.name; %>Hi <%= who + "!" %>')
    assert _render(variables, {"name": "Ann"}) == "Hi Ann!"


def test_several_statements_in_one_block_and_comments() -> None:
    template = _clean("<% var a = 1; /* note */ if (a == 1) { // why\n %>one<% } %>")
    assert _render(template, {}) == "one"


def test_literal_jinja_syntax_stays_text() -> None:
    template = _clean(
        "{{ not a variable }} {% nor a tag %} {# nor a comment #} <%= rtEvent.ctx.x %>"
    )
    assert (
        _render(template, {"x": "X"})
        == "{{ not a variable }} {% nor a tag %} {# nor a comment #} X"
    )


def test_untranslatable_parts_are_reported_with_their_line_and_kept_as_comments() -> None:
    source = (
        "<p>Hello</p>\n"
        "<%@ include view='MirrorPage' %>\n"
        "<p><%= formatDate(rtEvent.created, '%2D/%2M') %></p>\n"
        "  <%= recipient.firstName %>\n"
        "<% while (true) { %>loop<% } %>\n"
        "<%= rtEvent.ctx.a.substring(1) %>\n"
        "<% } %>\n"
        "<% if (rtEvent.ctx.x) { %>never closed\n"
    )
    translation = adobe_import.translate(source, "email.html")
    found = [(p.line, p.column, p.message) for p in translation.problems]
    assert found == [
        (2, 1, "directives have no translation"),
        (3, 4, "the function formatDate() has no translation"),
        (4, 3, "unknown variable 'recipient'"),
        (5, 4, "this statement has no translation"),
        (6, 1, "the method substring() has no translation"),
        (7, 4, "'}' closes no block"),
        (8, 4, "this if block is never closed"),
    ]
    assert all(p.part == "email.html" for p in translation.problems)
    assert "{# untranslated (line 2): <%@ include view='MirrorPage' %> #}" in translation.text
    assert "{# untranslated (line 4): <%= recipient.firstName %> #}" in translation.text
    # what was translated still compiles and renders
    assert _render(translation.text, {"x": "1"}).startswith("<p>Hello</p>")
    assert str(translation.problems[0]) == (
        "email.html:2:1: directives have no translation: <%@ include view='MirrorPage' %>"
    )


def test_a_comment_cannot_be_closed_by_the_untranslated_source() -> None:
    translation = adobe_import.translate("<%= evil('#}{{ 7*7 }}') %>")
    assert len(translation.problems) == 1
    assert _render(translation.text, {}) == ""


def test_the_translation_of_a_whole_email_compiles() -> None:
    imported = adobe_import.import_email(
        "orderConfirmation",
        subject="Order <%= rtEvent.ctx.number %>",
        html="<p><%= rtEvent.ctx.name %></p>",
        text="Hi <%= rtEvent.ctx.name %>",
    )
    assert imported.problems == []
    render.Renderer(default_sender="T <t@example.com>").check_email(imported.content)
    assert imported.content.subject == "Order {{ ctx.number }}"


def test_expression_helper_refuses_trailing_tokens() -> None:
    assert adobe_js.expression("rtEvent.ctx.a") == "ctx.a"
    with pytest.raises(ValueError, match="unexpected"):
        adobe_js.expression("rtEvent.ctx.a rtEvent.ctx.b")
    with pytest.raises(ValueError, match="unexpected character"):
        adobe_js.expression("rtEvent.ctx.a # b")
    with pytest.raises(jinja2.TemplateSyntaxError):  # sanity: the checker catches bad Jinja
        jinja2.Environment().parse("{% if %}")


# ------------------------------------------------------------------ the CLI verb


def test_cli_writes_a_template_folder(tmp_path: Path) -> None:
    html = tmp_path / "adobe.html"
    html.write_text("<p>Hi <%= rtEvent.ctx.firstName %></p>", "utf-8")
    text = tmp_path / "adobe.txt"
    text.write_text("Hi <%= rtEvent.ctx.firstName %>", "utf-8")
    result = CliRunner().invoke(
        cli.cli,
        [
            "templates",
            "import-adobe",
            str(html),
            "--type",
            "welcome",
            "--text",
            str(text),
            "--subject",
            "Welcome <%= rtEvent.ctx.firstName %>",
            "--out",
            str(tmp_path / "templates"),
        ],
    )
    assert result.exit_code == 0, result.output
    folder = tmp_path / "templates" / "welcome"
    assert (folder / "email.html").read_text("utf-8") == "<p>Hi {{ ctx.firstName }}</p>"
    assert (folder / "email.txt").read_text("utf-8") == "Hi {{ ctx.firstName }}"
    assert (folder / "subject.txt").read_text("utf-8") == "Welcome {{ ctx.firstName }}\n"
    assert 'label = "welcome"' in (folder / "template.toml").read_text("utf-8")


def test_cli_reports_problems_and_writes_nothing_unless_asked(tmp_path: Path) -> None:
    html = tmp_path / "adobe.html"
    html.write_text("<p>x</p>\n<%= formatDate(rtEvent.created) %>\n", "utf-8")
    args = ["templates", "import-adobe", str(html), "--type", "welcome", "--subject", "Hi"]
    args += ["--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli.cli, args)
    assert result.exit_code == 1
    assert f"{html}:2:1: the function formatDate() has no translation" in result.output
    assert not (tmp_path / "out").exists()
    kept = CliRunner().invoke(cli.cli, [*args, "--keep-untranslated"])
    assert kept.exit_code == 0, kept.output
    assert "untranslated (line 2)" in (tmp_path / "out" / "welcome" / "email.html").read_text()
