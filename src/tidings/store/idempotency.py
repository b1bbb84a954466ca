"""Idempotency keys: a retried request gets the first answer instead of a second event."""

from __future__ import annotations

from tidings.store.database import Connection, sql

FIND = sql(
    """SELECT request_hash, status_code, body FROM idempotency_keys
       WHERE api_key_id = $1 AND key = $2 AND created_at > $3"""
)


async def find_answer(
    conn: Connection, api_key_id: int, key: str, newer_than: int
) -> tuple[str, int, str] | None:
    """(request hash, status code, body) stored for a key, if it is still remembered."""
    row = await conn.fetchrow(FIND, api_key_id, key, newer_than)
    return None if row is None else (row[0], int(row[1]), row[2])


INSERT = sql(
    """INSERT INTO idempotency_keys (api_key_id, key, request_hash, status_code, body,
       created_at) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (api_key_id, key) DO UPDATE SET request_hash = excluded.request_hash,
         status_code = excluded.status_code, body = excluded.body,
         created_at = excluded.created_at
       WHERE idempotency_keys.created_at <= $7"""
)


async def remember_answer(
    conn: Connection,
    api_key_id: int,
    key: str,
    request_hash: str,
    status_code: int,
    body: str,
    now: int,
    forget_before: int,
) -> bool:
    """Store the answer to a keyed request; False if another request holds the key (the
    caller must then roll back). An entry older than ``forget_before`` is replaced."""
    changed = await conn.execute(
        INSERT, api_key_id, key, request_hash, status_code, body, now, forget_before
    )
    return changed > 0


PURGE = sql("DELETE FROM idempotency_keys WHERE created_at <= $1")


async def purge(conn: Connection, older_than: int) -> int:
    """Forget keys remembered before ``older_than``; return how many."""
    return await conn.execute(PURGE, older_than)
