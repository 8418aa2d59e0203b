"""Property tests over HTTP: no query, however malformed, gets a 5xx; every refusal is a 400
whose message names a parameter; every valid query is a 200 with its total."""

from __future__ import annotations

import copy
import csv
import io
import json
import urllib.parse
import xml.etree.ElementTree as ET
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procexec.engine.errors import label
from tests.api.api_helpers import BASES, Service
from tests.engine.query_strategies import (
    DOCS,
    FIELDINFO_FIELDS,
    garbage_params,
    pipeline,
    pipeline_params,
    valid_params,
)

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ACCEPT = st.sampled_from(
    ["application/json", "text/csv", "*/*", "application/xml", "", "text/csv;q=x"]
)


def _seed(service: Service) -> None:
    if service.count() == 0:
        for doc in DOCS:
            service.store.insert(copy.deepcopy(doc))


def _check(response: Any, params: list[tuple[str, Any]], accept: str) -> None:
    assert response.status_code in (200, 400), (params, response.status_code, response.text)
    xml = "application/xml" in response.headers["content-type"]
    if response.status_code == 400:
        if xml:  # <error status="400">message</error>
            root = ET.fromstring(response.content)
            assert root.tag == "error"
            body = {"error": root.text, "status": int(root.attrib["status"])}
        else:
            body = response.json()
        assert set(body) == {"error", "status"} and body["status"] == 400
        assert response.headers["x-odsl-error"]
        named = body["error"].split(":")[0]
        # a name past 80 characters is named by its excerpt (`engine.errors.label`)
        names = {label(name) for name, _ in params}
        assert named in names or named in ("query", "x-odsl-environment"), (params, body["error"])
        return
    total = int(response.headers["x-total-count"])
    if "text/csv" in response.headers["content-type"]:
        rows = list(csv.reader(io.StringIO(response.text)))
        assert rows and len(rows) - 1 <= max(total, 0) + 10_000
    elif xml:
        root = ET.fromstring(response.content)
        assert root.tag in ("executions", "values", "buckets", "results")
        assert root.attrib["total"] == str(total)
        assert len(root) <= total or root.tag == "values"
    else:
        listed = response.json()
        assert isinstance(listed, list)
        assert len(listed) <= total or any(name == "_distinct" for name, _ in params)


@SETTINGS
@given(params=garbage_params(), accept=ACCEPT, base=st.sampled_from(BASES))
def test_no_query_gets_a_server_error(
    client: TestClient, service: Service, params: list[tuple[str, Any]], accept: str, base: str
) -> None:
    _seed(service)
    response = client.get(
        f"{base}/v1", params=params, headers={**service.read_headers, "Accept": accept}
    )
    _check(response, params, accept)


@SETTINGS
@given(params=valid_params(), accept=ACCEPT)
def test_valid_queries_answer(
    client: TestClient, service: Service, params: list[tuple[str, Any]], accept: str
) -> None:
    _seed(service)
    response = client.get(
        f"{BASES[1]}/v1/private",
        params=params,
        headers={**service.read_headers, "Accept": accept},
    )
    assert response.status_code == 200, (params, response.text)
    _check(response, params, accept)


@SETTINGS
@given(
    params=pipeline_params(),
    stages=pipeline(),
    field=st.sampled_from(FIELDINFO_FIELDS),
    aggregate=st.booleans(),
    accept=ACCEPT,
)
def test_counting_queries_answer(
    client: TestClient,
    service: Service,
    params: list[tuple[str, Any]],
    stages: list[dict[str, Any]],
    field: str,
    aggregate: bool,
    accept: str,
) -> None:
    """`_fieldinfo` and `_aggregate` answer with as many buckets or results as they count."""
    _seed(service)
    if aggregate:
        params = [*params, ("_aggregate", json.dumps(stages))]
    else:
        params = [*(p for p in params if p[0] != "_sort"), ("_fieldinfo", field)]
    response = client.get(
        f"{BASES[0]}/v1", params=params, headers={**service.read_headers, "Accept": accept}
    )
    assert response.status_code == 200, (params, response.text)
    _check(response, params, accept)
    if response.headers["content-type"] == "application/json":
        assert len(response.json()) == int(response.headers["x-total-count"])


@SETTINGS
@given(raw=st.binary(max_size=60), path=st.sampled_from(["v1", "v1/private", "v1/all"]))
def test_raw_query_strings_get_no_server_error(
    client: TestClient, service: Service, raw: bytes, path: str
) -> None:
    """Bytes as they come: bad percent-escapes, bad UTF-8, stray `&` and `=`."""
    _seed(service)
    query = urllib.parse.quote_from_bytes(raw, safe="&=%()$,{}\"':")
    response = client.get(f"{BASES[0]}/{path}?{query}", headers=service.read_headers)
    assert response.status_code in (200, 400), (raw, response.text)
    if response.status_code == 200:
        assert isinstance(json.loads(response.content), list)
