"""Event type targeting operations (the API and the CLI call these): whether an event type's
events are reconciled with profiles, what happens when none matches, and its HTTP
enrichment source. Checked here for every surface: :class:`InvalidTargeting` names the field.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import msgspec

from tidings import clock, model
from tidings.store import targeting as store
from tidings.store.database import Database

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
MAX_TIMEOUT = 30.0
MAX_TTL = 86_400.0


class InvalidTargeting(ValueError):
    """Targeting that cannot be stored; ``field`` is a JSON path like ``$.enrichmentUrl``."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class UnknownEventType(LookupError):
    """No event type of that name."""


class TargetingIn(msgspec.Struct, forbid_unknown_fields=True):
    """An event type's targeting as the API and CLI take it (durations in seconds)."""

    reconcileBy: model.ReconcileBy = model.ReconcileBy.NONE
    onMissing: model.OnMissing = model.OnMissing.SEND
    enrichmentUrl: str | None = None
    enrichmentMethod: str = "POST"
    enrichmentTimeout: float = 2.0
    enrichmentTtl: float = 60.0
    enrichmentHeaders: dict[str, str] = {}


def prepare(event_type: str, data: TargetingIn, now: int) -> model.Targeting:
    """The targeting ``data`` describes, checked."""
    url = (data.enrichmentUrl or "").strip()
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
            raise InvalidTargeting("$.enrichmentUrl", f"{url!r} is not an http(s) URL")
        if any(c in url for c in "\x00\r\n "):
            raise InvalidTargeting("$.enrichmentUrl", "the URL holds spaces or control characters")
    method = data.enrichmentMethod.upper()
    if method not in ("GET", "POST"):
        raise InvalidTargeting("$.enrichmentMethod", "enrichmentMethod is GET or POST")
    if not 0 < data.enrichmentTimeout <= MAX_TIMEOUT:
        raise InvalidTargeting(
            "$.enrichmentTimeout", f"enrichmentTimeout is more than 0 and at most {MAX_TIMEOUT:g} s"
        )
    if not 0 <= data.enrichmentTtl <= MAX_TTL:
        raise InvalidTargeting("$.enrichmentTtl", f"enrichmentTtl is 0 to {MAX_TTL:g} s")
    for name, value in data.enrichmentHeaders.items():
        if not _HEADER_NAME.match(name):
            raise InvalidTargeting(f"$.enrichmentHeaders.{name}", "not a header name")
        if any(c in value for c in "\x00\r\n") or len(value) > 4000:
            raise InvalidTargeting(
                f"$.enrichmentHeaders.{name}",
                "a header value is one line of at most 4000 characters",
            )
    return model.Targeting(
        event_type=event_type,
        reconcile_by=data.reconcileBy,
        on_missing=data.onMissing,
        enrichment_url=url,
        enrichment_method=method,
        enrichment_timeout=data.enrichmentTimeout,
        enrichment_ttl=data.enrichmentTtl,
        enrichment_headers=dict(data.enrichmentHeaders),
        updated_at=now,
    )


async def get(db: Database, event_type: str) -> model.Targeting:
    """An event type's targeting (the defaults if it has none set)."""
    async with db.connection() as conn:
        if not await store.event_type_exists(conn, event_type):
            raise UnknownEventType(event_type)
        found = await store.get_targeting(conn, event_type)
    return found or model.Targeting(event_type)


async def put(db: Database, event_type: str, data: TargetingIn) -> model.Targeting:
    """Set an event type's targeting; workers pick it up with their next claim."""
    targeting = prepare(event_type, data, clock.now_us())
    async with db.transaction() as conn:
        if not await store.event_type_exists(conn, event_type):
            raise UnknownEventType(event_type)
        await store.put_targeting(conn, targeting)
    return targeting


async def delete(db: Database, event_type: str) -> bool:
    """Back to no reconciliation and no enrichment; False if none was set."""
    async with db.transaction() as conn:
        if not await store.event_type_exists(conn, event_type):
            raise UnknownEventType(event_type)
        return await store.delete_targeting(conn, event_type)


def describe(t: model.Targeting) -> dict[str, object]:
    """A targeting as the API answers it (and the CLI prints it)."""
    return {
        "eventType": t.event_type,
        "reconcileBy": str(t.reconcile_by),
        "onMissing": str(t.on_missing),
        "enrichmentUrl": t.enrichment_url or None,
        "enrichmentMethod": t.enrichment_method,
        "enrichmentTimeout": t.enrichment_timeout,
        "enrichmentTtl": t.enrichment_ttl,
        "enrichmentHeaders": t.enrichment_headers,
        "updatedAt": clock.format_iso(t.updated_at) if t.updated_at else None,
    }
