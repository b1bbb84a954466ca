"""One mapping between an event's XML ``<ctx>`` (Campaign Classic) and the JSON ``ctx``
(REST APIs) that templates see, so a template works whichever API an event came in by.

XML to JSON (:func:`to_json`), element by element:

====================================================  ==========================================
XML                                                   JSON
====================================================  ==========================================
``<firstName>Jack</firstName>``                       ``"firstName": "Jack"`` (text verbatim)
``<note/>``                                           ``"note": ""``
``<article num="1"><name>Key</name></article>``       ``"article": {"@num": "1", "name": "Key"}``
``<price currency="EUR">20</price>``                  ``"price": {"@currency": "EUR", "$": "20"}``
``<a>1</a><a>2</a>`` (a repeated name)                ``"a": ["1", "2"]`` (document order)
====================================================  ==========================================

- An element with neither attributes nor child elements is its text; anything else is an
  object: attributes as ``"@name"``, child elements by name, and the element's own text (if it
  is not only white space) as ``"$"``.
- Names are local names: namespace prefixes are dropped, and so are ``xsi:`` attributes
  (``xsi:type``, ``xsi:nil``) that SOAP toolkits add. Comments and processing instructions
  are ignored. Every value is a string: XML has no numbers.
- An element that appears once is a single value, one that repeats is a list. A collection
  that may hold a single item is therefore an object or a list; Jinja loops over such a value
  should go through a list test (the Adobe template importer writes that test).

JSON to XML (:func:`to_xml`) is the inverse: ``"@name"`` keys become attributes, ``"$"``
text, other keys child elements (a list gives one element per item), numbers their JSON
text, booleans ``true``/``false``, ``null`` an empty element. XML to JSON to XML gives the
same document except for white space between elements, namespace prefixes, and the order of
differently named siblings (elements of one name are kept together, in order). JSON to XML
to JSON gives the same value when every scalar is a string; keys must be XML names
(``$`` and ``@name`` aside) and lists must not hold lists, or :class:`CtxError` is raised.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from tidings.soap.xml import local_name, namespace_of

XSI = "http://www.w3.org/2001/XMLSchema-instance"
_NAME = re.compile(r"^[^\W\d][\w.-]*$")


class CtxError(ValueError):
    """A JSON ctx that has no XML form (a key that is not an XML name, a list in a list)."""


def to_json(element: ET.Element) -> dict[str, Any]:
    """The JSON ctx for a ``<ctx>`` element (always an object)."""
    value = _value(element)
    return value if isinstance(value, dict) else ({"$": value} if value else {})


def _value(element: ET.Element) -> Any:
    attributes = {
        "@" + local_name(name): value
        for name, value in element.attrib.items()
        if namespace_of(name) != XSI
    }
    children = list(element)
    if not attributes and not children:
        return element.text or ""
    result: dict[str, Any] = attributes
    repeated: set[str] = set()
    text = [element.text or ""]
    for child in children:
        text.append(child.tail or "")
        if not isinstance(child.tag, str):  # a comment or processing instruction
            continue
        name = local_name(child.tag)
        value = _value(child)
        if name not in result:
            result[name] = value
        elif name in repeated:
            result[name].append(value)
        else:
            result[name] = [result[name], value]
            repeated.add(name)
    joined = "".join(text)
    if joined.strip():
        result["$"] = joined if not children else joined.strip()
    return result


def to_xml(ctx: Mapping[str, Any], tag: str = "ctx") -> ET.Element:
    """The XML element for a JSON ctx; raise :class:`CtxError` if it has no XML form."""
    element = ET.Element(tag)
    _fill(element, ctx, "$")
    return element


def _fill(element: ET.Element, value: Any, path: str) -> None:
    if not isinstance(value, Mapping):
        element.text = _scalar(value, path)
        return
    for key, item in value.items():
        where = f"{path}.{key}"
        if key == "$":
            element.text = _scalar(item, where)
        elif key.startswith("@"):
            if not _NAME.match(key[1:]):
                raise CtxError(f"{where}: {key[1:]!r} is not an XML attribute name")
            element.set(key[1:], _scalar(item, where))
        else:
            if not _NAME.match(key):
                raise CtxError(f"{where}: {key!r} is not an XML element name")
            for index, one in enumerate(item if isinstance(item, list) else [item]):
                if isinstance(one, list):
                    raise CtxError(f"{where}[{index}]: a list in a list has no XML form")
                _fill(ET.SubElement(element, key), one, where)


def _scalar(value: Any, path: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value)
    raise CtxError(f"{path}: an object or a list cannot be an attribute or a text")
