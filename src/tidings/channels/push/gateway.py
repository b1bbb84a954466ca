"""What the APNs and FCM transports share: one HTTP/2 client per gateway, a limit on the
requests in flight, and the translation of transport-level trouble into
:mod:`~tidings.channels.errors`.

One HTTP/2 connection carries many concurrent streams (Apple asks providers to keep their
connections open and reuse them rather than connect per notification), so a client opens a
single connection per gateway by default and multiplexes up to ``concurrency`` requests on it.
Connection errors, TLS failures and timeouts become :class:`~tidings.channels.errors.
ConnectionFailure`; ``Retry-After`` (delta-seconds or an HTTP date, RFC 9110 §10.2.3) becomes
``retry_after``. A server may close an HTTP/2 connection under requests in flight (a GOAWAY
when it shuts down or has served enough requests on one connection, or a reset); :func:`post`
sends such a request once more at once on a new connection rather than leaving it to the
event's next attempt, which would send it again too: the gateway may have taken the first one,
and delivery is at-least-once either way. A connection that cannot be opened is not retried
here.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from tidings import model
from tidings.channels import errors

#: Seconds since the epoch, as ``time.time`` gives them; tests pass their own to move time.
Clock = Callable[[], float]


def ssl_context(ca_file: str) -> ssl.SSLContext:
    """A verifying client context trusting ``ca_file`` (a PEM bundle), or the system's CAs;
    ``ValueError`` when the file cannot be used."""
    try:
        context = ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"CA file {ca_file!r} cannot be used: {exc}") from None
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


def client(
    base_url: str,
    *,
    ca_file: str,
    timeout: float,
    connections: int,
    verify: ssl.SSLContext | None = None,
) -> httpx.AsyncClient:
    """An HTTP/2 client for one gateway; ``timeout`` applies to connecting and to each read."""
    return httpx.AsyncClient(
        base_url=base_url,
        http2=True,
        verify=verify if verify is not None else ssl_context(ca_file),
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        trust_env=False,
    )


def retry_after(response: httpx.Response, now: float) -> float | None:
    """The delay the server asked for in ``Retry-After``, in seconds, if it gave one."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


@contextlib.asynccontextmanager
async def translated(where: str) -> AsyncIterator[None]:
    """Turn httpx's transport errors inside the block into ``ConnectionFailure``."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise errors.ConnectionFailure(f"{where}: timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        detail = str(exc) or type(exc).__name__
        raise errors.ConnectionFailure(f"{where}: {detail}") from exc
    except ssl.SSLError as exc:
        raise errors.ConnectionFailure(f"{where}: TLS failed: {exc}") from exc
    except OSError as exc:
        raise errors.ConnectionFailure(f"{where}: {exc}") from exc


async def post(client: httpx.AsyncClient, where: str, url: str, **options: Any) -> httpx.Response:
    """POST through ``client``, again once if the connection closed under the request."""
    async with translated(where):
        try:
            return await client.post(url, **options)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            pass  # the connection went away under the request: once more on a new one
        return await client.post(url, **options)


class Limiter:
    """At most ``concurrency`` requests in flight at once."""

    def __init__(self, concurrency: int) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._semaphore = asyncio.Semaphore(concurrency)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the request slots for the block."""
        async with self._semaphore:
            yield


def system_clock() -> float:
    """The wall clock (JWT ``iat`` and ``exp`` are wall-clock seconds)."""
    return time.time()


class Transport:
    """What a gateway's transport shares: the :class:`~tidings.channels.errors.DeliveryError`
    a send raises becomes its outcome, and closing closes the HTTP/2 client."""

    _client: httpx.AsyncClient

    async def send(self, message: model.PushMessage) -> model.Outcome:
        """Deliver ``message`` to its device or registration token."""
        try:
            return await self._send(message)
        except errors.DeliveryError as error:
            return errors.outcome_for(error)

    async def _send(self, message: model.PushMessage) -> model.Outcome:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close the HTTP/2 connections."""
        await self._client.aclose()
