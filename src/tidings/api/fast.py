"""The event intake's fast lane: plain ASGI in front of the Litestar application.

Posting events is the one request a busy site makes thousands of times a second, and measured
here (``bench/run.py``, see BENCHMARKS.md) Litestar's request machinery costs ~250 µs a POST —
more than validating and committing the event. This lane answers the two single-event POST
routes (``/api/v1/events`` and the Campaign Standard one) with the very same functions the
Litestar handlers call (:func:`tidings.api.auth.authorize`, :func:`tidings.api.intake.
check_media_type`, :func:`tidings.api.events.prepare_one`, :func:`tidings.api.adobe.prepare`,
the same error bodies), and hands everything else to Litestar untouched: every other route and
method, and the requests that need more (an ``Idempotency-Key``, a body without a
``Content-Length`` or over the size limit). The acceptance tests run both lanes.

While the App sheds load (:attr:`tidings.app.App.shedding`), every event-ingest POST is
answered 503 ``overloaded`` here, before anything is read, whichever lane would have served it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from tidings import ratelimit
from tidings.api import adobe, auth, errors, events, intake, ops
from tidings.app import App
from tidings.store.database import Unavailable

_JSON = (b"content-type", b"application/json")

# ASGI, loosely typed: this lane reads a few keys and writes two plain messages.
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


class FastIntake:
    """An ASGI application: the fast lane, falling back to ``slow`` for anything else."""

    def __init__(self, app: App, slow: ASGIApp):
        self.app = app
        self.slow = slow
        settings = app.settings
        self._native = "/api/v1/events"
        self._batch = "/api/v1/events/batch"
        self._adobe_prefix = f"/{settings.org}/campaign/{settings.transactional_api}/"
        self._max_body = settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.slow(scope, receive, send)
        path: str = scope["path"]
        event_id = ""
        if path != self._native:
            event_id = path[len(self._adobe_prefix) :]
            if not path.startswith(self._adobe_prefix) or not event_id or "/" in event_id:
                if path == self._batch and self.app.shedding:
                    return await _refuse(send, ops.overloaded(self.app))
                return await self.slow(scope, receive, send)
        if self.app.shedding:
            return await _refuse(send, ops.overloaded(self.app))
        headers = _headers(scope["headers"])
        length = headers.get("content-length", "")
        if "idempotency-key" in headers or not length.isdigit() or int(length) > self._max_body:
            return await self.slow(scope, receive, send)
        body = await _read_body(receive)
        if body is None:
            return None  # the client went away before sending its body: nothing stored
        try:
            await auth.authorize(
                auth.keys_in(headers.get("authorization", ""), headers.get("x-api-key", "")),
                "events",
                self.app.authenticate,
            )
            if event_id:
                name = await adobe.event_type_of(
                    self.app, self.app.settings.org, self.app.settings.transactional_api, event_id
                )
                intake.check_media_type(headers.get("content-type", ""))
                prepared = adobe.prepare(self.app, name, event_id, body)
            else:
                intake.check_media_type(headers.get("content-type", ""))
                prepared = events.prepare_one(self.app, body)
            await self.app.ingest.commit(prepared.events)
        except errors.ApiError as exc:
            return await _refuse(send, exc)
        except ratelimit.Limited as exc:
            return await _refuse(send, errors.rate_limited(exc))
        except Unavailable as exc:
            error = errors.unavailable(exc)
            return await _answer(send, 503, errors.error_body(error.body), error.headers)
        except Exception as exc:
            error = errors.crashed(exc)
            return await _answer(send, 500, errors.error_body(error.body), error.headers)
        return await _answer(send, prepared.status, prepared.body, prepared.headers)


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in raw}


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _refuse(send: Send, error: errors.ApiError) -> None:
    await _answer(send, error.body.status, errors.error_body(error.body), error.headers)


async def _answer(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw: list[tuple[bytes, bytes]] = [_JSON, (b"content-length", str(len(body)).encode())]
    raw.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
