"""SOAP envelopes as Campaign Classic reads and writes them.

A call is the first element of ``<Body>``: its local name is the method (``PushEvent``), its
namespace the service (``urn:nms:rtEvent`` is ``nms:rtEvent``); a call element without a
namespace takes its service from the ``SOAPAction`` header (``nms:rtEvent#PushEvent``). The
``<Header>``, if any, is ignored: it must change nothing (Adobe once left events with a
header waiting).

Answers copy Adobe's (namespace prefixes, ``SOAP-ENV:encodingStyle``, ``xsi:type``);
faults are ``SOAP-ENV:Client`` with Adobe's documented ``faultstring`` and a ``detail``,
sent with HTTP 500 as SOAP 1.1 requires.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

import msgspec

from tidings.soap.xml import escape, local_name, namespace_of

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
CONTENT_TYPE = "text/xml; charset=utf-8"

_OPEN = (
    "<?xml version='1.0'?>\n"
    '<SOAP-ENV:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:ns="{ns}" xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">'
    "<SOAP-ENV:Body>"
)
_CLOSE = "</SOAP-ENV:Body></SOAP-ENV:Envelope>"
_ENCODING = 'SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"'
_LITERAL = 'SOAP-ENV:encodingStyle="http://xml.apache.org/xml-soap/literalxml"'


class Fault(Exception):
    """A ``SOAP-ENV:Client`` fault to answer with."""

    def __init__(self, faultstring: str, detail: str = "", code: str = "SOAP-ENV:Client"):
        super().__init__(f"{faultstring} {detail}".strip())
        self.faultstring = faultstring
        self.detail = detail
        self.code = code


class Call(msgspec.Struct, frozen=True):
    """One SOAP call: ``service`` (``nms:rtEvent``), ``method`` (``PushEvent``), its
    parameter elements by local name, and whether the envelope had a Header."""

    service: str
    method: str
    params: dict[str, ET.Element]
    has_header: bool = False

    def text(self, *names: str) -> str:
        """The text of the first parameter among ``names`` present, or ``""``."""
        for name in names:
            element = self.params.get(name)
            if element is not None:
                return (element.text or "").strip()
        return ""


def service_of_action(soap_action: str) -> tuple[str, str]:
    """``("nms:rtEvent", "PushEvent")`` for the header ``"nms:rtEvent#PushEvent"``."""
    service, _, method = soap_action.strip().strip('"').partition("#")
    return service, method


def invalid_message(service: str, method: str) -> str:
    """Adobe's fault string for a request that is not valid XML (Adobe names the method as
    the service and the service as the method; kept as documented)."""
    return f"The XML SOAP message is invalid (service '{method}', method '{service}')."


def bad_parameters(service: str, method: str) -> str:
    """Adobe's fault string for a call whose parameters cannot be used."""
    return f"Error while reading parameters of method '{method}' of service '{service}'."


def read_call(root: ET.Element, soap_action: str) -> Call:
    """The call in a parsed envelope; :class:`Fault` if the document is not a SOAP call."""
    action_service, action_method = service_of_action(soap_action)
    invalid = invalid_message(action_service or "unknown", action_method or "unknown")
    if local_name(root.tag) != "Envelope" or namespace_of(root.tag) not in (SOAP11, SOAP12):
        raise Fault(invalid, "The document is not a SOAP envelope.")
    env = namespace_of(root.tag)
    body = root.find(f"{{{env}}}Body")
    if body is None:
        raise Fault(invalid, "The SOAP envelope has no Body.")
    calls = [child for child in body if isinstance(child.tag, str)]
    if len(calls) != 1:
        raise Fault(invalid, "The SOAP Body must hold exactly one call.")
    call = calls[0]
    namespace = namespace_of(call.tag)
    service = namespace[4:] if namespace.startswith("urn:") else namespace or action_service
    params: dict[str, ET.Element] = {}
    for param in call:
        if isinstance(param.tag, str):
            params.setdefault(local_name(param.tag), param)
    return Call(
        service=service,
        method=local_name(call.tag),
        params=params,
        has_header=root.find(f"{{{env}}}Header") is not None,
    )


def push_event_response(service: str, event_id: int) -> bytes:
    """``PushEventResponse`` with ``plId`` (0: the event was not taken)."""
    return (
        _OPEN.format(ns=f"urn:{service}")
        + f'<urn:PushEventResponse {_ENCODING} xmlns:urn="urn:{service}">'
        + f'<plId xsi:type="xsd:long">{event_id}</plId>'
        + "</urn:PushEventResponse>"
        + _CLOSE
    ).encode()


class Outcome(msgspec.Struct, frozen=True):
    """What became of one event of a ``PushEvents`` call: its id (0 if refused)."""

    id: int
    external_id: str | None = None
    error: str | None = None


def push_events_response(service: str, outcomes: Sequence[Outcome]) -> bytes:
    """``PushEventsResponse``: ``pdomIds`` holds one ``<event id="…"/>`` per event, in the
    order they were sent, with the event's ``externalId`` and, for a refused event (id 0),
    the ``error``."""
    items = []
    for outcome in outcomes:
        attrs = f'id="{outcome.id}"'
        if outcome.external_id is not None:
            attrs += f' externalId="{escape(outcome.external_id)}"'
        if outcome.error is not None:
            attrs += f' error="{escape(outcome.error)}"'
        items.append(f"<event {attrs}/>")
    return (
        _OPEN.format(ns=f"urn:{service}")
        + f'<urn:PushEventsResponse {_ENCODING} xmlns:urn="urn:{service}">'
        + f'<pdomIds xsi:type="ns:Element" {_LITERAL}><ids>{"".join(items)}</ids></pdomIds>'
        + "</urn:PushEventsResponse>"
        + _CLOSE
    ).encode()


def logon_response(session_token: str, security_token: str, login: str, timeout: int) -> bytes:
    """``xtk:session#Logon``'s answer: the session and security tokens, valid ``timeout``
    seconds."""
    return (
        _OPEN.format(ns="urn:xtk:session")
        + f'<LogonResponse xmlns="urn:xtk:session" {_ENCODING}>'
        + f'<pstrSessionToken xsi:type="xsd:string">{escape(session_token)}</pstrSessionToken>'
        + f'<pSessionInfo xsi:type="ns:Element" {_LITERAL}><sessionInfo>'
        + f'<serverInfo releaseName="tidings" sessionTimeOut="{timeout}"/>'
        + f'<userInfo login="{escape(login)}"/>'
        + "</sessionInfo></pSessionInfo>"
        + f'<pstrSecurityToken xsi:type="xsd:string">{escape(security_token)}</pstrSecurityToken>'
        + "</LogonResponse>"
        + _CLOSE
    ).encode()


def logoff_response() -> bytes:
    """``xtk:session#Logoff``'s (empty) answer."""
    return (
        _OPEN.format(ns="urn:xtk:session")
        + f'<LogoffResponse xmlns="urn:xtk:session" {_ENCODING}/>'
        + _CLOSE
    ).encode()


def fault_body(fault: Fault) -> bytes:
    """A fault as Adobe writes it."""
    detail = escape(fault.detail)
    return (
        _OPEN.format(ns="urn:wpp:default")
        + "<SOAP-ENV:Fault>"
        + f"<faultcode>{escape(fault.code)}</faultcode>"
        + f'<faultstring xsi:type="xsd:string">{escape(fault.faultstring)}</faultstring>'
        + f'<detail xsi:type="xsd:string">{detail}</detail>'
        + "</SOAP-ENV:Fault>"
        + _CLOSE
    ).encode()
