"""Local APNs and FCM servers (tests/push_servers.py) with transports pointed at them, and a
clock that moves only when told, for the push integration tests."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import trustme

from tests import push_servers
from tests.push_servers import ApnsServer, FcmServer
from tidings import model
from tidings.channels.push import apns, fcm

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
