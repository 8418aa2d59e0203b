"""Response formats: content negotiation on `Accept`, and the XML form of JSON values.

`negotiate` picks JSON, CSV or XML from an `Accept` header. Each offered format takes the
q-value of the most specific range that matches it (`text/csv` over `text/*` over `*/*`);
the highest q wins, then the more specific range, then the one listed first, then the server's
order (JSON, CSV, XML). `*/*`, an absent or empty header mean JSON. A header that names
none of the formats (`image/png`) gets `None`, which the list and get calls answer with a
406. A header that names them only with `q=0` (or a malformed q) falls back to JSON, as the
list call always did.

The XML form (`to_xml`) is the JSON value, element by element (no namespaces, UTF-8):

- an object is one child element per key, in order; a key that is a plain ASCII XML name
  (`[A-Za-z_][A-Za-z0-9._-]*`, not starting with `xml`) is the element's name, any other key
  (`a b`, `1x`, `2021-07-01`, `ns:k`) is `<field name="a b">`;
- an array is `type="array"` and one child per item: `<phase>` under `phases`, `<line>`
  under `log`, `<item>` elsewhere;
- a nested object is `type="object"`, a number `type="number"`, a boolean `type="boolean"`
  (`true`/`false`), a string has no type; `null` is an empty element with `nil="true"`;
- characters that XML 1.0 cannot carry (`\\x00`-`\\x08`, `\\x0b`, `\\x0c`, `\\x0e`-`\\x1f`,
  lone surrogates, U+FFFE, U+FFFF) become U+FFFD; a carriage return is written `&#13;` so
  that it survives parsing.
"""

from __future__ import annotations

import functools
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

Format = Literal["json", "csv", "xml"]

#: the formats offered, in the server's order of preference, with their media types
OFFERED: tuple[tuple[Format, tuple[str, ...]], ...] = (
    ("json", ("application/json",)),
    ("csv", ("text/csv",)),
    ("xml", ("application/xml", "text/xml")),
)
#: what a 406 lists
OFFERED_TEXT = "application/json, text/csv, application/xml (or text/xml)"

XML_TYPE = "application/xml; charset=utf-8"
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'

#: element names used as they are: ASCII, no colon (a namespace prefix), no reserved `xml…`
_NAME = re.compile(r"^(?![Xx][Mm][Ll])[A-Za-z_][A-Za-z0-9._-]*$")
#: characters that XML 1.0 documents cannot contain, even escaped
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
#: the element name of the items of an array, by the array's key
_ITEM_NAMES = {"phases": "phase", "log": "line"}


def _media_ranges(accept: str) -> list[tuple[str, float, int]]:
    """The `(media range, q, position)` of each entry of an `Accept` header."""
    ranges = []
    for position, part in enumerate(accept.split(",")):
        media, *params = (piece.strip() for piece in part.split(";"))
        if not media:
            continue
        weight = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
                if not math.isfinite(weight):
                    weight = 0.0
        ranges.append((media.lower(), weight, position))
    return ranges


def _specificity(media_range: str, media: str) -> int:
    """2 for an exact match, 1 for `type/*`, 0 for `*/*`, -1 when the range does not match."""
    if media_range == media:
        return 2
    if media_range == "*/*":
        return 0
    kind, _, sub = media_range.partition("/")
    if sub == "*" and media.startswith(kind + "/"):
        return 1
    return -1


@functools.lru_cache(maxsize=256)
def negotiate(accept: str | None) -> Format | None:
    """The format an `Accept` header asks for; `None` when it names none of those offered.
    (Remembered: clients send the same few headers again and again.)"""
    if accept is None or not accept.strip():
        return "json"
    ranges = _media_ranges(accept)
    if not ranges:
        return "json"
    best: tuple[float, int, int, int] | None = None
    chosen: Format | None = None
    matched = False
    for order, (fmt, medias) in enumerate(OFFERED):
        # the most specific range matching one of the format's media types sets its q
        rank: tuple[float, int, int, int] | None = None
        for media in medias:
            matches = [
                (specificity, weight, position)
                for media_range, weight, position in ranges
                if (specificity := _specificity(media_range, media)) >= 0
            ]
            if not matches:
                continue
            matched = True
            top = max(specificity for specificity, _, _ in matches)
            weight, earliness = max(
                (weight, -position)
                for specificity, weight, position in matches
                if specificity == top
            )
            candidate = (weight, top, earliness, -order)
            if rank is None or candidate > rank:
                rank = candidate
        if rank is not None and rank[0] > 0 and (best is None or rank > best):
            best, chosen = rank, fmt
    if chosen is not None:
        return chosen
    return "json" if matched else None


def xml_text(value: str) -> str:
    """`value` with the characters that XML 1.0 cannot carry replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", value)


def _child(parent: ET.Element, key: str) -> ET.Element:
    if _NAME.match(key):
        return ET.SubElement(parent, key)
    return ET.SubElement(parent, "field", {"name": xml_text(key)})


def fill(element: ET.Element, value: Any, key: str | None = None) -> ET.Element:
    """Write `value` into `element`: its text, type attribute, and children."""
    if value is None:
        element.set("nil", "true")
    elif isinstance(value, bool):
        element.set("type", "boolean")
        element.text = "true" if value else "false"
    elif isinstance(value, int | float):
        element.set("type", "number")
        element.text = json.dumps(value)
    elif isinstance(value, str):
        element.text = xml_text(value)
    elif isinstance(value, Mapping):
        element.set("type", "object")
        fill_object(element, value)
    elif isinstance(value, list | tuple):
        element.set("type", "array")
        item = _ITEM_NAMES.get(key or "", "item")
        for entry in value:
            fill(ET.SubElement(element, item), entry, item)
    else:
        element.text = xml_text(str(value))
    return element


def fill_object(element: ET.Element, value: Mapping[str, Any]) -> ET.Element:
    """One child element per key of `value`, without a type attribute on `element` itself."""
    for key, entry in value.items():
        fill(_child(element, str(key)), entry, str(key))
    return element


def fragment(element: ET.Element) -> str:
    """One element as XML text, without a declaration (a part of a larger document)."""
    # ElementTree leaves a carriage return raw in text, where parsers would turn it into \n
    return ET.tostring(element, encoding="unicode").replace("\r", "&#13;")


def serialize(root: ET.Element) -> bytes:
    """The document as UTF-8 bytes, with its XML declaration."""
    return (XML_DECLARATION + fragment(root)).encode()


def document_xml(doc: Mapping[str, Any], tag: str = "execution") -> bytes:
    """One execution: `<execution><_id>…</_id>…</execution>`."""
    return serialize(fill_object(ET.Element(tag), doc))


def list_xml(docs: Iterable[Mapping[str, Any]], total: int) -> Iterator[str]:
    """`<executions total="N"><execution>…</execution>…</executions>`, in parts: the
    declaration and the opening tag, then one execution at a time (only one of them is ever
    an element tree), then the closing tag."""
    head = ET.Element("executions", {"total": str(total)})
    empty = True
    for doc in docs:
        if empty:
            yield XML_DECLARATION + fragment(head)[: -len(" />")] + ">"
            empty = False
        yield fragment(fill_object(ET.Element("execution"), doc))
    yield XML_DECLARATION + fragment(head) if empty else "</executions>"


def values_xml(values: Iterable[Any], field: str) -> bytes:
    """The `_distinct` values: `<values field="name" total="N"><value>…</value>…</values>`."""
    values = list(values)
    root = ET.Element("values", {"field": xml_text(field), "total": str(len(values))})
    for value in values:
        fill(ET.SubElement(root, "value"), value)
    return serialize(root)


def error_xml(message: str, status: int) -> bytes:
    """An error: `<error status="404">no execution '…'</error>`."""
    root = ET.Element("error", {"status": str(status)})
    root.text = xml_text(message)
    return serialize(root)
