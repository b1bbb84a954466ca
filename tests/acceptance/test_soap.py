"""Campaign Classic compatibility end to end: SOAP envelopes as Adobe documents them (and as a
``zeep`` client generated from the served WSDL sends them) posted to a live server over TCP,
on SQLite and PostgreSQL; the events end ``processed`` with their ctx in the email.
"""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest
import zeep
from lxml import etree

from tests.acceptance.conftest import Live, Serve
from tidings import apikeys
from tidings.store import events as events_store

ROUTER = "/nl/jsp/soaprouter.jsp"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
FAULT_LOGIN = "Invalid login or password. Connection denied."


def envelope(
    body: str, *, service: str = "nms:rtEvent", header: str = "<soapenv:Header/>"
) -> bytes:
    """An envelope shaped as in Adobe's documentation (SOAP UI's form)."""
    return (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns:urn="urn:{service}">\n{header}\n<soapenv:Body>\n{body}\n</soapenv:Body>\n'
        "</soapenv:Envelope>"
    ).encode()


def push_event(token: str, event: str, *, service: str = "nms:rtEvent", header: str = "") -> bytes:
    body = (
        f"<urn:PushEvent><urn:sessiontoken>{token}</urn:sessiontoken>"
        f"<urn:domEvent>{event}</urn:domEvent></urn:PushEvent>"
    )
    return envelope(body, service=service, header=header or "<soapenv:Header/>")


def cart_event(email: str = "test@example.com", first_name: str = "Jack", extra: str = "") -> str:
    return (
        f'<rtEvent type="cartAbandonment" email="{email}"{extra}>'
        f"<ctx><firstName>{first_name}</firstName><lastProduct>Leather motorbike jacket"
        "</lastProduct><cartAmount>$ 125</cartAmount></ctx></rtEvent>"
    )


async def post(
    live: Live, body: bytes, action: str = "nms:rtEvent#PushEvent", **headers: str
) -> httpx.Response:
    """POST to the SOAP router without the fixture's API key header."""
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
        return await client.post(
            ROUTER,
            content=body,
            headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": action, **headers},
        )


def answer(response: httpx.Response) -> ET.Element:
    """The call's answer element inside the Body."""
    assert response.headers["content-type"].startswith("text/xml"), response.text
    root = ET.fromstring(response.content)
    body = root.find(f"{{{SOAP_ENV}}}Body")
    assert body is not None
    return body[0]


def fault(response: httpx.Response) -> tuple[str, str, str]:
    """(faultcode, faultstring, detail) of a fault answer."""
    assert response.status_code in (500, 503), response.text
    element = answer(response)
    assert element.tag == f"{{{SOAP_ENV}}}Fault", response.text
    return (
        element.findtext("faultcode") or "",
        element.findtext("faultstring") or "",
        element.findtext("detail") or "",
    )


def pl_id(response: httpx.Response) -> int:
    assert response.status_code == 200, response.text
    element = answer(response)
    assert element.tag == "{urn:nms:rtEvent}PushEventResponse", response.text
    return int(element.findtext("plId") or "0")


async def outbox_item(live: Live, event_id: int | str) -> dict[str, Any]:
    items = (await live.client.get("/api/v1/outbox", params={"limit": 100})).json()["items"]
    [item] = [i for i in items if i["eventId"] == str(event_id)]
    return item  # type: ignore[no-any-return]


# ------------------------------------------------------------------ PushEvent, PushEvents


async def test_push_event_as_documented_is_processed_with_its_ctx_in_the_email(
    live: Live,
) -> None:
    response = await post(live, push_event(f"mc/{live.key}", cart_event()))
    event_id = pl_id(response)
    assert event_id > 0
    assert b'<plId xsi:type="xsd:long">' in response.content
    event = await live.wait_status(event_id, "processed")
    async with live.app.db.connection() as conn:
        row = await events_store.get_event(conn, event_id)
    assert row is not None
    assert row.source == "soap"
    assert event["priority"] == 5
    assert event["ctx"] == {
        "firstName": "Jack",
        "lastProduct": "Leather motorbike jacket",
        "cartAmount": "$ 125",
    }
    item = await outbox_item(live, event_id)
    assert item["recipient"] == "test@example.com"
    assert "Jack" in item["subject"]
    for text in ("Jack", "$ 125", "Leather motorbike jacket"):
        assert text in item["text"]
        assert text in item["html"]


async def test_the_event_attributes_and_ctx_map_as_documented(live: Live) -> None:
    event = (
        '<rtEvent type="order_confirmation" email="john.doe@example.com" origin="eCommerce" '
        'wishedChannel="0" externalId="1242" mobilePhone="+33620202020" language="english" '
        'country="EN" emailFormat="2" scheduled="2099-12-01 08:00:00.768Z">'
        '<mobileApp uuid="236B24DC-C073-412F-8BCB-AC7207096258" _operation="none"/>'
        "<ctx><client><firstname>John</firstname><lastname>Doe</lastname></client>"
        "<action><type>Order confirmation</type><number>CN23453</number></action>"
        '<orderdetails><article num="1"><name>Generic USB key</name><price>20</price></article>'
        '<article num="2"><name>Cable</name><price currency="EUR">5</price></article>'
        "</orderdetails></ctx></rtEvent>"
    )
    event_id = pl_id(await post(live, push_event(f"mc/{live.key}", event)))
    stored = await live.wait_status(event_id, "pending")
    assert stored["recipient"] == {
        "email": "john.doe@example.com",
        "mobilePhone": "+33620202020",
        "externalId": "1242",
    }
    assert stored["channel"] == "email"
    assert stored["scheduled"].startswith("2099-12-01")
    assert stored["ctx"] == {
        "client": {"firstname": "John", "lastname": "Doe"},
        "action": {"type": "Order confirmation", "number": "CN23453"},
        "orderdetails": {
            "article": [
                {"@num": "1", "name": "Generic USB key", "price": "20"},
                {"@num": "2", "name": "Cable", "price": {"@currency": "EUR", "$": "5"}},
            ]
        },
        "_rtEvent": {
            "origin": "eCommerce",
            "language": "english",
            "country": "EN",
            "emailFormat": "2",
            "mobileApp": {"@uuid": "236B24DC-C073-412F-8BCB-AC7207096258", "@_operation": "none"},
        },
    }


async def test_the_documented_push_example_without_prefixes_is_stored(live: Live) -> None:
    """Adobe's load-balancer example: default namespace, ``login/password``, a push event."""
    body = (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
        f'<PushEvent xmlns="urn:nms:rtEvent"><sessiontoken>mc/{live.key}</sessiontoken><domEvent>'
        '<rtEvent wishedChannel="41" type="rt_MobileJourney_iOS_Push" registrationToken="c3dd'
        'c8aaecc24822df25d0f49865cca61ea3f86c61bfa53ae4d37294e37f4a1c" hashlpId="27EE7571EC14DB'
        'A23B9B5CC0EF79BB782DAECF4C03C88E5D92CC9B9DAC4E5DDA" correlationId="415b7593-4f6f-e911-'
        '811f-00505691247c" xmlns=""><mobileApp uuid="236B24DC-C073-412F-8BCB-AC7207096258" '
        '_operation="none"/><ctx><title>Hi</title></ctx></rtEvent></domEvent></PushEvent>'
        "</soapenv:Body></soapenv:Envelope>"
    ).encode()
    event_id = pl_id(await post(live, body))
    assert event_id > 0
    stored = await live.wait_status(event_id, "pending", "processing", "routingFailed")
    assert stored["channel"] == "push"
    assert stored["recipient"]["pushToken"].startswith("c3ddc8aa")
    assert stored["ctx"]["title"] == "Hi"
    assert stored["ctx"]["_rtEvent"]["correlationId"] == "415b7593-4f6f-e911-811f-00505691247c"
    assert stored["ctx"]["_rtEvent"]["mobileApp"]["@uuid"] == "236B24DC-C073-412F-8BCB-AC7207096258"


async def test_a_soap_header_changes_nothing(live: Live) -> None:
    header = (
        '<soapenv:Header><wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/'
        'oasis-200401-wss-wssecurity-secext-1.0.xsd"><wsse:UsernameToken><wsse:Username>x'
        "</wsse:Username></wsse:UsernameToken></wsse:Security></soapenv:Header>"
    )
    with_header = pl_id(await post(live, push_event(f"mc/{live.key}", cart_event(), header=header)))
    without = pl_id(await post(live, push_event(f"mc/{live.key}", cart_event(), header=" ")))
    first = await live.wait_status(with_header, "processed")
    second = await live.wait_status(without, "processed")
    for field in ("status", "priority", "ctx", "recipient", "type", "channel", "reason"):
        assert first[field] == second[field]


async def test_push_events_answers_one_id_per_event_in_order(live: Live) -> None:
    body = (
        f"<urn:PushEvents><urn:sessiontoken>mc/{live.key}</urn:sessiontoken>"
        "<urn:domEventCollection><Events>"
        + cart_event("a@example.com", "Ann", ' externalId="e-1"')
        + cart_event("not-an-address", "Bob", ' externalId="e-2"')
        + cart_event("c@example.com", "Cy")
        + "</Events></urn:domEventCollection></urn:PushEvents>"
    )
    response = await post(live, envelope(body), "nms:rtEvent#PushEvents")
    assert response.status_code == 200, response.text
    element = answer(response)
    assert element.tag == "{urn:nms:rtEvent}PushEventsResponse"
    events = element.findall("pdomIds/ids/event")
    assert [e.get("externalId") for e in events] == ["e-1", "e-2", None]
    ids = [int(e.get("id") or "-1") for e in events]
    assert ids[0] > 0
    assert ids[2] > ids[0]
    assert ids[1] == 0
    assert "not a valid email address" in (events[1].get("error") or "")
    for event_id, name in ((ids[0], "Ann"), (ids[2], "Cy")):
        event = await live.wait_status(event_id, "processed")
        assert event["priority"] == 5
        assert name in (await outbox_item(live, event_id))["text"]
    assert await live.stored_count() == 2


async def test_batch_events_are_queued_below_real_time_ones(live: Live) -> None:
    batch = cart_event("b@example.com").replace("rtEvent", "batchEvent")
    body = (
        f"<urn:PushEvents><urn:sessiontoken>mc/{live.key}</urn:sessiontoken>"
        f"<urn:domEventCollection><Events>{batch}{batch}</Events></urn:domEventCollection>"
        "</urn:PushEvents>"
    )
    response = await post(
        live, envelope(body, service="nms:batchEvent"), "nms:batchEvent#PushEvents"
    )
    assert response.status_code == 200, response.text
    assert answer(response).tag == "{urn:nms:batchEvent}PushEventsResponse"
    ids = [e.get("id") for e in answer(response).findall("pdomIds/ids/event")]
    single = await post(
        live,
        push_event(f"mc/{live.key}", batch, service="nms:batchEvent"),
        "nms:batchEvent#PushEvent",
    )
    assert answer(single).tag == "{urn:nms:batchEvent}PushEventResponse"
    ids.append(answer(single).findtext("plId"))
    realtime = pl_id(await post(live, push_event(f"mc/{live.key}", cart_event())))
    for event_id in ids:
        assert event_id is not None
        assert int(event_id) > 0
        event = await live.wait_status(event_id, "processed")
        assert event["priority"] == 2
    assert (await live.wait_status(realtime, "processed"))["priority"] == 5


async def test_an_invalid_event_is_a_fault_and_nothing_is_stored(live: Live) -> None:
    cases = {
        cart_event("x@"): "not a valid email address",
        '<rtEvent email="a@example.com"><ctx/></rtEvent>': "no 'type' attribute",
        cart_event(extra=' wishedChannel="7"'): "wishedChannel '7' is not a channel",
        "<somethingElse/>": "not an event",
        cart_event() + cart_event(): "must hold one event, not 2",
    }
    for event, reason in cases.items():
        code, string, detail = fault(await post(live, push_event(f"mc/{live.key}", event)))
        assert code == "SOAP-ENV:Client"
        assert (
            string
            == "Error while reading parameters of method 'PushEvent' of service 'nms:rtEvent'."
        )
        assert reason in detail
    assert await live.stored_count() == 0


async def test_an_oversized_event_is_refused(serve: Serve) -> None:
    async with serve(max_body_bytes=4096) as live:
        big = cart_event(first_name="x" * 5000)
        code, _string, detail = fault(await post(live, push_event(f"mc/{live.key}", big)))
        assert code == "SOAP-ENV:Client"
        assert "more than the 4096 allowed" in detail
        assert await live.stored_count() == 0


# ------------------------------------------------------------------ authentication


async def test_bad_credentials_get_adobes_fault(live: Live) -> None:
    revoked, record = await apikeys.create(live.app.db, "old", frozenset({"events"}))
    await apikeys.revoke(live.app.db, record.prefix)
    for token in ("", "mc/", "mc/wrong", "mc/tid_abcdefgh_nope", f"mc/{revoked}", "___tid.x.1.y.z"):
        code, string, detail = fault(await post(live, push_event(token, cart_event())))
        assert code == "SOAP-ENV:Client"
        assert (
            string
            == "Error while reading parameters of method 'PushEvent' of service 'nms:rtEvent'."
        )
        assert detail == FAULT_LOGIN
    assert await live.stored_count() == 0


async def test_every_documented_credential_form_works(live: Live) -> None:
    events_key, _ = await apikeys.create(live.app.db, "site", frozenset({"events"}))
    forms: list[tuple[str, dict[str, str]]] = [
        (f"mc/{events_key}", {}),  # login/password, the password is the key
        (f"{events_key}/", {}),  # the key as the login
        (events_key, {}),  # the key alone
        ("SESSION_TOKEN", {"Authorization": f"Bearer {events_key}"}),  # Adobe IMS flow
        ("", {"X-Api-Key": events_key}),
    ]
    for token, headers in forms:
        assert pl_id(await post(live, push_event(token, cart_event()), **headers)) > 0


async def test_logon_gives_a_session_token_until_logoff(live: Live) -> None:
    logon = envelope(
        "<urn:Logon><urn:sessiontoken/><urn:strLogin>mc</urn:strLogin>"
        f"<urn:strPassword>{live.key}</urn:strPassword><urn:elemParameters/></urn:Logon>",
        service="xtk:session",
    )
    response = await post(live, logon, "xtk:session#Logon")
    assert response.status_code == 200, response.text
    element = answer(response)
    assert element.tag == "{urn:xtk:session}LogonResponse"
    token = element.findtext("{urn:xtk:session}pstrSessionToken") or ""
    security = element.findtext("{urn:xtk:session}pstrSecurityToken") or ""
    assert token.startswith("___")
    assert security
    assert pl_id(await post(live, push_event(token, cart_event()))) > 0
    # ... and as Adobe's SDKs send it: the cookie, with the security token header
    cookie = {"Cookie": f"__sessiontoken={token}", "X-Security-Token": security}
    assert pl_id(await post(live, push_event("", cart_event()), **cookie)) > 0
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert fault(await post(live, push_event(tampered, cart_event())))[2] == FAULT_LOGIN

    logoff = envelope(
        f"<urn:Logoff><urn:sessiontoken>{token}</urn:sessiontoken></urn:Logoff>",
        service="xtk:session",
    )
    response = await post(live, logoff, "xtk:session#Logoff")
    assert answer(response).tag == "{urn:xtk:session}LogoffResponse"
    assert fault(await post(live, push_event(token, cart_event())))[2] == FAULT_LOGIN

    wrong = logon.replace(live.key.encode(), b"tid_abcdefgh_wrong")
    assert fault(await post(live, wrong, "xtk:session#Logon"))[2] == FAULT_LOGIN


async def test_revoking_the_key_ends_its_sessions(serve: Serve) -> None:
    async with serve() as live:
        key, record = await apikeys.create(live.app.db, "site", frozenset({"events"}))
        logon = envelope(
            f"<urn:Logon><urn:strLogin>mc</urn:strLogin><urn:strPassword>{key}</urn:strPassword>"
            "</urn:Logon>",
            service="xtk:session",
        )
        token = answer(await post(live, logon, "xtk:session#Logon")).findtext(
            "{urn:xtk:session}pstrSessionToken"
        )
        assert token
        await apikeys.revoke(live.app.db, record.prefix)
        await asyncio.sleep(10.5)  # the verified-session cache holds a token 10 s
        assert fault(await post(live, push_event(token, cart_event())))[2] == FAULT_LOGIN


async def test_trusted_addresses_need_no_key(serve: Serve) -> None:
    async with serve(soap_trusted_ips="10.0.0.0/8, 127.0.0.1") as live:
        assert pl_id(await post(live, push_event("", cart_event()))) > 0
        assert pl_id(await post(live, push_event("mc/", cart_event()))) > 0
        # a key that is sent must still be valid
        assert fault(await post(live, push_event("mc/tid_abcdefgh_x", cart_event())))[2] == (
            FAULT_LOGIN
        )


async def test_other_addresses_are_not_trusted(serve: Serve) -> None:
    async with serve(soap_trusted_ips="10.0.0.0/8") as live:
        assert fault(await post(live, push_event("", cart_event())))[2] == FAULT_LOGIN


# ------------------------------------------------------------------ bad and hostile XML


async def test_malformed_xml_gets_adobes_fault_with_line_and_column(live: Live) -> None:
    broken = (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:urn="urn:nms:rtEvent">\n<soapenv:Header/>\n<soapenv:Body>\n<urn:PushEvent>\n'
        f"<urn:sessiontoken>mc/{live.key}</urn:sessiontoken>\n<urn:domEvent>\n"
        '<rtevent type="create_account" email="esther.hall@example.com">\n'
        "<ctx><website name='eCommerce'/></ctx>\n"
        "</urn:domEvent>\n</urn:PushEvent>\n</soapenv:Body>\n</soapenv:Envelope>"
    ).encode()
    code, string, detail = fault(await post(live, broken))
    assert code == "SOAP-ENV:Client"
    assert string == "The XML SOAP message is invalid (service 'PushEvent', method 'nms:rtEvent')."
    assert re.match(r"^\(9:\d+\) : mismatched tag", detail), detail
    assert await live.stored_count() == 0


HOSTILE = {
    "billion laughs": (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + "".join(
            f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">'
            for i in range(1, 10)
        )
        + "]>"
    ),
    "external entity": (
        '<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    ),
}


@pytest.mark.parametrize("attack", sorted(HOSTILE))
async def test_entity_attacks_are_refused(live: Live, attack: str) -> None:
    entity = "&lol9;" if attack == "billion laughs" else "&xxe;"
    body = HOSTILE[attack].encode() + push_event(f"mc/{live.key}", cart_event(first_name=entity))
    code, string, detail = fault(await post(live, body))
    assert code == "SOAP-ENV:Client"
    assert string.startswith("The XML SOAP message is invalid")
    assert "DTDs and entity declarations are not allowed" in detail
    assert "root:" not in detail
    assert await live.stored_count() == 0


async def test_deep_nesting_is_refused(live: Live) -> None:
    deep = "<a>" * 10_000 + "x" + "</a>" * 10_000
    body = push_event(f"mc/{live.key}", cart_event(first_name=deep))
    _code, string, detail = fault(await post(live, body))
    assert string.startswith("The XML SOAP message is invalid")
    assert "nested deeper than 64 levels" in detail
    assert await live.stored_count() == 0


async def test_a_10_mb_body_is_refused(live: Live) -> None:
    padding = "<pad>" + "x" * (10 * 1024 * 1024) + "</pad>"
    body = push_event(f"mc/{live.key}", cart_event(first_name=padding))
    _code, string, detail = fault(await post(live, body))
    assert (
        string == "Error while reading parameters of method 'PushEvent' of service 'nms:rtEvent'."
    )
    assert "larger than 2097152 bytes" in detail

    async def chunks() -> Any:  # no Content-Length: the limit holds while reading
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
        response = await client.post(
            ROUTER,
            content=chunks(),
            headers={"Content-Type": "text/xml", "SOAPAction": "nms:rtEvent#PushEvent"},
        )
    assert "larger than 2097152 bytes" in fault(response)[2]
    assert await live.stored_count() == 0
    # the server is fine afterwards
    assert pl_id(await post(live, push_event(f"mc/{live.key}", cart_event()))) > 0


async def test_unknown_methods_and_non_soap_documents_are_faults(live: Live) -> None:
    unknown = envelope(
        f"<urn:Explode><urn:sessiontoken>mc/{live.key}</urn:sessiontoken></urn:Explode>"
    )
    _code, string, detail = fault(await post(live, unknown, "nms:rtEvent#Explode"))
    assert string == "The XML SOAP message is invalid (service 'Explode', method 'nms:rtEvent')."
    assert "Unknown method 'Explode'" in detail
    other = envelope("<urn:ExecuteQuery/>", service="xtk:queryDef")
    assert "Unknown method" in fault(await post(live, other, "xtk:queryDef#ExecuteQuery"))[2]
    assert "not a SOAP envelope" in fault(await post(live, b"<hello/>"))[2]
    assert "(1:1)" in fault(await post(live, b""))[2]
    assert await live.stored_count() == 0


# ------------------------------------------------------------------ WSDL, zeep, mcPing


async def test_the_wsdl_is_served_for_each_schema(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.url) as client:
        for schema, methods in (
            ("nms:rtEvent", ("PushEvent", "PushEvents")),
            ("nms:batchEvent", ("PushEvent", "PushEvents")),
            ("xtk:session", ("Logon", "Logoff")),
        ):
            response = await client.get("/nl/jsp/schemawsdl.jsp", params={"schema": schema})
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/xml")
            document = ET.fromstring(response.content)
            assert document.get("targetNamespace") == f"urn:{schema}"
            for method in methods:
                assert f'soapAction="{schema}#{method}"'.encode() in response.content
            assert f"{live.url}/nl/jsp/soaprouter.jsp".encode() in response.content
        missing = await client.get("/nl/jsp/schemawsdl.jsp", params={"schema": "nms:recipient"})
        assert missing.status_code == 404


def _zeep_calls(url: str, key: str) -> dict[str, Any]:
    """What a client generated from the served WSDL gets (zeep is synchronous: run in a
    thread, the server shares this test's event loop)."""
    results: dict[str, Any] = {}
    for schema in ("nms:rtEvent", "nms:batchEvent"):
        client = zeep.Client(f"{url}/nl/jsp/schemawsdl.jsp?schema={schema}")
        element = "batchEvent" if schema == "nms:batchEvent" else "rtEvent"
        event = etree.fromstring(
            f'<{element} type="cartAbandonment" email="zeep@example.com"><ctx>'
            "<firstName>Zed</firstName><lastProduct>Helmet</lastProduct>"
            f"<cartAmount>$ 80</cartAmount></ctx></{element}>"
        )
        one = client.service.PushEvent(sessiontoken=f"mc/{key}", domEvent={"_value_1": [event]})
        events = etree.fromstring(f"<Events>{etree.tostring(event).decode() * 2}</Events>")
        many = client.service.PushEvents(
            sessiontoken=f"mc/{key}", domEventCollection={"_value_1": [events]}
        )
        ids = [int(e.get("id")) for e in many["_value_1"][0].findall("event")]
        results[schema] = (one, ids)
    session = zeep.Client(f"{url}/nl/jsp/schemawsdl.jsp?schema=xtk:session")
    logon = session.service.Logon(sessiontoken="", strLogin="mc", strPassword=key)
    results["session"] = logon["pstrSessionToken"]
    client = zeep.Client(f"{url}/nl/jsp/schemawsdl.jsp?schema=nms:rtEvent")
    event = etree.fromstring('<rtEvent type="cartAbandonment" email="s@example.com"/>')
    results["with session"] = client.service.PushEvent(
        sessiontoken=logon["pstrSessionToken"], domEvent={"_value_1": [event]}
    )
    try:
        client.service.PushEvent(sessiontoken="mc/nope", domEvent={"_value_1": [event]})
    except zeep.exceptions.Fault as exc:
        results["fault"] = (exc.message, exc.detail)
    return results


async def test_a_zeep_client_generated_from_the_wsdl_calls_both_methods(live: Live) -> None:
    results = await asyncio.to_thread(_zeep_calls, live.url, live.key)
    for schema, priority in (("nms:rtEvent", 5), ("nms:batchEvent", 2)):
        one, ids = results[schema]
        assert isinstance(one, int)
        assert one > 0
        assert len(ids) == 2
        assert all(i > 0 for i in ids)
        for event_id in (one, *ids):
            event = await live.wait_status(event_id, "processed")
            assert event["priority"] == priority
            item = await outbox_item(live, event_id)
            assert "Zed" in item["text"]
            assert "Helmet" in item["html"]
    assert results["session"].startswith("___")
    assert results["with session"] > 0
    message, _ = results["fault"]
    assert message.startswith("Error while reading parameters of method 'PushEvent'")


async def test_mc_ping_reports_pending_events_against_the_threshold(serve: Serve) -> None:
    async with serve(mc_ping_threshold=1) as live, httpx.AsyncClient(base_url=live.url) as client:
        ok = await client.get("/nl/jsp/mcPing.jsp")
        assert ok.status_code == 200
        lines = ok.text.splitlines()
        assert lines[0] == "Ok"
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z", lines[1])
        assert lines[2] == "0/1 pending events"
        later = cart_event(extra=' scheduled="2099-01-01 00:00:00Z"')
        for _ in range(2):
            assert pl_id(await post(live, push_event(f"mc/{live.key}", later))) > 0
        error = await client.get("/nl/jsp/mcPing.jsp")
        assert error.text.splitlines() == ["Error", "Too many pending events (2/1)"]


# ------------------------------------------------------------------ Adobe templates


async def test_an_imported_adobe_template_renders_soap_and_rest_events_alike(live: Live) -> None:
    adobe_html = (
        "<p>Hello <%= rtEvent.ctx.client.firstname %> (<%= rtEvent.email %>)</p>\n"
        '<% if (rtEvent.ctx.vip == "1") { %><b>VIP</b><% } else { %><i>regular</i><% } %>\n'
        "<ul><% for each (var a in rtEvent.ctx.orderdetails.article) { %>"
        "<li><%= a.name %> #<%= a.@num %></li><% } %></ul>\n"
    )
    response = await live.client.post(
        "/api/v1/templates/import-adobe",
        json={
            "type": "orderConfirmation",
            "subject": "Order <%= rtEvent.ctx.action.number %>",
            "html": adobe_html,
            "publish": True,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["problems"] == []
    assert body["published"]["version"] == 1
    assert "{{ ctx.client.firstname }}" in body["html"]

    one = (
        '<rtEvent type="orderConfirmation" email="john@example.com"><ctx>'
        "<client><firstname>John</firstname></client><vip>1</vip>"
        "<action><number>CN1</number></action>"
        '<orderdetails><article num="7"><name>USB key</name></article></orderdetails>'
        "</ctx></rtEvent>"
    )
    soap_id = pl_id(await post(live, push_event(f"mc/{live.key}", one)))
    rest = await live.post_event(
        type="orderConfirmation",
        recipient={"email": "jane@example.com"},
        ctx={
            "client": {"firstname": "Jane"},
            "action": {"number": "CN2"},
            "orderdetails": {
                "article": [{"@num": "1", "name": "Cable"}, {"@num": "2", "name": "Plug"}]
            },
        },
    )
    await live.wait_status(soap_id, "processed")
    await live.wait_status(rest["id"], "processed")
    soap_mail = await outbox_item(live, soap_id)
    assert soap_mail["subject"] == "Order CN1"
    assert "Hello John (john@example.com)" in soap_mail["html"]
    assert "<b>VIP</b>" in soap_mail["html"]
    assert "<li>USB key #7</li>" in soap_mail["html"]
    rest_mail = await outbox_item(live, rest["id"])
    assert rest_mail["subject"] == "Order CN2"
    assert "<i>regular</i>" in rest_mail["html"]
    assert "<li>Cable #1</li><li>Plug #2</li>" in rest_mail["html"]


async def test_an_untranslatable_template_is_reported_and_not_published(live: Live) -> None:
    response = await live.client.post(
        "/api/v1/templates/import-adobe",
        json={
            "type": "welcome",
            "subject": "Hi",
            "html": "<p>x</p>\n<%@ include view='MirrorPage' %>\n"
            "<%= formatDate(rtEvent.created) %>",
        },
    )
    assert response.status_code == 200, response.text
    problems = response.json()["problems"]
    assert [(p["part"], p["line"]) for p in problems] == [("email.html", 2), ("email.html", 3)]
    published = await live.client.post(
        "/api/v1/templates/import-adobe",
        json={
            "type": "welcome",
            "subject": "Hi",
            "html": "<%@ include view='x' %>",
            "publish": True,
        },
    )
    assert published.status_code == 422
    assert published.json()["error"]["code"] == "untranslatable_template"
    types = (await live.client.get("/api/v1/event-types")).json()
    assert "welcome" not in str(types)
    events_only, _ = await apikeys.create(live.app.db, "site", frozenset({"events"}))
    forbidden = await live.client.post(
        "/api/v1/templates/import-adobe",
        json={"type": "welcome", "subject": "Hi"},
        headers={"Authorization": f"Bearer {events_only}"},
    )
    assert forbidden.status_code == 403
