"""Content blocks: named, versioned template parts (header, footer, legal text) that
templates include with ``{% include "block:footer" %}``.

Every save is a new version. Previews and validation use each block's newest version;
publishing resolves the includes and freezes the text of the versions it used into the
publication (:mod:`tidings.control.bundle`), so a later change to a block reaches messages
only when the template is published again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import msgspec

from tidings import clock
from tidings.control import errors
from tidings.store import design
from tidings.store.database import Database

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
INCLUDE = re.compile(r"""\{%-?\s*include\s+(["'])block:([^"']*)\1\s*-?%\}""")
MAX_DEPTH = 5
MAX_SOURCE = 200_000


class Block(msgspec.Struct, frozen=True):
    """One version of a content block."""

    name: str
    number: int
    source: str
    author: str
    createdAt: str


def _block(row: design.BlockRow) -> Block:
    return Block(row.name, row.number, row.source, row.author, clock.format_iso(row.created_at))


def included(source: str) -> list[tuple[str, int]]:
    """The blocks a template includes, with the offset of each include."""
    return [(m.group(2), m.start()) for m in INCLUDE.finditer(source)]


def resolve(source: str, blocks: Mapping[str, str], used: dict[str, str] | None = None) -> str:
    """``source`` with every block include replaced by the block's text (nested includes
    too). :class:`~tidings.control.errors.Invalid` (``unknown_block``) for a missing block;
    ``used`` collects the names resolved."""

    def expand(text: str, depth: int) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(2)
            if name not in blocks:
                raise errors.Invalid("unknown_block", f"there is no content block {name!r}")
            if depth >= MAX_DEPTH:
                raise errors.Invalid(
                    "block_too_deep", f"blocks include each other more than {MAX_DEPTH} deep"
                )
            if used is not None:
                used[name] = blocks[name]
            return expand(blocks[name], depth + 1)

        return INCLUDE.sub(one, text)

    return expand(source, 0)


async def save(db: Database, name: str, source: str, author: str) -> Block:
    """Save a new version of a block."""
    if not NAME.match(name):
        raise errors.Invalid(
            "invalid_name",
            "a block name starts with a letter and holds only letters, digits, '_', '.' and '-'",
            field="name",
        )
    if "\x00" in source or len(source) > MAX_SOURCE:
        raise errors.Invalid(
            "invalid_field",
            f"a block is at most {MAX_SOURCE} characters, without NUL",
            field="$.source",
        )
    async with db.transaction() as conn:
        row = await design.add_block(conn, name, source, author, clock.now_us())
    return _block(row)


async def latest(db: Database) -> list[Block]:
    """The newest version of every block."""
    async with db.connection() as conn:
        return [_block(r) for r in await design.latest_blocks(conn)]


async def versions(db: Database, name: str) -> list[Block]:
    """Every version of one block, newest first."""
    async with db.connection() as conn:
        found = [_block(r) for r in await design.block_versions(conn, name)]
    if not found:
        raise errors.NotFound("unknown_block", f"there is no content block {name!r}")
    return found


class Usage(msgspec.Struct, frozen=True):
    """A template whose newest version includes a block (in its content or a variant)."""

    eventType: str
    channel: str
    number: int


async def usages(db: Database, name: str) -> list[Usage]:
    """The templates whose newest version includes block ``name`` directly."""
    async with db.connection() as conn:
        rows = await design.latest_versions_mentioning(conn, f"block:{name}")
    return [
        Usage(r.event_type, str(r.channel), r.number)
        for r in rows
        if any(found == name for found, _ in included(_texts(r.content, r.variants)))
    ]


def _texts(*stored: str | None) -> str:
    """Every string inside stored JSON documents, joined (the template fields, unescaped:
    the stored JSON escapes the quotes of an include)."""
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for text in stored:
        if text:
            walk(msgspec.json.decode(text))
    return "\n".join(found)
