"""Listing and reading executions: the seed page's queries, paging, sources, environments."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from procexec.api.listing import json_array
from tests.api.api_helpers import BASES, Service
from tests.documents import execution

#: seeded executions, by id: (name, status, environment, start)
SEEDED = {
    "ecb-before": ("ECB_FX", "success", "production", "2021-07-18T23:59:59.999Z"),
    "ecb-first": ("ECB_FX", "success", "production", "2021-07-19T00:00:00.000Z"),
    "ecb-middle": ("ECB_FX", "failed", "production", "2021-07-21T16:30:07.858Z"),
    "ecb-last": ("ECB_FX", "success", "production", "2021-07-23T23:59:59.999Z"),
    "ecb-after": ("ECB_FX", "failed", "production", "2021-07-24T00:00:00.000Z"),
    "demo-failed-in": ("DEMO", "failed", "production", "2021-07-20T10:00:00.000Z"),
    "demo-success-in": ("DEMO", "success", "production", "2021-07-22T08:15:00.000Z"),
    "demo-failed-before": ("DEMO", "failed", "production", "2021-07-18T12:00:00.000Z"),
    "ecb-test-env": ("ECB_FX", "failed", "test", "2021-07-21T09:00:00.000Z"),
}
PRODUCTION_BY_START = [
    "ecb-after",
    "ecb-last",
    "demo-success-in",
    "ecb-middle",
    "demo-failed-in",
    "ecb-first",
    "ecb-before",
    "demo-failed-before",
]
RANGE = "range(2021-07-19,2021-07-23)"


@pytest.fixture
def seeded(service: Service) -> dict[str, dict[str, Any]]:
    docs = {}
    for execution_id, (name, status, environment, start) in SEEDED.items():
        doc = execution(execution_id, start, name=name, status=status, environment=environment)
        service.store.insert(doc)
        docs[execution_id] = doc
    assert service.count() == len(SEEDED)
    return docs


def _ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [doc["_id"] for doc in response.json()]


@pytest.mark.parametrize("base", BASES)
def test_list_everything_newest_first(
    client: TestClient, service: Service, seeded: dict[str, Any], base: str
) -> None:
    response = client.get(f"{base}/v1", headers=service.read_headers)
    assert _ids(response) == PRODUCTION_BY_START
    assert response.headers["x-total-count"] == str(len(PRODUCTION_BY_START))
    assert response.json()[0] == seeded["ecb-after"]


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("name=ECB_FX", ["ecb-after", "ecb-last", "ecb-middle", "ecb-first", "ecb-before"]),
        (f"name=ECB_FX&start={RANGE}", ["ecb-last", "ecb-middle", "ecb-first"]),
        (f"status=failed&start={RANGE}", ["ecb-middle", "demo-failed-in"]),
    ],
    ids=["name", "name-and-range", "failed-in-range"],
)
def test_the_seed_page_queries(
    client: TestClient,
    service: Service,
    seeded: dict[str, Any],
    base: str,
    query: str,
    expected: list[str],
) -> None:
    response = client.get(f"{base}/v1?{query}", headers=service.read_headers)
    assert _ids(response) == expected
    assert response.headers["x-total-count"] == str(len(expected))
    assert response.json() == [seeded[execution_id] for execution_id in expected]


def test_query_parameters_may_be_url_encoded(
    client: TestClient, service: Service, seeded: dict[str, Any]
) -> None:
    response = client.get(
        f"{BASES[0]}/v1",
        params={"name": "ECB_FX", "start": RANGE},
        headers=service.read_headers,
    )
    assert "range%282021-07-19%2C2021-07-23%29" in str(response.request.url)
    assert _ids(response) == ["ecb-last", "ecb-middle", "ecb-first"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ("_limit=2", ["ecb-after", "ecb-last"]),
        ("_limit=2&_skip=2", ["ecb-middle", "ecb-first"]),
        ("_skip=4", ["ecb-before"]),
        ("_skip=4&_limit=10", ["ecb-before"]),
        ("_skip=5", []),
        ("_limit=0", []),
        ("_limit=-1", ["ecb-after", "ecb-last", "ecb-middle", "ecb-first", "ecb-before"]),
    ],
)
def test_paging_keeps_the_total(
    client: TestClient,
    service: Service,
    seeded: dict[str, Any],
    params: str,
    expected: list[str],
) -> None:
    response = client.get(f"{BASES[0]}/v1?name=ECB_FX&{params}", headers=service.read_headers)
    assert _ids(response) == expected
    assert response.headers["x-total-count"] == "5"


def test_pages_cover_the_list_once(
    client: TestClient, service: Service, seeded: dict[str, Any]
) -> None:
    pages = [
        _ids(client.get(f"{BASES[1]}/v1?_limit=3&_skip={skip}", headers=service.read_headers))
        for skip in (0, 3, 6, 9)
    ]
    assert pages == [PRODUCTION_BY_START[:3], PRODUCTION_BY_START[3:6], PRODUCTION_BY_START[6:], []]


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("source", ["private", "all"])
def test_private_and_all_list_like_v1(
    client: TestClient, service: Service, seeded: dict[str, Any], base: str, source: str
) -> None:
    query = f"status=failed&start={RANGE}"
    plain = client.get(f"{base}/v1?{query}", headers=service.read_headers)
    sourced = client.get(f"{base}/v1/{source}?{query}", headers=service.read_headers)
    assert _ids(sourced) == ["ecb-middle", "demo-failed-in"]
    assert sourced.json() == plain.json()
    assert sourced.headers["x-total-count"] == "2"
    everything = client.get(f"{base}/v1/{source}", headers=service.read_headers)
    assert _ids(everything) == PRODUCTION_BY_START


@pytest.mark.parametrize("base", BASES)
def test_public_lists_nothing(
    client: TestClient, service: Service, seeded: dict[str, Any], base: str
) -> None:
    for query in ("", "?name=ECB_FX"):
        response = client.get(f"{base}/v1/public{query}", headers=service.read_headers)
        assert response.status_code == 200
        assert response.json() == []
        assert response.headers["x-total-count"] == "0"


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("path", ["v1/{id}", "v1/private/{id}", "v1/all/{id}"])
def test_get_one_execution(
    client: TestClient, service: Service, seeded: dict[str, Any], base: str, path: str
) -> None:
    response = client.get(f"{base}/{path.format(id='ecb-middle')}", headers=service.read_headers)
    assert response.status_code == 200
    assert response.json() == seeded["ecb-middle"]


@pytest.mark.parametrize("base", BASES)
def test_the_environment_header_scopes_lists(
    client: TestClient, service: Service, seeded: dict[str, Any], base: str
) -> None:
    test_env = {**service.read_headers, "x-odsl-environment": "test"}
    response = client.get(f"{base}/v1?name=ECB_FX", headers=test_env)
    assert _ids(response) == ["ecb-test-env"]
    assert response.headers["x-total-count"] == "1"
    assert response.json() == [seeded["ecb-test-env"]]
    production = {**service.read_headers, "x-odsl-environment": "production"}
    explicit = client.get(f"{base}/v1?name=ECB_FX", headers=production)
    assert "ecb-test-env" not in _ids(explicit)
    assert len(_ids(explicit)) == 5
    empty = {**service.read_headers, "x-odsl-environment": "staging"}
    nothing = client.get(f"{base}/v1", headers=empty)
    assert _ids(nothing) == []
    assert nothing.headers["x-total-count"] == "0"


@pytest.mark.parametrize("base", BASES)
def test_the_environment_header_scopes_reads(
    client: TestClient, service: Service, seeded: dict[str, Any], base: str
) -> None:
    test_env = {**service.read_headers, "x-odsl-environment": "test"}
    found = client.get(f"{base}/v1/ecb-test-env", headers=test_env)
    assert found.status_code == 200
    assert found.json() == seeded["ecb-test-env"]

    hidden = client.get(f"{base}/v1/ecb-test-env", headers=service.read_headers)
    assert hidden.status_code == 404
    message = "no execution 'ecb-test-env' in environment 'production'"
    assert hidden.json()["error"] == message
    assert hidden.headers["x-odsl-error"] == message

    other_way = client.get(f"{base}/v1/private/ecb-middle", headers=test_env)
    assert other_way.status_code == 404
    assert other_way.json()["error"] == "no execution 'ecb-middle' in environment 'test'"


def test_filters_on_other_fields(
    client: TestClient, service: Service, seeded: dict[str, Any]
) -> None:
    def ids(query: str) -> list[str]:
        return _ids(client.get(f"{BASES[0]}/v1?{query}", headers=service.read_headers))

    assert ids("name=DEMO&status=ne(failed)") == ["demo-success-in"]
    assert ids("status=in(failed)&name=regex(^DE)") == ["demo-failed-in", "demo-failed-before"]
    assert ids("start=2021-07-19") == ["ecb-first"]
    assert ids("start=gte(2021-07-23T23:59:59.999Z)") == ["ecb-after", "ecb-last"]
    assert ids("phases.status=failed&start=lt(2021-07-19)") == ["demo-failed-before"]
    assert ids("_id=ecb-first") == ["ecb-first"]
    assert ids("name=ecb_fx") == []  # exact, case-sensitive


def test_sort_and_project(client: TestClient, service: Service, seeded: dict[str, Any]) -> None:
    response = client.get(
        f"{BASES[0]}/v1?name=DEMO&_sort=start&_project=name,status",
        headers=service.read_headers,
    )
    assert response.status_code == 200
    assert response.json() == [
        {"_id": "demo-failed-before", "name": "DEMO", "status": "failed"},
        {"_id": "demo-failed-in", "name": "DEMO", "status": "failed"},
        {"_id": "demo-success-in", "name": "DEMO", "status": "success"},
    ]
    assert response.headers["x-total-count"] == "3"


def test_a_large_list_is_gzipped_on_request(
    client: TestClient, service: Service, seeded: dict[str, Any]
) -> None:
    zipped = client.get(
        f"{BASES[0]}/v1", headers={**service.read_headers, "Accept-Encoding": "gzip"}
    )
    assert zipped.status_code == 200
    assert zipped.headers["content-encoding"] == "gzip"
    assert len(zipped.content) > 1024  # the decoded body: large enough to be compressed
    assert _ids(zipped) == PRODUCTION_BY_START
    assert zipped.headers["x-total-count"] == "8"

    plain = client.get(
        f"{BASES[0]}/v1", headers={**service.read_headers, "Accept-Encoding": "identity"}
    )
    assert "content-encoding" not in plain.headers
    assert plain.json() == zipped.json()


def test_a_small_response_is_not_gzipped(
    client: TestClient, service: Service, seeded: dict[str, Any]
) -> None:
    response = client.get(
        f"{BASES[0]}/v1?_project=name&_limit=1",
        headers={**service.read_headers, "Accept-Encoding": "gzip"},
    )
    assert response.status_code == 200
    assert len(response.content) < 1024
    assert "content-encoding" not in response.headers
    assert response.json() == [{"_id": "ecb-after", "name": "ECB_FX"}]


def test_the_read_calls_stay_in_the_openapi_schema(client: TestClient) -> None:
    """Plain Starlette routes serve them; the FastAPI routes still describe them."""
    schema = client.get("/openapi.json").json()
    for base in BASES:
        assert "get" in schema["paths"][f"{base}/v1"]
        assert "post" in schema["paths"][f"{base}/v1"]
        assert "get" in schema["paths"][f"{base}/v1/{{key}}"]


@pytest.mark.parametrize("count", [0, 1, 3])
def test_a_json_array_of_stored_documents(count: int) -> None:
    docs = [json.dumps({"_id": f"e{n}", "name": "é"}).encode() for n in range(count)]
    assert json.loads(json_array(docs)) == [json.loads(doc) for doc in docs]
