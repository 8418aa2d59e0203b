"""CSV answers neutralise formula injection: a text cell a spreadsheet would run as a formula
(`=`, `+`, `-`, `@`, tab, carriage return first) gets a leading `'`, as OWASP advises; numbers
(a negative one included) and texts that are plain numbers stay as they are. Every CSV answer:
the list, one execution, `_distinct`, `_fieldinfo` and `_aggregate`, over real HTTP to the
real app on a real SQLite file."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.api_helpers import BASES, Service
from tests.documents import execution

URL = f"{BASES[0]}/v1"
#: hostile texts, and how their cell must read
HOSTILE = {
    '=HYPERLINK("http://x","y")': '\'=HYPERLINK("http://x","y")',
    "+1+cmd|' /C calc'!A0": "'+1+cmd|' /C calc'!A0",
    "-2+3": "'-2+3",
    "@SUM(A1:A9)": "'@SUM(A1:A9)",
    "\t=1": "'\t=1",
    "\r=1": "'\r=1",
    "-": "'-",
    "-5": "-5",  # a plain number, as text: no spreadsheet runs it
    "+1.5e3": "+1.5e3",
    "a=1": "a=1",  # only the first character counts
}


@pytest.fixture
def hostile(service: Service) -> list[str]:
    """One execution per hostile text, in its `message`, `reason` and a phase's name; each
    with a number, negative, in `data.n`. Returns their ids, in `_id` order."""
    ids = []
    for number, text in enumerate(HOSTILE):
        doc = execution(f"h{number:02d}", f"2021-07-0{1 + number % 9}T10:00:00.000Z")
        doc.update(message=text, reason=text, data={"n": -number - 0.5, "t": text})
        doc["phases"][0]["name"] = text
        service.store.insert(doc)
        ids.append(doc["_id"])
    return ids


def csv_rows(client: TestClient, service: Service, url: str, params: Any) -> list[dict[str, str]]:
    headers = {**service.read_headers, "Accept": "text/csv"}
    response = client.get(url, params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text, newline="")))


def test_the_list_neutralises_text_cells_and_keeps_numbers(
    client: TestClient, service: Service, hostile: list[str]
) -> None:
    rows = csv_rows(client, service, URL, {"_sort": "_id", "_limit": "-1"})
    assert [row["_id"] for row in rows] == hostile
    for row, (text, cell) in zip(rows, HOSTILE.items(), strict=True):
        assert row["message"] == cell, text
        assert row["reason"] == cell, text
        phases = row["phases"]  # `-5:success;…` is no number: neutralised
        assert phases.startswith("'") == text.startswith(("=", "+", "-", "@", "\t", "\r"))
        assert phases.removeprefix("'").startswith(f"{text}:success;TRANSFORM:success;")
    assert [row["data"].split(",")[0] for row in rows[:2]] == ['{"n":-0.5', '{"n":-1.5']


def test_one_execution_in_csv_is_neutralised(
    client: TestClient, service: Service, hostile: list[str]
) -> None:
    (row,) = csv_rows(client, service, f"{URL}/{hostile[0]}", {})
    assert row["message"] == HOSTILE['=HYPERLINK("http://x","y")']


def test_distinct_fieldinfo_and_aggregate_neutralise_text_and_keep_numbers(
    client: TestClient, service: Service, hostile: list[str]
) -> None:
    values = [row["message"] for row in csv_rows(client, service, URL, {"_distinct": "message"})]
    assert sorted(values) == sorted(HOSTILE.values())
    numbers = [row["data.n"] for row in csv_rows(client, service, URL, {"_distinct": "data.n"})]
    assert numbers == [str(-number - 0.5) for number in reversed(range(len(HOSTILE)))]
    buckets = csv_rows(client, service, URL, {"_fieldinfo": "reason"})
    assert sorted(row["_id"] for row in buckets) == sorted(HOSTILE.values())
    assert {row["count"] for row in buckets} == {"1"}
    pipeline = '[{"$group": {"_id": "$data.t", "low": {"$min": "$data.n"}}}]'
    results = csv_rows(client, service, URL, {"_aggregate": pipeline})
    by_key = {row["_id"]: row["low"] for row in results}
    assert by_key == {cell: str(-number - 0.5) for number, cell in enumerate(HOSTILE.values())}
