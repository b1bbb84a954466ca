"""Validating template versions: syntax with line and column, variables against the ctx
schema, blocks, HTML, channel-specific checks."""

from __future__ import annotations

from tidings import model
from tidings.control import ctxschema, validation

F = ctxschema.Field
SCHEMA = (
    F("name", required=True, example="Ann"),
    F(
        "orders",
        ctxschema.FieldType.COLLECTION,
        fields=(
            F("id"),
            F("lines", ctxschema.FieldType.COLLECTION, fields=(F("sku"),)),
        ),
    ),
)


def issues(
    content: model.Content, **kwargs: object
) -> set[tuple[str, str, int | None, int | None]]:
    found = validation.validate(
        content,
        kwargs.get("variants", {}),  # type: ignore[arg-type]
        schema=kwargs.get("schema", SCHEMA),  # type: ignore[arg-type]
        sources=kwargs.get("sources", {}),  # type: ignore[arg-type]
        default_sender="shop@example.com",
    )
    return {(i.code, i.field, i.line, i.column) for i in found}


def email(html: str, subject: str = "Hi") -> model.EmailContent:
    return model.EmailContent(subject=subject, html=html)


def test_a_good_template_has_no_issues() -> None:
    html = (
        "<table>{% for o in ctx.orders %}<tr><td>{{ o.id }}</td>"
        "{% for l in o.lines %}<td>{{ l.sku }}</td>{% endfor %}</tr>{% endfor %}</table>"
        "{% set greeting = 'Hi' %}{{ greeting }} {{ ctx.name|upper }} {{ recipient.email }}"
        "{{ ctx.orders[0].id }} {{ loop }}<br><img src=x>"
    )
    assert issues(email(html)) == set()


def test_syntax_errors_carry_line_and_column() -> None:
    found = issues(email("<p>\n  ok {% if ctx.name %}\n</p>"))
    assert found == {("template_syntax", "html", 2, 6)}  # the unclosed {% if
    found = issues(email("<p>\n  x {{ ctx.name }\n</p>"))
    assert ("template_syntax", "html", 2, 5) in found


def test_nested_loops_bind_item_fields() -> None:
    html = "{% for o in ctx.orders %}{% for l in o.lines %}{{ l.price }}{% endfor %}{% endfor %}"
    assert issues(email(html)) == {("unknown_variable", "html", 1, 51)}
    assert issues(email("{{ ctx.orders.id }}")) == {("unknown_variable", "html", 1, 4)}


def test_without_a_schema_variables_are_not_checked() -> None:
    assert issues(email("{{ ctx.anything.goes }}"), schema=()) == set()


def test_blocks_are_checked_too() -> None:
    html = '{% include "block:footer" %}{% include "other.html" %}'
    found = issues(email(html), sources={"footer": "{{ ctx.nope }}"})
    assert found == {
        ("invalid_include", "html", 1, None),
        ("unknown_variable", "block:footer", 1, 4),
    }


def test_html_that_will_not_render() -> None:
    found = issues(email("<div>\n<p>para<li>item\n<b>bold</i></div>\n<span>"))
    assert found == {
        ("mismatched_tag", "html", 3, 8),
        ("unclosed_tag", "html", 3, 1),
        ("unclosed_tag", "html", 4, 1),
    }


def test_email_needs_subject_and_body_and_mjml_must_compile() -> None:
    found = issues(model.EmailContent(subject=" ", html=""))
    assert {code for code, *_ in found} == {"missing_subject", "missing_body"}
    found = issues(email("<mjml><mj-body><mj-section></mj-body></mjml>"))
    assert {code for code, *_ in found} == {"mjml_error"}


def test_variants_are_validated_with_their_field_path() -> None:
    found = issues(email("<p>x</p>"), variants={"fr": email("<p>{{ ctx.nom }}</p>")})
    assert found == {("unknown_variable", "variants.fr.html", 1, 7)}


def test_push_and_webhook() -> None:
    assert {c for c, *_ in issues(model.PushContent(title="", body=""))} == {"missing_body"}
    hook = model.WebhookContent(url="https://x.example", body='{"n": {{ ctx.name|tojson }}}')
    assert issues(hook) == set()
    broken = model.WebhookContent(url="https://x.example", body='{"n": {{ ctx.name }}}')
    assert {c for c, *_ in issues(broken)} == {"webhook_body_not_json"}
