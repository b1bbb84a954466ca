"""APNs and FCM stand-ins for the push transports' tests: small ASGI apps served by hypercorn
over TLS with HTTP/2 on 127.0.0.1 and an ephemeral port.

:class:`ApnsServer` checks what Apple documents for ``POST /3/device/<token>``: the method and
path, the ``apns-*`` headers, and the provider token (an ES256 JWT whose ``kid``, ``iss`` and
``iat`` it verifies with the public half of the key; older than an hour is
``ExpiredProviderToken``, a new token within 20 minutes of the last is
``TooManyProviderTokenUpdates``). It answers 200 with ``apns-id`` or the documented
``{"reason": ...}`` errors, and keeps what it received.

:class:`FcmServer` is both the OAuth token endpoint (it verifies the RS256 grant JWT with the
service account's public key and hands out ``access_token``/``expires_in``) and
``messages:send`` (Bearer token, the v1 message JSON), answering ``{"name": ...}`` or Google's
error bodies with an ``FcmError`` detail.

Both take answers to give for particular device tokens (:class:`Answer`), and a ``clock`` so
tests can move time without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import secrets
import socket
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypercorn.asyncio import serve
from hypercorn.config import Config

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Clock = Callable[[], float]

FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"


@dataclasses.dataclass
class Answer:
    """A scripted answer: status, JSON body (None: empty) and extra headers."""

    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Seconds to wait before answering (to make the client time out).
    delay: float = 0.0


@dataclasses.dataclass
class Request:
    """One request as a server took it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    http_version: str
    client: tuple[str, int]

    def json(self) -> Any:
        return json.loads(self.body)


async def _read(receive: Receive) -> bytes:
    chunks = []
    while True:
        event = await receive()
        chunks.append(event.get("body", b""))
        if not event.get("more_body"):
            return b"".join(chunks)


async def _respond(send: Send, answer: Answer) -> None:
    if answer.delay:
        await asyncio.sleep(answer.delay)
    body = b"" if answer.body is None else json.dumps(answer.body).encode()
    headers = [(k.encode(), v.encode()) for k, v in answer.headers.items()]
    if answer.body is not None:
        headers.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        event = await receive()
        if event["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif event["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class _Scripted:
    """Answers queued per device token, given before the server's own checks pass."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.requests: list[Request] = []
        self.scripted: dict[str, list[Answer]] = {}

    def script(self, token: str, *answers: Answer) -> None:
        """Answer the next requests for ``token`` with ``answers``, in order."""
        self.scripted.setdefault(token, []).extend(answers)

    def _next(self, token: str) -> Answer | None:
        queue = self.scripted.get(token)
        return queue.pop(0) if queue else None

    async def _take(self, scope: Scope, receive: Receive) -> Request:
        request = Request(
            method=scope["method"],
            path=scope["path"],
            headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body=await _read(receive),
            http_version=scope["http_version"],
            client=tuple(scope["client"]),
        )
        self.requests.append(request)
        return request


# ------------------------------------------------------------------------------------- APNs


def apns_key() -> tuple[str, ec.EllipticCurvePublicKey]:
    """A new P-256 key as .p8 (PKCS#8 PEM) text, and its public half."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return pem, key.public_key()


def apns_reason(status: int, reason: str, **extra: Any) -> Answer:
    """An APNs error answer as documented: ``{"reason": ...}`` (410 adds a timestamp)."""
    return Answer(status, {"reason": reason, **extra})


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DEVICE_PATH = re.compile(r"/3/device/([0-9A-Fa-f]+)")


class ApnsServer(_Scripted):
    """An APNs provider API that checks requests the way Apple documents them."""

    def __init__(
        self,
        public_key: ec.EllipticCurvePublicKey,
        *,
        key_id: str = "KEYID12345",
        team_id: str = "TEAMID1234",
        topic: str = "com.example.app",
        clock: Clock = time.time,
    ) -> None:
        super().__init__(clock)
        self.public_key = public_key
        self.key_id = key_id
        self.team_id = team_id
        self.topic = topic
        self.provider_tokens: list[str] = []  # distinct tokens, in the order first seen
        self._token_changed = -1e18

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        request = await self._take(scope, receive)
        await _respond(send, self._answer(request))

    def _answer(self, request: Request) -> Answer:
        if request.method != "POST":
            return apns_reason(405, "MethodNotAllowed")
        path = _DEVICE_PATH.fullmatch(request.path)
        if path is None:
            return apns_reason(404, "BadPath")
        refusal = self._check_token(request.headers.get("authorization", ""))
        if refusal is not None:
            return refusal
        headers = request.headers
        if "apns-topic" not in headers:
            return apns_reason(400, "MissingTopic")
        if headers["apns-topic"] != self.topic:
            return apns_reason(400, "DeviceTokenNotForTopic")
        kind = headers.get("apns-push-type")
        if kind not in ("alert", "background"):
            return apns_reason(400, "InvalidPushType")
        priority = headers.get("apns-priority", "10")
        if priority not in ("10", "5", "1") or (kind == "background" and priority == "10"):
            return apns_reason(400, "BadPriority")
        if not headers.get("apns-expiration", "0").isdigit():
            return apns_reason(400, "BadExpirationDate")
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            return apns_reason(400, "BadCollapseId")
        apns_id = headers.get("apns-id", "")
        if apns_id and not _UUID.fullmatch(apns_id):
            return apns_reason(400, "BadMessageId")
        if not request.body:
            return apns_reason(400, "PayloadEmpty")
        if len(request.body) > 4096:
            return apns_reason(413, "PayloadTooLarge")
        scripted = self._next(path.group(1))
        if scripted is not None:
            return scripted
        return Answer(200, None, {"apns-id": apns_id or str(uuid.uuid4())})

    def _check_token(self, authorization: str) -> Answer | None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return apns_reason(403, "MissingProviderToken")
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=["ES256"],
                options={"require": ["iss", "iat"], "verify_iat": False},
            )
        except jwt.PyJWTError:
            return apns_reason(403, "InvalidProviderToken")
        if header.get("kid") != self.key_id or claims["iss"] != self.team_id:
            return apns_reason(403, "InvalidProviderToken")
        now = self.clock()
        if now - claims["iat"] >= 3600:
            return apns_reason(403, "ExpiredProviderToken")
        if token not in self.provider_tokens:
            if now - self._token_changed < 20 * 60:
                return apns_reason(429, "TooManyProviderTokenUpdates")
            self.provider_tokens.append(token)
            self._token_changed = now
        return None


# -------------------------------------------------------------------------------------- FCM


def service_account(
    token_uri: str, project_id: str = "tidings-test"
) -> tuple[str, rsa.RSAPublicKey]:
    """A new service-account key file (JSON text) for ``token_uri``, and its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    account = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": f"fcm-sender@{project_id}.iam.gserviceaccount.com",
        "client_id": "123456789012345678901",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    return json.dumps(account), key.public_key()


def fcm_error(
    code: int,
    status: str,
    message: str,
    *,
    error_code: str = "",
    fields: tuple[str, ...] = (),
    headers: dict[str, str] | None = None,
) -> Answer:
    """Google's error body, with an ``FcmError`` and/or a ``BadRequest`` detail."""
    details: list[dict[str, Any]] = []
    if error_code:
        details.append({"@type": FCM_ERROR, "errorCode": error_code})
    if fields:
        violations = [{"field": f, "description": message} for f in fields]
        details.append({"@type": BAD_REQUEST, "fieldViolations": violations})
    body = {"error": {"code": code, "message": message, "status": status, "details": details}}
    return Answer(code, body, headers or {})


def unregistered() -> Answer:
    """FCM's answer for a registration token that is no longer valid."""
    return fcm_error(404, "NOT_FOUND", "Requested entity was not found.", error_code="UNREGISTERED")


_RESERVED_DATA = ("from", "gcm", "message_type", "notification")
_SEND_PATH = re.compile(r"/v1/projects/([^/]+)/messages:send")
_TTL = re.compile(r"\d+(\.\d{1,9})?s")


class FcmServer(_Scripted):
    """The OAuth token endpoint (``/token``) and the FCM v1 send method."""

    def __init__(self, clock: Clock = time.time, expires_in: int = 3599) -> None:
        super().__init__(clock)
        self.expires_in = expires_in
        self.account: dict[str, Any] = {}
        self.public_key: rsa.RSAPublicKey | None = None
        self.access_tokens: dict[str, float] = {}  # token -> expiry (server clock)
        self.grants: list[dict[str, Any]] = []  # verified grant claims
        self.token_answers: list[Answer] = []  # scripted answers of the token endpoint
        self.sent = 0

    def trust(self, account_json: str, public_key: rsa.RSAPublicKey) -> None:
        """Accept grants signed by this service account."""
        self.account = json.loads(account_json)
        self.public_key = public_key

    def revoke(self) -> None:
        """Invalidate every access token handed out so far."""
        self.access_tokens.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        request = await self._take(scope, receive)
        if request.method == "POST" and request.path == "/token":
            answer = self.token_answers.pop(0) if self.token_answers else self._grant(request)
        elif request.method == "POST" and (match := _SEND_PATH.fullmatch(request.path)):
            answer = self._send(request, match.group(1))
        else:
            answer = fcm_error(404, "NOT_FOUND", "Not found.")
        await _respond(send, answer)

    def _grant(self, request: Request) -> Answer:
        form = urllib.parse.parse_qs(request.body.decode())
        if form.get("grant_type") != [GRANT_TYPE]:
            return Answer(400, {"error": "unsupported_grant_type", "error_description": ""})
        assertion = (form.get("assertion") or [""])[0]
        invalid = Answer(400, {"error": "invalid_grant", "error_description": "Invalid JWT."})
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(
                assertion,
                self.public_key,
                algorithms=["RS256"],
                audience=self.account.get("token_uri"),
                options={
                    "require": ["iss", "aud", "iat", "exp", "scope"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError:
            return invalid
        now = self.clock()
        if (
            header.get("kid") != self.account.get("private_key_id")
            or claims["iss"] != self.account.get("client_email")
            or SCOPE not in str(claims["scope"]).split()
            or not 0 < claims["exp"] - claims["iat"] <= 3600
            or not claims["iat"] - 300 <= now <= claims["exp"]
        ):
            return invalid
        self.grants.append(claims)
        token = "ya29." + secrets.token_urlsafe(24)
        self.access_tokens[token] = now + self.expires_in
        body = {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}
        return Answer(200, body)

    def _send(self, request: Request, project: str) -> Answer:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expiry = self.access_tokens.get(token)
        if scheme != "Bearer" or expiry is None or self.clock() >= expiry:
            return fcm_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token.",
            )
        if project != self.account.get("project_id"):
            return fcm_error(
                403, "PERMISSION_DENIED", "Permission 'cloudmessaging.messages.create' denied."
            )
        try:
            message = json.loads(request.body)["message"]
        except (ValueError, KeyError, TypeError):
            return fcm_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        problem = self._check(message)
        if problem is not None:
            return problem
        scripted = self._next(message["token"])
        if scripted is not None:
            return scripted
        if message["token"].startswith("bad"):
            return fcm_error(
                400,
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
                error_code="INVALID_ARGUMENT",
            )
        self.sent += 1
        return Answer(
            200, {"name": f"projects/{project}/messages/0:{self.sent}%{secrets.token_hex(8)}"}
        )

    def _check(self, message: Any) -> Answer | None:
        def invalid(field: str, why: str) -> Answer:
            return fcm_error(
                400, "INVALID_ARGUMENT", why, error_code="INVALID_ARGUMENT", fields=(field,)
            )

        if not isinstance(message, dict) or not isinstance(message.get("token"), str):
            return invalid("message.token", "A registration token is required.")
        data = message.get("data", {})
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            return invalid("message.data", "Invalid value at 'message.data' (TYPE_STRING)")
        for key in data:
            if key in _RESERVED_DATA or key.startswith("google."):
                return invalid("message.data", f"Invalid data payload key: {key}")
        android = message.get("android", {})
        if android.get("priority", "NORMAL") not in ("NORMAL", "HIGH"):
            return invalid(
                "message.android.priority", "Invalid value at 'message.android.priority'"
            )
        if "ttl" in android and not _TTL.fullmatch(str(android["ttl"])):
            return invalid("message.android.ttl", "Invalid value at 'message.android.ttl'")
        headers = message.get("apns", {}).get("headers", {})
        if not all(isinstance(v, str) for v in headers.values()):
            return invalid("message.apns.headers", "Invalid value at 'message.apns.headers'")
        return None


# ----------------------------------------------------------------------------------- serving


@dataclasses.dataclass
class Served:
    """A running server: its base URL and the CA file clients must trust."""

    url: str
    port: int
    ca_file: str


@contextlib.asynccontextmanager
async def serving(app: Any, ca: trustme.CA, *, max_requests: int = 10**9) -> AsyncIterator[Served]:
    """Serve ``app`` with hypercorn over TLS (ALPN h2, http/1.1) on 127.0.0.1:<free port>;
    a connection is closed (HTTP/2 GOAWAY) when it brings more than ``max_requests``."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        leaf.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
        leaf.private_key_pem.write_to_path(str(folder / "key.pem"))
        ca.cert_pem.write_to_path(str(folder / "ca.pem"))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        port = sock.getsockname()[1]
        config = Config()
        config.bind = [f"fd://{sock.detach()}"]
        config.certfile = str(folder / "cert.pem")
        config.keyfile = str(folder / "key.pem")
        config.alpn_protocols = ["h2", "http/1.1"]
        config.graceful_timeout = 0.2
        config.accesslog = None
        config.errorlog = None
        config.h2_max_concurrent_streams = 1000
        config.keep_alive_max_requests = max_requests
        stop = asyncio.Event()
        task = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        try:
            yield Served(f"https://127.0.0.1:{port}", port, str(folder / "ca.pem"))
        finally:
            stop.set()
            try:
                await asyncio.wait_for(task, 5)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts and then says nothing (a TLS handshake never ends)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def closing_server() -> AsyncIterator[int]:
    """A TCP server that closes every connection as soon as it is accepted."""

    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(close, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def closed_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
