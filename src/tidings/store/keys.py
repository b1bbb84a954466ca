"""API keys: only a SHA-256 of each secret is stored (the secrets are random and long, so a
slow password hash would add latency to every request without adding safety)."""

from __future__ import annotations

from tidings import model
from tidings.store.database import Connection, Row, sql

INSERT_KEY = sql(
    """INSERT INTO api_keys (name, prefix, secret_hash, scopes, created_at)
       VALUES ($1, $2, $3, $4, $5) RETURNING id"""
)
_COLUMNS = "id, name, prefix, scopes, created_at, revoked_at"


def _key(row: Row) -> model.ApiKey:
    return model.ApiKey(
        id=int(row[0]),
        name=row[1],
        prefix=row[2],
        scopes=frozenset(row[3].split()),
        created_at=row[4],
        revoked_at=row[5],
    )


async def insert_key(
    conn: Connection, name: str, prefix: str, secret_hash: str, scopes: frozenset[str], now: int
) -> model.ApiKey:
    """Store a new key's hash; return the key record."""
    key_id = await conn.fetchval(
        INSERT_KEY, name, prefix, secret_hash, " ".join(sorted(scopes)), now
    )
    return model.ApiKey(int(key_id), name, prefix, scopes, now)


FIND_BY_PREFIX = sql(f"SELECT {_COLUMNS}, secret_hash FROM api_keys WHERE prefix = $1")


async def find_key(conn: Connection, prefix: str) -> tuple[model.ApiKey, str] | None:
    """A key and its stored secret hash, by the key's public prefix."""
    row = await conn.fetchrow(FIND_BY_PREFIX, prefix)
    return None if row is None else (_key(row), row[6])


LIST_KEYS = sql(f"SELECT {_COLUMNS} FROM api_keys ORDER BY id")


async def list_keys(conn: Connection) -> list[model.ApiKey]:
    """Every key, revoked ones included."""
    return [_key(row) for row in await conn.fetch(LIST_KEYS)]


REVOKE = sql("UPDATE api_keys SET revoked_at = $2 WHERE prefix = $1 AND revoked_at IS NULL")


async def revoke_key(conn: Connection, prefix: str, now: int) -> bool:
    """Revoke a key by prefix; False if there is no such active key."""
    return await conn.execute(REVOKE, prefix, now) > 0


COUNT_KEYS = sql("SELECT COUNT(*) FROM api_keys")


async def count_keys(conn: Connection) -> int:
    """How many keys exist (revoked included)."""
    return int(await conn.fetchval(COUNT_KEYS))
