"""The webhook transport against real HTTP receivers on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from tests import http_receivers
from tests.http_receivers import Answer
from tidings import model, signing
from tidings.channels import destination, webhook

SECRET = "whsec_integration"
LOOPBACK = ("127.0.0.0/8", "::1/128")


def message(url: str, body: str = '{"hello":"world"}', **kwargs: object) -> model.WebhookMessage:
    return model.WebhookMessage(
        event_id=7, message_id="evt-7@tidings", url=url, body=body, **kwargs
    )  # type: ignore[arg-type]


@pytest.fixture
async def transport() -> AsyncIterator[webhook.WebhookTransport]:
    sender = webhook.WebhookTransport(
        webhook.WebhookConfig(
            secret=SECRET, allowed_networks=LOOPBACK, total_timeout=2.0, connect_timeout=1.0
        )
    )
    try:
        yield sender
    finally:
        await sender.aclose()


async def test_2xx_is_delivered_and_the_receiver_verifies_the_signature(
    transport: webhook.WebhookTransport,
) -> None:
    answer = Answer(201, b'{"id":"r-1"}', (("x-request-id", "r-1"),))
    async with http_receivers.receiver(script=[answer]) as rx:
        body = json.dumps({"order": 1, "name": "Jäck"})
        outcome = await transport.send(
            message(rx.url + "/hook?x=1", body, headers=(("X-Custom", "yes"), ("Host", "evil")))
        )
    assert outcome.kind is model.OutcomeKind.DELIVERED
    assert outcome.provider_id == "r-1"
    assert outcome.reply == '201 Created: {"id":"r-1"}'
    [got] = rx.requests
    assert got.method == "POST"
    assert got.path == "/hook?x=1"
    assert got.body == body.encode()
    assert got.headers["content-type"] == "application/json"
    assert got.headers["tidings-message-id"] == "evt-7@tidings"
    assert got.headers["x-custom"] == "yes"
    assert got.headers["host"] == f"127.0.0.1:{rx.port}"  # the template cannot override it
    assert got.headers["user-agent"] == "Tidings-Webhook/1"
    signing.verify(SECRET, got.headers["tidings-signature"], got.body, 300)


async def test_connections_are_pooled(transport: webhook.WebhookTransport) -> None:
    async with http_receivers.receiver() as rx:
        for _ in range(5):
            outcome = await transport.send(message(rx.url))
            assert outcome.kind is model.OutcomeKind.DELIVERED
    assert len(rx.requests) == 5
    assert len({r.client_port for r in rx.requests}) == 1  # one connection, kept alive


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
async def test_4xx_fails(transport: webhook.WebhookTransport, status: int) -> None:
    async with http_receivers.receiver(script=[Answer(status, b"no such hook")]) as rx:
        outcome = await transport.send(message(rx.url))
    assert outcome.kind is model.OutcomeKind.FAILED
    assert outcome.reply.startswith(f"{status} ")
    assert outcome.reply.endswith(": no such hook")


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
async def test_408_429_and_5xx_are_retried_honouring_retry_after(
    transport: webhook.WebhookTransport, status: int
) -> None:
    answer = Answer(status, b"busy", (("retry-after", "17"),))
    async with http_receivers.receiver(script=[answer]) as rx:
        outcome = await transport.send(message(rx.url))
    assert outcome.kind is model.OutcomeKind.RETRY
    assert outcome.retry_after == 17.0
    assert outcome.reply.startswith(f"{status} ")


async def test_retry_after_as_an_http_date(transport: webhook.WebhookTransport) -> None:
    answer = Answer(503, b"", (("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"),))
    async with http_receivers.receiver(script=[answer]) as rx:
        outcome = await transport.send(message(rx.url))
    assert outcome.kind is model.OutcomeKind.RETRY
    assert outcome.retry_after == 0.0  # a date in the past: try again at the usual pace
    assert webhook.retry_after("nonsense") is None
    assert webhook.retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) == 30.0


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirects_are_not_followed(transport: webhook.WebhookTransport, status: int) -> None:
    async with http_receivers.receiver() as target:
        answer = Answer(status, b"", (("location", target.url + "/elsewhere"),))
        async with http_receivers.receiver(script=[answer]) as rx:
            outcome = await transport.send(message(rx.url))
    assert outcome.kind is model.OutcomeKind.FAILED
    assert "redirect to http://127.0.0.1" in outcome.reply
    assert "not followed" in outcome.reply
    assert target.requests == []


async def test_a_receiver_that_does_not_answer_times_out_and_is_retried() -> None:
    sender = webhook.WebhookTransport(
        webhook.WebhookConfig(secret=SECRET, allow_private=True, total_timeout=0.3)
    )
    try:
        async with http_receivers.receiver(script=[Answer(hang=True)]) as rx:
            outcome = await sender.send(message(rx.url))
            assert len(rx.requests) == 1
    finally:
        await sender.aclose()
    assert outcome.kind is model.OutcomeKind.RETRY
    assert "no answer within 0.3 s" in outcome.reply


async def test_a_refused_connection_is_retried(transport: webhook.WebhookTransport) -> None:
    port = http_receivers.closed_port()
    outcome = await transport.send(message(f"http://127.0.0.1:{port}/"))
    assert outcome.kind is model.OutcomeKind.RETRY
    assert outcome.reply.startswith("cannot connect")


async def test_a_dropped_connection_is_retried(transport: webhook.WebhookTransport) -> None:
    async with http_receivers.dropping_server() as url:
        outcome = await transport.send(message(url))
    assert outcome.kind is model.OutcomeKind.RETRY
    assert outcome.reply.startswith("connection broken")


async def test_an_unknown_host_is_retried(transport: webhook.WebhookTransport) -> None:
    outcome = await transport.send(message("http://no-such-host.invalid/hook"))
    assert outcome.kind is model.OutcomeKind.RETRY
    assert "cannot resolve no-such-host.invalid" in outcome.reply


async def test_only_the_first_bytes_of_a_large_answer_are_read() -> None:
    sender = webhook.WebhookTransport(
        webhook.WebhookConfig(secret=SECRET, allow_private=True, max_response_bytes=10)
    )
    try:
        async with http_receivers.receiver(script=[Answer(200, b"x" * 1_000_000)]) as rx:
            outcome = await sender.send(message(rx.url))
    finally:
        await sender.aclose()
    assert outcome.kind is model.OutcomeKind.DELIVERED
    assert outcome.reply == "200 OK: " + "x" * 10


async def test_hostile_answers_are_kept_printable(transport: webhook.WebhookTransport) -> None:
    answer = Answer(400, b"bad\r\n\x00\x1b[31mred\xff")
    async with http_receivers.receiver(script=[answer]) as rx:
        outcome = await transport.send(message(rx.url))
    assert outcome.kind is model.OutcomeKind.FAILED
    assert all(c.isprintable() for c in outcome.reply)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("http://user:pw@example.com/", "credentials"),
        ("http:///path", "no host"),
        ("http://exa mple.com/", "spaces or control"),
        ("http://example.com/\r\nX: y", "spaces or control"),
        ("", "1 to 2048"),
        ("http://" + "a" * 3000 + ".com/", "1 to 2048"),
    ],
)
async def test_bad_urls_fail_without_a_request(
    transport: webhook.WebhookTransport, url: str, reason: str
) -> None:
    outcome = await transport.send(message(url))
    assert outcome.kind is model.OutcomeKind.FAILED
    assert reason in outcome.reply


async def test_bad_template_headers_fail(transport: webhook.WebhookTransport) -> None:
    async with http_receivers.receiver() as rx:
        injected = await transport.send(message(rx.url, headers=(("X-A", "1\r\nX-B: 2"),)))
        named = await transport.send(message(rx.url, headers=(("Bad Name", "1"),)))
    assert injected.kind is model.OutcomeKind.FAILED
    assert named.kind is model.OutcomeKind.FAILED
    assert rx.requests == []


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_private_destinations_are_refused_by_default() -> None:
    """Loopback by address, by a name resolving to it, over IPv6 and IPv4-mapped IPv6, and
    the private ranges: all refused before any connection, unless allowed."""
    strict = webhook.WebhookTransport(webhook.WebhookConfig(secret=SECRET))
    try:
        async with http_receivers.receiver() as rx:
            urls = [
                rx.url,
                f"http://localhost:{rx.port}/",
                f"http://[::ffff:127.0.0.1]:{rx.port}/",
                f"http://[::1]:{rx.port}/",
                f"http://2130706433:{rx.port}/",  # 127.0.0.1 as one number
                "http://10.1.2.3/",
                "http://192.168.0.1/",
                "http://169.254.169.254/latest/meta-data/",
                "http://[fe80::1]/",
                "http://[fc00::1]/",
                "http://0.0.0.0/",
                "http://224.0.0.1/",
                "http://100.64.0.1/",
            ]
            outcomes = {url: await strict.send(message(url)) for url in urls}
        assert rx.requests == []
        for url, outcome in outcomes.items():
            assert outcome.kind is model.OutcomeKind.FAILED, url
            assert "refused unless allowed" in outcome.reply, url
        assert "localhost resolves to" in outcomes[f"http://localhost:{rx.port}/"].reply
        assert "loopback" in outcomes[f"http://[::ffff:127.0.0.1]:{rx.port}/"].reply
    finally:
        await strict.aclose()


async def test_allow_list_and_allow_private_let_loopback_through() -> None:
    by_list = webhook.WebhookTransport(
        webhook.WebhookConfig(secret=SECRET, allowed_networks=("127.0.0.1/32",))
    )
    by_flag = webhook.WebhookTransport(webhook.WebhookConfig(secret=SECRET, allow_private=True))
    try:
        async with http_receivers.receiver() as rx:
            assert (await by_list.send(message(rx.url))).kind is model.OutcomeKind.DELIVERED
            mapped = f"http://[::ffff:127.0.0.1]:{rx.port}/"
            # Allowed by the IPv4 network it carries (connecting may still fail without v6).
            assert "refused unless allowed" not in (await by_list.send(message(mapped))).reply
            assert (await by_flag.send(message(rx.url))).kind is model.OutcomeKind.DELIVERED
            named = f"http://localhost:{rx.port}/"
            assert (await by_flag.send(message(named))).kind is not model.OutcomeKind.FAILED
            # allow_private does not open multicast or unspecified addresses
            refused = await by_flag.send(message("http://0.0.0.0:1/"))
            assert "unspecified" in refused.reply
    finally:
        await by_list.aclose()
        await by_flag.aclose()


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")
async def test_ipv6_receiver_refused_then_allowed() -> None:
    strict = webhook.WebhookTransport(webhook.WebhookConfig(secret=SECRET))
    allowed = webhook.WebhookTransport(
        webhook.WebhookConfig(secret=SECRET, allowed_networks=("::1",))
    )
    try:
        async with http_receivers.receiver("::1") as rx:
            refused = await strict.send(message(rx.url))
            delivered = await allowed.send(message(rx.url))
    finally:
        await strict.aclose()
        await allowed.aclose()
    assert refused.kind is model.OutcomeKind.FAILED
    assert "loopback" in refused.reply
    assert delivered.kind is model.OutcomeKind.DELIVERED
    assert len(rx.requests) == 1


def test_address_kinds() -> None:
    import ipaddress

    kinds = {
        text: destination.kind_of(ipaddress.ip_address(text))
        for text in ["8.8.8.8", "2001:4860:4860::8888", "127.0.0.1", "::1", "::ffff:10.0.0.1", "::"]
    }
    assert kinds == {
        "8.8.8.8": None,
        "2001:4860:4860::8888": None,
        "127.0.0.1": "loopback",
        "::1": "loopback",
        "::ffff:10.0.0.1": "private",
        "::": "unspecified",
    }
    with pytest.raises(ValueError, match="not an IP address"):
        destination.parse_networks(["10.0.0.0/8", "nope"])


async def test_concurrent_sends_share_the_pool(transport: webhook.WebhookTransport) -> None:
    async with http_receivers.receiver() as rx:
        outcomes = await asyncio.gather(*(transport.send(message(rx.url)) for _ in range(50)))
    assert {o.kind for o in outcomes} == {model.OutcomeKind.DELIVERED}
    assert len(rx.requests) == 50


async def test_https_keeps_the_host_name_for_sni_and_certificate_checks(
    tmp_path: Path,
) -> None:
    """The connection goes to a checked address, yet TLS is negotiated for the URL's host
    name: the certificate for ``localhost`` verifies, and ``Host`` names it."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    cert_file, key_file, ca_file = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    sender = webhook.WebhookTransport(
        webhook.WebhookConfig(secret=SECRET, allowed_networks=LOOPBACK, ca_file=str(ca_file))
    )
    try:
        async with http_receivers.receiver(tls=(str(cert_file), str(key_file))) as rx:
            by_name = await sender.send(message(f"https://localhost:{rx.port}/tls"))
            by_address = await sender.send(message(f"https://127.0.0.1:{rx.port}/tls"))
    finally:
        await sender.aclose()
    assert by_name.kind is model.OutcomeKind.DELIVERED, by_name.reply
    [got] = rx.requests
    assert got.headers["host"] == f"localhost:{rx.port}"
    signing.verify(SECRET, got.headers["tidings-signature"], got.body, 300)
    # The certificate names localhost, not 127.0.0.1: verification fails, nothing is sent.
    assert by_address.kind is model.OutcomeKind.RETRY
    assert "certificate" in by_address.reply.lower()
