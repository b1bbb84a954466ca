"""The APNs and FCM transports against local HTTP/2 servers over TLS (tests/push_servers.py)."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import itertools
import json
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
import trustme

from tests import push_servers
from tests.conftest import test_settings as settings_for
from tests.push_servers import Answer, ApnsServer, FcmServer
from tidings import model
from tidings.app import App
from tidings.channels.push import apns, fcm, router
from tidings.settings import SettingsError

DELIVERED = model.OutcomeKind.DELIVERED
RETRY = model.OutcomeKind.RETRY
FAILED = model.OutcomeKind.FAILED
KEY_ID = "KEYID12345"
TEAM_ID = "TEAMID1234"
TOPIC = "com.example.app"
DEVICE = "a1" * 32
#: The clock starts in the future; tokens issued then are checked by hand.
NO_IAT = {"verify_iat": False}


class Clock:
    """Time that moves only when told."""

    def __init__(self, start: float = 1_900_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def push(
    token: str = DEVICE, platform: model.PushPlatform = model.PushPlatform.APNS, **fields: Any
) -> model.PushMessage:
    values: dict[str, Any] = {
        "event_id": 42,
        "message_id": "msg-42",
        "platform": platform,
        "token": token,
        "title": "Your order shipped",
        "body": "It arrives on Tuesday.",
    }
    return model.PushMessage(**(values | fields))


@contextlib.asynccontextmanager
async def apns_gateway(
    ca: trustme.CA,
    clock: Clock,
    *,
    server_clock: Clock | None = None,
    key: str = "",
    max_requests: int = 10**9,
    **options: Any,
) -> AsyncIterator[tuple[ApnsServer, apns.ApnsTransport]]:
    pem, public = push_servers.apns_key()
    server = ApnsServer(
        public, key_id=KEY_ID, team_id=TEAM_ID, topic=TOPIC, clock=server_clock or clock
    )
    async with push_servers.serving(server, ca, max_requests=max_requests) as served:
        settings: dict[str, Any] = {
            "key_id": KEY_ID,
            "team_id": TEAM_ID,
            "topic": TOPIC,
            "key": key or pem,
            "endpoint": served.url,
            "ca_file": served.ca_file,
            "timeout": 5.0,
        }
        transport = apns.ApnsTransport(apns.ApnsConfig(**(settings | options)), clock=clock)
        try:
            yield server, transport
        finally:
            await transport.aclose()


@contextlib.asynccontextmanager
async def fcm_gateway(
    ca: trustme.CA, clock: Clock, *, token_uri: str = "", **options: Any
) -> AsyncIterator[tuple[FcmServer, fcm.FcmTransport, dict[str, Any]]]:
    server = FcmServer(clock=clock)
    async with push_servers.serving(server, ca) as served:
        account_json, public = push_servers.service_account(token_uri or f"{served.url}/token")
        server.trust(account_json, public)
        settings: dict[str, Any] = {
            "service_account": account_json,
            "endpoint": served.url,
            "ca_file": served.ca_file,
            "timeout": 5.0,
        }
        transport = fcm.FcmTransport(fcm.FcmConfig(**(settings | options)), clock=clock)
        try:
            yield server, transport, json.loads(account_json)
        finally:
            await transport.aclose()


def sends(server: FcmServer) -> list[push_servers.Request]:
    return [r for r in server.requests if r.path.endswith("messages:send")]


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


# -------------------------------------------------------------------------------------- FCM


async def test_fcm_message_goes_over_http2_as_documented(ca: trustme.CA, clock: Clock) -> None:
    message = push(
        token="fcm-token-1",
        platform=model.PushPlatform.FCM,
        data={"order": "A-17"},
        sound="default",
        badge=2,
        collapse_id="order-A-17",
        expires_at=int((clock() + 3600.5) * 1_000_000),
    )
    async with fcm_gateway(ca, clock) as (server, transport, account):
        outcome = await transport.send(message)
    assert outcome.kind == DELIVERED, outcome
    grant_request, send_request = server.requests
    # The grant: an RS256 JWT verified with the service account's public key.
    assert grant_request.path == "/token"
    form = urllib.parse.parse_qs(grant_request.body.decode())
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    [assertion] = form["assertion"]
    assert jwt.get_unverified_header(assertion)["kid"] == account["private_key_id"]
    [claims] = server.grants
    assert claims == {
        "iss": account["client_email"],
        "scope": "https://www.googleapis.com/auth/firebase.messaging",
        "aud": account["token_uri"],
        "iat": int(clock()),
        "exp": int(clock()) + 3600,
    }
    # The send: the v1 method, the access token, the message JSON.
    assert send_request.http_version == "2"
    assert send_request.path == "/v1/projects/tidings-test/messages:send"
    [access_token] = server.access_tokens
    assert send_request.headers["authorization"] == f"Bearer {access_token}"
    assert send_request.json() == {
        "message": {
            "token": "fcm-token-1",
            "notification": {"title": "Your order shipped", "body": "It arrives on Tuesday."},
            "data": {"order": "A-17"},
            "android": {
                "priority": "HIGH",
                "ttl": "3601s",
                "collapse_key": "order-A-17",
                "notification": {"sound": "default"},
            },
            "apns": {
                "headers": {
                    "apns-priority": "10",
                    "apns-push-type": "alert",
                    "apns-expiration": str(int(clock() + 3600)),
                    "apns-collapse-id": "order-A-17",
                },
                "payload": {"aps": {"sound": "default", "badge": 2}},
            },
        }
    }
    assert outcome.provider_id.startswith("projects/tidings-test/messages/0:1%")


async def test_fcm_background_message(ca: trustme.CA, clock: Clock) -> None:
    async with fcm_gateway(ca, clock) as (server, transport, _):
        outcome = await transport.send(
            push(token="t2", platform=model.PushPlatform.FCM, title="", body="", data={"sync": "1"})
        )
    assert outcome.kind == DELIVERED
    [request] = sends(server)
    assert request.json()["message"] == {
        "token": "t2",
        "data": {"sync": "1"},
        "android": {"priority": "NORMAL"},
        "apns": {
            "headers": {"apns-priority": "5", "apns-push-type": "background"},
            "payload": {"aps": {"content-available": 1}},
        },
    }


async def test_fcm_access_token_is_fetched_once_for_many_sends(
    ca: trustme.CA, clock: Clock
) -> None:
    async with fcm_gateway(ca, clock, concurrency=20) as (server, transport, _):
        outcomes = await asyncio.gather(
            *(
                transport.send(push(token=f"t{n}", platform=model.PushPlatform.FCM))
                for n in range(60)
            )
        )
    assert {o.kind for o in outcomes} == {DELIVERED}
    assert transport.tokens.fetched == 1
    assert len(server.grants) == 1
    assert len({r.client for r in server.requests}) == 1  # token and sends on one connection
    assert {r.http_version for r in server.requests} == {"2"}


async def test_fcm_access_token_is_refreshed_shortly_before_it_expires(
    ca: trustme.CA, clock: Clock
) -> None:
    message = push(token="t", platform=model.PushPlatform.FCM)
    async with fcm_gateway(ca, clock) as (server, transport, _):
        assert (await transport.send(message)).kind == DELIVERED
        clock.advance(3599 - 300 - 1)  # still more than the 5-minute margin left
        assert (await transport.send(message)).kind == DELIVERED
        assert transport.tokens.fetched == 1
        clock.advance(2)
        assert (await transport.send(message)).kind == DELIVERED
    assert transport.tokens.fetched == 2
    tokens = {r.headers["authorization"] for r in sends(server)}
    assert len(tokens) == 2


async def test_fcm_refreshes_the_token_once_on_401(ca: trustme.CA, clock: Clock) -> None:
    unauthenticated = push_servers.fcm_error(
        401, "UNAUTHENTICATED", "Request had invalid credentials."
    )
    async with fcm_gateway(ca, clock) as (server, transport, _):
        assert (
            await transport.send(push(token="t", platform=model.PushPlatform.FCM))
        ).kind == DELIVERED
        server.revoke()
        revoked = await transport.send(push(token="t", platform=model.PushPlatform.FCM))
        server.script("t", unauthenticated, unauthenticated)
        refused = await transport.send(push(token="t", platform=model.PushPlatform.FCM))
    assert revoked.kind == DELIVERED
    assert refused.kind == RETRY
    assert "401 UNAUTHENTICATED" in refused.reply
    assert "check the service account" in refused.reply
    # The first, one after the revocation, and one (not two) for the two 401 answers.
    assert transport.tokens.fetched == 3


@pytest.mark.parametrize(
    ("token", "answer"),
    [
        ("gone", push_servers.unregistered()),
        ("bad-token", None),  # the server's INVALID_ARGUMENT about the registration token
        (
            "short",
            push_servers.fcm_error(
                400, "INVALID_ARGUMENT", "Invalid registration", fields=("message.token",)
            ),
        ),
    ],
)
async def test_fcm_dead_tokens_are_quarantined(
    ca: trustme.CA, clock: Clock, token: str, answer: Answer | None
) -> None:
    async with fcm_gateway(ca, clock) as (server, transport, _):
        if answer is not None:
            server.script(token, answer)
        outcome = await transport.send(push(token=token, platform=model.PushPlatform.FCM))
    assert (outcome.kind, outcome.quarantine) == (FAILED, True)
    assert outcome.reply.startswith(("FCM 404 UNREGISTERED", "FCM 400 INVALID_ARGUMENT"))


async def test_fcm_other_client_errors_fail_without_quarantine(
    ca: trustme.CA, clock: Clock
) -> None:
    mismatch = push_servers.fcm_error(
        403, "PERMISSION_DENIED", "SenderId mismatch", error_code="SENDER_ID_MISMATCH"
    )
    async with fcm_gateway(ca, clock) as (server, transport, _):
        reserved = await transport.send(
            push(token="t", platform=model.PushPlatform.FCM, data={"from": "x"})
        )
        server.script("t", mismatch)
        other_sender = await transport.send(push(token="t", platform=model.PushPlatform.FCM))
    assert (reserved.kind, reserved.quarantine) == (FAILED, False)
    assert reserved.reply == "FCM 400 INVALID_ARGUMENT: Invalid data payload key: from"
    assert (other_sender.kind, other_sender.quarantine) == (FAILED, False)
    assert other_sender.reply == "FCM 403 SENDER_ID_MISMATCH: SenderId mismatch"


async def test_fcm_quota_and_unavailable_retry_after(ca: trustme.CA, clock: Clock) -> None:
    async with fcm_gateway(ca, clock) as (server, transport, _):
        server.script(
            "t",
            push_servers.fcm_error(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded.",
                error_code="QUOTA_EXCEEDED",
                headers={"retry-after": "60"},
            ),
            push_servers.fcm_error(
                503,
                "UNAVAILABLE",
                "The service is unavailable.",
                error_code="UNAVAILABLE",
                headers={"retry-after": "10"},
            ),
            push_servers.fcm_error(500, "INTERNAL", "Internal error.", error_code="INTERNAL"),
            Answer(502, None),
        )
        outcomes = [
            await transport.send(push(token="t", platform=model.PushPlatform.FCM)) for _ in range(5)
        ]
    quota, unavailable, internal, gateway_error, fine = outcomes
    assert (quota.kind, quota.retry_after) == (RETRY, 60.0)
    assert quota.reply == "FCM 429 QUOTA_EXCEEDED: Quota exceeded."
    assert (unavailable.kind, unavailable.retry_after) == (RETRY, 10.0)
    assert (internal.kind, internal.retry_after) == (RETRY, None)
    assert gateway_error.kind == RETRY
    assert fine.kind == DELIVERED


async def test_fcm_refused_grants_are_temporary(ca: trustme.CA, clock: Clock) -> None:
    async with fcm_gateway(ca, clock) as (server, transport, _):
        server.token_answers.append(
            Answer(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        )
        server.token_answers.append(Answer(503, None, {"retry-after": "5"}))
        refused = await transport.send(push(token="t", platform=model.PushPlatform.FCM))
        busy = await transport.send(push(token="t", platform=model.PushPlatform.FCM))
        fine = await transport.send(push(token="t", platform=model.PushPlatform.FCM))
        # A key the server does not trust is refused by the server's own check.
        other_account, other_public = push_servers.service_account(f"{server.account['token_uri']}")
        server.trust(other_account, other_public)
        server.revoke()
        untrusted = await transport.send(push(token="t", platform=model.PushPlatform.FCM))
    assert refused.kind == RETRY
    assert refused.reply.startswith("FCM token endpoint 400 invalid_grant Invalid JWT Signature.")
    assert (busy.kind, busy.retry_after) == (RETRY, 5.0)
    assert fine.kind == DELIVERED
    assert untrusted.kind == RETRY
    assert "invalid_grant" in untrusted.reply
    assert len(sends(server)) == 2  # nothing was sent without a token


async def test_malformed_answers_are_handled(ca: trustme.CA, clock: Clock) -> None:
    async with fcm_gateway(ca, clock) as (server, transport, _):
        server.token_answers.append(Answer(200, {"access_token": 5, "expires_in": "soon"}))
        bad_token_answer = await transport.send(push(token="t", platform=model.PushPlatform.FCM))
        server.script("t", Answer(200, {"unexpected": ["shape"]}))
        odd_success = await transport.send(push(token="t", platform=model.PushPlatform.FCM))
        server.script("t", Answer(400, {"error": ["not", "an", "object"]}))
        odd_error = await transport.send(push(token="t", platform=model.PushPlatform.FCM))
    assert bad_token_answer.kind == RETRY
    assert bad_token_answer.reply.startswith("FCM token endpoint answered badly")
    assert (odd_success.kind, odd_success.provider_id) == (DELIVERED, "")
    assert (odd_error.kind, odd_error.quarantine, odd_error.reply) == (
        FAILED,
        False,
        "FCM 400 error: Bad Request",
    )
    async with apns_gateway(ca, clock) as (apple, apns_transport):
        apple.script(DEVICE, Answer(400, {"reason": "x" * 5000}), Answer(400, {"reason": 7}))
        long_reason = await apns_transport.send(push())
        odd_reason = await apns_transport.send(push())
    assert long_reason.kind == FAILED
    assert len(long_reason.reply) < 250
    assert odd_reason.reply == "APNs 400 Bad Request"


async def test_fcm_unreachable_endpoints_are_connection_failures(
    ca: trustme.CA, clock: Clock
) -> None:
    closed = push_servers.closed_port()
    async with fcm_gateway(ca, clock, token_uri=f"https://127.0.0.1:{closed}/token") as (
        _,
        transport,
        _,
    ):
        no_token = await transport.send(push(token="t", platform=model.PushPlatform.FCM))
    async with fcm_gateway(ca, clock, endpoint=f"https://127.0.0.1:{closed}") as (_, transport, _):
        no_fcm = await transport.send(push(token="t", platform=model.PushPlatform.FCM))
    async with fcm_gateway(ca, clock, timeout=0.3) as (server, transport, _):
        server.script("slow", Answer(200, {"name": "projects/p/messages/1"}, delay=3.0))
        slow = await transport.send(push(token="slow", platform=model.PushPlatform.FCM))
        after = await transport.send(push(token="t", platform=model.PushPlatform.FCM))
    assert no_token.kind == RETRY
    assert no_token.reply.startswith("FCM token endpoint https://127.0.0.1:")
    assert no_fcm.kind == RETRY
    assert no_fcm.reply.startswith("FCM https://127.0.0.1:")
    assert slow.kind == RETRY
    assert "timed out" in slow.reply
    assert after.kind == DELIVERED


def test_fcm_service_account_errors_are_clear(tmp_path: Any) -> None:
    account, _ = push_servers.service_account("https://example.test/token")
    path = tmp_path / "service-account.json"
    path.write_text(account)
    fcm.FcmTransport(fcm.FcmConfig(service_account_file=str(path)))
    broken = json.loads(account)
    del broken["private_key"]
    with pytest.raises(ValueError, match="private_key"):
        fcm.FcmTransport(fcm.FcmConfig(service_account=json.dumps(broken)))
    with pytest.raises(ValueError, match="not JSON"):
        fcm.FcmTransport(fcm.FcmConfig(service_account="{nope"))
    with pytest.raises(ValueError, match="https://"):
        fcm.FcmTransport(
            fcm.FcmConfig(service_account=account.replace("https://example", "http://example"))
        )
    with pytest.raises(ValueError, match="exactly one"):
        fcm.FcmConfig()
    ec_key, _ = push_servers.apns_key()
    with pytest.raises(ValueError, match="RSA"):
        fcm.FcmTransport(
            fcm.FcmConfig(service_account=json.dumps(json.loads(account) | {"private_key": ec_key}))
        )


# ----------------------------------------------------------------------------------- router


async def test_router_sends_each_platform_to_its_gateway(ca: trustme.CA, clock: Clock) -> None:
    async with (
        apns_gateway(ca, clock) as (apple, apns_transport),
        fcm_gateway(ca, clock) as (
            google,
            fcm_transport,
            _,
        ),
    ):
        both = router.PushRouter(
            {model.PushPlatform.APNS: apns_transport, model.PushPlatform.FCM: fcm_transport}
        )
        to_apple = await both.send(push())
        to_google = await both.send(push(token="t", platform=model.PushPlatform.FCM))
        only_apple = router.PushRouter({model.PushPlatform.APNS: apns_transport})
        nowhere = await only_apple.send(push(token="t", platform=model.PushPlatform.FCM))
    assert (to_apple.kind, to_google.kind) == (DELIVERED, DELIVERED)
    assert len(apple.requests) == 1
    assert len(sends(google)) == 1
    assert (nowhere.kind, nowhere.quarantine) == (FAILED, False)
    assert nowhere.reply == "no push gateway is configured for fcm"


# -------------------------------------------------------------------------------- app wiring


async def test_app_routes_push_to_the_configured_gateways(
    ca: trustme.CA, clock: Clock, sqlite_url: str
) -> None:
    pem, public = push_servers.apns_key()
    apple = ApnsServer(public, key_id=KEY_ID, team_id=TEAM_ID, topic=TOPIC)
    google = FcmServer()
    async with (
        push_servers.serving(apple, ca) as apns_at,
        push_servers.serving(google, ca) as fcm_at,
    ):
        account, account_key = push_servers.service_account(f"{fcm_at.url}/token")
        google.trust(account, account_key)
        settings = settings_for(
            sqlite_url,
            apns_key=pem,
            apns_key_id=KEY_ID,
            apns_team_id=TEAM_ID,
            apns_topic=TOPIC,
            apns_endpoint=apns_at.url,
            apns_ca_file=apns_at.ca_file,
            fcm_service_account=account,
            fcm_endpoint=fcm_at.url,
            fcm_ca_file=fcm_at.ca_file,
        )
        async with App.running(settings, run_worker=False, migrate_schema=False) as app:
            transport = app.transports[model.Channel.PUSH]
            to_apple = await transport.send(push())
            to_google = await transport.send(push(token="t", platform=model.PushPlatform.FCM))
    assert (to_apple.kind, to_google.kind) == (DELIVERED, DELIVERED)
    assert len(apple.requests) == 1
    assert len(sends(google)) == 1


async def test_app_without_push_settings_has_no_push_transport(sqlite_url: str) -> None:
    async with App.running(settings_for(sqlite_url), run_worker=False, migrate_schema=False) as app:
        assert model.Channel.PUSH not in app.transports


async def test_app_refuses_an_unusable_push_key(sqlite_url: str) -> None:
    settings = settings_for(
        sqlite_url, apns_key="garbage", apns_key_id=KEY_ID, apns_team_id=TEAM_ID, apns_topic=TOPIC
    )
    with pytest.raises(SettingsError, match="APNs key is not a PEM private key"):
        async with App.running(settings, run_worker=False, migrate_schema=False):
            pass
