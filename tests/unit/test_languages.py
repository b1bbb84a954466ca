"""Picking a language variant."""

from __future__ import annotations

from typing import Any

from tidings import model
from tidings.engine import languages


def event(ctx: dict[str, Any], recipient: model.Recipient | None = None) -> model.Event:
    return model.Event(
        id=1,
        type="t",
        channel=None,
        recipient=recipient or model.Recipient(email="a@example.com", externalId="FR"),
        ctx=ctx,
        priority=5,
        status=model.EventStatus.PENDING,
        source="api",
        received_at=0,
        scheduled_at=None,
        expires_at=None,
        due_at=0,
        attempts=0,
    )


VARIANTS = {"fr": "French", "de-CH": "Swiss German", "de": "German"}


def test_exact_then_primary_language_then_none() -> None:
    assert languages.pick(VARIANTS, event({"language": "fr"}), "ctx.language") == "French"
    assert languages.pick(VARIANTS, event({"language": "FR-ca"}), "ctx.language") == "French"
    assert languages.pick(VARIANTS, event({"language": "de_CH"}), "ctx.language") == "Swiss German"
    assert languages.pick(VARIANTS, event({"language": "de-AT"}), "ctx.language") == "German"
    assert languages.pick(VARIANTS, event({"language": "it"}), "ctx.language") is None
    assert languages.pick(VARIANTS, event({}), "ctx.language") is None
    assert languages.pick(VARIANTS, event({"language": 3}), "ctx.language") is None
    assert languages.pick(VARIANTS, event({"language": "fr"}), "") is None
    assert languages.pick({}, event({"language": "fr"}), "ctx.language") is None


def test_nested_fields_and_the_recipient() -> None:
    nested = event({"customer": {"locale": "de"}})
    assert languages.pick(VARIANTS, nested, "ctx.customer.locale") == "German"
    assert languages.pick(VARIANTS, event({"customer": "x"}), "ctx.customer.locale") is None
    assert languages.pick(VARIANTS, event({}), "recipient.externalId") == "French"
