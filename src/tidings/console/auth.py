"""Console sign-in state: the session cookie, roles, CSRF tokens and login throttling.

Exceptions (each answered with an HTML page by :mod:`tidings.console`)::

    ConsoleRefusal
     ├── SignInRequired   no live session: 303 to the sign-in page (HTMX: HX-Redirect)
     ├── Forbidden        the operator's role is too low: 403
     ├── CsrfRejected     a POST without the session's CSRF token: 403
     └── Throttled        too many failed sign-ins: 429 with Retry-After

Every POST must carry the session's CSRF token, as the ``_csrf`` form field or the
``X-CSRF-Token`` header (HTMX requests send it, set once on ``<body hx-headers>``); the
sign-in form, before any session exists, carries a token that must match a cookie set with
the form (double submit).
"""

from __future__ import annotations

import collections
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from tidings import model, operators
from tidings.store.database import Database

SESSION_COOKIE = "tidings_session"
LOGIN_COOKIE = "tidings_login"
CSRF_FIELD = "_csrf"
CSRF_HEADER = "x-csrf-token"
PATH = "/console"
RANK = {model.OperatorRole.OPERATOR: 0, model.OperatorRole.DESIGNER: 1, model.OperatorRole.ADMIN: 2}

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


class ConsoleRefusal(Exception):
    """A console request that is refused; the subclass says why."""

    status = 403

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class SignInRequired(ConsoleRefusal):
    """No live session: the operator must sign in (again)."""

    status = 303


class Forbidden(ConsoleRefusal):
    """The operator's role does not allow this."""

    status = 403


class CsrfRejected(ConsoleRefusal):
    """A POST without the right CSRF token (a forged request, or a stale form)."""

    status = 403


class Throttled(ConsoleRefusal):
    """Too many failed sign-ins from this address or for this name."""

    status = 429

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


def same(a: str, b: str) -> bool:
    """Constant-time equality of two tokens (False if either is empty)."""
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


def session_of(connection: ASGIConnection[Any, Any, Any, Any]) -> model.ConsoleSession:
    """The session a guard accepted for this request."""
    session = connection.scope.get("state", {}).get("console_session")
    assert isinstance(session, model.ConsoleSession)
    return session


async def load_session(
    db: Database, connection: ASGIConnection[Any, Any, Any, Any]
) -> model.ConsoleSession | None:
    """The live session the request's cookie names (also kept on the request's scope)."""
    found = await operators.find_session(db, connection.cookies.get(SESSION_COOKIE, ""))
    if found is not None:
        connection.scope.setdefault("state", {})["console_session"] = found
    return found


async def check_csrf(
    connection: ASGIConnection[Any, Any, Any, Any], expected: str
) -> dict[str, Any]:
    """Raise :class:`CsrfRejected` unless the request carries ``expected``; return the
    request's form (empty for a request without one)."""
    request: Request[Any, Any, Any] = Request(connection.scope, connection.receive)
    form: dict[str, Any] = {}
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = dict((await request.form()).items())
    presented = request.headers.get(CSRF_HEADER) or str(form.get(CSRF_FIELD, ""))
    if not same(presented, expected):
        raise CsrfRejected("this form has expired or did not come from the console; reload it")
    return form


def require(db: Database, role: model.OperatorRole = model.OperatorRole.OPERATOR) -> Guard:
    """A guard: a live session whose operator holds ``role`` or more; POSTs also need the
    session's CSRF token."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        session = await load_session(db, connection)
        if session is None:
            raise SignInRequired("sign in to continue")
        if RANK[session.operator.role] < RANK[role]:
            raise Forbidden(f"this page needs the {role} role; you are {session.operator.role}")
        if connection.scope.get("method", "GET") not in ("GET", "HEAD"):
            await check_csrf(connection, session.csrf_token)

    return guard


def secure(request: ASGIConnection[Any, Any, Any, Any], public_url: str) -> bool:
    """Whether cookies should be ``Secure``: the console is served over https (directly, or
    behind a proxy named by ``public_url``)."""
    return request.url.scheme == "https" or public_url.startswith("https://")


class LoginThrottle:
    """Failed sign-ins per client address and per operator name within a window; at
    ``attempts`` failures for either, further tries are refused until the oldest failure
    leaves the window. Counted in this process (each API process counts its own)."""

    def __init__(self, attempts: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.attempts = attempts
        self.window = window
        self.clock = clock
        self._failures: dict[str, collections.deque[float]] = {}

    def _recent(self, key: str, now: float) -> collections.deque[float]:
        failures = self._failures.get(key)
        if failures is None:
            return collections.deque()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def check(self, *keys: str) -> None:
        """Raise :class:`Throttled` if any of ``keys`` has used up its attempts."""
        now = self.clock()
        for key in keys:
            failures = self._recent(key, now)
            if len(failures) >= self.attempts:
                wait = max(1, int(failures[0] + self.window - now) + 1)
                raise Throttled(f"too many failed sign-ins; try again in {wait} s", wait)

    def fail(self, *keys: str) -> None:
        """Count a failed sign-in against each of ``keys``."""
        now = self.clock()
        if len(self._failures) > 10_000:  # a flood of names: forget the quiet ones
            for key in list(self._failures):
                self._recent(key, now)
        for key in keys:
            self._failures.setdefault(key, collections.deque()).append(now)

    def forget(self, key: str) -> None:
        """Clear a key's failures (a successful sign-in clears its name)."""
        self._failures.pop(key, None)
