"""Profiles: upsert (one or a batch), look up, list, match a claim batch, delete with erasure.

Push tokens and attributes are JSON text. Emails and phone numbers are compared exactly as
stored (the operations layer normalises them before they get here, as ingest does for events).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from tidings import model
from tidings.store.database import Connection, Query, Row, sql

_encode = msgspec.json.Encoder().encode
_tokens = msgspec.json.Decoder(list[str])
_attributes = msgspec.json.Decoder(dict[str, Any])

COLUMNS = (
    "id, external_id, email, mobile_phone, push_tokens, language, attributes, created_at, "
    "updated_at"
)

#: What an erased event's ``reason`` says until the worker ends it ``targetingFailed``.
ERASED = "recipient erased"


def profile_from_row(row: Row) -> model.Profile:
    """A profile from a row selected with :data:`COLUMNS`."""
    return model.Profile(
        id=int(row[0]),
        external_id=row[1],
        email=row[2],
        mobile_phone=row[3],
        push_tokens=tuple(_tokens.decode(row[4])),
        language=row[5],
        attributes=_attributes.decode(row[6]),
        created_at=row[7],
        updated_at=row[8],
    )


def _row(p: model.Profile) -> tuple[Any, ...]:
    return (
        p.external_id,
        p.email,
        p.mobile_phone,
        _encode(list(p.push_tokens)).decode(),
        p.language,
        _encode(p.attributes).decode(),
        p.updated_at,
    )


# ``created_at`` is set on insert only: an update keeps the first time the profile was seen.
UPSERT = sql(
    """INSERT INTO profiles (external_id, email, mobile_phone, push_tokens, language,
         attributes, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
       ON CONFLICT (external_id) DO UPDATE SET email = excluded.email,
         mobile_phone = excluded.mobile_phone, push_tokens = excluded.push_tokens,
         language = excluded.language, attributes = excluded.attributes,
         updated_at = excluded.updated_at"""
)


async def upsert_profiles(conn: Connection, profiles: Sequence[model.Profile]) -> None:
    """Create or replace profiles (every field but ``created_at`` is replaced)."""
    await conn.executemany(*upsert_step(profiles))


GET = sql(f"SELECT {COLUMNS} FROM profiles WHERE external_id = $1")


async def get_profile(conn: Connection, external_id: str) -> model.Profile | None:
    """One profile by its external id."""
    row = await conn.fetchrow(GET, external_id)
    return None if row is None else profile_from_row(row)


LIST = sql(
    f"""SELECT {COLUMNS} FROM profiles
        WHERE ($1::text IS NULL OR email = $1) AND ($2::text IS NULL OR mobile_phone = $2)
          AND id > $3
        ORDER BY id LIMIT $4""",
    sqlite=f"""SELECT {COLUMNS} FROM profiles
        WHERE ($1 IS NULL OR email = $1) AND ($2 IS NULL OR mobile_phone = $2) AND id > $3
        ORDER BY id LIMIT $4""",
)


async def list_profiles(
    conn: Connection,
    *,
    email: str | None = None,
    mobile_phone: str | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[model.Profile]:
    """Profiles in creation order after ``after_id`` (the cursor), optionally only those
    with an email or a mobile phone."""
    rows = await conn.fetch(LIST, email, mobile_phone, after_id, limit)
    return [profile_from_row(r) for r in rows]


MATCH = sql(
    f"""SELECT {COLUMNS} FROM profiles WHERE external_id = ANY($1::text[])
        OR email = ANY($2::text[]) OR mobile_phone = ANY($3::text[])
        ORDER BY updated_at, id""",
    sqlite=f"""SELECT {COLUMNS} FROM profiles
        WHERE external_id IN (SELECT value FROM json_each($1))
          OR email IN (SELECT value FROM json_each($2))
          OR mobile_phone IN (SELECT value FROM json_each($3))
        ORDER BY updated_at, id""",
)


async def match_profiles(
    conn: Connection,
    external_ids: Sequence[str],
    emails: Sequence[str],
    mobile_phones: Sequence[str],
) -> list[model.Profile]:
    """Every profile with one of these external ids, emails or phones, in one query (a
    claim batch's worth), least recently updated first."""
    if not (external_ids or emails or mobile_phones):
        return []
    rows = await conn.fetch(MATCH, list(external_ids), list(emails), list(mobile_phones))
    return [profile_from_row(r) for r in rows]


DELETE = sql(f"DELETE FROM profiles WHERE external_id = $1 RETURNING {COLUMNS}")

ERASE_QUEUED = sql(
    f"""UPDATE events SET email = NULL, mobile_phone = NULL, push_token = NULL,
          external_id = NULL, ctx = '{{}}', reason = '{ERASED}'
        WHERE status IN ('pending', 'paused', 'processing')
          AND (external_id = $1 OR email = $2 OR mobile_phone = $3
               OR push_token = ANY($4::text[]))""",
    sqlite=f"""UPDATE events SET email = NULL, mobile_phone = NULL, push_token = NULL,
          external_id = NULL, ctx = '{{}}', reason = '{ERASED}'
        WHERE status IN ('pending', 'paused', 'processing')
          AND (external_id = $1 OR email = $2 OR mobile_phone = $3
               OR push_token IN (SELECT value FROM json_each($4)))""",
)


async def delete_profile(conn: Connection, external_id: str) -> model.Profile | None:
    """Delete a profile; None if there was none."""
    row = await conn.fetchrow(DELETE, external_id)
    return None if row is None else profile_from_row(row)


async def erase_queued_events(conn: Connection, profile: model.Profile) -> int:
    """Clear the recipient fields and ``ctx`` of the queued (pending, paused or processing)
    events addressed to any of ``profile``'s identifiers; return how many."""
    return await conn.execute(
        ERASE_QUEUED,
        profile.external_id,
        profile.email,
        profile.mobile_phone,
        list(profile.push_tokens),
    )


def upsert_step(profiles: Sequence[model.Profile]) -> tuple[Query, list[tuple[Any, ...]]]:
    """The statement and rows :func:`upsert_profiles` runs (for ``Database.write_many``)."""
    return UPSERT, [_row(p) for p in profiles]
