"""Every read bounded from its first byte, over HTTP through the real app: what a query may hold
(each limit a 400 naming it, before any work of size), what the store cannot take answered 400
and never 503, lone surrogates refused by name, at most 80 characters of the input in any error,
the read's deadline counted from the call's arrival, and long queries read off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any

import pytest
from fastapi.testclient import TestClient

from procexec.api import queries, routes
from procexec.api.limits import MAX_QUERY_STRING_BYTES
from procexec.engine.errors import EXCERPT_CHARS
from procexec.engine.limits import MAX_IN_VALUES, MAX_PROJECT_FIELDS, MAX_SORT_KEYS
from procexec.engine.query.tree import MAX_FILTER_DEPTH, MAX_QUERY_NODES
from tests.api.api_helpers import BASES, Service, watch_where_lists_run

URL = f"{BASES[0]}/v1"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def get(client: TestClient, service: Service, params: Any) -> Any:
    """The list call with `params` in its URL (commas as they are: a 58 KB `_project`)."""
    query = urllib.parse.urlencode(params, safe=",")
    return client.get(f"{URL}?{query}", headers=service.read_headers)


def form(client: TestClient, service: Service, params: Any) -> Any:
    body = urllib.parse.urlencode(params).encode()
    return client.request("GET", URL, content=body, headers={**service.read_headers, **FORM})


def refused(response: Any, message: str) -> None:
    """A 400 whose message starts with `message`, in the body and in `x-odsl-error`."""
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(message), response.json()
    assert response.headers["x-odsl-error"].startswith(message)


# --- limits on what a query holds --------------------------------------------------------------


def test_project_takes_at_most_100_fields(client: TestClient, service: Service) -> None:
    """5,400 fields once took 7.4 s to check (every one compared with every other), and
    10,000 in a form body 41.9 s."""
    fields = [f"data.f{number}" for number in range(MAX_PROJECT_FIELDS)]
    assert get(client, service, {"_project": ",".join(fields)}).status_code == 200
    kept = json.dumps(dict.fromkeys(fields, 1))
    assert get(client, service, {"_project": kept}).status_code == 200
    more = [f"data.f{number}" for number in range(5400)]
    refused(
        get(client, service, {"_project": ",".join(more)}), "_project: 5400 fields, at most 100"
    )
    many = [f"data.f{number}" for number in range(10_000)]
    refused(form(client, service, {"_project": ",".join(many)}), "_project: 10000 fields")
    refused(
        form(client, service, {"_project": json.dumps(dict.fromkeys(many, 0))}),
        "_project: 10000 fields, at most 100 allowed",
    )


def test_sort_takes_at_most_100_keys(client: TestClient, service: Service) -> None:
    keys = ",".join(["name"] * (MAX_SORT_KEYS + 1))
    refused(get(client, service, {"_sort": keys}), "_sort: 101 keys, at most 100 allowed")
    spec = "{" + ",".join(f'"k{n}": 1' for n in range(MAX_SORT_KEYS + 1)) + "}"
    refused(get(client, service, {"_sort": spec}), "_sort: 101 keys, at most 100 allowed")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"data.x": f"in({','.join(['1'] * 95_000)})"}, "data.x: in() lists 95000"),
        ({"start": f"in({','.join(['2024-01-01'] * 2000)})"}, "start: in() lists 2000 values"),
        (
            {"_filter": json.dumps({"data.x": {"$in": list(range(MAX_IN_VALUES + 1))}})},
            "_filter: data.x: '$in' lists 1001 values, at most 1000 allowed",
        ),
        (
            {"_filter": "{data.x: {$in: [" + ",".join(map(str, range(120_000))) + "]}}"},
            "_filter: malformed JSON: an array of more than 1000 items",
        ),
        (
            {"_filter": f"name=in({','.join(map(str, range(MAX_IN_VALUES + 1)))})"},
            "_filter: name: in() lists 1001 values",
        ),
        (
            {"_aggregate": json.dumps([{"$match": {"name": {"$nin": ["x"] * 1001}}}])},
            "_aggregate: stage 1 ($match): name: '$nin' lists 1001 values",
        ),
    ],
    ids=["in-95000", "in-dates", "$in", "relaxed-$in", "expression-in", "$match-$nin"],
)
def test_an_in_takes_at_most_1000_values(
    client: TestClient, service: Service, params: dict[str, str], message: str
) -> None:
    """Counted before the values are read: 95,000 values in a 1 MB form body once stalled
    the event loop 2.6 s, an 844 KB relaxed `$in` 1.0 s."""
    refused(form(client, service, params), message)


def test_the_filters_hold_at_most_5000_nodes(client: TestClient, service: Service) -> None:
    params = [("status", "success")] * MAX_QUERY_NODES
    assert form(client, service, params).status_code == 200
    refused(
        form(client, service, [*params, ("name", "x")]),
        f"name: the query's filters pass {MAX_QUERY_NODES} nodes",
    )
    values = ",".join(["x"] * MAX_IN_VALUES)
    refused(
        form(client, service, [("name", f"in({values})")] * 5),
        "name: the query's filters pass 5000 nodes",
    )


def _asgi_get(service: Service, query: bytes) -> tuple[int, dict[str, Any]]:
    """The list call sent to the app as the server hands it a request (HTTP clients refuse to
    send a query string past 64 KB, and uvicorn's parsers differ on how long a request line
    they read): its status and JSON body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"testserver")]
        + [(k.lower().encode(), v.encode()) for k, v in service.read_headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
        "state": {},
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(service.app(scope, receive, send))
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return sent[0]["status"], json.loads(body)


def test_a_query_string_holds_at_most_64_kb(service: Service) -> None:
    prefix = b"_limit=1&_search="
    status, body = _asgi_get(service, prefix + b"a" * (MAX_QUERY_STRING_BYTES - len(prefix)))
    # at the limit: read, and refused by the parameter's own limit
    assert (status, body["error"][:21]) == (400, "_search: longer than ")
    status, body = _asgi_get(service, prefix + b"a" * (MAX_QUERY_STRING_BYTES + 1 - len(prefix)))
    assert (status, body["error"]) == (
        400,
        "query string: 65537 bytes, at most 65536 allowed (a longer query travels in a form body)",
    )
    assert _asgi_get(service, b"_limit=1")[0] == 200


# --- what the store cannot take: a 400, never a 503 ---------------------------------------


def _nested_nor(depth: int) -> str:
    spec: dict[str, Any] = {"data.x": 1}
    for _ in range(depth):
        spec = {"$nor": [spec]}
    return json.dumps(spec)


@pytest.mark.parametrize(
    "params",
    [
        {"data.x": f"in({','.join(map(str, range(500)))})"},
        {"data.x": f"in({','.join(map(str, range(MAX_IN_VALUES)))})"},
        {"_filter": json.dumps({"data.x": {"$nin": list(range(MAX_IN_VALUES))}})},
        {"_filter": "not " * 15 + "data.x=1"},
        {"_filter": "not " * MAX_FILTER_DEPTH + "phases.status=failed"},
        {"_filter": _nested_nor(15)},
        {"_filter": _nested_nor(MAX_FILTER_DEPTH)},
    ],
    ids=["in-500", "in-1000", "$nin-1000", "not-15", "not-20", "$nor-15", "$nor-20"],
)
def test_queries_within_the_limits_are_answered(
    client: TestClient, service: Service, params: dict[str, str]
) -> None:
    """Each once a 503 "store unavailable" (SQLite's "Expression tree is too large" and
    "parser stack overflow"), which monitoring reads as an outage."""
    response = get(client, service, params)
    assert response.status_code == 200, response.text


def test_a_filter_too_deep_for_sqlite_is_a_400(client: TestClient, service: Service) -> None:
    spec: dict[str, Any] = {"data.a.b.c.d.e.f": 1}
    for level in range(MAX_FILTER_DEPTH - 1):
        spec = {("$and" if level % 2 else "$or"): [spec, {"phases.0.log.1": "x"}]}
    refused(
        get(client, service, {"_filter": json.dumps(spec)}),
        "query: too large or too deep for the SQLite store (parser stack overflow); the "
        "filters hold at most 5000 nodes nested 20 levels",
    )
    refused(
        get(client, service, {"_filter": "not " * (MAX_FILTER_DEPTH + 1) + "name=x"}),
        "_filter: nested too deeply (at most 20 levels)",
    )


# --- lone surrogates ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("_filter", '{"name": "\\ud800"}'),
        ("_filter", '{name: "a\\udfffb"}'),
        ("_filter", '{"\\ud800": 1}'),
        ("_filter", '{"data.x": {"$in": ["ok", "\\udc00"]}}'),
        ("_aggregate", '[{"$match": {"name": "\\ud800"}}, {"$count": "n"}]'),
        ("_aggregate", '[{"$group": {"_id": "$\\ud800"}}]'),
        ("_sort", '{"\\ud800": 1}'),
        ("_project", '{"\\ud800": 1}'),
    ],
)
def test_a_lone_surrogate_is_a_400_naming_the_parameter(
    client: TestClient, service: Service, param: str, value: str
) -> None:
    """Once a plain-text 500, a `UnicodeEncodeError` where the store encoded it."""
    for response in (get(client, service, {param: value}), form(client, service, {param: value})):
        refused(response, f"{param}: a lone surrogate (\\u")
    # a pair encodes one character: it is text
    assert get(client, service, {"_filter": '{"name": "\\ud83d\\ude00"}'}).status_code == 200


# --- at most 80 characters of the input in any error ------------------------------------

Z = "Z" * 1000
ZN = "data." + Z  # a field path: valid, however long


def _pipeline(*stages: Any) -> str:
    return json.dumps(list(stages))


GROUP = {"$group": {"_id": None, "n": {"$sum": 1}}}

#: every path that refuses a read with a `BadRequest`, each given 1,000 characters
LONG_INPUTS: list[Any] = [
    pytest.param({Z: "x"}, id="unknown-parameter"),
    pytest.param({"_" + Z: "x"}, id="unknown-option"),
    pytest.param({ZN: "in()"}, id="in-empty"),
    pytest.param({ZN: "=x"}, id="doubled-operator"),
    pytest.param({ZN: "in(a,b"}, id="unclosed-call"),
    pytest.param({"data.x": Z + "(1)"}, id="unknown-function"),
    pytest.param({ZN: "regex(()"}, id="bad-regex"),
    pytest.param({ZN: "range(1)"}, id="range-arity"),
    pytest.param({"data.x": "regex(" + Z + ")"}, id="long-regex"),
    pytest.param({"status": Z}, id="closed-set"),
    pytest.param({"status": "in(" + Z + ")"}, id="closed-set-in"),
    pytest.param({"start": Z}, id="date"),
    pytest.param({"start": f"range(2024-01-01,{Z})"}, id="date-range"),
    pytest.param({"_limit": Z}, id="limit"),
    pytest.param({"_skip": Z}, id="skip"),
    pytest.param({"_sort": Z}, id="sort"),
    pytest.param({"_sort": json.dumps({Z: 1})}, id="sort-json"),
    pytest.param({"_sort": json.dumps({"name": Z})}, id="sort-direction"),
    pytest.param({"_project": Z}, id="project"),
    pytest.param({"_project": json.dumps({ZN: 2})}, id="project-value"),
    pytest.param({"_project": "phases." + Z}, id="project-phase-field"),
    pytest.param({"_distinct": Z}, id="distinct"),
    pytest.param({"_fieldinfo": "name." + Z}, id="fieldinfo"),
    pytest.param({"_search": "-" * 1000}, id="search"),
    pytest.param({"_search": "(" + Z}, id="search-group"),
    pytest.param({"_filter": Z + "=1"}, id="expression-field"),
    pytest.param({"_filter": "name=x " + Z}, id="expression-found"),
    pytest.param({"_filter": ZN}, id="expression-no-operator"),
    pytest.param({"_filter": ZN + "==1"}, id="expression-doubled"),
    pytest.param({"_filter": ZN + ">gt(1)"}, id="expression-function"),
    pytest.param({"_filter": "(" + ZN + "=1"}, id="expression-unbalanced"),
    pytest.param({"_filter": "name=" + Z + "(x"}, id="expression-unclosed"),
    pytest.param({"_filter": json.dumps({"$" + Z: 1})}, id="json-operator"),
    pytest.param({"_filter": json.dumps({"data.x": {"$" + Z: 1}})}, id="json-field-operator"),
    pytest.param({"_filter": json.dumps({ZN: {"$in": 1}})}, id="json-in"),
    pytest.param({"_filter": json.dumps({ZN: {"a": 1}})}, id="json-object"),
    pytest.param({"_filter": json.dumps({ZN: {"$a": 1, "b": 1}})}, id="json-mixed"),
    pytest.param({"_filter": json.dumps({ZN: [1]})}, id="json-array"),
    pytest.param({"_filter": json.dumps({ZN: {"$regex": "("}})}, id="json-regex"),
    pytest.param({"_filter": json.dumps({ZN: {"$options": "i"}})}, id="json-options"),
    pytest.param({"_filter": json.dumps({ZN: {"$exists": 1}})}, id="json-exists"),
    pytest.param({"_filter": json.dumps({ZN: {"$not": 1}})}, id="json-not"),
    pytest.param({"_filter": json.dumps({ZN: {"$and": 1}})}, id="json-and-on-field"),
    pytest.param({"_filter": json.dumps({ZN: True})}, id="json-bool"),
    pytest.param({"_filter": json.dumps({"$or": Z})}, id="json-combinator"),
    pytest.param({"_filter": json.dumps({"status": Z})}, id="json-closed-set"),
    pytest.param({"_filter": "{" + Z + "}"}, id="relaxed-key"),
    pytest.param({"_filter": "{a: " + Z + "}"}, id="relaxed-value"),
    pytest.param({"_filter": "{'" + Z + "': 1}"}, id="relaxed-quote"),
    pytest.param({"_aggregate": _pipeline({"$" + Z: {}})}, id="aggregate-stage"),
    pytest.param({"_aggregate": _pipeline({"$group": {"_id": "$" + Z}})}, id="aggregate-ref"),
    pytest.param({"_aggregate": _pipeline({"$group": {"_id": "$phases." + Z}})}, id="agg-phases"),
    pytest.param({"_aggregate": _pipeline({"$group": {"_id": "$" + ZN + ".0"}})}, id="agg-pos"),
    pytest.param({"_aggregate": _pipeline({"$group": {"_id": {Z + "-": "$name"}}})}, id="agg-key"),
    pytest.param({"_aggregate": _pipeline({"$group": {"_id": Z}})}, id="aggregate-id"),
    pytest.param(
        {"_aggregate": _pipeline({"$group": {"_id": None, "n": {"$" + Z: 1}}})}, id="accumulator"
    ),
    pytest.param(
        {"_aggregate": _pipeline({"$group": {"_id": None, Z + "-": {"$sum": 1}}})}, id="acc-name"
    ),
    pytest.param(
        {"_aggregate": _pipeline({"$group": {"_id": None, Z: {"$sum": "x"}}})}, id="acc-reference"
    ),
    pytest.param(
        {"_aggregate": _pipeline({"$group": {"_id": None, Z: {"$sum": 1, "$max": 1}}})},
        id="acc-two",
    ),
    pytest.param(
        {"_aggregate": _pipeline({"$group": {"_id": None, Z: {"$count": 1}}})}, id="acc-count"
    ),
    pytest.param(
        {"_aggregate": _pipeline({"$group": {"_id": None, Z: {"$sum": 1.5}}})}, id="acc-sum"
    ),
    pytest.param({"_aggregate": _pipeline(GROUP, {"$project": {Z: 1}})}, id="project-name"),
    pytest.param(
        {"_aggregate": _pipeline({"$group": {"_id": None, Z: {"$sum": 1}}}, {"$project": {Z: 2}})},
        id="project-value",
    ),
    pytest.param({"_aggregate": _pipeline(GROUP, {"$sort": {Z: 1}})}, id="after-sort"),
    pytest.param(
        {"_aggregate": _pipeline({"$group": {"_id": None, Z: {"$sum": 1}}}, {"$sort": {"x": 1}})},
        id="after-sort-known",
    ),
    pytest.param({"_aggregate": _pipeline(GROUP, {"$match": {Z: 1}})}, id="after-match"),
    pytest.param({"_aggregate": _pipeline({"$match": {ZN: {"$" + Z: 1}}}, GROUP)}, id="match-op"),
    pytest.param({"_aggregate": _pipeline(GROUP, {"$count": Z + "-"})}, id="count-name"),
    pytest.param({"_aggregate": _pipeline({"$sort": {Z: 1}}, GROUP)}, id="before-sort"),
]


def _echoes(message: str, inputs: list[str]) -> str | None:
    """A run of more than `EXCERPT_CHARS` characters of an input that `message` repeats."""
    for text in inputs:
        for start in range(max(0, len(text) - EXCERPT_CHARS)):
            if text[start : start + EXCERPT_CHARS + 1] in message:
                return text[start : start + EXCERPT_CHARS + 1]
    return None


@pytest.mark.parametrize("params", LONG_INPUTS)
def test_an_error_repeats_at_most_80_characters_of_the_input(
    client: TestClient, service: Service, params: dict[str, str]
) -> None:
    """A 1,000-character `_aggregate` operator, `_filter` operator or `$project` name once
    came back with 370 to 466 characters of it, in the body and in `x-odsl-error`."""
    inputs = [text for pair in params.items() for text in pair]
    response = get(client, service, params)
    assert response.status_code == 400, response.text
    for message in (response.json()["error"], response.headers["x-odsl-error"]):
        assert _echoes(message, inputs) is None, message


def test_a_crontab_error_repeats_at_most_80_characters(
    client: TestClient, service: Service
) -> None:
    for body in (
        {"schedule": Z},
        {"schedule": f"{Z} * * * *"},
        {"schedule": "* * * * *", "timezone": Z},
    ):
        response = client.put(
            "/service/process/v1/ECB_FX/schedule", json=body, headers=service.admin_headers
        )
        assert response.status_code == 400, response.text
        for message in (response.json()["error"], response.headers["x-odsl-error"]):
            assert _echoes(message, list(body.values())) is None, message


# --- the deadline from the call's arrival, and long queries off the event loop ------------


@pytest.mark.parametrize(
    "params",
    [
        {"_distinct": "phases.log"},
        {"_fieldinfo": "data.series"},
        {"_aggregate": '[{"$group": {"_id": "$name"}}]'},
        {"status": "failed", "_project": "name"},
        {"_filter": "not name=x"},
    ],
)
def test_the_deadline_counts_from_the_calls_arrival(
    client: TestClient,
    service: Service,
    corpus: list[Any],
    params: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call that arrived longer ago than the read's limit is answered 503 at the deadline,
    whatever part of it is still to run (the store's statement was once given a fresh limit
    of its own, and the work after it none)."""
    assert get(client, service, params).status_code == 200
    now = routes.monotonic
    monkeypatch.setattr(routes, "monotonic", lambda: now() - 11)  # limit: 10 s
    response = get(client, service, params)
    assert response.status_code == 503, response.text
    assert response.json()["error"].startswith("query took longer than 10 s")


def test_a_long_query_is_read_and_answered_in_a_worker_thread(
    client: TestClient, service: Service, corpus: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past `INLINE_QUERY_BYTES` a list call is not tried on the event loop: its reading
    alone would hold it."""
    failed = get(client, service, {"status": "failed"}).content
    tries, handed = watch_where_lists_run(service, monkeypatch)
    short = {"_filter": "status=failed or status=success"}
    assert get(client, service, short).status_code == 200
    assert (len(tries), handed) == (1, [])  # on the loop
    nope = " or ".join(f"name=NO_SUCH_PROCESS_AMONG_THESE_{n}" for n in range(90))
    long = {"_filter": f"status=failed or {nope}"}
    assert len(urllib.parse.urlencode(long)) > queries.INLINE_QUERY_BYTES
    for response in (get(client, service, long), form(client, service, long)):
        assert response.status_code == 200
        assert response.content == failed
    assert (len(tries), handed) == (1, ["_list_call", "_list_call"])  # not tried on the loop
