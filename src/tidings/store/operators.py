"""Console operators and their sessions (the tables are in ``schema.py``, console section)."""

from __future__ import annotations

from tidings import model
from tidings.store.database import Connection, Row, sql

_COLUMNS = "id, name, role, created_at, disabled"
_ROLE = {str(r): r for r in model.OperatorRole}


def _operator(row: Row) -> model.Operator:
    return model.Operator(
        id=int(row[0]),
        name=row[1],
        role=_ROLE[row[2]],
        created_at=int(row[3]),
        disabled=bool(row[4]),
    )


INSERT = sql(
    """INSERT INTO operators (name, password_hash, role, created_at, disabled)
       VALUES ($1, $2, $3, $4, FALSE) RETURNING id"""
)


async def insert_operator(
    conn: Connection, name: str, password_hash: str, role: model.OperatorRole, now: int
) -> model.Operator:
    """Store a new operator; the caller checked that the name is free."""
    new_id = await conn.fetchval(INSERT, name, password_hash, str(role), now)
    return model.Operator(int(new_id), name, role, now)


FIND_BY_NAME = sql(f"SELECT {_COLUMNS}, password_hash FROM operators WHERE name = $1")


async def find_operator(conn: Connection, name: str) -> tuple[model.Operator, str] | None:
    """An operator and their password hash, by name."""
    row = await conn.fetchrow(FIND_BY_NAME, name)
    return None if row is None else (_operator(row), row[5])


LIST = sql(f"SELECT {_COLUMNS} FROM operators ORDER BY name")


async def list_operators(conn: Connection) -> list[model.Operator]:
    """Every operator, disabled ones included, by name."""
    return [_operator(row) for row in await conn.fetch(LIST)]


COUNT = sql("SELECT COUNT(*) FROM operators")


async def count_operators(conn: Connection) -> int:
    """How many operators exist (disabled included)."""
    return int(await conn.fetchval(COUNT))


SET_PASSWORD = sql("UPDATE operators SET password_hash = $2 WHERE name = $1")


async def set_password(conn: Connection, name: str, password_hash: str) -> bool:
    """Replace an operator's password hash; False if there is no such operator."""
    return await conn.execute(SET_PASSWORD, name, password_hash) > 0


SET_DISABLED = sql("UPDATE operators SET disabled = $2 WHERE name = $1")


async def set_disabled(conn: Connection, name: str, disabled: bool) -> bool:
    """Disable (or enable) an operator; False if there is no such operator."""
    return await conn.execute(SET_DISABLED, name, disabled) > 0


# ---------------------------------------------------------------------------- sessions

INSERT_SESSION = sql(
    """INSERT INTO console_sessions (token_hash, operator_id, csrf_token, created_at, expires_at)
       VALUES ($1, $2, $3, $4, $5)"""
)


async def insert_session(
    conn: Connection, token_hash: str, operator_id: int, csrf_token: str, now: int, until: int
) -> None:
    """Store a new session."""
    await conn.execute(INSERT_SESSION, token_hash, operator_id, csrf_token, now, until)


FIND_SESSION = sql(
    """SELECT o.id, o.name, o.role, o.created_at, o.disabled, s.csrf_token, s.expires_at
       FROM console_sessions s JOIN operators o ON o.id = s.operator_id
       WHERE s.token_hash = $1 AND s.expires_at > $2 AND NOT o.disabled"""
)


async def find_session(conn: Connection, token_hash: str, now: int) -> model.ConsoleSession | None:
    """The live session with this token hash, if its operator is still enabled."""
    row = await conn.fetchrow(FIND_SESSION, token_hash, now)
    if row is None:
        return None
    return model.ConsoleSession(_operator(row), row[5], int(row[6]))


DELETE_SESSION = sql("DELETE FROM console_sessions WHERE token_hash = $1")


async def delete_session(conn: Connection, token_hash: str) -> None:
    """End one session (signing out)."""
    await conn.execute(DELETE_SESSION, token_hash)


DELETE_OPERATOR_SESSIONS = sql(
    """DELETE FROM console_sessions
       WHERE operator_id IN (SELECT id FROM operators WHERE name = $1)"""
)


async def delete_operator_sessions(conn: Connection, name: str) -> int:
    """End every session of an operator (disabled, or a new password); return how many."""
    return await conn.execute(DELETE_OPERATOR_SESSIONS, name)


DELETE_EXPIRED = sql("DELETE FROM console_sessions WHERE expires_at <= $1")


async def delete_expired_sessions(conn: Connection, now: int) -> int:
    """Forget sessions that ended; return how many."""
    return await conn.execute(DELETE_EXPIRED, now)
