"""Adobe Campaign Classic (v7, v8) Message Center compatibility over SOAP, so websites that
call ``PushEvent`` / ``PushEvents`` can point at Tidings without a code change.

- ``POST /nl/jsp/soaprouter.jsp``: ``nms:rtEvent#PushEvent``, ``#PushEvents`` (and the same
  on ``nms:batchEvent``), ``xtk:session#Logon`` and ``#Logoff``;
- ``GET /nl/jsp/schemawsdl.jsp?schema=nms:rtEvent`` (``nms:batchEvent``, ``xtk:session``):
  the WSDL, without authentication (it holds nothing secret);
- ``GET /nl/jsp/mcPing.jsp``: the execution instance's health as Adobe's page reports it,
  ``Ok`` / timestamp / ``7/400 pending events``, or ``Error`` and why.

Who is calling (``<urn:sessiontoken>``, the ``__sessiontoken`` cookie, or the
``Authorization`` / ``X-Api-Key`` headers), tried in this order:

1. a session token from ``xtk:session#Logon`` (:mod:`tidings.soap.session`);
2. ``login/password``: the password is a Tidings API key (``mc/tid_…``, the login is free);
   the login may hold the key instead (``tid_…/``), or the whole text may be the key;
3. an API key in the ``Authorization: Bearer`` or ``X-Api-Key`` header (Adobe's IMS
   technical-account flow sends a bearer token there);
4. nothing at all from an address in ``soap_trusted_ips`` (a key that is sent must still be
   valid).

The key needs the ``events`` scope (or ``admin``). Anything else is Adobe's fault
"Invalid login or password. Connection denied.". Requests larger than
``soap_max_body_bytes``, XML that is not well formed or is hostile (a DTD, entities, nesting
deeper than 64 levels) are refused with a fault before anything is stored.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.params import FromQuery

from tidings import apikeys, clock, ingest, model
from tidings.api import auth, ops
from tidings.api.errors import ApiError
from tidings.app import App
from tidings.settings import SettingsError
from tidings.soap import envelope, session, wsdl
from tidings.soap import events as soap_events
from tidings.soap import xml as soap_xml
from tidings.soap.envelope import Call, Fault
from tidings.store import events as events_store
from tidings.store import keys as keys_store
from tidings.store.database import Unavailable

log = logging.getLogger("tidings.api.soap")

INVALID_LOGIN = "Invalid login or password. Connection denied."
EVENT_SERVICES = frozenset({"nms:rtEvent", "nms:batchEvent"})
_SESSION_CACHE_SECONDS = 10.0
DRAIN_LIMIT = 64 * 1024 * 1024
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(text: str) -> list[Network]:
    """The networks of the ``soap_trusted_ips`` setting."""
    networks = []
    for item in text.replace(";", ",").split(","):
        if item.strip():
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise SettingsError(
                    f"soap_trusted_ips: {item.strip()!r} is not an address or network"
                ) from None
    return networks


async def read_limited(request: Request[Any, Any, Any], limit: int) -> bytes | None:
    """The body, or None if it is larger than ``limit`` bytes.

    Past the limit the rest is read and dropped (up to :data:`DRAIN_LIMIT` bytes, beyond
    which the connection is cut): a client writes its whole request before it reads the
    answer, and would otherwise see a reset connection instead of the fault."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > DRAIN_LIMIT:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > DRAIN_LIMIT:
            return None
        if size <= limit:
            chunks.append(chunk)
    return b"".join(chunks) if size <= limit else None


def _xml(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(body, status_code=status, media_type=envelope.CONTENT_TYPE, headers=headers)


def _fault(
    fault: Fault, status: int = 500, headers: dict[str, str] | None = None
) -> Response[bytes]:
    return _xml(envelope.fault_body(fault), status, headers)


class SoapRouter:
    """The SOAP router's logic, bound to one App."""

    def __init__(self, app: App):
        self.app = app
        self.settings = app.settings
        self.trusted = trusted_networks(app.settings.soap_trusted_ips)
        self.sessions = session.Sessions(
            app.settings.soap_session_secret, app.settings.soap_session_ttl
        )
        self._verified: dict[str, tuple[model.ApiKey, float]] = {}

    # ------------------------------------------------------------ who is calling

    def is_trusted(self, host: str | None) -> bool:
        """Whether the peer address ``host`` is in ``soap_trusted_ips``."""
        if not host or not self.trusted:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)

    async def session_key(self, token: str) -> model.ApiKey | None:
        """The API key a session token was issued for, if the token is valid."""
        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0] if self.sessions.claims(token) is not None else None
        claims = self.sessions.claims(token)
        if claims is None:
            return None
        async with self.app.db.connection() as conn:
            found = await keys_store.find_key(conn, claims.key_prefix)
        if found is None or found[0].revoked_at is not None:
            return None
        if not self.sessions.verify(claims, found[1]):
            return None
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[token] = (found[0], time.monotonic() + _SESSION_CACHE_SECONDS)
        return found[0]

    async def key_among(self, candidates: list[str]) -> model.ApiKey | None:
        """The first valid API key among ``candidates``."""
        for candidate in candidates:
            key = await self.app.authenticate(candidate)
            if key is not None:
                return key
        return None

    async def identify(self, request: Request[Any, Any, Any], call: Call) -> None:
        """Let the call through, or raise the invalid-login fault."""
        fault = Fault(envelope.bad_parameters(call.service, call.method), INVALID_LOGIN)
        token = call.text("sessiontoken", "__sessiontoken") or request.cookies.get(
            "__sessiontoken", ""
        )
        headers = auth.keys_in(
            request.headers.get("authorization", ""), request.headers.get("x-api-key", "")
        )
        key: model.ApiKey | None = None
        presented = bool(headers)
        if session.Sessions.is_token(token):
            presented = True
            key = await self.session_key(token)
        else:
            login, _, password = token.partition("/")
            candidates = [c for c in dict.fromkeys((password, login, token)) if c]
            candidates = [c for c in candidates if apikeys.prefix_of(c) is not None]
            presented = presented or bool(candidates)
            key = await self.key_among(candidates)
        if key is None and headers:
            key = await self.key_among(headers)
        if key is None:
            client = request.client.host if request.client else None
            if not presented and self.is_trusted(client):
                return
            raise fault
        if "events" not in key.scopes and "admin" not in key.scopes:
            raise fault

    # ------------------------------------------------------------ methods

    async def dispatch(self, request: Request[Any, Any, Any], call: Call) -> Response[bytes]:
        """Run one call."""
        if call.service == "xtk:session":
            if call.method == "Logon":
                return await self.logon(call)
            if call.method == "Logoff":
                token = call.text("sessiontoken", "__sessiontoken") or request.cookies.get(
                    "__sessiontoken", ""
                )
                self.sessions.log_off(token)
                self._verified.pop(token, None)
                return _xml(envelope.logoff_response())
        elif call.service in EVENT_SERVICES and call.method in ("PushEvent", "PushEvents"):
            await self.identify(request, call)
            if call.method == "PushEvent":
                return await self.push_event(call)
            return await self.push_events(call)
        known = (
            "Logon and Logoff"
            if call.service == "xtk:session"
            else "PushEvent and PushEvents (of nms:rtEvent and nms:batchEvent)"
        )
        raise Fault(
            envelope.invalid_message(call.service, call.method),
            f"Unknown method '{call.method}' of service '{call.service}': Tidings serves {known}.",
        )

    async def logon(self, call: Call) -> Response[bytes]:
        """``xtk:session#Logon``: an API key in ``strPassword`` (or ``strLogin``) gets a
        session token."""
        login, password = call.text("strLogin"), call.text("strPassword")
        candidates = [c for c in dict.fromkeys((password, login)) if apikeys.prefix_of(c)]
        key = await self.key_among(candidates)
        if key is None or ("events" not in key.scopes and "admin" not in key.scopes):
            raise Fault(envelope.bad_parameters(call.service, call.method), INVALID_LOGIN)
        async with self.app.db.connection() as conn:
            found = await keys_store.find_key(conn, key.prefix)
        if found is None:  # pragma: no cover - it was just authenticated
            raise Fault(envelope.bad_parameters(call.service, call.method), INVALID_LOGIN)
        token, security = self.sessions.issue(key.prefix, found[1])
        ttl = int(self.settings.soap_session_ttl)
        return _xml(envelope.logon_response(token, security, login or key.name, ttl))

    def _submission(self, call: Call, element: Any) -> ingest.Submission:
        return soap_events.submission(
            element,
            batch_service=call.service == "nms:batchEvent",
            max_ctx_bytes=self.settings.max_body_bytes,
        )

    async def push_event(self, call: Call) -> Response[bytes]:
        """One event: its id, or a fault saying why it was refused."""
        bad = envelope.bad_parameters(call.service, call.method)
        dom = call.params.get("domEvent")
        if dom is None:
            raise Fault(bad, "The parameter 'domEvent' is missing.")
        elements = soap_events.event_elements(dom)
        if len(elements) != 1:
            raise Fault(bad, f"'domEvent' must hold one event, not {len(elements)}.")
        try:
            event = self.app.ingest.prepare(self._submission(call, elements[0]))
        except (soap_events.InvalidSoapEvent, ingest.InvalidEvent) as exc:
            raise Fault(bad, _reason(exc)) from None
        await self.app.ingest.commit([event])
        return _xml(envelope.push_event_response(call.service, event.id))

    async def push_events(self, call: Call) -> Response[bytes]:
        """Several events: one id per event in order; 0 (with the reason) for one refused."""
        bad = envelope.bad_parameters(call.service, call.method)
        dom = call.params.get("domEventCollection")
        if dom is None:
            raise Fault(bad, "The parameter 'domEventCollection' is missing.")
        elements = soap_events.event_elements(dom)
        limit = self.settings.max_batch_events
        if len(elements) > limit:
            raise Fault(bad, f"The collection holds {len(elements)} events; at most {limit}.")
        outcomes: list[envelope.Outcome] = []
        prepared = []
        for element in elements:
            external = soap_events.external_id(element)
            try:
                event = self.app.ingest.prepare(self._submission(call, element))
            except (soap_events.InvalidSoapEvent, ingest.InvalidEvent) as exc:
                outcomes.append(envelope.Outcome(0, external, _reason(exc)))
                continue
            prepared.append(event)
            outcomes.append(envelope.Outcome(event.id, external))
        await self.app.ingest.commit(prepared)
        return _xml(envelope.push_events_response(call.service, outcomes))

    async def handle(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        """The whole request: read, parse, identify, run; every failure is a fault."""
        action = request.headers.get("soapaction", "")
        service, method = envelope.service_of_action(action)
        service, method = service or "unknown", method or "unknown"
        if self.app.shedding and method.startswith("PushEvent"):
            # Load shedding, as on the REST routes, but answered as a SOAP fault.
            refusal = ops.overloaded(self.app)
            overloaded = Fault(
                envelope.bad_parameters(service, method),
                "The queue is too far behind; retry later.",
                code="SOAP-ENV:Server",
            )
            return _fault(overloaded, 503, refusal.headers)
        try:
            body = await read_limited(request, self.settings.soap_max_body_bytes)
            if body is None:
                too_large = Fault(
                    envelope.bad_parameters(service, method),
                    f"The request is larger than {self.settings.soap_max_body_bytes} bytes.",
                )
                return _fault(too_large, headers={"Connection": "close"})
            try:
                root = soap_xml.parse(body)
            except soap_xml.XmlError as exc:
                raise Fault(envelope.invalid_message(service, method), str(exc)) from None
            return await self.dispatch(request, envelope.read_call(root, action))
        except Fault as refused:
            return _fault(refused)
        except Unavailable as exc:
            log.warning("SOAP call refused: %s", exc)
            unavailable = Fault(
                envelope.bad_parameters(service, method),
                "The database is unavailable; retry later.",
                code="SOAP-ENV:Server",
            )
            return _fault(unavailable, 503, {"Retry-After": "5"})
        except ApiError:
            raise
        except Exception:
            log.exception("SOAP call failed")
            crashed = Fault(
                envelope.bad_parameters(service, method),
                "Internal error; see the server log.",
                code="SOAP-ENV:Server",
            )
            return _fault(crashed)

    async def ping(self) -> Response[bytes]:
        """Adobe's ``mcPing.jsp``: ``Ok``, the time and ``pending/threshold pending events``;
        ``Error`` and the reason when over the threshold or without a database."""
        threshold = self.settings.mc_ping_threshold
        try:
            async with self.app.db.connection() as conn:
                counts = await events_store.count_by_status(conn)
        except Unavailable:
            text = "Error\nThe database is unavailable\n"
            return Response(text.encode(), status_code=503, media_type="text/plain")
        pending = counts.get(str(model.EventStatus.PENDING), 0)
        if pending > threshold:
            text = f"Error\nToo many pending events ({pending}/{threshold})\n"
        else:
            now = clock.format_adobe(clock.now_us())
            text = f"Ok\n{now}\n{pending}/{threshold} pending events\n"
        return Response(text.encode(), media_type="text/plain; charset=utf-8")


def _reason(exc: Exception) -> str:
    if isinstance(exc, ingest.InvalidEvent):
        return f"{exc.message} ({exc.field.replace('$.recipient.', '$.')})"
    return str(exc)


def router(app: App) -> Router:
    """The routes, bound to ``app``."""
    soap = SoapRouter(app)

    @post(
        "/soaprouter.jsp",
        include_in_schema=False,
        request_max_body_size=None,  # read_limited applies soap_max_body_bytes with a fault
        status_code=200,
    )
    async def soaprouter(request: Request[Any, Any, Any]) -> Response[bytes]:
        return await soap.handle(request)

    @get("/schemawsdl.jsp", include_in_schema=False)
    async def schema_wsdl(schema: FromQuery[str] = "nms:rtEvent") -> Response[bytes]:
        endpoint = f"{app.settings.server_url}/nl/jsp/soaprouter.jsp"
        document = wsdl.document(schema, endpoint)
        if document is None:
            raise ApiError(
                404, "not_found", f"no WSDL for {schema!r}; try {', '.join(wsdl.SERVICES)}"
            )
        return _xml(document.encode())

    @get("/mcPing.jsp", include_in_schema=False)
    async def mc_ping() -> Response[bytes]:
        return await soap.ping()

    return Router("/nl/jsp", route_handlers=[soaprouter, schema_wsdl, mc_ping])
