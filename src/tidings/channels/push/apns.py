"""Apple Push Notification service over HTTP/2 with token (JWT) authentication.

What Apple documents and this module relies on ("Sending notification requests to APNs",
"Establishing a token-based connection to APNs", "Handling notification responses from APNs"):

- One request per notification: ``POST /3/device/<device token>`` on
  ``api.push.apple.com`` (production) or ``api.sandbox.push.apple.com`` (development), over
  HTTP/2 and TLS, with a JSON body whose ``aps`` dictionary holds what the system shows
  (``alert`` with ``title`` and ``body``, ``sound``, ``badge``, or ``content-available: 1`` for
  a background update); other top-level keys are the app's custom data.
- Headers: ``authorization: bearer <JWT>``; ``apns-topic`` (the app's bundle id);
  ``apns-push-type`` (``alert`` when the user sees or hears something, ``background`` for a
  silent content update); ``apns-priority`` (10: at once, 5: as power allows; a background
  notification must use 5); ``apns-expiration`` (a UNIX time in seconds after which APNs stops
  trying; here the event's expiration); ``apns-collapse-id`` (notifications with the same id
  replace each other); ``apns-id`` (a canonical UUID naming the notification, echoed back).
- The provider token is a JWT signed with ES256 by the team's .p8 key: header ``alg`` and
  ``kid`` (the 10-character key id), claims ``iss`` (the 10-character team id) and ``iat``
  (seconds since the epoch). APNs rejects tokens older than one hour (403
  ``ExpiredProviderToken``) and refreshing more often than every 20 minutes (429
  ``TooManyProviderTokenUpdates``), so one token is reused for ``token_refresh`` seconds
  (default 50 minutes) and then replaced; on ``ExpiredProviderToken`` a new one is made and the
  request sent once more.
- Answers: 200 with the ``apns-id`` header and an empty body; errors carry a JSON body
  ``{"reason": "..."}`` (410 adds ``timestamp``, in milliseconds, when the token stopped being
  valid).

How answers map onto :mod:`~tidings.channels.errors`:

=============================================  ===============================================
200                                            delivered, ``provider_id`` = ``apns-id``
410 (``Unregistered``, ``ExpiredToken``),      ``RecipientRejected``: the device token is
400 ``BadDeviceToken``, a token that is not    quarantined
hexadecimal (not sent)
403 provider-token and certificate reasons     ``TemporaryFailure`` (a configuration error
                                               that must not fail every message for good)
429, 5xx                                       ``TemporaryFailure``, ``retry_after`` from
                                               ``Retry-After``
other 4xx                                      ``PermanentFailure`` with the reason
refused, reset, TLS failure, timeout           ``ConnectionFailure``
=============================================  ===============================================
"""

from __future__ import annotations

import dataclasses
import re
import ssl
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tidings import model
from tidings.channels import errors
from tidings.channels.push import gateway

ENDPOINTS = {
    "production": "https://api.push.apple.com",
    "sandbox": "https://api.sandbox.push.apple.com",
}

#: 403 reasons that say our credentials are wrong, not the message.
_CREDENTIAL_REASONS = frozenset(
    {
        "ExpiredProviderToken",
        "InvalidProviderToken",
        "MissingProviderToken",
        "BadCertificate",
        "BadCertificateEnvironment",
    }
)
_DEVICE_TOKEN = re.compile(r"[0-9A-Fa-f]{8,200}")
#: apns-id values are derived from the message id in this namespace, so retries share one.
_APNS_ID_NAMESPACE = uuid.UUID("5b0e5f39-52f2-4c36-a3a7-0f6d3c8bd0c1")


@dataclasses.dataclass(frozen=True, slots=True)
class ApnsConfig:
    """How to reach APNs and sign provider tokens."""

    #: The 10-character key id of the .p8 key (the JWT's ``kid``).
    key_id: str
    #: The 10-character team id (the JWT's ``iss``).
    team_id: str
    #: The app's bundle id (``apns-topic``).
    topic: str
    #: The .p8 key as PEM text, or ``key_file``, the path of the .p8 file.
    key: str = ""
    key_file: str = ""
    #: ``production``, ``sandbox`` or an ``https://`` URL (a test server).
    endpoint: str = "production"
    #: A PEM bundle of trusted CAs; empty means the system's.
    ca_file: str = ""
    #: Seconds allowed for connecting and for each answer.
    timeout: float = 10.0
    #: Requests in flight at once (HTTP/2 streams over the connections).
    concurrency: int = 100
    #: HTTP/2 connections opened to the gateway.
    connections: int = 1
    #: Seconds one provider token is used before a new one is signed (below one hour).
    token_refresh: float = 3000.0

    def __post_init__(self) -> None:
        if not (self.key_id and self.team_id and self.topic):
            raise ValueError("APNs needs a key id, a team id and a topic (the bundle id)")
        if bool(self.key) == bool(self.key_file):
            raise ValueError("APNs needs exactly one of the key text and the key file")
        if self.endpoint not in ENDPOINTS and not self.endpoint.startswith("https://"):
            raise ValueError("APNs endpoint must be production, sandbox or an https:// URL")
        if self.timeout <= 0 or self.concurrency < 1 or self.connections < 1:
            raise ValueError("APNs timeout, concurrency and connections must be positive")
        if not 0 < self.token_refresh < 3600:
            raise ValueError("APNs token_refresh must be between 0 and 3600 seconds")

    @property
    def base_url(self) -> str:
        """The gateway's URL."""
        return ENDPOINTS.get(self.endpoint, self.endpoint).rstrip("/")


def load_key(config: ApnsConfig) -> ec.EllipticCurvePrivateKey:
    """The P-256 private key from the config; ``ValueError`` says what is wrong with it."""
    try:
        pem = config.key.encode() if config.key else Path(config.key_file).read_bytes()
    except OSError as exc:
        raise ValueError(f"APNs key file cannot be read: {exc}") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"APNs key is not a PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("APNs key must be an EC P-256 key (the .p8 file from Apple)")
    return key


class ProviderToken:
    """The current provider token: signed once, reused until ``refresh`` seconds old."""

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        *,
        key_id: str,
        team_id: str,
        refresh: float,
        clock: gateway.Clock,
    ) -> None:
        self._key = key
        self._key_id = key_id
        self._team_id = team_id
        self._refresh = refresh
        self._clock = clock
        self._token = ""
        self._issued = 0
        self.signed = 0  # tokens signed so far (for tests and metrics)

    def current(self) -> str:
        """A token under ``refresh`` seconds old, signing a new one if needed."""
        now = self._clock()
        if not self._token or not 0 <= now - self._issued < self._refresh:
            self._issued = int(now)
            self._token = jwt.encode(
                {"iss": self._team_id, "iat": self._issued},
                self._key,
                algorithm="ES256",
                headers={"kid": self._key_id},
            )
            self.signed += 1
        return self._token

    def discard(self, token: str) -> None:
        """Forget ``token`` (APNs called it expired) unless it was replaced meanwhile."""
        if self._token == token:
            self._token = ""


def push_type(message: model.PushMessage) -> str:
    """``alert`` when the user sees or hears something, else ``background``."""
    visible = message.title or message.body or message.sound or message.badge is not None
    return "alert" if visible else "background"


def payload(message: model.PushMessage) -> bytes:
    """The JSON body: ``aps`` and the message's data as custom top-level keys."""
    aps: dict[str, Any] = {}
    if message.title or message.body:
        alert: dict[str, str] = {}
        if message.title:
            alert["title"] = message.title
        if message.body:
            alert["body"] = message.body
        aps["alert"] = alert
    if message.sound:
        aps["sound"] = message.sound
    if message.badge is not None:
        aps["badge"] = message.badge
    if push_type(message) == "background":
        aps["content-available"] = 1
    if "aps" in message.data:
        raise errors.PermanentFailure("data key 'aps' is reserved by APNs")
    return msgspec.json.encode({"aps": aps, **message.data})


def headers(message: model.PushMessage, topic: str) -> dict[str, str]:
    """The ``apns-*`` request headers for ``message``."""
    kind = push_type(message)
    priority = "10" if kind == "alert" and message.priority >= 10 else "5"
    result = {
        "apns-topic": topic,
        "apns-push-type": kind,
        "apns-priority": priority,
        "apns-id": str(uuid.uuid5(_APNS_ID_NAMESPACE, message.message_id or str(message.event_id))),
    }
    if message.expires_at is not None:
        result["apns-expiration"] = str(max(0, message.expires_at // 1_000_000))
    if message.collapse_id:
        result["apns-collapse-id"] = message.collapse_id
    return result


def reason(response: httpx.Response) -> str:
    """The ``reason`` of an error answer, or its status line when the body has none."""
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("reason"), str) and body["reason"]:
        return str(body["reason"])[:200]
    return response.reason_phrase or "no reason given"


def failure(response: httpx.Response, now: float) -> errors.DeliveryError:
    """The error an APNs error answer stands for."""
    status = response.status_code
    why = reason(response)
    reply = f"APNs {status} {why}"
    if status == 410 or why == "BadDeviceToken":
        return errors.RecipientRejected(reply)
    if status == 403 and why in _CREDENTIAL_REASONS:
        return errors.TemporaryFailure(f"{reply} (check the APNs key, key id and team id)")
    if status == 429 or status >= 500:
        return errors.TemporaryFailure(reply, retry_after=gateway.retry_after(response, now))
    return errors.PermanentFailure(reply)


class ApnsTransport(gateway.Transport):
    """Sends push notifications to APNs over one reused HTTP/2 connection."""

    name = "apns"

    def __init__(
        self,
        config: ApnsConfig,
        *,
        clock: gateway.Clock = gateway.system_clock,
        verify: ssl.SSLContext | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self.tokens = ProviderToken(
            load_key(config),
            key_id=config.key_id,
            team_id=config.team_id,
            refresh=config.token_refresh,
            clock=clock,
        )
        self._client = gateway.client(
            config.base_url,
            ca_file=config.ca_file,
            timeout=config.timeout,
            connections=config.connections,
            verify=verify,
        )
        self._limiter = gateway.Limiter(config.concurrency)
        self._where = f"APNs {config.base_url}"

    async def _send(self, message: model.PushMessage) -> model.Outcome:
        if not message.token:
            raise errors.PermanentFailure("APNs message has no device token (not sent)")
        if not _DEVICE_TOKEN.fullmatch(message.token):
            raise errors.RecipientRejected("APNs device token is not hexadecimal (not sent)")
        body = payload(message)
        request_headers = headers(message, self._config.topic)
        for attempt in (1, 2):
            token = self.tokens.current()
            request_headers["authorization"] = f"bearer {token}"
            async with self._limiter.slot():
                response = await gateway.post(
                    self._client,
                    self._where,
                    f"/3/device/{message.token}",
                    content=body,
                    headers=request_headers,
                )
            if response.status_code == 200:
                return model.Outcome(
                    model.OutcomeKind.DELIVERED,
                    reply=f"APNs 200 ({response.http_version})",
                    provider_id=response.headers.get("apns-id", ""),
                )
            if attempt == 1 and reason(response) == "ExpiredProviderToken":
                self.tokens.discard(token)
                continue
            raise failure(response, self._clock())
        raise AssertionError("unreachable")  # pragma: no cover
