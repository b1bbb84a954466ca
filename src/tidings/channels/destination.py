"""Where Tidings may send an HTTP request: URL rules and the address policy.

Webhook templates and status-callback subscriptions name URLs that someone other than the
operator may choose, so a request must not reach into the operator's own network (SSRF).
:func:`parse_url` takes only ``http``/``https`` URLs with a host and no credentials.
:class:`Policy` decides each *resolved* address: loopback, private, link-local, shared,
reserved, multicast and unspecified addresses (IPv4 and IPv6, IPv4-mapped IPv6 judged as the
IPv4 address it carries) are refused unless the operator allowed private destinations or
listed the network. The webhook transport resolves a host name once, checks every address and
connects to an address it checked, so a name that resolves differently the second time (DNS
rebinding) cannot slip through.

::

    DestinationError        the URL cannot be used (ValueError)
    └── AddressRefused      the host is, or resolves to, an address the policy refuses
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_LENGTH = 2048

# Kinds the operator may allow with ``allow_private``; multicast and unspecified addresses
# are no destination for a request at all and need an explicit network in the allow list.
_PRIVATE_KINDS = frozenset({"loopback", "private", "link-local", "reserved", "non-global"})


class DestinationError(ValueError):
    """The URL cannot be used; the message says why."""


class AddressRefused(DestinationError):
    """The URL's host is, or resolves to, an address the policy refuses."""


def parse_url(text: str) -> httpx.URL:
    """``text`` as a URL Tidings may call, or :class:`DestinationError`."""
    if not text or len(text) > MAX_URL_LENGTH:
        raise DestinationError(f"the URL must be 1 to {MAX_URL_LENGTH} characters")
    if any(ord(c) < 33 or ord(c) == 127 for c in text):
        raise DestinationError("the URL must not contain spaces or control characters")
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, ValueError) as exc:
        raise DestinationError(f"not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https"):
        raise DestinationError("the URL must start with http:// or https://")
    if not url.host:
        raise DestinationError("the URL has no host")
    if url.userinfo:
        raise DestinationError("the URL must not carry credentials (user:password@)")
    return url


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells out (``127.0.0.1``, ``::1``), or None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def kind_of(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address (``loopback``, ``private``...), or
    None if it is one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "non-global"
    return None


def parse_networks(items: Iterable[str]) -> tuple[Network, ...]:
    """Networks (``10.0.0.0/8``, ``::1``) from their text; ``ValueError`` names a bad one."""
    found = []
    for item in items:
        text = item.strip()
        if not text:
            continue
        try:
            found.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address or network") from None
    return tuple(found)


class Policy:
    """Which addresses requests may go to."""

    def __init__(self, *, allow_private: bool = False, allowed: Sequence[Network] = ()):
        self.allow_private = allow_private
        self.allowed = tuple(allowed)

    def check(self, address: IPAddress, host: str = "") -> None:
        """Raise :class:`AddressRefused` unless a request may go to ``address``."""
        kind = kind_of(address)
        if kind is None or (self.allow_private and kind in _PRIVATE_KINDS):
            return
        mapped = (
            address.ipv4_mapped
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped
            else None
        )
        for network in self.allowed:
            if address in network or (mapped is not None and mapped in network):
                return
        named = f"{host} resolves to {address}" if host and host != str(address) else str(address)
        raise AddressRefused(
            f"{named}, a {kind} address; such destinations are refused unless allowed "
            "(TIDINGS_WEBHOOK_ALLOW_PRIVATE, TIDINGS_WEBHOOK_ALLOWED_NETWORKS)"
        )

    def check_literal(self, host: str) -> None:
        """Check ``host`` if it is an address literal (names are checked when resolved)."""
        address = literal_address(host)
        if address is not None:
            self.check(address, host)

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """The addresses ``host`` resolves to, every one checked; :class:`AddressRefused` if
        any is refused, ``OSError`` if the name does not resolve."""
        address = literal_address(host)
        if address is not None:
            self.check(address, host)
            return [address]
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        found: list[IPAddress] = []
        for _family, _type, _proto, _name, sockaddr in infos:
            resolved = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            self.check(resolved, host)
            if resolved not in found:
                found.append(resolved)
        if not found:
            raise OSError(f"{host} does not resolve to any address")
        return found
