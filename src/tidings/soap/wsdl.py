"""The WSDL documents ``/nl/jsp/schemawsdl.jsp?schema=…`` serves: ``nms:rtEvent`` and
``nms:batchEvent`` (``PushEvent``, ``PushEvents``) and ``xtk:session`` (``Logon``,
``Logoff``), document/literal as Adobe generates them, so SOAP UI and generated clients
(``zeep``, .NET, JAX-WS) work from them.

Parameters are qualified elements of the service's namespace (``<urn:sessiontoken>``), the
event documents (``domEvent``, ``domEventCollection``) are open XML (``xs:any``), and the
answers' parts are unqualified (``<plId>``), as Adobe answers.
"""

from __future__ import annotations

from tidings.soap.xml import escape

SERVICES = ("nms:rtEvent", "nms:batchEvent", "xtk:session")

_OPEN = """<?xml version="1.0" encoding="utf-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:s="http://www.w3.org/2001/XMLSchema"
    xmlns:tns="{ns}" targetNamespace="{ns}">
  <wsdl:types>
    <s:schema elementFormDefault="qualified" targetNamespace="{ns}">
      <s:complexType name="Element">
        <s:sequence>
          <s:any minOccurs="0" maxOccurs="unbounded" processContents="skip"/>
        </s:sequence>
        <s:anyAttribute processContents="skip"/>
      </s:complexType>
{elements}
    </s:schema>
  </wsdl:types>
"""

# name -> (request parts, response parts); a part is (name, type, qualified)
_Part = tuple[str, str, bool]
_METHODS: dict[str, dict[str, tuple[list[_Part], list[_Part]]]] = {
    "event": {
        "PushEvent": (
            [("sessiontoken", "s:string", True), ("domEvent", "tns:Element", True)],
            [("plId", "s:long", False)],
        ),
        "PushEvents": (
            [("sessiontoken", "s:string", True), ("domEventCollection", "tns:Element", True)],
            [("pdomIds", "tns:Element", False)],
        ),
    },
    "session": {
        "Logon": (
            [
                ("sessiontoken", "s:string", True),
                ("strLogin", "s:string", True),
                ("strPassword", "s:string", True),
                ("elemParameters", "tns:Element", True),
            ],
            [
                ("pstrSessionToken", "s:string", False),
                ("pSessionInfo", "tns:Element", False),
                ("pstrSecurityToken", "s:string", False),
            ],
        ),
        "Logoff": ([("sessiontoken", "s:string", True)], []),
    },
}


def _element(name: str, parts: list[_Part]) -> str:
    inner = "".join(
        f'\n            <s:element name="{part}" type="{kind}" minOccurs="0" maxOccurs="1"'
        + ("" if qualified else ' form="unqualified"')
        + "/>"
        for part, kind, qualified in parts
    )
    return (
        f'      <s:element name="{name}">\n        <s:complexType>\n          <s:sequence>'
        f"{inner}\n          </s:sequence>\n        </s:complexType>\n      </s:element>"
    )


def document(service: str, endpoint: str) -> str | None:
    """The WSDL of ``service`` (one of :data:`SERVICES`) with calls going to ``endpoint``;
    None for a service Tidings does not serve."""
    if service not in SERVICES:
        return None
    methods = _METHODS["session" if service == "xtk:session" else "event"]
    ns = f"urn:{service}"
    port = service.replace(":", "_")
    elements = []
    messages = []
    operations = []
    bindings = []
    for method, (request, response) in methods.items():
        elements += [_element(method, request), _element(f"{method}Response", response)]
        messages.append(
            f'  <wsdl:message name="{method}In"><wsdl:part name="parameters" '
            f'element="tns:{method}"/></wsdl:message>\n'
            f'  <wsdl:message name="{method}Out"><wsdl:part name="parameters" '
            f'element="tns:{method}Response"/></wsdl:message>\n'
        )
        operations.append(
            f'    <wsdl:operation name="{method}">'
            f'<wsdl:input message="tns:{method}In"/>'
            f'<wsdl:output message="tns:{method}Out"/></wsdl:operation>\n'
        )
        bindings.append(
            f'    <wsdl:operation name="{method}">\n'
            f'      <soap:operation soapAction="{service}#{method}" style="document"/>\n'
            '      <wsdl:input><soap:body use="literal"/></wsdl:input>\n'
            '      <wsdl:output><soap:body use="literal"/></wsdl:output>\n'
            "    </wsdl:operation>\n"
        )
    return (
        _OPEN.format(ns=ns, elements="\n".join(elements))
        + "".join(messages)
        + f'  <wsdl:portType name="{port}MethodsSoap">\n'
        + "".join(operations)
        + "  </wsdl:portType>\n"
        + f'  <wsdl:binding name="{port}MethodsSoap" type="tns:{port}MethodsSoap">\n'
        + '    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>\n'
        + "".join(bindings)
        + "  </wsdl:binding>\n"
        + f'  <wsdl:service name="{port}">\n'
        + f'    <wsdl:port name="{port}MethodsSoap" binding="tns:{port}MethodsSoap">\n'
        + f'      <soap:address location="{escape(endpoint)}"/>\n'
        + "    </wsdl:port>\n  </wsdl:service>\n</wsdl:definitions>\n"
    )
