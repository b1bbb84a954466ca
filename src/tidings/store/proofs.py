"""Proofs: the marked bundle a proof sends, and the events that send it to seed addresses.

A proof's events are ordinary queue rows with ``proof_id`` set, written in the same
transaction as the proof: the worker claims, renders (with the proof's bundle), delivers,
retries and records them as any other event, and the reports leave them out.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from tidings import model
from tidings.store import events as events_store
from tidings.store.database import Connection, sql


class ProofRow(msgspec.Struct, frozen=True):
    """A proof as stored (``bundle`` is its JSON text)."""

    id: int
    event_type: str
    channel: model.Channel
    version_id: int
    version_number: int
    profile: str
    bundle: str
    requested_by: str
    created_at: int


class _Frozen(msgspec.Struct, frozen=True):
    """The part of a bundle rendering needs."""

    content: model.Content
    variants: dict[str, model.Content] = {}
    languageField: str = ""


_frozen_decoder = msgspec.json.Decoder(_Frozen)
_COLUMNS = (
    "id, event_type, channel, version_id, version_number, profile, bundle, requested_by, created_at"
)

INSERT_PROOF = sql(
    """INSERT INTO proofs (event_type, channel, version_id, version_number, profile, bundle,
       requested_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id"""
)
INSERT_PROOF_EVENT = sql(
    """INSERT INTO events (id, type, channel, email, mobile_phone, push_token, external_id,
       ctx, priority, status, source, received_at, scheduled_at, expires_at, due_at, attempts,
       ctx_issues, proof_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"""
)


async def add_proof(
    conn: Connection,
    row: ProofRow,
    events: Sequence[events_store.NewEvent],
) -> int:
    """Write a proof (``row.id`` is ignored) and its events; return the proof's id."""
    proof_id = int(
        await conn.fetchval(
            INSERT_PROOF,
            row.event_type,
            str(row.channel),
            row.version_id,
            row.version_number,
            row.profile,
            row.bundle,
            row.requested_by,
            row.created_at,
        )
    )
    await conn.executemany(INSERT_PROOF_EVENT, [(*e.row(), proof_id) for e in events])
    return proof_id


GET_PROOF = sql(f"SELECT {_COLUMNS} FROM proofs WHERE id = $1")


async def get_proof(conn: Connection, proof_id: int) -> ProofRow | None:
    """One proof by id."""
    r = await conn.fetchrow(GET_PROOF, proof_id)
    if r is None:
        return None
    return ProofRow(
        int(r[0]), r[1], model.Channel(r[2]), int(r[3]), int(r[4]), r[5], r[6], r[7], int(r[8])
    )


PROOF_EVENTS = sql(
    f"SELECT {events_store.COLUMNS} FROM events WHERE proof_id = $1 ORDER BY id",
)


async def proof_events(conn: Connection, proof_id: int) -> list[model.Event]:
    """The events of a proof, one per seed address."""
    return [events_store.event_from_row(r) for r in await conn.fetch(PROOF_EVENTS, proof_id)]


async def proof_publication(conn: Connection, proof_id: int) -> model.Publication | None:
    """What the worker renders a proof's events with (None: the proof is gone)."""
    found = await get_proof(conn, proof_id)
    if found is None:
        return None
    frozen = _frozen_decoder.decode(found.bundle)
    return model.Publication(
        id=0,
        event_type=found.event_type,
        channel=found.channel,
        version_id=found.version_id,
        content=frozen.content,
        variants=frozen.variants,
        language_field=frozen.languageField,
        proof_id=found.id,
    )
