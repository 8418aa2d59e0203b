"""`_fieldinfo` and `_aggregate` over HTTP: JSON, CSV and XML answers, `x-total-count`, the
parameters beside them, and a 400 naming the parameter for everything malformed."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from tests.api.api_helpers import BASES, Service, assert_bad_query
from tests.api.test_api_formats import object_of, parse

URL = f"{BASES[0]}/v1"
#: the platform's example: process executions grouped by status
BY_STATUS = [{"$group": {"_id": "$status", "count": {"$sum": 1}}}]


def get(client: TestClient, service: Service, params: Any, url: str = URL, **headers: str) -> Any:
    return client.get(url, params=params, headers={**service.read_headers, **headers})


def by_count(counts: Counter[Any]) -> list[dict[str, Any]]:
    return [
        {"_id": value, "count": n}
        for value, n in sorted(counts.items(), key=lambda c: (-c[1], c[0]))
    ]


# --- _fieldinfo ---------------------------------------------------------------------------------


@pytest.mark.parametrize("base", BASES)
def test_fieldinfo(client: TestClient, service: Service, corpus: list[Any], base: str) -> None:
    response = get(client, service, {"_fieldinfo": "runAs"}, f"{base}/v1/private")
    assert response.status_code == 200, response.text
    expected = by_count(Counter(doc["runAs"] for doc in corpus))
    assert response.json() == [
        {**bucket, "filter": {"runAs": bucket["_id"]}} for bucket in expected
    ]
    assert response.headers["x-total-count"] == str(len(expected))


def test_fieldinfo_is_narrowed_by_the_other_filters(
    client: TestClient, service: Service, corpus: list[Any]
) -> None:
    params = {"_fieldinfo": "status", "name": "ECB_FX", "_limit": "1", "_skip": "2"}
    found = get(client, service, params).json()
    expected = by_count(Counter(doc["status"] for doc in corpus if doc["name"] == "ECB_FX"))
    assert [{"_id": b["_id"], "count": b["count"]} for b in found] == expected  # not paged
    for bucket in found:  # the bucket's filter selects as many executions as it counts
        listed = get(client, service, {"name": "ECB_FX", "_filter": json.dumps(bucket["filter"])})
        assert listed.headers["x-total-count"] == str(bucket["count"])


def test_fieldinfo_counts_an_execution_once_per_phase_value(
    client: TestClient, service: Service, corpus: list[Any]
) -> None:
    found = get(client, service, {"_fieldinfo": "phases.status"}).json()
    expected = by_count(
        Counter(status for doc in corpus for status in {p["status"] for p in doc["phases"]})
    )
    assert [{"_id": b["_id"], "count": b["count"]} for b in found] == expected
    assert found[0]["filter"] == {"phases.status": found[0]["_id"]}


def test_fieldinfo_csv_and_xml(client: TestClient, service: Service, corpus: list[Any]) -> None:
    as_json = get(client, service, {"_fieldinfo": "data.count"}).json()
    assert {type(b["_id"]) for b in as_json} == {int, float, str}
    as_csv = get(client, service, {"_fieldinfo": "data.count"}, Accept="text/csv")
    assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(as_csv.text)))
    assert rows == [["_id", "count"], *([str(b["_id"]), str(b["count"])] for b in as_json)]
    assert as_csv.headers["x-total-count"] == str(len(as_json))
    root = parse(get(client, service, {"_fieldinfo": "data.count"}, Accept="application/xml"))
    assert (root.tag, root.get("field"), root.get("total")) == (
        "buckets",
        "data.count",
        str(len(as_json)),
    )
    assert [object_of(child) for child in root] == as_json
    assert {child.tag for child in root} == {"bucket"}


def test_fieldinfo_of_public_data_is_empty(
    client: TestClient, service: Service, corpus: list[Any]
) -> None:
    response = get(client, service, {"_fieldinfo": "status"}, f"{URL}/public")
    assert response.json() == [] and response.headers["x-total-count"] == "0"


# --- _aggregate ---------------------------------------------------------------------------------


@pytest.mark.parametrize("base", BASES)
def test_the_platforms_example(
    client: TestClient, service: Service, corpus: list[Any], base: str
) -> None:
    response = get(client, service, {"_aggregate": json.dumps(BY_STATUS)}, f"{base}/v1")
    assert response.status_code == 200, response.text
    counts = Counter(doc["status"] for doc in corpus)
    assert response.json() == [{"_id": s, "count": counts[s]} for s in sorted(counts)]
    assert response.headers["x-total-count"] == str(len(counts))


def test_aggregate_over_the_whole_selection(
    client: TestClient, service: Service, corpus: list[Any]
) -> None:
    stages = [
        {"$match": {"phases.status": "failed"}},
        {"$group": {"_id": "$name", "runs": {"$sum": 1}, "latest": {"$max": "$start"}}},
        {"$sort": {"runs": -1}},
        {"$limit": 2},
    ]
    params = {"_aggregate": json.dumps(stages), "service": "ETL", "_limit": "1", "_skip": "5"}
    selected = [
        doc
        for doc in corpus
        if doc["service"] == "ETL" and any(p["status"] == "failed" for p in doc["phases"])
    ]
    groups: dict[str, list[Any]] = {}
    for doc in selected:
        groups.setdefault(doc["name"], []).append(doc)
    rows = [
        {"_id": name, "runs": len(docs), "latest": max(doc["start"] for doc in docs)}
        for name, docs in groups.items()
    ]
    rows.sort(key=lambda row: row["_id"], reverse=True)  # ties: by `_id`, as the first key
    expected = sorted(rows, key=lambda row: -row["runs"])[:2]
    response = get(client, service, params)
    assert response.json() == expected  # `_limit` and `_skip` do not apply; `$limit` does
    assert response.headers["x-total-count"] == "2"


def test_sort_orders_the_documents_entering_the_pipeline(
    client: TestClient, service: Service, corpus: list[Any]
) -> None:
    stages = [{"$group": {"_id": None, "first": {"$first": "$_id"}, "last": {"$last": "$_id"}}}]
    ordered = sorted(corpus, key=lambda doc: (doc["name"], doc["_id"]))
    response = get(client, service, {"_aggregate": json.dumps(stages), "_sort": "name"})
    assert response.json() == [
        {"_id": None, "first": ordered[0]["_id"], "last": ordered[-1]["_id"]}
    ]


def test_aggregate_csv_and_xml(client: TestClient, service: Service, corpus: list[Any]) -> None:
    stages = [
        {"$group": {"_id": {"name": "$name", "trigger": "$trigger"}, "n": {"$count": {}}}},
        {"$project": {"n": 1, "_id": 1}},
    ]
    params = {"_aggregate": json.dumps(stages)}
    as_json = get(client, service, params).json()
    as_csv = get(client, service, params, Accept="text/csv")
    rows = list(csv.reader(io.StringIO(as_csv.text)))
    assert rows[0] == ["_id", "n"]
    assert rows[1:] == [
        [json.dumps(row["_id"], separators=(",", ":"), ensure_ascii=False), str(row["n"])]
        for row in as_json
    ]
    root = parse(get(client, service, params, Accept="application/xml"))
    assert (root.tag, root.get("total")) == ("results", str(len(as_json)))
    assert [object_of(child) for child in root] == as_json


def test_aggregate_of_public_data_is_empty(
    client: TestClient, service: Service, corpus: list[Any]
) -> None:
    response = get(client, service, {"_aggregate": json.dumps(BY_STATUS)}, f"{URL}/public")
    assert response.json() == [] and response.headers["x-total-count"] == "0"


def test_aggregate_in_a_form_body(client: TestClient, service: Service, corpus: list[Any]) -> None:
    """A long pipeline may travel in the body of the GET, as every long query."""
    stages = [{"$match": {"name": {"$in": [f"NAME{i}" for i in range(200)] + ["DEMO"]}}},
              {"$count": "runs"}]  # fmt: skip
    response = client.request(
        "GET",
        URL,
        content=urlencode({"_aggregate": json.dumps(stages)}),
        headers={**service.read_headers, "content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == [{"runs": sum(doc["name"] == "DEMO" for doc in corpus)}]


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"_aggregate": "[{"}, "_aggregate: malformed JSON: Expecting property name enclosed in "
         "double quotes at position 2"),
        ({"_aggregate": '{"$group": {"_id": "$status"}}'}, '_aggregate: expected a JSON array of '
         'stages such as [{"$group": {"_id": "$status", "count": {"$sum": 1}}}], not an object'),
        ({"_aggregate": '[{"$lookup": {"from": "tokens", "as": "t"}}]'}, "_aggregate: stage 1: "
         "'$lookup' is not allowed (allowed: $match, $group, $sort, $skip, $limit, $count, "
         "$project)"),
        ({"_aggregate": '[{"$match": {"$where": "sleep(1000)"}}, {"$count": "n"}]'},
         "_aggregate: stage 1 ($match): operator '$where' is not allowed (allowed: $and, $or, "
         "$nor, $not, $eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $exists, $regex)"),
        ({"_aggregate": '[{"$group": {"_id": null, "f": {"$function": {}}}}]'},
         "_aggregate: stage 1 ($group): accumulator '$function' is not allowed (allowed: $sum, "
         "$avg, $min, $max, $first, $last, $count)"),
        ({"_aggregate": json.dumps([{"$count": "n"}] * 21)},
         "_aggregate: too many stages (21, at most 20)"),
        ({"_aggregate": json.dumps(BY_STATUS), "_project": "name"},
         "_project: cannot be combined with _aggregate (use a $project stage)"),
        ({"_aggregate": json.dumps(BY_STATUS), "_distinct": "name"},
         "_distinct: cannot be combined with _aggregate (one of _distinct, _fieldinfo, "
         "_aggregate at a time)"),
        ({"_fieldinfo": "status", "_aggregate": json.dumps(BY_STATUS)},
         "_aggregate: cannot be combined with _fieldinfo (one of _distinct, _fieldinfo, "
         "_aggregate at a time)"),
        ({"_fieldinfo": "status", "_sort": "-start"},
         "_sort: cannot be combined with _fieldinfo (buckets come by count)"),
        ({"_fieldinfo": "na me"}, "_fieldinfo: 'na me' is not a field name"),
    ],
)  # fmt: skip
def test_malformed_queries_are_400_naming_the_parameter(
    client: TestClient, service: Service, corpus: list[Any], params: dict[str, str], message: str
) -> None:
    assert_bad_query(client, service, URL, params, message)


def test_too_many_results_is_a_400(
    client: TestClient, service: Service, corpus: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in (
        "query.documents",
        "query.pipeline",
        "store.sqlite.fields",
        "store.sqlite.aggregate",
    ):
        monkeypatch.setattr(f"procexec.engine.{module}.MAX_DISTINCT", 3)
    response = get(client, service, {"_aggregate": '[{"$group": {"_id": "$_id"}}]'})
    assert response.status_code == 400
    assert response.json()["error"] == (
        "_aggregate: more than 3 results; add a $limit or narrow the filters"
    )
    response = get(client, service, {"_fieldinfo": "_id"})
    assert response.status_code == 400
    assert response.json()["error"] == (
        "_fieldinfo: more than 3 distinct values of '_id'; narrow the filters"
    )
