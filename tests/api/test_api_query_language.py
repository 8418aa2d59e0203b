"""The list call's whole query language over HTTP: `_filter`, `_search`, `_distinct`, CSV,
exclusion projections, and a 400 naming the parameter for every malformed query."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

import procexec.api.routes as routes
from procexec.api.formats import negotiate
from procexec.api.listing import csv_text
from procexec.engine.store.sqlite import deadlines
from tests.api.api_helpers import (
    BASES,
    KNOWN,
    OPTIONS,
    Service,
    assert_bad_query,
    watch_where_lists_run,
)
from tests.engine.query_strategies import DOCS

URL = f"{BASES[0]}/v1"


def newest_first(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(docs, key=lambda doc: (doc["start"], doc["_id"]), reverse=True)


def get(client: TestClient, service: Service, params: Any, **headers: str) -> Any:
    return client.get(URL, params=params, headers={**service.read_headers, **headers})


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [doc["_id"] for doc in response.json()]


# --- what the calls answer ----------------------------------------------------------------------


@pytest.mark.parametrize("base", BASES)
def test_filter_expression(
    client: TestClient, service: Service, corpus: list[Any], base: str
) -> None:
    expression = "(status=failed or status=running) and name=ECB_FX"
    response = client.get(
        f"{base}/v1", params={"_filter": expression, "_limit": "-1"}, headers=service.read_headers
    )
    expected = newest_first(
        [d for d in corpus if d["name"] == "ECB_FX" and d["status"] in ("failed", "running")]
    )
    assert expected, "the corpus has such executions"
    assert response.json() == expected
    assert response.headers["x-total-count"] == str(len(expected))


def test_json_filter(client: TestClient, service: Service, corpus: list[Any]) -> None:
    spec = {"$or": [{"status": "failed"}, {"phases.status": "running"}], "end": {"$exists": True}}
    response = get(client, service, {"_filter": json.dumps(spec), "_limit": "-1"})
    expected = [
        d["_id"]
        for d in newest_first(corpus)
        if "end" in d
        and (d["status"] == "failed" or any(p["status"] == "running" for p in d["phases"]))
    ]
    assert expected
    assert ids(response) == expected


def test_search_and_filters_together(
    client: TestClient, service: Service, corpus: list[Any]
) -> None:
    response = get(client, service, {"_search": "timeout -demo", "status": "ne(success)"})
    found = ids(response)
    assert found
    for execution_id in found:
        doc = next(d for d in corpus if d["_id"] == execution_id)
        assert doc["status"] != "success"
        text = json.dumps(doc).lower()
        assert "timeout" in text and "demo" not in text.replace("\\u00e9", "e")
    assert response.headers["x-total-count"] == str(len(found))


def test_distinct(client: TestClient, service: Service, corpus: list[Any]) -> None:
    response = get(client, service, {"_distinct": "name"})
    assert response.status_code == 200
    names = sorted({d["name"] for d in corpus})
    assert response.json() == names
    assert response.headers["x-total-count"] == str(len(names))
    failed = get(client, service, {"_distinct": "phases.name", "status": "failed", "_limit": "1"})
    expected = sorted({p["name"] for d in corpus if d["status"] == "failed" for p in d["phases"]})
    assert failed.json() == expected  # _limit does not cut the values
    staging = get(client, service, {"_distinct": "status"}, **{"x-odsl-environment": "staging"})
    assert staging.json() == sorted({d["status"] for d in DOCS if d["environment"] == "staging"})
    public = client.get(f"{URL}/public", params={"_distinct": "name"}, headers=service.read_headers)
    assert public.json() == [] and public.headers["x-total-count"] == "0"


def test_csv(client: TestClient, service: Service, corpus: list[Any]) -> None:
    response = get(client, service, {"name": "ECB_FX", "_limit": "-1"}, Accept="text/csv")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(response.text)))
    expected = newest_first([d for d in corpus if d["name"] == "ECB_FX"])
    assert response.headers["x-total-count"] == str(len(expected))
    assert [row["_id"] for row in rows] == [d["_id"] for d in expected]
    assert list(rows[0]) == [
        "_id", "service", "name", "environment", "trigger", "status", "message", "reason",
        "start", "runAs", "phases", "end", "loaderMessage", "data",
    ]  # fmt: skip
    for row, doc in zip(rows, expected, strict=True):
        assert row["status"] == doc["status"]
        assert row["end"] == doc.get("end", "")
        assert row["phases"] == ";".join(f"{p['name']}:{p['status']}" for p in doc["phases"])
        assert row["data"] == (
            json.dumps(doc["data"], separators=(",", ":")) if "data" in doc else ""
        )
    projected = get(client, service, {"_project": "status,name", "_limit": "2"}, Accept="text/csv")
    assert projected.text.splitlines()[0] == "_id,status,name"
    distinct = get(client, service, {"_distinct": "status"}, Accept="text/csv")
    assert distinct.text.splitlines() == ["status", *sorted({d["status"] for d in corpus})]


def test_csv_text_cells() -> None:
    text = csv_text(
        [
            {"_id": "a", "message": 'say "hi", then\nleave', "phases": [{"name": "LOAD"}, "odd"]},
            {"_id": "b", "phases": "none", "extra": True, "data": {"k": [1]}},
        ]
    )
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    assert header[-1] == "extra"  # fields beyond the document's come last
    first = dict(zip(header, rows[1], strict=True))
    second = dict(zip(header, rows[2], strict=True))
    assert first["message"] == 'say "hi", then\nleave'
    assert first["phases"] == "LOAD;odd"
    assert second["phases"] == "none"
    assert (second["extra"], second["data"], second["end"]) == ("true", '{"k":[1]}', "")


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, False),
        ("", False),
        ("text/csv", True),
        ("text/csv; charset=utf-8", True),
        ("TEXT/CSV", True),
        ("application/json", False),
        ("*/*", False),
        ("text/csv, application/json", True),
        ("application/json, text/csv", False),
        ("application/json;q=0.5, text/csv", True),
        ("text/csv;q=0.1, application/json", False),
        ("text/csv;q=0", False),
        ("text/csv;q=abc", False),
        ("application/xml", False),
    ],
)
def test_content_negotiation(accept: str | None, expected: bool) -> None:
    assert (negotiate(accept) == "csv") is expected


def test_exclusion_projection(client: TestClient, service: Service, corpus: list[Any]) -> None:
    response = get(client, service, {"_project": "-phases,-data", "_limit": "3"})
    for row, doc in zip(response.json(), newest_first(corpus), strict=False):
        assert row == {k: v for k, v in doc.items() if k not in ("phases", "data")}
    only = get(client, service, {"_project": '{"phases.log": 0}', "_limit": "1"})
    assert "log" not in json.dumps(only.json()[0]["phases"])


def test_the_documents_come_back_exactly(
    client: TestClient, service: Service, corpus: list[Any]
) -> None:
    """The stored JSON is served as it is: the same documents as one by one."""
    response = get(client, service, {"_limit": "-1"})
    assert response.json() == newest_first(corpus)
    for doc in response.json()[:5]:
        one = client.get(f"{URL}/{doc['_id']}", headers=service.read_headers)
        assert one.json() == doc


@pytest.mark.parametrize("budget", [0.0, 10.0])
def test_the_loop_and_the_worker_threads_answer_alike(
    client: TestClient,
    service: Service,
    corpus: list[Any],
    budget: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under budget the list call runs on the event loop; over it, in a worker thread."""
    handed: list[str] = []
    original = routes.run_in_threadpool

    async def spy(function: Any, *args: Any) -> Any:
        handed.append(function.__name__)
        return await original(function, *args)

    monkeypatch.setattr(routes, "run_in_threadpool", spy)
    monkeypatch.setattr(deadlines, "INLINE_SECONDS", budget)
    monkeypatch.setattr(deadlines, "INLINE_STEP", 1)
    queries: list[dict[str, str]] = [
        {"_limit": "-1"},
        {"_search": "timeout|refused", "_sort": "name,-start"},
        {"_filter": "not status=success", "_skip": "3"},
        {"name": "DEMO", "_project": "name"},
        {"_skip": "1000"},
    ]
    for params in queries:
        response = get(client, service, params)
        assert response.status_code == 200
        expected = service.store.list_json(routes.parse_query(list(params.items())))
        assert response.content == b"[" + b",".join(expected[0]) + b"]"
        assert response.headers["x-total-count"] == str(expected[1])
    if budget:  # only the projection, which parses documents
        assert handed == ["_list_call"]
    else:
        assert handed == ["_list_call"] * len(queries)


def test_a_query_that_overran_the_budget_goes_straight_to_a_thread(
    client: TestClient, service: Service, corpus: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    tries, handed = watch_where_lists_run(service, monkeypatch)
    monkeypatch.setattr(deadlines, "INLINE_SECONDS", 0.0)
    monkeypatch.setattr(deadlines, "INLINE_STEP", 1)
    monkeypatch.setattr(routes, "QUICK_SECONDS", 0.0)  # no threaded run is quick enough
    broad = {"_search": "timeout|refused"}
    first = get(client, service, broad)
    assert (len(tries), len(handed)) == (1, 1)  # tried on the loop, overran, then threaded
    again = get(client, service, broad)
    assert (len(tries), len(handed)) == (1, 2)  # straight to a thread
    assert again.content == first.content and ids(first)
    get(client, service, {"_search": "timeout"})
    assert (len(tries), len(handed)) == (2, 3)  # another query is tried on the loop
    later = routes.monotonic() + routes.OVERRAN_SECONDS + 1
    monkeypatch.setattr(routes, "monotonic", lambda: later)
    get(client, service, broad)
    assert (len(tries), len(handed)) == (3, 4)  # forgotten after OVERRAN_SECONDS


def test_a_query_that_overran_by_a_hiccup_is_forgotten_at_once(
    client: TestClient, service: Service, corpus: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overrunning the budget, then running quickly in a thread: the machine hiccupped, and
    the next call is tried on the loop again."""
    tries: list[int] = []
    inline = service.store.inline

    def counted_inline() -> Any:
        tries.append(1)
        return inline()

    monkeypatch.setattr(service.store, "inline", counted_inline)
    monkeypatch.setattr(deadlines, "INLINE_SECONDS", 0.0)
    monkeypatch.setattr(deadlines, "INLINE_STEP", 1)
    monkeypatch.setattr(routes, "QUICK_SECONDS", 60.0)  # every threaded run is quick
    for expected_tries in (1, 2, 3):
        assert ids(get(client, service, {"name": "ECB_FX"}))
        assert len(tries) == expected_tries
    assert service.app.state.procexec.overran == {}


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"name": "between(a,b)"}, "name: unknown function 'between' (known: range, gt, gte, "
         "lt, lte, in, ne, regex)"),
        ({"_filter": "(status=failed or status=running and name=ECB_FX"},
         "_filter: unbalanced parentheses: '(' at position 0 is never closed"),
        ({"_filter": "status=failed)"},
         "_filter: unbalanced parentheses: ')' at position 13 closes nothing"),
        ({"_search": "(ecb fx"},
         "_search: unbalanced parentheses: '(' at position 0 is never closed"),
        ({"_search": "ecb)"}, "_search: unexpected ')' at position 3: no '(' opens it"),
        ({"start": "range(2021-07-19,2021-02-30)"},
         "start: '2021-02-30' is not a date or an ISO 8601 datetime"),
        ({"_filter": "start>=2021-13-01"},
         "_filter: start: '2021-13-01' is not a date or an ISO 8601 datetime"),
        ({"_sort": "-strat"}, "_sort: cannot sort by 'strat' (did you mean 'start'?) "
         "(sortable: _id, service, name, environment, trigger, status, message, reason, "
         "start, runAs, end, loaderMessage)"),
        ({"_sort": '{"phases.start": 1}'},
         "_sort: cannot sort by 'phases.start' (sortable: _id, "
         "service, name, environment, trigger, status, message, reason, start, runAs, end, "
         "loaderMessage)"),
        ({"name": '{"$where": "sleep(100)"}'},
         "name: operators are not allowed in a value ('{\"$where\": \"sleep(100)\"}')"),
        ({"_filter": '{"$where": "sleep(100)"}'},
         "_filter: operator '$where' is not allowed (allowed: $and, $or, $nor, $not, $eq, $ne, "
         "$gt, $gte, $lt, $lte, $in, $nin, $exists, $regex)"),
        ({"_filter": '{"name": {"$function": {"body": "x"}}}'},
         "_filter: operator '$function' is not allowed (in 'name') (allowed: $and, $or, $nor, "
         "$not, $eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $exists, $regex)"),
        ({"_filter": '{"$expr": {"$gt": ["$a", 1]}}'},
         "_filter: operator '$expr' is not allowed (allowed: $and, $or, $nor, $not, $eq, $ne, "
         "$gt, $gte, $lt, $lte, $in, $nin, $exists, $regex)"),
        ({"_limit": "10001"}, "_limit: 10001 is out of range (0 to 10000)"),
        ({"_limit": "-3"}, "_limit: -3 is out of range (0 to 10000)"),
        ({"_distinct": "_meta.input"},
         "_distinct: '_meta.input' is not a field of an execution" + KNOWN),
        ({"_distinct": "na me"}, "_distinct: 'na me' is not a field name"),
        ({"_project": "name,-status"},
         "_project: list either fields to keep or fields to drop (-name)"),
        ({"_project": '{"name": "yes"}'}, "_project: value of 'name' must be 1 or 0"),
        ({"_search": "-"}, "_search: '-' at position 0 must be followed by a term"),
        ({"_fieldinfo": "_meta.input"},
         "_fieldinfo: '_meta.input' is not a field of an execution" + KNOWN),
        ({"_aggregate": '[{"$out": "x"}]'}, "_aggregate: stage 1: '$out' is not allowed (allowed: "
         "$match, $group, $sort, $skip, $limit, $count, $project)"),
        ({"_fieldinfo": "status", "_distinct": "name"}, "_distinct: cannot be combined with "
         "_fieldinfo (one of _distinct, _fieldinfo, _aggregate at a time)"),
        ({"_nosuch": "1"}, "_nosuch: unknown query parameter" + OPTIONS),
    ],
)  # fmt: skip
def test_malformed_queries_are_400_naming_the_parameter(
    client: TestClient, service: Service, corpus: list[Any], params: dict[str, str], message: str
) -> None:
    assert_bad_query(client, service, URL, params, message)


def test_distinct_given_twice(client: TestClient, service: Service, corpus: list[Any]) -> None:
    response = client.get(f"{URL}?_distinct=name&_distinct=status", headers=service.read_headers)
    assert response.status_code == 400
    assert response.json()["error"] == "_distinct: given twice (one field at a time)"


def test_a_non_ascii_error_keeps_its_header_ascii(
    client: TestClient, service: Service, corpus: list[Any]
) -> None:
    response = get(client, service, {"_search": "(café"})
    assert response.status_code == 400
    assert (
        response.json()["error"]
        == "_search: unbalanced parentheses: '(' at position 0 is never closed"
    )
    odd = get(client, service, {"naïve": "x"})
    assert odd.json()["error"] == "naïve: 'naïve' is not a field name"
    assert odd.headers["x-odsl-error"] == "na\\xefve: 'na\\xefve' is not a field name"
