"""Which language variant of a template an event gets.

A publication carries its template's variants by language (``fr``, ``de-CH``...) besides the
content in the fallback language. :func:`pick` is pure: the event type's ``languageField``
(``ctx.language``, ``recipient.language``...) names where the event says its language; an
exact variant wins (case-insensitive), then the primary language (``de`` for ``de-CH``),
then the fallback.

The worker calls it with the active publication's variants (read from its bundle), and
renders the variant it picks, or the fallback content when it picks none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from tidings import model

T = TypeVar("T")


def language_of(event: model.Event, field: str) -> str:
    """The language an event names at ``field`` (``ctx.language``), lower case; '' if none."""
    if not field:
        return ""
    root, *path = field.split(".")
    value: Any
    if root == "ctx":
        value = event.ctx
    elif root == "recipient":
        value = msgspec_fields(event.recipient)
    else:
        return ""
    for step in path:
        if not isinstance(value, dict):
            return ""
        value = value.get(step)
    return value.strip().lower().replace("_", "-") if isinstance(value, str) else ""


def msgspec_fields(recipient: model.Recipient) -> dict[str, Any]:
    """A recipient's fields as a dict."""
    return {name: getattr(recipient, name) for name in recipient.__struct_fields__}


def pick(variants: Mapping[str, T], event: model.Event, field: str) -> T | None:
    """The variant for the event's language, or None: then the fallback content is used."""
    name = variant(variants, event, field)
    return variants[name] if name else None


def variant(variants: Mapping[str, Any], event: model.Event, field: str) -> str:
    """The name of the variant for the event's language (as ``variants`` spells it), or ''
    for the fallback."""
    wanted = language_of(event, field)
    if not wanted or not variants:
        return ""
    by_name = {name.lower(): name for name in variants}
    return by_name.get(wanted) or by_name.get(wanted.partition("-")[0], "")
