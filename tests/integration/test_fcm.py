"""The FCM transport against a local HTTP/2 server over TLS: the OAuth token endpoint and
`messages:send` (tests/push_servers.py)."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any

import jwt
import pytest
import trustme

from tests import push_servers
from tests.integration.gateways import (
    DELIVERED,
    FAILED,
    RETRY,
    Clock,
    fcm_gateway,
    push,
    sends,
)
from tests.push_servers import Answer
from tidings import model
from tidings.channels.push import fcm

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


async def test_fcm_malformed_answers_are_handled(ca: trustme.CA, clock: Clock) -> None:
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


async def test_fcm_one_failed_grant_answers_all_who_waited_for_it(
    ca: trustme.CA, clock: Clock
) -> None:
    async with fcm_gateway(ca, clock) as (server, transport, _):
        server.token_answers.append(Answer(503, None, {"retry-after": "7"}, delay=0.3))
        outcomes = await asyncio.gather(
            *(
                transport.send(push(token=f"t{n}", platform=model.PushPlatform.FCM))
                for n in range(20)
            )
        )
        later = await transport.send(push(token="t", platform=model.PushPlatform.FCM))
    assert {(o.kind, o.retry_after) for o in outcomes} == {(RETRY, 7.0)}
    assert later.kind == DELIVERED  # the next send after the failure tries again
    assert [r.path for r in server.requests].count("/token") == 2


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
