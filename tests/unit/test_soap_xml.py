"""The SOAP layer's pure parts: hardened parsing, the XML ctx <-> JSON ctx mapping, envelopes,
event elements, session tokens and the WSDL."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings import model
from tidings.soap import ctx, envelope, events, session, wsdl
from tidings.soap import xml as soap_xml

# ------------------------------------------------------------------ parsing


def test_parse_reads_namespaces_and_text() -> None:
    root = soap_xml.parse(b'<a xmlns="urn:x"><b c="1">t</b></a>')
    assert root.tag == "{urn:x}a"
    assert soap_xml.local_name(root[0].tag) == "b"
    assert soap_xml.namespace_of(root.tag) == "urn:x"


@pytest.mark.parametrize(
    "document",
    [
        b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>',
        b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>',
        b'<!DOCTYPE a SYSTEM "http://example.com/a.dtd"><a/>',
        b"<!DOCTYPE a><a/>",
        b'<!DOCTYPE a [<!ENTITY % p SYSTEM "http://example.com/p">%p;]><a/>',
    ],
)
def test_any_dtd_is_refused(document: bytes) -> None:
    with pytest.raises(soap_xml.XmlError, match="DTDs and entity declarations"):
        soap_xml.parse(document)


def test_depth_and_element_count_are_bounded() -> None:
    deep = b"<a>" * 10_000 + b"</a>" * 10_000
    with pytest.raises(soap_xml.XmlError, match="deeper than 64") as caught:
        soap_xml.parse(deep)
    assert caught.value.line == 1
    assert caught.value.column == 65 * 3 + 1
    soap_xml.parse(b"<a>" * 64 + b"</a>" * 64)
    with pytest.raises(soap_xml.XmlError, match="more than 10 elements"):
        soap_xml.parse(b"<r>" + b"<a/>" * 10 + b"</r>", max_elements=10)


def test_errors_carry_adobes_line_and_column() -> None:
    with pytest.raises(soap_xml.XmlError) as caught:
        soap_xml.parse(b"<a>\n  <b>\n</a>")
    error = caught.value
    assert (error.line, error.column) == (3, 3)
    assert str(error) == "(3:3) : mismatched tag"
    with pytest.raises(soap_xml.XmlError, match=r"^\(1:1\) : no element found"):
        soap_xml.parse(b"")
    with pytest.raises(soap_xml.XmlError):
        soap_xml.parse(b'<?xml version="1.0" encoding="nope"?><a/>')
    with pytest.raises(soap_xml.XmlError, match="not well-formed"):
        soap_xml.parse(b"<a>\x00</a>")


# ------------------------------------------------------------------ ctx mapping


def _ctx(text: str) -> dict[str, Any]:
    return ctx.to_json(ET.fromstring(text))


def test_ctx_to_json_follows_the_documented_rules() -> None:
    assert _ctx("<ctx><firstName> ABC</firstName><note/></ctx>") == {
        "firstName": " ABC",
        "note": "",
    }
    assert _ctx(
        '<ctx><orderdetails><article num="1"><name>Key</name><price>20</price></article>'
        '<article num="2"><name>Cable</name></article></orderdetails>'
        '<price currency="EUR">20</price><a>1</a><b/><a>2</a><a>3</a></ctx>'
    ) == {
        "orderdetails": {
            "article": [
                {"@num": "1", "name": "Key", "price": "20"},
                {"@num": "2", "name": "Cable"},
            ]
        },
        "price": {"@currency": "EUR", "$": "20"},
        "a": ["1", "2", "3"],
        "b": "",
    }


def test_ctx_drops_namespaces_xsi_attributes_and_comments() -> None:
    assert _ctx(
        '<ctx xmlns:x="urn:x" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        '<x:name xsi:type="xsd:string">N</x:name><!-- c --><y x:k="v">t</y></ctx>'
    ) == {"name": "N", "y": {"@k": "v", "$": "t"}}


def test_ctx_text_only_and_mixed_content() -> None:
    assert _ctx("<ctx>hello</ctx>") == {"$": "hello"}
    assert _ctx("<ctx/>") == {}
    assert _ctx("<ctx><p>Dear <b>you</b>, hi</p></ctx>") == {"p": {"b": "you", "$": "Dear , hi"}}


def test_ctx_to_xml_is_the_inverse() -> None:
    value = {
        "client": {"firstname": "John"},
        "article": [{"@num": "1", "name": "Key"}, {"@num": "2", "name": "Cable"}],
        "price": {"@currency": "EUR", "$": "20"},
        "count": 3,
        "vip": True,
        "gone": None,
        "ratio": 0.5,
    }
    element = ctx.to_xml(value)
    assert soap_xml.serialize(element) == (
        "<ctx><client><firstname>John</firstname></client>"
        '<article num="1"><name>Key</name></article><article num="2"><name>Cable</name></article>'
        '<price currency="EUR">20</price><count>3</count><vip>true</vip><gone /><ratio>0.5</ratio>'
        "</ctx>"
    )
    back = ctx.to_json(element)
    assert back["article"] == value["article"]
    assert back["price"] == value["price"]
    assert back["count"] == "3"
    assert back["vip"] == "true"
    assert back["gone"] == ""


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"first name": "x"}, "not an XML element name"),
        ({"@1": "x"}, "not an XML attribute name"),
        ({"a": [["x"]]}, "a list in a list"),
        ({"@a": {"b": "c"}}, "cannot be an attribute"),
    ],
)
def test_ctx_without_an_xml_form_is_refused(value: dict[str, Any], message: str) -> None:
    with pytest.raises(ctx.CtxError, match=message):
        ctx.to_xml(value)


_names = st.from_regex(r"[a-z][a-zA-Z0-9]{0,6}", fullmatch=True)
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8).filter(
    lambda t: t.strip() == t
)
_leaf = _text
_json = st.recursive(
    _leaf,
    lambda inner: st.dictionaries(
        _names, st.one_of(inner, st.lists(inner, min_size=2, max_size=3)), min_size=1, max_size=3
    ),
    max_leaves=12,
)


@given(
    st.dictionaries(_names, st.one_of(_json, st.lists(_json, min_size=2, max_size=3)), max_size=4)
)
def test_json_with_string_values_survives_xml_and_back(value: dict[str, Any]) -> None:
    """JSON -> XML -> text -> parse -> JSON is the identity for string-valued JSON."""
    text = soap_xml.serialize(ctx.to_xml(value)).encode()
    assert ctx.to_json(soap_xml.parse(text)) == value


# ------------------------------------------------------------------ envelopes


def _envelope(inner: str, header: str = "") -> ET.Element:
    return soap_xml.parse(
        (
            '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
            f'xmlns:urn="urn:nms:rtEvent">{header}<s:Body>{inner}</s:Body></s:Envelope>'
        ).encode()
    )


def test_read_call_takes_the_service_from_the_namespace_or_soapaction() -> None:
    call = envelope.read_call(
        _envelope("<urn:PushEvent><urn:sessiontoken> mc/k </urn:sessiontoken></urn:PushEvent>"),
        "",
    )
    assert (call.service, call.method, call.text("sessiontoken")) == (
        "nms:rtEvent",
        "PushEvent",
        "mc/k",
    )
    bare = envelope.read_call(_envelope("<PushEvents/>"), '"nms:batchEvent#PushEvents"')
    assert (bare.service, bare.method) == ("nms:batchEvent", "PushEvents")
    assert not bare.has_header
    assert envelope.read_call(_envelope("<PushEvent/>", "<s:Header><x/></s:Header>"), "").has_header


@pytest.mark.parametrize(
    ("document", "detail"),
    [
        ("<Envelope/>", "not a SOAP envelope"),
        ('<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"/>', "no Body"),
        (
            '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><a/><b/>'
            "</s:Body></s:Envelope>",
            "exactly one call",
        ),
    ],
)
def test_read_call_refuses_what_is_not_a_call(document: str, detail: str) -> None:
    with pytest.raises(envelope.Fault) as caught:
        envelope.read_call(soap_xml.parse(document.encode()), "nms:rtEvent#PushEvent")
    assert caught.value.faultstring == (
        "The XML SOAP message is invalid (service 'PushEvent', method 'nms:rtEvent')."
    )
    assert detail in caught.value.detail


def test_answers_are_shaped_as_adobes() -> None:
    root = ET.fromstring(envelope.push_event_response("nms:rtEvent", 72057594037935966))
    [answer] = root.find("{http://schemas.xmlsoap.org/soap/envelope/}Body") or []
    assert answer.tag == "{urn:nms:rtEvent}PushEventResponse"
    assert answer.findtext("plId") == "72057594037935966"
    many = ET.fromstring(
        envelope.push_events_response(
            "nms:batchEvent",
            [envelope.Outcome(5, "e<1>"), envelope.Outcome(0, None, 'bad "email"')],
        )
    )
    ids = many.findall(".//pdomIds/ids/event")
    assert [(e.get("id"), e.get("externalId"), e.get("error")) for e in ids] == [
        ("5", "e<1>", None),
        ("0", None, 'bad "email"'),
    ]
    fault = ET.fromstring(envelope.fault_body(envelope.Fault("a & b", "<x>")))
    assert fault.findtext(".//faultcode") == "SOAP-ENV:Client"
    assert fault.findtext(".//faultstring") == "a & b"
    assert fault.findtext(".//detail") == "<x>"
    logon = ET.fromstring(envelope.logon_response("___t", "@s", "mc", 60))
    assert logon.findtext(".//{urn:xtk:session}pstrSessionToken") == "___t"


# ------------------------------------------------------------------ event elements


def _event(text: str, batch_service: bool = False) -> Any:
    return events.submission(ET.fromstring(text), batch_service=batch_service, max_ctx_bytes=1000)


def test_event_attributes_map_to_the_submission() -> None:
    sub = _event(
        '<rtEvent type="t" email="a@example.com" mobilePhone="+33620202020" externalId="9" '
        'registrationToken="tok" wishedChannel="41" scheduled="2030-01-01 00:00:00Z" '
        'origin="web" xmlns:x="urn:x" x:ignored="1"><mobileApp uuid="u"/><ctx><a>1</a></ctx>'
        "</rtEvent>"
    )
    assert sub.type == "t"
    assert sub.recipient == model.Recipient("a@example.com", "+33620202020", "tok", "9")
    assert sub.channel is model.Channel.PUSH
    assert sub.scheduled == "2030-01-01 00:00:00Z"
    assert sub.ctx == {"a": "1", "_rtEvent": {"origin": "web", "mobileApp": {"@uuid": "u"}}}
    assert (sub.priority, sub.source) == (events.REALTIME_PRIORITY, "soap")


@pytest.mark.parametrize(
    ("text", "batch_service", "priority"),
    [
        ('<rtEvent type="t"/>', False, events.REALTIME_PRIORITY),
        ('<batchEvent type="t"/>', False, events.BATCH_PRIORITY),
        ('<rtEvent type="t"/>', True, events.BATCH_PRIORITY),
        ('<rtevent type="t"/>', False, events.REALTIME_PRIORITY),
    ],
)
def test_batch_events_get_the_lower_priority(text: str, batch_service: bool, priority: int) -> None:
    assert _event(text, batch_service).priority == priority


@pytest.mark.parametrize(
    ("wished", "channel"),
    [("0", "email"), ("1", "sms"), ("41", "push"), ("42", "push"), ("email", "email")],
)
def test_wished_channels(wished: str, channel: str) -> None:
    assert _event(f'<rtEvent type="t" wishedChannel="{wished}"/>').channel == channel


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<other/>", "not an event"),
        ('<rtEvent email="a@example.com"/>', "no 'type'"),
        ('<rtEvent type="t" wishedChannel="3"/>', "not a channel"),
        ('<rtEvent type="t"><ctx><a>' + "x" * 2000 + "</a></ctx></rtEvent>", "more than the 1000"),
    ],
)
def test_unusable_event_elements(text: str, message: str) -> None:
    with pytest.raises(events.InvalidSoapEvent, match=message):
        _event(text)


def test_event_elements_unwrap_one_collection_element() -> None:
    wrapped = ET.fromstring("<d><Events><rtEvent type='a'/><rtEvent type='b'/></Events></d>")
    assert [e.get("type") for e in events.event_elements(wrapped)] == ["a", "b"]
    direct = ET.fromstring("<d><rtEvent type='a'/></d>")
    assert len(events.event_elements(direct)) == 1
    assert [e.tag for e in events.event_elements(ET.fromstring("<d><x/></d>"))] == ["x"]


# ------------------------------------------------------------------ session tokens


def test_session_tokens_are_signed_per_key_and_expire() -> None:
    sessions = session.Sessions("secret", ttl=60)
    token, security = sessions.issue("abcdefgh", "hash-1", now=1000)
    assert token.startswith("___")
    assert security.startswith("@")
    claims = sessions.claims(token, now=1000)
    assert claims is not None
    assert claims.key_prefix == "abcdefgh"
    assert sessions.verify(claims, "hash-1")
    assert not sessions.verify(claims, "hash-2")  # another key (or a rotated one)
    assert not session.Sessions("other", ttl=60).verify(claims, "hash-1")
    assert sessions.claims(token, now=1061) is None
    assert sessions.claims("___tid.x", now=1000) is None
    assert sessions.claims("mc/password", now=1000) is None
    forged = token.replace("abcdefgh", "zzzzzzzz")
    forged_claims = sessions.claims(forged, now=1000)
    assert forged_claims is not None
    assert not sessions.verify(forged_claims, "hash-1")


def test_logoff_refuses_the_token_in_this_process() -> None:
    sessions = session.Sessions("", ttl=60)
    token, _ = sessions.issue("abcdefgh", "h", now=1000)
    other, _ = sessions.issue("abcdefgh", "h", now=1000)
    sessions.log_off(token, now=1001)
    assert sessions.claims(token, now=1002) is None
    assert sessions.claims(other, now=1002) is not None


# ------------------------------------------------------------------ WSDL


@pytest.mark.parametrize("service", wsdl.SERVICES)
def test_wsdl_documents_are_well_formed(service: str) -> None:
    text = wsdl.document(service, "http://h/nl/jsp/soaprouter.jsp?a=1&b=2")
    assert text is not None
    root = soap_xml.parse(text.encode())
    assert root.get("targetNamespace") == f"urn:{service}"
    assert "a=1&amp;b=2" in text
    assert wsdl.document("nms:other", "x") is None
