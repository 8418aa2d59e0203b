"""The size limit of answers (`PROCEXEC_MAX_ANSWER_BYTES`) over the real app and a real SQLite
file: a list, `_distinct`, `_fieldinfo`, `_aggregate` or one execution larger than the limit
is refused 400 with a message naming it, in JSON, CSV and XML alike; under it, the answer is
whole and valid; after a refusal the store answers as before."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from procexec.engine.settings import Settings
from tests.api.api_helpers import BASES, Dispatcher, Service, start_service
from tests.documents import execution

#: each document logs a line, and carries a message, of this many characters
LINE = 10_000
COUNT = 40
#: a few documents fit, all of them do not
LIMIT = 5 * 2 * LINE
MESSAGE = (
    f"answer: larger than {LIMIT} bytes (PROCEXEC_MAX_ANSWER_BYTES); ask for fewer documents "
    "with _limit (and the next ones with _skip), or for fewer fields with _project"
)
FORMATS = ["application/json", "text/csv", "application/xml"]


def large(number: int) -> dict[str, Any]:
    doc = execution(f"large-{number:03}", f"2021-07-{1 + number % 28:02}T16:30:{number:02}.000Z")
    doc["phases"][0]["log"].append(f"{number:03} " + "x" * LINE)
    doc["message"] = f"{number:03} " + "m" * LINE
    return doc


@pytest.fixture
def service(tmp_path: Path, dispatcher: Dispatcher) -> Iterator[Service]:
    settings = Settings.from_env(
        {"PROCEXEC_DATA_DIR": str(tmp_path), "PROCEXEC_MAX_ANSWER_BYTES": str(LIMIT)}
    )
    service = start_service(settings, dispatcher)
    for number in range(COUNT):
        service.store.insert(large(number))
    huge = execution("huge", "2021-06-30T10:00:00.000Z")
    huge["phases"][0]["log"] = ["y" * LINE for _ in range(12)]  # larger than the limit alone
    service.store.insert(huge)
    yield service
    service.store.close()


def refused(response: Any) -> None:
    assert response.status_code == 400, response.text[:200]
    assert response.headers["x-odsl-error"] == MESSAGE


def parsed(response: Any, accept: str) -> list[Any]:
    """The rows of a list answer, in any format."""
    assert response.status_code == 200, response.text[:200]
    if accept == "text/csv":
        return list(csv.DictReader(io.StringIO(response.text)))
    if accept == "application/xml":
        return list(ET.fromstring(response.content))
    rows: list[Any] = response.json()
    return rows


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("accept", FORMATS)
def test_a_page_larger_than_the_limit_is_refused(
    client: TestClient, service: Service, base: str, accept: str
) -> None:
    headers = {**service.read_headers, "Accept": accept}
    for source in ("v1", "v1/private", "v1/all"):
        response = client.get(f"{base}/{source}", params={"_limit": "10000"}, headers=headers)
        refused(response)
    # the store is left as it was: the next page within the limit is answered
    response = client.get(f"{base}/v1", params={"_limit": "3"}, headers=headers)
    assert len(parsed(response, accept)) == 3
    assert response.headers["x-total-count"] == str(COUNT + 1)


@pytest.mark.parametrize("accept", FORMATS)
def test_a_page_within_the_limit_is_whole_and_valid(
    client: TestClient, service: Service, accept: str
) -> None:
    headers = {**service.read_headers, "Accept": accept}
    response = client.get(BASES[0] + "/v1", params={"_limit": "4", "_skip": "2"}, headers=headers)
    rows = parsed(response, accept)
    ids = ["large-025", "large-024", "large-023", "large-022"]
    if accept == "application/json":
        assert rows == [large(int(doc_id[-3:])) for doc_id in ids]
    elif accept == "text/csv":
        assert [row["_id"] for row in rows] == ids
        assert [row["message"] for row in rows] == [large(int(i[-3:]))["message"] for i in ids]
    else:
        assert [row.findtext("_id") for row in rows] == ids
        logs = [row.find("phases/phase/log") for row in rows]
        assert [line.text for line in logs[0]][-1] == "025 " + "x" * LINE  # type: ignore[union-attr]


@pytest.mark.parametrize("accept", FORMATS)
def test_fewer_fields_fit(client: TestClient, service: Service, accept: str) -> None:
    """`_project` makes the answer small: every document is answered, but for one stored
    larger than the limit alone, refused before it is parsed."""
    headers = {**service.read_headers, "Accept": accept}
    params = {"_limit": "10000", "_project": "name,status", "start": "gte(2021-07-01)"}
    rows = parsed(client.get(BASES[0] + "/v1", params=params, headers=headers), accept)
    assert len(rows) == COUNT
    refused(client.get(BASES[0] + "/v1", params={**params, "start": "2021-06-30"}, headers=headers))
    refused(client.get(BASES[0] + "/v1/huge", params={"_project": "name"}, headers=headers))


@pytest.mark.parametrize("accept", FORMATS)
@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"_distinct": "phases.log"}, id="distinct"),
        pytest.param({"_distinct": "message"}, id="distinct-column"),
        pytest.param({"_fieldinfo": "message"}, id="fieldinfo"),
        pytest.param(
            {"_aggregate": json.dumps([{"$group": {"_id": "$_id", "m": {"$first": "$message"}}}])},
            id="aggregate",
        ),
    ],
)
def test_values_larger_than_the_limit_are_refused(
    client: TestClient, service: Service, accept: str, params: dict[str, str]
) -> None:
    headers = {**service.read_headers, "Accept": accept}
    refused(client.get(BASES[0] + "/v1", params=params, headers=headers))
    # within the limit, the same call answers
    narrow = {**params, "name": "ECB_FX", "start": "range(2021-07-01,2021-07-02)"}
    assert client.get(BASES[0] + "/v1", params=narrow, headers=headers).status_code == 200


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("accept", FORMATS)
def test_one_execution_larger_than_the_limit_is_refused(
    client: TestClient, service: Service, base: str, accept: str
) -> None:
    headers = {**service.read_headers, "Accept": accept}
    for path in ("v1/huge", "v1/private/huge", "v1/all/huge"):
        refused(client.get(f"{base}/{path}", headers=headers))
    # a document within the limit is answered
    response = client.get(f"{base}/v1/large-001", headers=headers)
    assert response.status_code == 200
    assert ("m" * LINE) in response.text
