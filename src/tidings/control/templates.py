"""Template drafts and versions, one template per event type and channel.

Every save is a new numbered version with its author and time; the newest version is the
draft. A version holds the content in the event type's fallback language and, optionally,
``variants`` by language (same channel). Two versions can be compared field by field
(:func:`diff`, unified diffs), and an old version restored as the new draft (:func:`restore`
saves a copy as the next version).
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import msgspec

from tidings import clock, model
from tidings.control import errors, eventtypes
from tidings.store import design
from tidings.store.database import Database

LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
MAX_FIELD = 500_000


class Draft(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What is saved: the content (tagged with its channel: ``"type": "email"``) and
    language variants of the same channel."""

    content: model.Content
    variants: dict[str, model.Content] = {}


class Version(msgspec.Struct, frozen=True):
    """A saved version."""

    eventType: str
    channel: model.Channel
    number: int
    author: str
    createdAt: str
    content: model.Content
    variants: dict[str, model.Content]


class VersionSummary(msgspec.Struct, frozen=True):
    """A version in a list."""

    number: int
    author: str
    createdAt: str


class FieldDiff(msgspec.Struct, frozen=True):
    """The unified diff of one field (``subject``, ``variants.fr.html``...)."""

    field: str
    diff: str


_content = msgspec.json.Decoder(model.Content)
_variants = msgspec.json.Decoder(dict[str, model.Content])
_encode = msgspec.json.Encoder().encode


def _version(row: design.VersionRow) -> Version:
    return Version(
        eventType=row.event_type,
        channel=row.channel,
        number=row.number,
        author=row.author,
        createdAt=clock.format_iso(row.created_at),
        content=_content.decode(row.content),
        variants=_variants.decode(row.variants) if row.variants else {},
    )


def check(channel: model.Channel, draft: Draft) -> None:
    """:class:`~tidings.control.errors.Invalid` unless ``draft`` can be saved as a version
    of the ``channel`` template."""
    for where, content in (("$.content", draft.content), *_variant_items(draft)):
        if model.CONTENT_CHANNEL[type(content)] is not channel:
            raise errors.Invalid(
                "wrong_channel",
                f"this is the {channel} template; the content is "
                f"{model.CONTENT_CHANNEL[type(content)]}",
                field=f"{where}.type",
            )
        for name, value in _fields(content).items():
            if "\x00" in value or len(value) > MAX_FIELD:
                raise errors.Invalid(
                    "invalid_field",
                    f"{name} must be at most {MAX_FIELD} characters, without NUL",
                    field=f"{where}.{name}",
                )
    for language in draft.variants:
        if not LANGUAGE.match(language):
            raise errors.Invalid(
                "invalid_language",
                f"{language!r} is not a language tag (fr, de-CH...)",
                field="$.variants",
            )


def _variant_items(draft: Draft) -> list[tuple[str, model.Content]]:
    return [(f"$.variants.{lang}", c) for lang, c in draft.variants.items()]


def _fields(content: model.Content) -> dict[str, str]:
    """A content's fields as text (mappings as sorted JSON), for checks and diffs."""
    found: dict[str, str] = {}
    for name in content.__struct_fields__:
        value: Any = getattr(content, name)
        if isinstance(value, dict):
            found[name] = "\n".join(f"{k}: {v}" for k, v in sorted(value.items()))
        else:
            found[name] = str(value)
    return found


async def _known_type(conn: Any, event_type: str, channel: model.Channel) -> None:
    row = await design.get_event_type(conn, event_type)
    if row is None:
        raise eventtypes.unknown(event_type)
    spec = eventtypes.parse_spec(row.spec)
    allowed = spec.channels or (row.default_channel,)
    if channel not in allowed:
        raise errors.Invalid(
            "channel_not_allowed",
            f"event type {event_type!r} allows {', '.join(allowed)}, not {channel}",
            field="channel",
        )


async def save(
    db: Database, event_type: str, channel: model.Channel, draft: Draft, author: str
) -> Version:
    """Save a draft as the template's next version."""
    check(channel, draft)
    variants = _encode(draft.variants).decode() if draft.variants else None
    async with db.transaction() as conn:
        await _known_type(conn, event_type, channel)
        row = await design.add_version(
            conn,
            event_type,
            channel,
            _encode(draft.content).decode(),
            variants,
            author,
            clock.now_us(),
        )
    return _version(row)


async def get(db: Database, event_type: str, channel: model.Channel, number: int) -> Version:
    """One version; :class:`~tidings.control.errors.NotFound` if there is none."""
    async with db.connection() as conn:
        row = await design.get_version(conn, event_type, channel, number)
        if row is None:
            if await design.get_event_type(conn, event_type) is None:
                raise eventtypes.unknown(event_type)
            raise errors.NotFound(
                "unknown_version",
                f"no version {number} of the {channel} template of {event_type!r}",
            )
    return _version(row)


async def versions(db: Database, event_type: str, channel: model.Channel) -> list[VersionSummary]:
    """Every version of a template, newest first."""
    async with db.connection() as conn:
        if await design.get_event_type(conn, event_type) is None:
            raise eventtypes.unknown(event_type)
        rows = await design.list_versions(conn, event_type, channel)
    return [VersionSummary(r.number, r.author, clock.format_iso(r.created_at)) for r in rows]


async def restore(
    db: Database, event_type: str, channel: model.Channel, number: int, author: str
) -> Version:
    """Save a copy of version ``number`` as the next version (the new draft)."""
    old = await get(db, event_type, channel, number)
    return await save(db, event_type, channel, Draft(old.content, old.variants), author)


def diff(old: Version, new: Version) -> list[FieldDiff]:
    """The fields that differ between two versions, each as a unified diff."""
    before = _all_fields(old)
    after = _all_fields(new)
    changes = []
    for name in sorted(set(before) | set(after), key=_field_order(before, after)):
        a, b = before.get(name, ""), after.get(name, "")
        if a == b:
            continue
        lines = difflib.unified_diff(
            a.splitlines(keepends=True),
            b.splitlines(keepends=True),
            fromfile=f"v{old.number}/{name}",
            tofile=f"v{new.number}/{name}",
        )
        changes.append(
            FieldDiff(name, "".join(line if line.endswith("\n") else line + "\n" for line in lines))
        )
    return changes


def _all_fields(version: Version) -> dict[str, str]:
    found = _fields(version.content)
    for lang, content in version.variants.items():
        found.update({f"variants.{lang}.{k}": v for k, v in _fields(content).items()})
    return found


def _field_order(before: dict[str, str], after: dict[str, str]) -> Any:
    order = {name: i for i, name in enumerate([*before, *after])}
    return lambda name: order[name]
