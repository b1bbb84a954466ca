"""The webhook transport: POST a rendered JSON body to a URL, signed, over pooled HTTP.

Every request carries ``Tidings-Signature`` (:mod:`tidings.signing`), ``Tidings-Message-Id``
(stable per event, for de-duplication) and the template's own headers. Connections come from
one pooled :class:`httpx.AsyncClient` whose network layer resolves each host, checks every
address against the :class:`~tidings.channels.destination.Policy` and connects to an address
it checked (no second lookup to rebind); the URL is left as it is, so ``Host`` and TLS SNI
name the host. Status codes become outcomes:

====================================  ==========================================
2xx                                   delivered (``provider_id`` from a header)
408, 429, 5xx, timeouts, refused or   retry later (``Retry-After`` honoured)
dropped connections, DNS failures
3xx                                   failed: redirects are not followed
other 4xx, refused addresses,         failed
bad URLs or headers
====================================  ==========================================

The outcome's ``reply`` is the status line and the first bytes of the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ssl
import time
from collections.abc import Iterable, Sequence
from typing import Any

import httpcore
import httpx
import msgspec

from tidings import model, signing
from tidings.channels import destination, errors

_RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "user-agent",
        signing.HEADER.lower(),
        "tidings-message-id",
    }
)
_REPLY_CHARS = 300  # of the body, in the outcome's reply
_MAX_RETRY_AFTER = 86400.0


class WebhookConfig(msgspec.Struct, frozen=True):
    """How the webhook transport connects. Durations are seconds."""

    secret: str = ""
    connect_timeout: float = 5.0
    total_timeout: float = 30.0
    max_response_bytes: int = 4096
    allow_private: bool = False
    allowed_networks: tuple[str, ...] = ()
    user_agent: str = "Tidings-Webhook/1"
    pool_size: int = 32
    id_header: str = "X-Request-Id"
    ca_file: str = ""


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """The network layer under the pool: resolve, check every address, connect to one of
    the checked addresses (the next one if a connection is refused)."""

    def __init__(self, policy: destination.Policy):
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._policy.resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("Unix sockets are not a webhook destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Transport(httpx.AsyncHTTPTransport):
    """httpx's transport on a pool whose connections go through :class:`_CheckedBackend`."""

    def __init__(self, policy: destination.Policy, limits: httpx.Limits, ca_file: str = ""):
        super().__init__(limits=limits, trust_env=False)
        ssl_context = (
            ssl.create_default_context(cafile=ca_file)
            if ca_file
            else httpx.create_ssl_context(trust_env=False)
        )
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_CheckedBackend(policy),
        )


def policy_of(config: WebhookConfig) -> destination.Policy:
    """The address policy ``config`` describes."""
    return destination.Policy(
        allow_private=config.allow_private,
        allowed=destination.parse_networks(config.allowed_networks),
    )


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), _MAX_RETRY_AFTER)
    with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
        when = email.utils.parsedate_to_datetime(value)
        current = time.time() if now is None else now
        return min(max(0.0, when.timestamp() - current), _MAX_RETRY_AFTER)
    return None


def _printable(data: bytes) -> str:
    text = data.decode("utf-8", "replace")
    return "".join(c if c.isprintable() else " " for c in text).strip()


class WebhookTransport:
    """Sends :class:`~tidings.model.WebhookMessage` (and status callbacks, with
    :meth:`post`) over one pooled HTTP client."""

    name = "webhook"

    def __init__(self, config: WebhookConfig):
        self.config = config
        self.policy = policy_of(config)
        limits = httpx.Limits(
            max_connections=config.pool_size, max_keepalive_connections=config.pool_size
        )
        self._client = httpx.AsyncClient(
            transport=_Transport(self.policy, limits, config.ca_file),
            timeout=httpx.Timeout(config.total_timeout, connect=config.connect_timeout),
            follow_redirects=False,
            trust_env=False,
        )

    async def send(self, message: model.WebhookMessage) -> model.Outcome:
        """POST the message's body to its URL, signed with the configured secret."""
        return await self.post(
            message.url,
            message.body,
            secret=self.config.secret,
            message_id=message.message_id,
            headers=message.headers,
        )

    async def post(
        self,
        url: str,
        body: str | bytes,
        *,
        secret: str,
        message_id: str = "",
        headers: Sequence[tuple[str, str]] = (),
    ) -> model.Outcome:
        """POST ``body`` (JSON) to ``url`` signed with ``secret``; never raises for a
        delivery problem."""
        try:
            return await self._post(url, body, secret, message_id, headers)
        except errors.DeliveryError as exc:
            return errors.outcome_for(exc)

    async def _post(
        self,
        url: str,
        body: str | bytes,
        secret: str,
        message_id: str,
        extra: Sequence[tuple[str, str]],
    ) -> model.Outcome:
        try:
            target = destination.parse_url(url)
            self.policy.check_literal(target.host)
        except destination.DestinationError as exc:
            raise errors.PermanentFailure(str(exc)) from None
        content = body.encode() if isinstance(body, str) else body
        headers = self._headers(content, secret, message_id, extra)
        total = self.config.total_timeout
        try:
            async with asyncio.timeout(total):
                request = self._client.build_request("POST", target, content=content)
                request.headers.update(headers)
                response = await self._client.send(request, stream=True)
                try:
                    kept = await self._read(response)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise errors.ConnectionFailure(f"no answer within {total:g} s") from None
        except destination.DestinationError as exc:
            raise errors.PermanentFailure(str(exc)) from None
        except httpx.TimeoutException as exc:
            raise errors.ConnectionFailure(f"timed out: {exc or type(exc).__name__}") from None
        except httpx.ConnectError as exc:
            raise errors.ConnectionFailure(f"cannot connect: {exc}") from None
        except (httpx.TransportError, OSError) as exc:
            raise errors.ConnectionFailure(
                f"connection broken: {exc or type(exc).__name__}"
            ) from None
        return self._outcome(response, kept)

    def _headers(
        self, content: bytes, secret: str, message_id: str, extra: Sequence[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        headers = [
            ("Content-Type", "application/json"),
            ("User-Agent", self.config.user_agent),
            (signing.HEADER, signing.sign(secret, content)),
        ]
        if message_id:
            headers.append(("Tidings-Message-Id", message_id))
        for name, value in extra:
            if name.lower() in _RESERVED_HEADERS:
                continue
            if not name or not name.isascii() or any(c in name for c in " :\t\r\n\0"):
                raise errors.PermanentFailure(f"invalid header name {name!r}")
            if any(c in value for c in "\r\n\0"):
                raise errors.PermanentFailure(f"invalid value for header {name}")
            headers.append((name, value))
        return headers

    async def _read(self, response: httpx.Response) -> bytes:
        """The first ``max_response_bytes`` of the body (the rest is not read)."""
        limit = self.config.max_response_bytes
        kept = bytearray()
        if limit <= 0:
            return b""
        async for chunk in response.aiter_bytes():
            kept += chunk
            if len(kept) >= limit:
                break
        return bytes(kept[:limit])

    def _outcome(self, response: httpx.Response, body: bytes) -> model.Outcome:
        status = response.status_code
        line = f"{status} {response.reason_phrase}".strip()
        excerpt = _printable(body)[:_REPLY_CHARS]
        reply = f"{line}: {excerpt}" if excerpt else line
        if 200 <= status < 300:
            provider_id = response.headers.get(self.config.id_header, "")[:200]
            return model.Outcome(model.OutcomeKind.DELIVERED, reply=reply, provider_id=provider_id)
        if 300 <= status < 400:
            location = response.headers.get("location", "")
            where = f" to {_printable(location.encode())[:200]}" if location else ""
            raise errors.PermanentFailure(f"{line}: redirect{where} not followed")
        if status in (408, 429) or 500 <= status < 600:
            raise errors.TemporaryFailure(
                reply, retry_after=retry_after(response.headers.get("retry-after"))
            )
        raise errors.PermanentFailure(reply)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._client.aclose()
