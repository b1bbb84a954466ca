"""An event type's ctx schema: the fields its events carry, checked at ingest.

A schema is a list of :class:`Field`: a name, a type (``string``, ``number``, ``boolean``,
``date``, ``email``, ``url`` or ``collection``: a list of objects with ``fields`` of their
own), whether it is required, a description and an example. :func:`check_schema` refuses a
schema that does not hold together (with :class:`~tidings.control.errors.Invalid` naming the
field); :func:`compile` turns a checked schema into a :class:`Checker`, built once per schema
and kept, whose :meth:`Checker.check` walks a ctx with precompiled per-field tests (a few
microseconds an event, see ``bench/micro.py``).

A check answers the mismatches as ``path: message`` (``ctx.items[2].price: expected a
number``). Fields the schema does not declare are mismatches too. The SOAP route passes
``lax=True``: XML has no numbers or booleans, so ``"12.5"`` is a number there, ``"true"`` a
boolean, and a collection holding one item may be a single object (see
:mod:`tidings.soap.ctx`).
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from tidings import clock
from tidings.control import errors

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_URL = re.compile(r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#@]+(?:[/?#]\S*)?$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(?:\.[^@\s.]+)+$")
MAX_DEPTH = 4
MAX_FIELDS = 500
#: At most this many mismatches are reported for one event.
MAX_ISSUES = 20


class FieldType(enum.StrEnum):
    """What a ctx field holds."""

    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    EMAIL = "email"
    URL = "url"
    COLLECTION = "collection"


class Field(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One ctx field; a ``collection`` is a list of objects with ``fields`` of their own."""

    name: str
    type: FieldType = FieldType.STRING
    required: bool = False
    description: str = ""
    example: Any = None
    fields: tuple[Field, ...] = ()


Schema = tuple[Field, ...]


def _is_number(value: Any, lax: bool) -> bool:
    if type(value) in (int, float):
        return math.isfinite(value)
    if lax and isinstance(value, str):
        try:
            return math.isfinite(float(value))
        except ValueError:
            return False
    return False


def _is_boolean(value: Any, lax: bool) -> bool:
    return type(value) is bool or (lax and value in ("true", "false", "1", "0"))


def _is_date(value: Any, lax: bool) -> bool:
    if not isinstance(value, str):
        return False
    try:
        clock.parse_iso(value)
    except ValueError:
        return False
    return True


def _is_email(value: Any, lax: bool) -> bool:
    return isinstance(value, str) and len(value) <= 254 and bool(_EMAIL.match(value))


def _is_url(value: Any, lax: bool) -> bool:
    # A regex, not urllib.parse.urlsplit: a third of the cost on the ingest path.
    return isinstance(value, str) and bool(_URL.match(value))


def _is_string(value: Any, lax: bool) -> bool:
    return isinstance(value, str)


_TESTS: dict[FieldType, tuple[Callable[[Any, bool], bool], str]] = {
    FieldType.STRING: (_is_string, "expected a string"),
    FieldType.NUMBER: (_is_number, "expected a number"),
    FieldType.BOOLEAN: (_is_boolean, "expected true or false"),
    FieldType.DATE: (_is_date, "expected an ISO 8601 date"),
    FieldType.EMAIL: (_is_email, "expected an email address"),
    FieldType.URL: (_is_url, "expected an http(s) URL"),
}


def check_schema(fields: Sequence[Field], path: str = "$.ctxSchema") -> None:
    """Raise :class:`~tidings.control.errors.Invalid` (``invalid_schema``, naming the
    field) unless ``fields`` is a usable schema."""
    count = _check_level(fields, path, 1)
    if count > MAX_FIELDS:
        raise errors.Invalid(
            "invalid_schema", f"a schema holds at most {MAX_FIELDS} fields", field=path
        )


def _check_level(fields: Sequence[Field], path: str, depth: int) -> int:
    if depth > MAX_DEPTH:
        raise errors.Invalid(
            "invalid_schema", f"collections nest at most {MAX_DEPTH} deep", field=path
        )
    seen: set[str] = set()
    count = 0
    for index, field in enumerate(fields):
        here = f"{path}[{index}]"
        if not NAME.match(field.name):
            raise errors.Invalid(
                "invalid_schema",
                f"field name {field.name!r} must start with a letter or '_' and hold only "
                "letters, digits and '_' (at most 64)",
                field=f"{here}.name",
            )
        if field.name in seen:
            raise errors.Invalid(
                "invalid_schema", f"field {field.name!r} is declared twice", field=f"{here}.name"
            )
        seen.add(field.name)
        count += 1
        if field.type is FieldType.COLLECTION:
            if not field.fields:
                raise errors.Invalid(
                    "invalid_schema",
                    f"collection {field.name!r} needs the fields of its items",
                    field=f"{here}.fields",
                )
            count += _check_level(field.fields, f"{here}.fields", depth + 1)
        elif field.fields:
            raise errors.Invalid(
                "invalid_schema",
                f"only a collection has fields; {field.name!r} is a {field.type}",
                field=f"{here}.fields",
            )
        if field.example is not None:
            problems = _check_value(field, field.example)
            if problems:
                raise errors.Invalid(
                    "invalid_schema",
                    f"the example of {field.name!r} does not fit: {problems[0]}",
                    field=f"{here}.example",
                )
    return count


def _check_value(field: Field, value: Any) -> list[str]:
    """Mismatches of one value against one field (for examples)."""
    found: list[str] = []
    level = _compile_level((field,))
    _walk(level, {field.name: value}, "example", False, found)
    return found


# A compiled level: field name -> (required, test or None, message, nested level or None).
_Level = dict[str, tuple[bool, Callable[[Any, bool], bool] | None, str, "_Level | None"]]


def _compile_level(fields: Sequence[Field]) -> _Level:
    level: _Level = {}
    for f in fields:
        if f.type is FieldType.COLLECTION:
            level[f.name] = (
                f.required,
                None,
                "expected a list of objects",
                _compile_level(f.fields),
            )
        else:
            test, message = _TESTS[f.type]
            level[f.name] = (f.required, test, message, None)
    return level


def _walk(level: _Level, value: Any, path: str, lax: bool, found: list[str]) -> bool:
    """Check ``value`` (an object) against ``level``; append mismatches to ``found``.
    Returns True once :data:`MAX_ISSUES` are found (stop looking)."""
    for name, (required, test, message, nested) in level.items():
        item = value.get(name)
        if item is None:
            if required and name not in value:
                found.append(f"{path}.{name}: required field is missing")
            elif required:
                found.append(f"{path}.{name}: required field is null")
        elif nested is None:
            assert test is not None
            if not test(item, lax):
                found.append(f"{path}.{name}: {message}")
        else:
            items = [item] if lax and type(item) is dict else item
            if type(items) is not list:
                found.append(f"{path}.{name}: {message}")
            else:
                for index, element in enumerate(items):
                    where = f"{path}.{name}[{index}]"
                    if type(element) is not dict:
                        found.append(f"{where}: expected an object")
                    elif _walk(nested, element, where, lax, found):
                        return True
        if len(found) >= MAX_ISSUES:
            return True
    if len(value) > len(level) or any(k not in level for k in value):
        for key in value:
            if key not in level:
                found.append(f"{path}.{key}: not in the event type's ctx schema")
                if len(found) >= MAX_ISSUES:
                    return True
    return len(found) >= MAX_ISSUES


class Checker:
    """A compiled schema: :meth:`check` lists a ctx's mismatches (empty when it fits)."""

    __slots__ = ("_level", "strict")

    def __init__(self, fields: Sequence[Field], *, strict: bool):
        self._level = _compile_level(fields)
        self.strict = strict

    def check(self, ctx: dict[str, Any], *, lax: bool = False) -> list[str]:
        """The mismatches of ``ctx``, as ``path: message``, at most :data:`MAX_ISSUES`."""
        found: list[str] = []
        _walk(self._level, ctx, "ctx", lax, found)
        return found


def compile(fields: Sequence[Field], *, strict: bool) -> Checker:
    """The checker for a schema (check it first with :func:`check_schema`)."""
    return Checker(fields, strict=strict)


_PLACEHOLDER: dict[FieldType, Any] = {
    FieldType.STRING: "text",
    FieldType.NUMBER: 1,
    FieldType.BOOLEAN: True,
    FieldType.DATE: "2026-01-31T12:00:00Z",
    FieldType.EMAIL: "someone@example.com",
    FieldType.URL: "https://example.com/",
}


def example_ctx(fields: Sequence[Field]) -> dict[str, Any]:
    """A ctx built from the schema's examples (a placeholder of the right type where a
    field has none; a collection gets one item unless its example is given)."""
    ctx: dict[str, Any] = {}
    for f in fields:
        if f.example is not None:
            ctx[f.name] = f.example
        elif f.type is FieldType.COLLECTION:
            ctx[f.name] = [example_ctx(f.fields)]
        else:
            ctx[f.name] = _PLACEHOLDER[f.type]
    return ctx
