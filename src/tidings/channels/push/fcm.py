"""Firebase Cloud Messaging, HTTP v1 API, authenticated with a service account.

What Google documents and this module relies on (FCM HTTP v1 reference
``projects.messages.send``, "Authorize send requests", the ``ErrorCode`` enum, and OAuth 2.0
for server to server applications):

- The service-account key file is JSON with ``project_id``, ``private_key`` (RSA, PEM),
  ``private_key_id``, ``client_email`` and ``token_uri``.
- An access token is obtained by POSTing ``grant_type=urn:ietf:params:oauth:grant-type:
  jwt-bearer`` and ``assertion=<JWT>`` (form-encoded) to ``token_uri``; the JWT is signed RS256
  (header ``kid`` = ``private_key_id``) with claims ``iss`` (the client email), ``scope``
  (``https://www.googleapis.com/auth/firebase.messaging``), ``aud`` (the token URI), ``iat``
  and ``exp`` (at most one hour later). The answer is ``{"access_token", "expires_in",
  "token_type": "Bearer"}``. The token is cached until ``token_margin`` seconds before it
  expires, fetched by one request when many sends need it at once (a failed fetch is the
  answer for all that waited for it), and fetched again once when a send is answered 401.
- A message is ``POST /v1/projects/{project_id}/messages:send`` with ``Authorization: Bearer``
  and ``{"message": {"token", "notification": {"title", "body"}, "data": {string: string},
  "android": {"priority": "HIGH"|"NORMAL", "ttl": "<seconds>s", "collapse_key",
  "notification": {"sound"}}, "apns": {"headers": {...}, "payload": {"aps": {...}}}}}``. The
  answer is the sent message, ``{"name": "projects/{id}/messages/{message id}"}``.
- Errors are ``{"error": {"code", "message", "status", "details": [...]}}``; a detail of
  ``@type`` ``type.googleapis.com/google.firebase.fcm.v1.FcmError`` carries the FCM
  ``errorCode`` (``UNREGISTERED`` 404, ``INVALID_ARGUMENT`` 400, ``SENDER_ID_MISMATCH`` 403,
  ``QUOTA_EXCEEDED`` 429, ``UNAVAILABLE`` 503, ``INTERNAL`` 500, ``THIRD_PARTY_AUTH_ERROR``
  401); a ``google.rpc.BadRequest`` detail names the offending fields. Google asks senders to
  retry 429 and 5xx after ``Retry-After``, with backoff.

How answers map onto :mod:`~tidings.channels.errors`:

=============================================  ===============================================
200                                            delivered, ``provider_id`` = the ``name``
``UNREGISTERED``; ``INVALID_ARGUMENT`` about   ``RecipientRejected``: the registration token
the registration token (``message.token``)     is quarantined
401 twice, ``THIRD_PARTY_AUTH_ERROR``,         ``TemporaryFailure`` (a configuration error)
``PERMISSION_DENIED``, token grant refused
429, 5xx, ``QUOTA_EXCEEDED``, ``UNAVAILABLE``  ``TemporaryFailure``, ``retry_after`` from
                                               ``Retry-After``
other 4xx                                      ``PermanentFailure`` with the message
refused, reset, TLS failure, timeout           ``ConnectionFailure``
=============================================  ===============================================
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import ssl
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tidings import model
from tidings.channels import errors
from tidings.channels.push import apns, gateway

ENDPOINT = "https://fcm.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"

_RETRYABLE = frozenset({"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"})
_CREDENTIALS = frozenset({"THIRD_PARTY_AUTH_ERROR", "PERMISSION_DENIED", "UNAUTHENTICATED"})


class ServiceAccount(msgspec.Struct, frozen=True):
    """The fields of a Google service-account key file that FCM needs."""

    project_id: str
    private_key: str
    client_email: str
    token_uri: str
    private_key_id: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class FcmConfig:
    """Which service account to use and where FCM is."""

    #: The service-account key as JSON text, or ``service_account_file``, its path.
    service_account: str = ""
    service_account_file: str = ""
    #: The FCM API's base URL (a test server in tests).
    endpoint: str = ENDPOINT
    #: A PEM bundle of trusted CAs (for FCM and the token URI); empty means the system's.
    ca_file: str = ""
    #: Seconds allowed for connecting and for each answer.
    timeout: float = 10.0
    #: Requests in flight at once (HTTP/2 streams over the connections).
    concurrency: int = 100
    #: HTTP/2 connections opened to FCM.
    connections: int = 1
    #: An access token is replaced this many seconds before it expires.
    token_margin: float = 300.0

    def __post_init__(self) -> None:
        if bool(self.service_account) == bool(self.service_account_file):
            raise ValueError("FCM needs exactly one of the service-account JSON and its file")
        if not self.endpoint.startswith("https://"):
            raise ValueError("FCM endpoint must be an https:// URL")
        if self.timeout <= 0 or self.concurrency < 1 or self.connections < 1:
            raise ValueError("FCM timeout, concurrency and connections must be positive")
        if self.token_margin < 0:
            raise ValueError("FCM token_margin must not be negative")


def load_account(config: FcmConfig) -> tuple[ServiceAccount, rsa.RSAPrivateKey]:
    """The service account and its key; ``ValueError`` says what is wrong with them."""
    try:
        text = config.service_account or Path(config.service_account_file).read_text()
    except OSError as exc:
        raise ValueError(f"FCM service-account file cannot be read: {exc}") from None
    try:
        account = msgspec.json.decode(text, type=ServiceAccount)
    except msgspec.ValidationError as exc:
        raise ValueError(f"FCM service-account key: {exc}") from None
    except msgspec.DecodeError:
        raise ValueError("FCM service-account key is not JSON") from None
    if not account.token_uri.startswith("https://"):
        raise ValueError("FCM service-account token_uri must be an https:// URL")
    try:
        key = serialization.load_pem_private_key(account.private_key.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"FCM service-account private_key is not a PEM key: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("FCM service-account private_key must be an RSA key")
    return account, key


def error_body(response: httpx.Response) -> tuple[str, str, list[Any]]:
    """(status or FCM error code, message, details) of a Google error answer."""
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", response.reason_phrase or "no message", []
    details = error.get("details")
    details = details if isinstance(details, list) else []
    code = str(error.get("status") or "")
    for detail in details:
        if isinstance(detail, dict) and detail.get("@type") == FCM_ERROR:
            code = str(detail.get("errorCode") or code)
    return code, str(error.get("message") or "")[:300], details


def about_token(message: str, details: list[Any]) -> bool:
    """Whether an ``INVALID_ARGUMENT`` concerns the registration token."""
    for detail in details:
        if isinstance(detail, dict) and detail.get("@type") == BAD_REQUEST:
            for violation in detail.get("fieldViolations") or ():
                if isinstance(violation, dict) and violation.get("field") == "message.token":
                    return True
    return "registration token" in message.lower()


def failure(response: httpx.Response, now: float) -> errors.DeliveryError:
    """The error an FCM error answer stands for."""
    status = response.status_code
    code, text, details = error_body(response)
    reply = f"FCM {status} {code or 'error'}: {text}"
    if code == "UNREGISTERED" or (code == "INVALID_ARGUMENT" and about_token(text, details)):
        return errors.RecipientRejected(reply)
    if status == 429 or status >= 500 or code in _RETRYABLE:
        return errors.TemporaryFailure(reply, retry_after=gateway.retry_after(response, now))
    if status == 401 or code in _CREDENTIALS:
        return errors.TemporaryFailure(f"{reply} (check the service account)")
    return errors.PermanentFailure(reply)


def message_json(message: model.PushMessage, now: float) -> dict[str, Any]:
    """The v1 ``message`` object for ``message``."""
    body: dict[str, Any] = {"token": message.token}
    notification = {k: v for k, v in (("title", message.title), ("body", message.body)) if v}
    if notification:
        body["notification"] = notification
    if message.data:
        body["data"] = dict(message.data)
    kind = apns.push_type(message)
    high = message.priority >= 10 and kind == "alert"
    android: dict[str, Any] = {"priority": "HIGH" if high else "NORMAL"}
    apns_headers = {"apns-priority": "10" if high else "5", "apns-push-type": kind}
    if message.expires_at is not None:
        android["ttl"] = f"{max(0, math.ceil(message.expires_at / 1_000_000 - now))}s"
        apns_headers["apns-expiration"] = str(max(0, message.expires_at // 1_000_000))
    if message.collapse_id:
        android["collapse_key"] = message.collapse_id
        apns_headers["apns-collapse-id"] = message.collapse_id
    if message.sound:
        android["notification"] = {"sound": message.sound}
    aps: dict[str, Any] = {}
    if message.sound:
        aps["sound"] = message.sound
    if message.badge is not None:
        aps["badge"] = message.badge
    if kind == "background":
        aps["content-available"] = 1
    body["android"] = android
    body["apns"] = {"headers": apns_headers}
    if aps:
        body["apns"]["payload"] = {"aps": aps}
    return body


class AccessTokens:
    """The cached OAuth 2 access token, fetched with a signed grant when needed."""

    def __init__(
        self,
        account: ServiceAccount,
        key: rsa.RSAPrivateKey,
        client: httpx.AsyncClient,
        *,
        margin: float,
        clock: gateway.Clock,
    ) -> None:
        self._account = account
        self._key = key
        self._client = client
        self._margin = margin
        self._clock = clock
        self._token = ""
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self._finished = 0  # fetches tried so far, whatever their result
        self._failure: errors.DeliveryError | None = None
        self.fetched = 0  # tokens fetched so far (for tests and metrics)

    def _valid(self) -> bool:
        return bool(self._token) and self._clock() < self._expires - self._margin

    async def current(self) -> str:
        """A token valid for more than ``margin`` seconds. One fetch serves all waiters,
        and when it fails they all get its failure rather than each trying again in turn."""
        if self._valid():
            return self._token
        asked = self._finished
        async with self._lock:
            if self._valid():
                return self._token
            failure = self._failure
            if failure is not None and self._finished != asked:
                raise type(failure)(failure.reply, retry_after=failure.retry_after)
            self._failure = None
            try:
                await self._fetch()
            except errors.DeliveryError as error:
                self._failure = error
                raise
            finally:
                self._finished += 1
            return self._token

    def discard(self, token: str) -> None:
        """Forget ``token`` (FCM refused it) unless it was replaced meanwhile."""
        if self._token == token:
            self._token = ""

    def grant(self, now: int) -> str:
        """The signed JWT grant asking for an FCM access token."""
        return jwt.encode(
            {
                "iss": self._account.client_email,
                "scope": SCOPE,
                "aud": self._account.token_uri,
                "iat": now,
                "exp": now + 3600,
            },
            self._key,
            algorithm="RS256",
            headers={"kid": self._account.private_key_id} if self._account.private_key_id else None,
        )

    async def _fetch(self) -> None:
        now = self._clock()
        uri = self._account.token_uri
        form = {"grant_type": GRANT_TYPE, "assertion": self.grant(int(now))}
        response = await gateway.post(self._client, f"FCM token endpoint {uri}", uri, data=form)
        if response.status_code != 200:
            raise self._refused(response)
        try:
            answer = msgspec.json.decode(response.content, type=_TokenAnswer)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise errors.TemporaryFailure(f"FCM token endpoint answered badly: {exc}") from None
        self._token = answer.access_token
        self._expires = now + answer.expires_in
        self.fetched += 1

    def _refused(self, response: httpx.Response) -> errors.DeliveryError:
        status = response.status_code
        try:
            body = msgspec.json.decode(response.content)
        except msgspec.DecodeError:
            body = None
        detail = ""
        if isinstance(body, dict):
            detail = " ".join(
                str(body[k]) for k in ("error", "error_description") if isinstance(body.get(k), str)
            )[:300]
        reply = f"FCM token endpoint {status} {detail or response.reason_phrase}".rstrip()
        retry = gateway.retry_after(response, self._clock())
        if status == 429 or status >= 500:
            return errors.TemporaryFailure(reply, retry_after=retry)
        # A refused grant fails every message alike: a configuration error, not the message's.
        return errors.TemporaryFailure(f"{reply} (check the service account)")


class _TokenAnswer(msgspec.Struct):
    access_token: str
    expires_in: float
    token_type: str = "Bearer"


class FcmTransport(gateway.Transport):
    """Sends push notifications through the FCM HTTP v1 API over one HTTP/2 connection."""

    name = "fcm"

    def __init__(
        self,
        config: FcmConfig,
        *,
        clock: gateway.Clock = gateway.system_clock,
        verify: ssl.SSLContext | None = None,
    ) -> None:
        account, key = load_account(config)
        self._clock = clock
        self._client = gateway.client(
            config.endpoint.rstrip("/"),
            ca_file=config.ca_file,
            timeout=config.timeout,
            connections=config.connections,
            verify=verify,
        )
        self.tokens = AccessTokens(
            account, key, self._client, margin=config.token_margin, clock=clock
        )
        self._path = f"/v1/projects/{account.project_id}/messages:send"
        self._limiter = gateway.Limiter(config.concurrency)
        self._where = f"FCM {config.endpoint}"

    async def _send(self, message: model.PushMessage) -> model.Outcome:
        if not message.token:
            raise errors.PermanentFailure("FCM message has no registration token (not sent)")
        body = msgspec.json.encode({"message": message_json(message, self._clock())})
        for attempt in (1, 2):
            async with self._limiter.slot():
                token = await self.tokens.current()
                response = await gateway.post(
                    self._client,
                    self._where,
                    self._path,
                    content=body,
                    headers={
                        "authorization": f"Bearer {token}",
                        "content-type": "application/json; charset=utf-8",
                    },
                )
            if response.status_code == 200:
                return model.Outcome(
                    model.OutcomeKind.DELIVERED,
                    reply=f"FCM 200 ({response.http_version})",
                    provider_id=_name(response),
                )
            if attempt == 1 and response.status_code == 401:
                self.tokens.discard(token)
                continue
            raise failure(response, self._clock())
        raise AssertionError("unreachable")  # pragma: no cover


def _name(response: httpx.Response) -> str:
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return ""
    name = body.get("name") if isinstance(body, dict) else None
    return name if isinstance(name, str) else ""
