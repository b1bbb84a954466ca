"""The APNs transport against a local HTTP/2 server over TLS (tests/push_servers.py)."""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import uuid
from typing import Any

import jwt
import pytest
import trustme

from tests import push_servers
from tests.integration.gateways import (
    DELIVERED,
    DEVICE,
    FAILED,
    KEY_ID,
    NO_IAT,
    RETRY,
    TEAM_ID,
    TOPIC,
    Clock,
    apns_gateway,
    push,
)
from tests.push_servers import Answer, ApnsServer
from tidings.channels.push import apns

# ------------------------------------------------------------------------------------- APNs


async def test_apns_alert_goes_over_http2_as_documented(ca: trustme.CA, clock: Clock) -> None:
    expires = int((clock() + 3600) * 1_000_000) + 250_000
    message = push(
        data={"order": "A-17", "deep_link": "app://orders/A-17"},
        sound="default",
        badge=3,
        collapse_id="order-A-17",
        expires_at=expires,
    )
    async with apns_gateway(ca, clock) as (server, transport):
        outcome = await transport.send(message)
    assert outcome.kind == DELIVERED, outcome
    [request] = server.requests
    assert request.http_version == "2"
    assert request.method == "POST"
    assert request.path == f"/3/device/{DEVICE}"
    headers = request.headers
    assert headers["apns-topic"] == TOPIC
    assert headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10"
    assert headers["apns-expiration"] == str(expires // 1_000_000)
    assert headers["apns-collapse-id"] == "order-A-17"
    assert uuid.UUID(headers["apns-id"]).version == 5
    assert outcome.provider_id == headers["apns-id"]
    assert request.json() == {
        "aps": {
            "alert": {"title": "Your order shipped", "body": "It arrives on Tuesday."},
            "sound": "default",
            "badge": 3,
        },
        "order": "A-17",
        "deep_link": "app://orders/A-17",
    }
    scheme, token = headers["authorization"].split(" ")
    assert scheme == "bearer"
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": KEY_ID, "typ": "JWT"}
    claims = jwt.decode(token, server.public_key, algorithms=["ES256"], options=NO_IAT)
    assert claims == {"iss": TEAM_ID, "iat": int(clock())}


async def test_apns_id_is_the_same_on_every_attempt(ca: trustme.CA, clock: Clock) -> None:
    async with apns_gateway(ca, clock) as (server, transport):
        server.script(DEVICE, push_servers.apns_reason(503, "ServiceUnavailable"))
        first = await transport.send(push())
        second = await transport.send(push())
        other = await transport.send(push(message_id="msg-43"))
    assert (first.kind, second.kind, other.kind) == (RETRY, DELIVERED, DELIVERED)
    ids = [r.headers["apns-id"] for r in server.requests]
    assert ids[0] == ids[1] != ids[2]


async def test_apns_background_and_low_priority(ca: trustme.CA, clock: Clock) -> None:
    async with apns_gateway(ca, clock) as (server, transport):
        silent = await transport.send(push(title="", body="", data={"sync": "1"}))
        low = await transport.send(push(priority=5))
    assert (silent.kind, low.kind) == (DELIVERED, DELIVERED)
    background, alert = server.requests
    assert background.headers["apns-push-type"] == "background"
    assert background.headers["apns-priority"] == "5"  # Apple: background must be 5
    assert "apns-expiration" not in background.headers
    assert "apns-collapse-id" not in background.headers
    assert background.json() == {"aps": {"content-available": 1}, "sync": "1"}
    assert alert.headers["apns-push-type"] == "alert"
    assert alert.headers["apns-priority"] == "5"


async def test_apns_many_notifications_share_one_connection_and_token(
    ca: trustme.CA, clock: Clock
) -> None:
    async with apns_gateway(ca, clock, concurrency=20) as (server, transport):
        outcomes = await asyncio.gather(
            *(transport.send(push(message_id=f"m{n}")) for n in range(60))
        )
    assert {o.kind for o in outcomes} == {DELIVERED}
    assert len({r.client for r in server.requests}) == 1  # one TCP connection
    assert {r.http_version for r in server.requests} == {"2"}
    assert len(server.provider_tokens) == 1
    assert transport.tokens.signed == 1


async def test_apns_requests_cut_off_by_a_goaway_go_again_on_a_new_connection(
    ca: trustme.CA, clock: Clock
) -> None:
    # At most 20 in flight when the server closes the connection after 50 requests, so what
    # is cut off fits on a second connection.
    async with apns_gateway(ca, clock, max_requests=50, concurrency=20) as (server, transport):
        outcomes = await asyncio.gather(
            *(transport.send(push(message_id=f"m{n}")) for n in range(60))
        )
    assert {o.kind for o in outcomes} == {DELIVERED}
    assert len({r.client for r in server.requests}) == 2


async def test_apns_token_is_reused_then_refreshed_before_the_hour(
    ca: trustme.CA, clock: Clock
) -> None:
    async with apns_gateway(ca, clock) as (server, transport):
        assert (await transport.send(push())).kind == DELIVERED
        clock.advance(49 * 60)
        assert (await transport.send(push())).kind == DELIVERED
        assert transport.tokens.signed == 1
        clock.advance(2 * 60)  # 51 minutes: past the 50-minute refresh
        assert (await transport.send(push())).kind == DELIVERED
        clock.advance(50 * 60)  # a token is never used past 50 minutes, far from the hour
        assert (await transport.send(push())).kind == DELIVERED
    assert transport.tokens.signed == 3
    issued = [
        jwt.decode(t, server.public_key, algorithms=["ES256"], options=NO_IAT)["iat"]
        for t in server.provider_tokens
    ]
    assert [b - a for a, b in itertools.pairwise(issued)] == [51 * 60, 50 * 60]


async def test_apns_expired_provider_token_is_replaced_once(ca: trustme.CA, clock: Clock) -> None:
    # This host's clock runs slow: APNs finds its 50-minute-fresh token an hour old.
    server_clock = Clock(clock())
    async with apns_gateway(ca, clock, server_clock=server_clock) as (server, transport):
        assert (await transport.send(push())).kind == DELIVERED
        clock.advance(10 * 60)
        server_clock.advance(61 * 60)
        outcome = await transport.send(push())
    assert outcome.kind == DELIVERED
    assert transport.tokens.signed == 2
    assert len(server.requests) == 3  # the refused attempt and its retry


async def test_apns_wrong_key_is_a_temporary_configuration_error(
    ca: trustme.CA, clock: Clock
) -> None:
    other_key, _ = push_servers.apns_key()
    async with apns_gateway(ca, clock, key=other_key) as (_, transport):
        outcome = await transport.send(push())
    assert outcome.kind == RETRY
    assert "403 InvalidProviderToken" in outcome.reply
    assert not outcome.quarantine


@pytest.mark.parametrize(
    "answer",
    [
        push_servers.apns_reason(410, "Unregistered", timestamp=1_700_000_000_000),
        push_servers.apns_reason(400, "BadDeviceToken"),
        push_servers.apns_reason(410, "ExpiredToken"),
    ],
)
async def test_apns_dead_tokens_are_quarantined(
    ca: trustme.CA, clock: Clock, answer: Answer
) -> None:
    async with apns_gateway(ca, clock) as (server, transport):
        server.script(DEVICE, answer)
        outcome = await transport.send(push())
    assert outcome.kind == FAILED
    assert outcome.quarantine
    assert outcome.reply == f"APNs {answer.status} {answer.body and answer.body['reason']}"


async def test_apns_malformed_token_is_quarantined_without_sending(
    ca: trustme.CA, clock: Clock
) -> None:
    async with apns_gateway(ca, clock) as (server, transport):
        hostile = await transport.send(push(token="../../3/device/abcd?x=1"))
        empty = await transport.send(push(token=""))
    assert (hostile.kind, hostile.quarantine) == (FAILED, True)
    assert (empty.kind, empty.quarantine) == (FAILED, False)
    assert server.requests == []


async def test_apns_other_client_errors_fail_permanently(ca: trustme.CA, clock: Clock) -> None:
    async with apns_gateway(ca, clock) as (server, transport):
        too_big = await transport.send(push(data={"blob": "x" * 5000}))
        long_collapse = await transport.send(push(collapse_id="c" * 65))
        reserved = await transport.send(push(data={"aps": "mine"}))
        server.script(DEVICE, push_servers.apns_reason(400, "TopicDisallowed"))
        disallowed = await transport.send(push())
    assert (too_big.kind, too_big.quarantine, too_big.reply) == (
        FAILED,
        False,
        "APNs 413 PayloadTooLarge",
    )
    assert (long_collapse.kind, long_collapse.reply) == (FAILED, "APNs 400 BadCollapseId")
    assert (reserved.kind, reserved.quarantine) == (FAILED, False)
    assert "reserved" in reserved.reply
    assert (disallowed.kind, disallowed.reply) == (FAILED, "APNs 400 TopicDisallowed")
    assert len(server.requests) == 3  # the reserved key was refused before sending


async def test_apns_throttling_and_server_errors_retry_after(ca: trustme.CA, clock: Clock) -> None:
    later = email.utils.formatdate(clock() + 120, usegmt=True)
    async with apns_gateway(ca, clock) as (server, transport):
        server.script(
            DEVICE,
            Answer(429, {"reason": "TooManyRequests"}, {"retry-after": "30"}),
            Answer(503, {"reason": "ServiceUnavailable"}, {"retry-after": later}),
            Answer(500, {"reason": "InternalServerError"}),
            Answer(502, None),
        )
        outcomes = [await transport.send(push()) for _ in range(5)]
    throttled, unavailable, internal, bad_gateway, fine = outcomes
    assert (throttled.kind, throttled.retry_after, throttled.quarantine) == (RETRY, 30.0, False)
    assert throttled.reply == "APNs 429 TooManyRequests"
    assert unavailable.kind == RETRY
    assert unavailable.retry_after is not None
    assert 119 <= unavailable.retry_after <= 120
    assert (internal.kind, internal.retry_after) == (RETRY, None)
    assert (bad_gateway.kind, bad_gateway.reply) == (RETRY, "APNs 502 Bad Gateway")
    assert fine.kind == DELIVERED


async def test_apns_slow_answer_times_out_and_the_next_send_works(
    ca: trustme.CA, clock: Clock
) -> None:
    async with apns_gateway(ca, clock, timeout=0.3) as (server, transport):
        server.script(DEVICE, Answer(200, None, delay=3.0))
        slow = await transport.send(push())
        after = await transport.send(push())
    assert slow.kind == RETRY
    assert "timed out" in slow.reply
    assert after.kind == DELIVERED


def _unreachable_apns(port: int, ca_file: str = "", **options: Any) -> apns.ApnsTransport:
    pem, _ = push_servers.apns_key()
    config = apns.ApnsConfig(
        key_id=KEY_ID,
        team_id=TEAM_ID,
        topic=TOPIC,
        key=pem,
        endpoint=f"https://127.0.0.1:{port}",
        ca_file=ca_file,
        **({"timeout": 2.0} | options),
    )
    return apns.ApnsTransport(config)


async def test_apns_refused_silent_and_closing_servers_are_connection_failures() -> None:
    refused = _unreachable_apns(push_servers.closed_port())
    async with (
        push_servers.silent_server() as silent_port,
        push_servers.closing_server() as closing_port,
    ):
        silent = _unreachable_apns(silent_port, timeout=0.3)
        closing = _unreachable_apns(closing_port)
        outcomes = [await t.send(push()) for t in (refused, silent, closing)]
        for transport in (refused, silent, closing):
            await transport.aclose()
    assert [o.kind for o in outcomes] == [RETRY, RETRY, RETRY]
    assert not any(o.quarantine for o in outcomes)
    assert all(o.reply.startswith("APNs https://127.0.0.1:") for o in outcomes)
    assert "timed out" in outcomes[1].reply


async def test_apns_untrusted_certificate_is_refused(ca: trustme.CA, clock: Clock) -> None:
    _, public = push_servers.apns_key()
    async with push_servers.serving(ApnsServer(public), ca) as served:
        transport = _unreachable_apns(served.port)  # the system's CAs do not know ours
        outcome = await transport.send(push())
        await transport.aclose()
    assert outcome.kind == RETRY
    assert "CERTIFICATE_VERIFY_FAILED" in outcome.reply


def test_apns_config_and_key_errors_are_clear(tmp_path: Any) -> None:
    pem, _ = push_servers.apns_key()
    key_file = tmp_path / "AuthKey_KEYID12345.p8"
    key_file.write_text(pem)
    apns.ApnsTransport(apns.ApnsConfig(KEY_ID, TEAM_ID, TOPIC, key_file=str(key_file)))
    with pytest.raises(ValueError, match="exactly one"):
        apns.ApnsConfig(KEY_ID, TEAM_ID, TOPIC, key=pem, key_file=str(key_file))
    with pytest.raises(ValueError, match="production, sandbox"):
        apns.ApnsConfig(KEY_ID, TEAM_ID, TOPIC, key=pem, endpoint="http://plain")
    with pytest.raises(ValueError, match="not a PEM"):
        apns.ApnsTransport(apns.ApnsConfig(KEY_ID, TEAM_ID, TOPIC, key="not a key"))
    account, _ = push_servers.service_account("https://example.test/token")
    with pytest.raises(ValueError, match="P-256"):
        apns.ApnsTransport(
            apns.ApnsConfig(KEY_ID, TEAM_ID, TOPIC, key=json.loads(account)["private_key"])
        )
    with pytest.raises(ValueError, match="cannot be read"):
        apns.ApnsTransport(apns.ApnsConfig(KEY_ID, TEAM_ID, TOPIC, key_file=str(tmp_path / "none")))
    with pytest.raises(ValueError, match=r"CA file .* cannot be used"):
        apns.ApnsTransport(
            apns.ApnsConfig(KEY_ID, TEAM_ID, TOPIC, key=pem, ca_file=str(tmp_path / "none.pem"))
        )
    with pytest.raises(ValueError, match=r"CA file .* cannot be used"):
        apns.ApnsTransport(apns.ApnsConfig(KEY_ID, TEAM_ID, TOPIC, key=pem, ca_file=str(key_file)))
    with pytest.raises(ValueError, match="between 0 and 3600"):
        apns.ApnsConfig(KEY_ID, TEAM_ID, TOPIC, key=pem, token_refresh=3600)


async def test_apns_malformed_answers_are_handled(ca: trustme.CA, clock: Clock) -> None:
    async with apns_gateway(ca, clock) as (apple, apns_transport):
        apple.script(DEVICE, Answer(400, {"reason": "x" * 5000}), Answer(400, {"reason": 7}))
        long_reason = await apns_transport.send(push())
        odd_reason = await apns_transport.send(push())
    assert long_reason.kind == FAILED
    assert len(long_reason.reply) < 250
    assert odd_reason.reply == "APNs 400 Bad Request"
