"""The HTTP enrichment source: data about an event's recipient fetched from the caller's own
service just before rendering, exposed to templates as ``enrichment``.

An event type's targeting names the URL (:class:`~tidings.model.Targeting`). The source is
called with the event's type, recipient and ``ctx``:

- ``POST``: a JSON body ``{"eventType": ..., "recipient": {...}, "ctx": {...}}``,
- ``GET``: the query ``?eventType=...&email=...&mobilePhone=...&pushToken=...&externalId=...
  &ctx=<ctx as JSON>`` (fields the event lacks are left out),

with the targeting's extra headers, and must answer ``200`` with a JSON object. Answers are
cached for the targeting's TTL (keyed by the whole request; a bounded LRU), so a burst of
events for one recipient costs one call. One pooled ``httpx.AsyncClient`` serves every
source; redirects are not followed.

Errors (one tree; the worker decides by type)::

    EnrichmentError
     ├── Unavailable   timeout, refused or dropped connection, 5xx, an answer that is not
     │                 a JSON object: the event is retried with backoff, and fails
     │                 (deliveryFailed) with this reason once it runs out of time
     └── Refused       4xx, a redirect, an answer over 1 MiB: the event fails at once
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

import httpx
import msgspec

from tidings import model

MAX_ANSWER_BYTES = 1 << 20
_RETRY_PREFIX = "attempt "
_SOURCE = "enrichment source "
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any])


class EnrichmentError(Exception):
    """The enrichment source gave no usable answer; the message says which source and why."""


class Unavailable(EnrichmentError):
    """A failure that may pass: try the event again later."""


class Refused(EnrichmentError):
    """The source refused the request; asking again will not help."""


def retry_reason(attempt: int, error: Unavailable) -> str:
    """An event's reason while it waits to try its enrichment source again."""
    return f"{_RETRY_PREFIX}{attempt} failed: {error}"


def failure_in(reason: str | None) -> str | None:
    """The enrichment failure an event's reason records (from :func:`retry_reason`), if its
    last attempt failed there: an event whose time runs out while it waits to try again
    ends ``deliveryFailed`` with it, as one whose retry would come too late does."""
    if reason is None or not reason.startswith(_RETRY_PREFIX):
        return None
    _, sep, rest = reason.partition(" failed: ")
    return rest if sep and rest.startswith(_SOURCE) else None


def request_of(t: model.Targeting, event: model.Event) -> tuple[str, str, dict[str, str], bytes]:
    """The request for ``event``: method, URL, query parameters and body."""
    r = event.recipient
    recipient = {
        "email": r.email,
        "mobilePhone": r.mobilePhone,
        "pushToken": r.pushToken,
        "externalId": r.externalId,
    }
    if t.enrichment_method == "GET":
        params = {"eventType": event.type}
        params.update({k: v for k, v in recipient.items() if v is not None})
        params["ctx"] = _encode(event.ctx).decode()
        return "GET", t.enrichment_url, params, b""
    body = {"eventType": event.type, "recipient": recipient, "ctx": event.ctx}
    return "POST", t.enrichment_url, {}, _encode(body)


class Enricher:
    """Calls enrichment sources through one connection pool, caching their answers."""

    def __init__(self, *, cache_size: int = 10_000, client: httpx.AsyncClient | None = None):
        self._client = client or httpx.AsyncClient(
            follow_redirects=False,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            headers={"User-Agent": "Tidings enrichment"},
        )
        self._cache: collections.OrderedDict[tuple[Any, ...], tuple[float, dict[str, Any]]] = (
            collections.OrderedDict()
        )
        self._cache_size = cache_size
        self.calls = 0  # requests actually sent (cache misses)

    async def fetch(self, t: model.Targeting, event: model.Event) -> dict[str, Any]:
        """The source's answer about ``event`` (from the cache while it is fresh)."""
        method, url, params, body = request_of(t, event)
        key = (
            method,
            url,
            tuple(sorted(params.items())),
            body,
            tuple(sorted(t.enrichment_headers.items())),
        )
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None:
            if cached[0] > now:
                self._cache.move_to_end(key)
                return cached[1]
            del self._cache[key]
        answer = await self._call(t, method, url, params, body)
        if t.enrichment_ttl > 0 and self._cache_size > 0:
            self._cache[key] = (now + t.enrichment_ttl, answer)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return answer

    async def _call(
        self, t: model.Targeting, method: str, url: str, params: dict[str, str], body: bytes
    ) -> dict[str, Any]:
        where = f"{_SOURCE}{url}"
        headers = dict(t.enrichment_headers)
        if body:
            headers["Content-Type"] = "application/json"
        self.calls += 1
        try:
            async with asyncio.timeout(t.enrichment_timeout):
                async with self._client.stream(
                    method,
                    url,
                    params=params or None,
                    content=body or None,
                    headers=headers,
                    timeout=t.enrichment_timeout,
                ) as response:
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > MAX_ANSWER_BYTES:
                            raise Refused(f"{where} answered more than 1 MiB")
                        chunks.append(chunk)
        except (TimeoutError, httpx.TimeoutException):
            raise Unavailable(f"{where} timed out after {t.enrichment_timeout:g} s") from None
        except httpx.ConnectError as exc:
            raise Unavailable(
                f"{where} could not be reached: {exc or 'connection refused'}"
            ) from None
        except httpx.HTTPError as exc:
            raise Unavailable(f"{where} failed: {type(exc).__name__}: {exc}") from None
        content = b"".join(chunks)
        status = response.status_code
        if status >= 500:
            raise Unavailable(f"{where} answered {status}: {_excerpt(content)}")
        if status != 200:
            raise Refused(f"{where} answered {status}: {_excerpt(content)}")
        try:
            return _decode.decode(content)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise Unavailable(
                f"{where} did not answer a JSON object: {_excerpt(content)}"
            ) from None

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def _excerpt(content: bytes) -> str:
    text = " ".join(content[:200].decode("utf-8", "replace").split())
    return text or "(empty body)"
