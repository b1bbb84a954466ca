"""Console operators (the CLI's ``tidings operators`` and the console call these): accounts
with argon2id password hashes, and their sign-in sessions.

A session is a random token in an HttpOnly cookie; the database keeps only its SHA-256, the
operator, a CSRF token and the end of its life, so a session ends at once when its operator
is disabled or given a new password (every session of theirs is deleted).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import secrets

import argon2

from tidings import clock, model
from tidings.store import operators as store
from tidings.store.database import Database

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
_hasher = argon2.PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Checked when the name is unknown, so that an unknown name costs as long as a wrong
    password. Made at the first sign-in, not at import: every process imports this module
    (a worker, the CLI), and one argon2 hash is ~0.2 s of CPU."""
    return _hasher.hash(secrets.token_urlsafe(16))


class OperatorError(ValueError):
    """An operator cannot be created or changed as asked; the message says why."""


def check_name(name: str) -> None:
    """Raise :class:`OperatorError` unless ``name`` is a valid operator name."""
    if not NAME.match(name):
        raise OperatorError(
            "an operator name is 1-64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )


def check_password(password: str) -> None:
    """Raise :class:`OperatorError` unless ``password`` is long enough (and not absurd)."""
    if len(password) < MIN_PASSWORD:
        raise OperatorError(f"a password has at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD or "\x00" in password:
        raise OperatorError(f"a password has at most {MAX_PASSWORD} characters and no NUL")


def new_password() -> str:
    """A random password to hand out (first start, ``operators add`` without one)."""
    return secrets.token_urlsafe(15)


async def _hash(password: str) -> str:
    # argon2 takes tens of milliseconds of CPU on purpose: off the event loop.
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


async def create(
    db: Database, name: str, password: str, role: model.OperatorRole
) -> model.Operator:
    """Create an operator; :class:`OperatorError` for a bad or taken name or a short password."""
    check_name(name)
    check_password(password)
    hashed = await _hash(password)
    async with db.transaction() as conn:
        if await store.find_operator(conn, name) is not None:
            raise OperatorError(f"there is already an operator named {name!r}")
        return await store.insert_operator(conn, name, hashed, role, clock.now_us())


async def authenticate(db: Database, name: str, password: str) -> model.Operator | None:
    """The enabled operator with this name and password, or None."""
    if len(password) > MAX_PASSWORD:
        return None
    dummy = await asyncio.to_thread(_dummy_hash)  # made by the first sign-in, known name or not
    async with db.connection() as conn:
        found = await store.find_operator(conn, name)
    valid = await asyncio.to_thread(_verify, dummy if found is None else found[1], password)
    if found is None or not valid or found[0].disabled:
        return None
    return found[0]


async def set_password(db: Database, name: str, password: str) -> bool:
    """Give an operator a new password and end their sessions; False if no such operator."""
    check_password(password)
    hashed = await _hash(password)
    async with db.transaction() as conn:
        if not await store.set_password(conn, name, hashed):
            return False
        await store.delete_operator_sessions(conn, name)
    return True


async def set_disabled(db: Database, name: str, disabled: bool = True) -> bool:
    """Disable an operator (ending their sessions) or enable them again; False if no such
    operator."""
    async with db.transaction() as conn:
        if not await store.set_disabled(conn, name, disabled):
            return False
        await store.delete_operator_sessions(conn, name)
    return True


async def list_all(db: Database) -> list[model.Operator]:
    """Every operator, by name."""
    async with db.connection() as conn:
        return await store.list_operators(conn)


async def first_admin(db: Database, name: str = "admin") -> str | None:
    """On a database without operators, create an admin with a random password and return
    the password (to print once); None if there were operators already."""
    async with db.connection() as conn:
        if await store.count_operators(conn):
            return None
    password = new_password()
    await create(db, name, password, model.OperatorRole.ADMIN)
    return password


# ---------------------------------------------------------------------------- sessions


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def open_session(db: Database, operator: model.Operator, ttl: float) -> tuple[str, str]:
    """Start a session for ``operator`` lasting ``ttl`` seconds; return (the cookie token,
    the session's CSRF token). Sessions that ended are forgotten on the way."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = clock.now_us()
    async with db.transaction() as conn:
        await store.delete_expired_sessions(conn, now)
        await store.insert_session(
            conn, _token_hash(token), operator.id, csrf, now, now + int(ttl * 1_000_000)
        )
    return token, csrf


async def find_session(db: Database, token: str) -> model.ConsoleSession | None:
    """The live session a cookie token names, or None (unknown, ended, operator disabled)."""
    if not token or len(token) > 128:
        return None
    async with db.connection() as conn:
        return await store.find_session(conn, _token_hash(token), clock.now_us())


async def close_session(db: Database, token: str) -> None:
    """End the session a cookie token names (signing out)."""
    async with db.transaction() as conn:
        await store.delete_session(conn, _token_hash(token))
