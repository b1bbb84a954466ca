"""The ctx schema: checking schemas, checking events against them, examples."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from tidings.control import ctxschema, errors

F = ctxschema.Field
T = ctxschema.FieldType

SCHEMA = (
    F("firstName", required=True),
    F("age", T.NUMBER),
    F("vip", T.BOOLEAN),
    F("born", T.DATE),
    F("email", T.EMAIL),
    F("site", T.URL),
    F("items", T.COLLECTION, fields=(F("price", T.NUMBER, required=True), F("sku"))),
)


def check(ctx: dict[str, Any], *, lax: bool = False) -> list[str]:
    return ctxschema.compile(SCHEMA, strict=True).check(ctx, lax=lax)


def test_a_fitting_ctx_has_no_issues() -> None:
    ctx = {
        "firstName": "Jack",
        "age": 41.5,
        "vip": False,
        "born": "1985-01-31",
        "email": "jack@example.com",
        "site": "https://example.com/jack",
        "items": [{"price": 1, "sku": "A"}, {"price": 2.5}],
    }
    assert check(ctx) == []


@pytest.mark.parametrize(
    ("ctx", "issue"),
    [
        ({}, "ctx.firstName: required field is missing"),
        ({"firstName": None}, "ctx.firstName: required field is null"),
        ({"firstName": 1}, "ctx.firstName: expected a string"),
        ({"firstName": "J", "age": "41"}, "ctx.age: expected a number"),
        ({"firstName": "J", "age": True}, "ctx.age: expected a number"),
        ({"firstName": "J", "vip": "yes"}, "ctx.vip: expected true or false"),
        ({"firstName": "J", "born": "31/01/1985"}, "ctx.born: expected an ISO 8601 date"),
        ({"firstName": "J", "email": "jack@"}, "ctx.email: expected an email address"),
        ({"firstName": "J", "site": "ftp://x"}, "ctx.site: expected an http(s) URL"),
        ({"firstName": "J", "items": {"price": 1}}, "ctx.items: expected a list of objects"),
        ({"firstName": "J", "items": [1]}, "ctx.items[0]: expected an object"),
        (
            {"firstName": "J", "items": [{"price": 1}, {"price": 2}, {"price": "x"}]},
            "ctx.items[2].price: expected a number",
        ),
        ({"firstName": "J", "items": [{}]}, "ctx.items[0].price: required field is missing"),
        ({"firstName": "J", "extra": 1}, "ctx.extra: not in the event type's ctx schema"),
        (
            {"firstName": "J", "items": [{"price": 1, "x": 2}]},
            "ctx.items[0].x: not in the event type's ctx schema",
        ),
    ],
)
def test_mismatches_name_the_field(ctx: dict[str, Any], issue: str) -> None:
    assert check(ctx) == [issue]


def test_soap_strings_are_numbers_and_booleans_and_one_item_is_a_collection() -> None:
    ctx = {"firstName": "J", "age": "41.5", "vip": "true", "items": {"price": "3"}}
    assert check(ctx, lax=True) == []
    assert check({"firstName": "J", "age": "many"}, lax=True) == ["ctx.age: expected a number"]


def test_hostile_ctx_reports_at_most_twenty_issues() -> None:
    ctx = {"firstName": "J", "items": [{"price": "x"} for _ in range(10_000)]}
    found = check(ctx)
    assert len(found) == ctxschema.MAX_ISSUES
    assert found[0] == "ctx.items[0].price: expected a number"
    many_unknown = {f"k{i}": i for i in range(1000)}
    assert len(check({"firstName": "J", **many_unknown})) == ctxschema.MAX_ISSUES


@pytest.mark.parametrize(
    ("schema", "field"),
    [
        ((F("a"), F("a")), "$.ctxSchema[1].name"),
        ((F("1a"),), "$.ctxSchema[0].name"),
        ((F("a", T.COLLECTION),), "$.ctxSchema[0].fields"),
        ((F("a", fields=(F("b"),)),), "$.ctxSchema[0].fields"),
        ((F("a", T.NUMBER, example="x"),), "$.ctxSchema[0].example"),
        (
            (F("a", T.COLLECTION, fields=(F("b", T.NUMBER),), example=[{"b": "x"}]),),
            "$.ctxSchema[0].example",
        ),
    ],
)
def test_bad_schemas_are_refused_naming_the_field(
    schema: tuple[ctxschema.Field, ...], field: str
) -> None:
    with pytest.raises(errors.Invalid) as caught:
        ctxschema.check_schema(schema)
    assert caught.value.code == "invalid_schema"
    assert caught.value.field == field


def test_collections_nest_at_most_four_deep() -> None:
    level = F("leaf")
    for depth in range(5):
        level = F(f"c{depth}", T.COLLECTION, fields=(level,))
    with pytest.raises(errors.Invalid, match="nest at most 4"):
        ctxschema.check_schema((level,))


def test_example_ctx_uses_examples_and_typed_placeholders() -> None:
    assert ctxschema.example_ctx(
        (
            F("name", example="Ann"),
            F("n", T.NUMBER),
            F("l", T.COLLECTION, fields=(F("x", T.BOOLEAN),)),
        )
    ) == {
        "name": "Ann",
        "n": 1,
        "l": [{"x": True}],
    }
    assert check(ctxschema.example_ctx(SCHEMA)) == []


def test_a_schema_reads_from_json() -> None:
    text = b'[{"name": "items", "type": "collection", "fields": [{"name": "p", "type": "number"}]}]'
    schema = msgspec.json.decode(text, type=ctxschema.Schema)
    assert schema[0].fields[0].type is T.NUMBER
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'[{"name": "a", "kind": "x"}]', type=ctxschema.Schema)
