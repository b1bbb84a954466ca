"""The console's frame: its Jinja2 environment, the page response (with the security headers
every console page carries), and the filters templates use to show times, durations and
statuses."""

from __future__ import annotations

import datetime as dt
from typing import Any

import jinja2
import msgspec
from litestar import Request, Response

from tidings import clock, model

HTML = "text/html; charset=utf-8"
#: Scripts and styles come only from the console's own static files; pages may frame only
#: the console's own (sandboxed) message views, and nobody may frame the console.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

#: The colour of each event status' badge (a CSS class).
STATUS_TONE = {
    model.EventStatus.PENDING: "info",
    model.EventStatus.PROCESSING: "info",
    model.EventStatus.PAUSED: "muted",
    model.EventStatus.PROCESSED: "good",
    model.EventStatus.IGNORED: "muted",
    model.EventStatus.DELIVERY_FAILED: "bad",
    model.EventStatus.ROUTING_FAILED: "bad",
    model.EventStatus.TOO_OLD: "warn",
}
OUTCOME_TONE = {"delivered": "good", "retry": "warn", "failed": "bad", "ignored": "muted"}


def when(us: int | None) -> str:
    """``2026-11-23 12:41:07`` (UTC), or an em dash."""
    if us is None:
        return "—"
    return f"{clock.to_datetime(us):%Y-%m-%d %H:%M:%S}"


def ago(us: int | None, now: int | None = None) -> str:
    """How long ago, in the largest whole unit: ``3 min ago``."""
    if us is None:
        return "—"
    seconds = max(0, ((clock.now_us() if now is None else now) - us) // 1_000_000)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def duration(us: float | None) -> str:
    """A duration for people: ``840 µs``, ``12.5 ms``, ``3.20 s``."""
    if us is None:
        return "—"
    if us < 1000:
        return f"{us:.0f} µs"
    if us < 1_000_000:
        return f"{us / 1000:.1f} ms"
    return f"{us / 1_000_000:.2f} s"


def span(seconds: int) -> str:
    """A bucket or period length: ``5 min``, ``1 h``, ``1 day``."""
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def number(value: float | None) -> str:
    """``12,345`` (or ``1.5``), or an em dash."""
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def tone(status: str) -> str:
    """The badge colour of an event status or a delivery outcome."""
    for table in (STATUS_TONE, OUTCOME_TONE):
        if status in table:
            return table[status]  # type: ignore[index]
    return "muted"


def pretty_json(value: Any) -> str:
    """JSON, indented, for people."""
    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode()


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tidings.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when,
        ago=ago,
        duration=duration,
        span=span,
        number=number,
        tone=tone,
        pretty_json=pretty_json,
    )
    env.globals["statuses"] = [str(s) for s in model.EventStatus]
    env.globals["channels"] = [str(c) for c in model.Channel]
    return env


ENV = _environment()


def render(template: str, **context: Any) -> str:
    """A template rendered with ``context``."""
    return ENV.get_template(template).render(**context)


def page(
    request: Request[Any, Any, Any],
    template: str,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Response[str]:
    """A console page: ``template`` rendered with the signed-in session (if any), the
    current path and ``context``."""
    session = request.scope.get("state", {}).get("console_session")
    body = render(
        template,
        session=session,
        path=request.url.path,
        status_code=status,
        year=dt.datetime.now(dt.UTC).year,
        **context,
    )
    return Response(
        body, status_code=status, media_type=HTML, headers={**HEADERS, **(headers or {})}
    )


def not_found(request: Request[Any, Any, Any], message: str) -> Response[str]:
    """The 404 page, saying what is missing."""
    return page(request, "error.html", status=404, title="Not found", message=message)
