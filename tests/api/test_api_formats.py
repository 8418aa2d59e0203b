"""The XML form of the list, `_distinct`, get and error answers, read back with ElementTree and
compared with the JSON of the same call; content negotiation, and a 406 for an `Accept` that
names no format offered."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from fastapi.testclient import TestClient

from procexec.api.formats import OFFERED_TEXT, document_xml, negotiate
from tests.api.api_helpers import BASES, Service
from tests.documents import execution

URL = f"{BASES[0]}/v1"
XML = "application/xml"
CONTROL = "".join(chr(code) for code in range(9))  # \x00-\x08: not allowed in XML 1.0
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def odd_execution() -> dict[str, Any]:
    """An execution with what XML makes hard: control characters, keys that are not XML
    names, nulls, booleans, numbers, empty containers, a carriage return, markup."""
    doc = execution("zz-odd", "2021-07-24T10:00:00.000Z", name="ODD")
    doc["phases"][0]["log"].append(f"bad {CONTROL} chars \x0b\x0c\x1f and\r\nCRLF <b>&amp;</b>")
    doc["message"] = "quotes \" ' and ]]> end"
    doc["data"] = {
        "a b": "space",
        "1x": 1,
        "xmlish": True,
        "flag": False,
        "ns:key": 2.5,
        "é": None,
        "": "empty key",
        "field": {"nested": [1, "two", None, False, [], {}]},
        "series": {"2021-07-24": ["#ODD.S0", "#ODD.S1"]},
        "curves": {},
        "nothing": None,
        "empty": "",
        "big": 12345678901234567890,
    }
    return doc


@pytest.fixture
def corpus(corpus: list[dict[str, Any]], service: Service) -> list[dict[str, Any]]:
    """The conftest's corpus, with `odd_execution()` stored beside it (not in the list)."""
    service.store.insert(odd_execution())
    return corpus


# --- reading the documented XML shape back into JSON values --------------------------------------


def value_of(element: ET.Element) -> Any:
    """The JSON value an element stands for (the rules of `api.formats`)."""
    if element.get("nil") == "true":
        assert element.text is None and len(element) == 0
        return None
    kind = element.get("type")
    if kind == "object":
        return object_of(element)
    if kind == "array":
        return [value_of(child) for child in element]
    text = element.text or ""
    assert len(element) == 0
    if kind == "number":
        number = json.loads(text)
        assert isinstance(number, int | float) and not isinstance(number, bool)
        return number
    if kind == "boolean":
        assert text in ("true", "false")
        return text == "true"
    assert kind is None, kind
    return text


def object_of(element: ET.Element) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for child in element:
        key = child.attrib["name"] if child.tag == "field" and "name" in child.attrib else child.tag
        assert key not in result
        result[key] = value_of(child)
    return result


def xml_safe(value: Any) -> Any:
    """A JSON value as XML can carry it: characters XML 1.0 forbids become U+FFFD."""
    if isinstance(value, str):
        return _NOT_XML.sub("\ufffd", value)
    if isinstance(value, list):
        return [xml_safe(item) for item in value]
    if isinstance(value, dict):
        return {xml_safe(key): xml_safe(item) for key, item in value.items()}
    return value


def parse(response: Any) -> ET.Element:
    assert response.headers["content-type"] == "application/xml; charset=utf-8"
    assert response.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(response.content)


def both(client: TestClient, url: str, service: Service, params: Any = None) -> tuple[Any, Any]:
    """The same call as JSON and as XML."""
    as_json = client.get(url, params=params, headers=service.read_headers)
    as_xml = client.get(url, params=params, headers={**service.read_headers, "Accept": XML})
    return as_json, as_xml


# --- list, projection, distinct ------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"_limit": "-1"},
        {"name": "ECB_FX", "_limit": "5", "_skip": "2"},
        {"_filter": "status=failed or status=running", "_sort": "name,-start"},
        {"_search": "timeout"},
        {"name": "nothing-matches"},
        {"_project": "status,name,data", "_limit": "-1"},
        {"_project": "-phases,-data", "_limit": "7"},
        {"_project": '{"phases.log": 0}', "_limit": "4"},
        {"_project": "phases.name,data.count", "_limit": "-1"},
    ],
    ids=[
        "all",
        "page",
        "filter-sort",
        "search",
        "empty",
        "project",
        "exclude",
        "json-exclude",
        "dotted",
    ],
)
@pytest.mark.parametrize("path", ["", "/private", "/all"])
def test_list_xml_is_the_json_list(
    client: TestClient, service: Service, corpus: list[Any], params: dict[str, str], path: str
) -> None:
    as_json, as_xml = both(client, URL + path, service, params)
    assert as_json.status_code == as_xml.status_code == 200, as_xml.text
    root = parse(as_xml)
    assert root.tag == "executions"
    assert root.get("total") == as_xml.headers["x-total-count"] == as_json.headers["x-total-count"]
    assert all(child.tag == "execution" for child in root)
    listed = [object_of(child) for child in root]
    assert listed == xml_safe(as_json.json())  # same executions, order, keys and values
    if "_limit" in params and params["_limit"] == "-1" and "name" not in params:
        assert len(listed) == int(root.attrib["total"])


def test_the_odd_execution_in_xml(client: TestClient, service: Service, corpus: list[Any]) -> None:
    as_json, as_xml = both(client, URL, service, {"name": "ODD"})
    [element] = parse(as_xml)
    doc = as_json.json()[0]
    assert doc == odd_execution()  # the store kept it as written
    assert object_of(element) == xml_safe(doc)
    log = element.find("phases/phase/log")
    assert log is not None and log.get("type") == "array"
    line = log[1]
    assert line.tag == "line"
    assert line.text == "bad " + "\ufffd" * 9 + " chars \ufffd\ufffd\ufffd and\r\nCRLF <b>&amp;</b>"
    data = element.find("data")
    assert data is not None
    fields = {child.attrib["name"]: child for child in data if "name" in child.attrib}
    assert set(fields) == {"a b", "1x", "xmlish", "ns:key", "é", ""}
    assert fields["1x"].get("type") == "number" and fields["1x"].text == "1"
    assert fields["é"].get("nil") == "true"
    assert (fields["xmlish"].get("type"), fields["xmlish"].text) == ("boolean", "true")
    flag = data.find("flag")
    assert flag is not None and (flag.get("type"), flag.text) == ("boolean", "false")
    field = data.find("field[@type='object']")  # a key named "field" keeps its name
    assert field is not None and "name" not in field.attrib
    series = data.find("series/field[@name='2021-07-24']")
    assert series is not None
    assert [item.tag for item in series] == ["item", "item"]
    assert b"\r" not in as_xml.content  # written &#13;


def test_xml_on_the_seed_shape(client: TestClient, service: Service) -> None:
    service.store.insert(execution("e1", "2021-07-01T16:30:07.858Z"))
    root = parse(client.get(URL, headers={**service.read_headers, "Accept": "text/xml"}))
    phases = root.find("execution/phases")
    assert phases is not None
    assert [phase.findtext("name") for phase in phases] == ["EXTRACT", "TRANSFORM", "SEND", "LOAD"]
    assert [phase.tag for phase in phases] == ["phase"] * 4
    assert root.findtext("execution/_id") == "e1"
    assert root.findtext("execution/phases/phase/log/line") == (
        "2021-07-01T16:30:07.858000000Z[UTC] info Completed EXTRACT"
    )


@pytest.mark.parametrize(
    "params",
    [
        {"_distinct": "status"},
        {"_distinct": "phases.name", "status": "failed"},
        {"_distinct": "data.count"},
        {"_distinct": "data.field.nested"},
        {"_distinct": "data.series.2021-07-24"},
        {"_distinct": "name", "name": "nothing-matches"},
    ],
)
def test_distinct_xml_is_the_json_array(
    client: TestClient, service: Service, corpus: list[Any], params: dict[str, str]
) -> None:
    as_json, as_xml = both(client, URL, service, params)
    assert as_json.status_code == as_xml.status_code == 200, as_xml.text
    root = parse(as_xml)
    assert root.tag == "values"
    assert root.get("field") == params["_distinct"]
    assert root.get("total") == as_xml.headers["x-total-count"] == as_json.headers["x-total-count"]
    assert all(child.tag == "value" for child in root)
    assert [value_of(child) for child in root] == xml_safe(as_json.json())


def test_public_lists_are_empty_in_xml(
    client: TestClient, service: Service, corpus: list[Any]
) -> None:
    for params in ({}, {"_distinct": "name"}):
        response = client.get(
            f"{URL}/public", params=params, headers={**service.read_headers, "Accept": XML}
        )
        root = parse(response)
        assert len(root) == 0 and root.get("total") == "0"
        assert response.headers["x-total-count"] == "0"


# --- one execution ---------------------------------------------------------------------------


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("prefix", ["", "private/", "all/"])
@pytest.mark.parametrize("odd", [True, False])
def test_get_xml_is_the_json_document(
    client: TestClient, service: Service, corpus: list[Any], base: str, prefix: str, odd: bool
) -> None:
    url = f"{base}/v1/{prefix}{'zz-odd' if odd else corpus[0]['_id']}"
    as_json, as_xml = both(client, url, service)
    assert as_json.status_code == as_xml.status_code == 200, as_xml.text
    root = parse(as_xml)
    assert root.tag == "execution"
    assert object_of(root) == xml_safe(as_json.json())


def test_get_in_csv_is_one_row(client: TestClient, service: Service, corpus: list[Any]) -> None:
    response = client.get(f"{URL}/zz-odd", headers={**service.read_headers, "Accept": "text/csv"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    listed = client.get(
        URL, params={"name": "ODD"}, headers={**service.read_headers, "Accept": "text/csv"}
    )
    assert response.text == listed.text


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "params", "headers", "status"),
    [
        ("GET", "/v1/nope", {}, None, 404),
        ("GET", "/v1/private/nope", {}, None, 404),
        ("GET", "/v1/public/zz-odd", {}, None, 404),
        ("GET", "/v1/elsewhere/zz-odd", {}, None, 404),
        ("GET", "/v1/a/b/c", {}, None, 404),
        ("GET", "/v1", {"_limit": "abc"}, None, 400),
        ("GET", "/v1", {"start": "range(2021"}, None, 400),
        ("GET", "/v1", {"_distinct": ""}, None, 400),
        ("GET", "/v1", {}, {"x-odsl-environment": "no good"}, 400),
        ("GET", "/v1", {}, {}, 401),
        ("GET", "/v1/zz-odd", {}, {"Authorization": "Bearer pe_wrong"}, 401),
        ("GET", "/v1/private/zz-odd", {}, {}, 401),
        ("POST", "/v1", {}, None, 400),
        ("DELETE", "/v1", {}, None, 405),
    ],
)
def test_errors_in_xml(
    client: TestClient,
    service: Service,
    corpus: list[Any],
    method: str,
    path: str,
    params: dict[str, str],
    headers: dict[str, str] | None,
    status: int,
) -> None:
    sent = service.run_headers if headers is None else headers
    as_json = client.request(method, BASES[1] + path, params=params, headers=sent)
    as_xml = client.request(method, BASES[1] + path, params=params, headers={**sent, "Accept": XML})
    assert as_json.status_code == as_xml.status_code == status, as_xml.text
    body = as_json.json()
    root = parse(as_xml)
    assert root.tag == "error"
    assert len(root) == 0
    assert root.get("status") == str(body["status"]) == str(status)
    assert root.text == body["error"]
    assert as_xml.headers["x-odsl-error"] == as_json.headers["x-odsl-error"]
    csv_error = client.request(
        method, BASES[1] + path, params=params, headers={**sent, "Accept": "text/csv"}
    )
    assert csv_error.json() == body  # CSV callers get JSON errors


def test_error_text_is_escaped_in_xml(client: TestClient, service: Service) -> None:
    weird = "<x>&\x01"
    response = client.get(
        URL, params={"start": weird}, headers={**service.read_headers, "Accept": XML}
    )
    assert response.status_code == 400
    as_json = client.get(URL, params={"start": weird}, headers=service.read_headers)
    assert parse(response).text == xml_safe(as_json.json()["error"])


# --- content negotiation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "json"),
        ("", "json"),
        (" , ", "json"),
        ("*/*", "json"),
        ("application/json", "json"),
        ("application/xml", "xml"),
        ("text/xml", "xml"),
        ("APPLICATION/XML; charset=utf-8", "xml"),
        ("text/csv", "csv"),
        ("application/xml, application/json", "xml"),
        ("application/json, application/xml", "json"),
        ("application/json;q=0.5, application/xml", "xml"),
        ("application/xml;q=0.5, application/json", "json"),
        ("text/csv;q=0.8, application/xml;q=0.9", "xml"),
        ("application/xml;q=0.1, text/csv;q=0.2", "csv"),
        ("*/*, application/xml", "xml"),  # the more specific range wins at equal q
        ("application/xml, */*;q=0.1", "xml"),
        ("*/*, application/xml;q=0", "json"),
        ("application/*", "json"),
        ("text/*", "csv"),
        ("text/*, text/xml", "xml"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "xml"),
        ("image/png, */*;q=0.1", "json"),
        ("image/png", None),
        ("text/html, image/*", None),
        ("application/xml;q=0", "json"),  # named only refused: JSON, as always
        ("text/csv;q=abc", "json"),
        ("application/xml;q=nan", "json"),
    ],
)
def test_negotiate(accept: str | None, expected: str | None) -> None:
    assert negotiate(accept) == expected


@pytest.mark.parametrize(
    ("path", "params"),
    [("/v1", {}), ("/v1", {"_distinct": "name"}), ("/v1/zz-odd", {}), ("/v1/private/zz-odd", {})],
)
def test_not_acceptable(
    client: TestClient, service: Service, corpus: list[Any], path: str, params: dict[str, str]
) -> None:
    headers = {**service.read_headers, "Accept": "image/png"}
    response = client.get(BASES[0] + path, params=params, headers=headers)
    assert response.status_code == 406
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    assert message == (
        f"Accept: 'image/png' names no format offered here; ask for {OFFERED_TEXT}, or */*"
    )
    assert response.headers["x-odsl-error"] == message
    # the caller is checked first
    anonymous = client.get(BASES[0] + path, params=params, headers={"Accept": "image/png"})
    assert anonymous.status_code == 401


def test_document_xml_is_well_formed_for_any_key_and_text() -> None:
    keys = ["a b", "1x", "x:y", "xml", "XMLfoo", "-", ".", ""]
    keys += ["\x00a", "\ud800b", "<>", "é", "a\tb"]
    texts = [CONTROL, "\ud800 lone", "\ufffe\uffff", "]]>", "\r", "😀", "a\x7fb"]
    doc: dict[str, Any] = {key: texts for key in keys}
    root = ET.fromstring(document_xml(doc))
    assert object_of(root) == xml_safe(doc)
    assert [child.tag for child in root] == ["field"] * len(keys)
