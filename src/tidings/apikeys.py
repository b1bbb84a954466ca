"""API key format and hashing.

A key reads ``tid_<prefix>_<secret>``: the prefix (8 characters) is stored in clear to find
the key and to name it in listings; the secret (43 characters, 256 bits) only as a SHA-256.
Scopes: ``events`` (send events and read their status), ``publish`` (an execution instance
taking publications from its control instance: the credential a control instance holds for
it, good for nothing else) and ``admin`` (everything).

Publishing credentials are keys rather than a setting so that they are created, listed and
revoked like every other credential, without a restart, and hold on every process and node
sharing the database.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from tidings import clock, model
from tidings.store import keys
from tidings.store.database import Database

SCOPES = frozenset({"events", "publish", "admin"})
_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"


def generate() -> tuple[str, str]:
    """A new key: (the full key to show once, its prefix)."""
    prefix = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"tid_{prefix}_{secrets.token_urlsafe(32)}", prefix


def prefix_of(key: str) -> str | None:
    """The prefix of a well-formed key, or None."""
    parts = key.split("_")
    if len(parts) < 3 or parts[0] != "tid" or len(parts[1]) != 8:
        return None
    return parts[1]


def hash_secret(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def matches(key: str, stored_hash: str) -> bool:
    """Whether ``key`` hashes to ``stored_hash`` (constant-time comparison)."""
    return hmac.compare_digest(hash_secret(key), stored_hash)


async def create(db: Database, name: str, scopes: frozenset[str]) -> tuple[str, model.ApiKey]:
    """Create a key; return (the key, to show once, and its record)."""
    unknown = scopes - SCOPES
    if unknown or not scopes:
        raise ValueError(f"scopes must be among: {', '.join(sorted(SCOPES))}")
    key, prefix = generate()
    async with db.transaction() as conn:
        record = await keys.insert_key(conn, name, prefix, hash_secret(key), scopes, clock.now_us())
    return key, record


async def revoke(db: Database, prefix: str) -> bool:
    """Revoke a key by its prefix; False if no such active key."""
    async with db.transaction() as conn:
        return await keys.revoke_key(conn, prefix, clock.now_us())


async def list_all(db: Database) -> list[model.ApiKey]:
    """Every key, revoked ones included."""
    async with db.connection() as conn:
        return await keys.list_keys(conn)
