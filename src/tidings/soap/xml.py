"""Parsing XML from the network, safely.

Built on defusedxml's expat parser with every dangerous feature refused:

- any ``<!DOCTYPE>`` (so no entity declarations: no "billion laughs", no external entities,
  no external DTD fetched; SOAP 1.1 forbids a DTD in an envelope anyway),
- nesting deeper than ``max_depth`` elements, and more than ``max_elements`` elements, both
  checked while parsing, so a 10,000-deep document stops at its 65th level,
- the size of the input is bounded by the caller (the HTTP route reads at most
  ``soap_max_body_bytes``).

Every refusal is an :class:`XmlError` carrying the 1-based line and column where the parser
stood, as Adobe reports ``(16:8) : Expected end of tag 'rtevent'``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

MAX_DEPTH = 64
MAX_ELEMENTS = 100_000
_POSITION = re.compile(r": line \d+, column \d+$")


class XmlError(ValueError):
    """XML Tidings will not read; ``line`` and ``column`` are 1-based."""

    def __init__(self, message: str, line: int = 0, column: int = 0):
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column

    def __str__(self) -> str:
        return f"({self.line}:{self.column}) : {self.message}"


class _Limit(Exception):
    pass


class _BoundedBuilder(ET.TreeBuilder):
    """A tree builder that stops at ``max_depth`` levels and ``max_elements`` elements."""

    def __init__(self, max_depth: int, max_elements: int):
        super().__init__()
        self.max_depth = max_depth
        self.max_elements = max_elements
        self.depth = 0
        self.count = 0

    def start(self, tag: Any, attrs: dict[Any, Any], /) -> ET.Element:
        self.depth += 1
        self.count += 1
        if self.depth > self.max_depth:
            raise _Limit(f"elements are nested deeper than {self.max_depth} levels")
        if self.count > self.max_elements:
            raise _Limit(f"the document has more than {self.max_elements} elements")
        return super().start(tag, attrs)

    def end(self, tag: Any, /) -> ET.Element:
        self.depth -= 1
        return super().end(tag)


def parse(
    data: bytes, *, max_depth: int = MAX_DEPTH, max_elements: int = MAX_ELEMENTS
) -> ET.Element:
    """The root element of ``data``; raise :class:`XmlError` for anything unsafe or invalid."""
    builder = _BoundedBuilder(max_depth, max_elements)
    parser = DefusedXMLParser(
        target=builder, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    expat = parser.parser

    def here(message: str) -> XmlError:
        return XmlError(message, expat.CurrentLineNumber, expat.CurrentColumnNumber + 1)

    try:
        parser.feed(data)
        root = parser.close()
    except ET.ParseError as exc:
        line, column = exc.position
        raise XmlError(_POSITION.sub("", str(exc)), line, column + 1) from None
    except _Limit as exc:
        raise here(str(exc)) from None
    except DefusedXmlException:
        raise here("DTDs and entity declarations are not allowed") from None
    except (ValueError, LookupError, UnicodeError) as exc:  # e.g. an unknown encoding
        raise here(f"the document cannot be decoded: {exc}") from None
    if not isinstance(root, ET.Element):  # pragma: no cover - expat always gives a root
        raise XmlError("the document has no root element", 1, 1)
    return root


def local_name(tag: str) -> str:
    """``PushEvent`` for ``{urn:nms:rtEvent}PushEvent``."""
    return tag.rpartition("}")[2]


def namespace_of(tag: str) -> str:
    """``urn:nms:rtEvent`` for ``{urn:nms:rtEvent}PushEvent``, ``""`` without one."""
    return tag[1:].partition("}")[0] if tag.startswith("{") else ""


def serialize(element: ET.Element) -> str:
    """An element as XML text (namespace prefixes as ElementTree chooses them)."""
    return ET.tostring(element, encoding="unicode")


def escape(text: str) -> str:
    """``text`` safe inside an XML element or a double-quoted attribute."""
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )
