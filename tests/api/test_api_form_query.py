"""A GET whose query travels in an `application/x-www-form-urlencoded` body (the platform's
way around URLs longer than 2,048 characters)."""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest
from fastapi.testclient import TestClient

from procexec.api.limits import MAX_BODY_BYTES
from tests.api.api_helpers import BASES, Service

FORM = "application/x-www-form-urlencoded"


def form_get(
    client: TestClient, service: Service, path: str, body: str | bytes, content_type: str = FORM
) -> Any:
    return client.request(
        "GET",
        path,
        content=body.encode() if isinstance(body, str) else body,
        headers={**service.read_headers, "content-type": content_type},
    )


def url_get(client: TestClient, service: Service, path: str, params: Any) -> Any:
    return client.get(path, params=params, headers=service.read_headers)


@pytest.mark.parametrize(
    "path", [f"{base}/v1{tail}" for base in BASES for tail in ("", "/private")]
)
def test_a_form_body_answers_as_the_same_url_query(
    client: TestClient, service: Service, corpus: list[Any], path: str
) -> None:
    params = {"_filter": "(status=failed or status=running) and name=ECB_FX", "_limit": "-1"}
    by_url = url_get(client, service, path, params)
    by_body = form_get(client, service, path, urllib.parse.urlencode(params))
    assert by_url.status_code == by_body.status_code == 200
    assert by_body.json() and by_body.json() == by_url.json()
    assert by_body.headers["x-total-count"] == by_url.headers["x-total-count"]


def test_url_and_body_parameters_count_together(
    client: TestClient, service: Service, corpus: list[Any]
) -> None:
    path = f"{BASES[0]}/v1?name=ECB_FX&_limit=-1"
    response = form_get(client, service, path, "status=failed")
    expected = url_get(
        client, service, f"{BASES[0]}/v1", {"name": "ECB_FX", "status": "failed", "_limit": "-1"}
    )
    assert response.status_code == 200
    assert response.json() and response.json() == expected.json()
    assert all(d["name"] == "ECB_FX" and d["status"] == "failed" for d in response.json())
    twice = form_get(client, service, f"{BASES[0]}/v1?_distinct=name", "_distinct=status")
    assert twice.status_code == 400
    assert twice.json()["error"] == "_distinct: given twice (one field at a time)"


def test_a_query_too_long_for_a_url(
    client: TestClient, service: Service, corpus: list[Any]
) -> None:
    ids = [doc["_id"] for doc in corpus]
    decoys = [f"no-such-execution-{n:04d}" for n in range(300)]
    body = urllib.parse.urlencode({"_id": f"in({','.join(decoys + ids[:3])})", "_limit": "-1"})
    assert len(body) > 2048
    response = form_get(client, service, f"{BASES[0]}/v1", body)
    assert response.status_code == 200, response.text
    assert sorted(d["_id"] for d in response.json()) == sorted(ids[:3])
    assert response.headers["x-total-count"] == "3"


def test_other_bodies_are_not_queries(
    client: TestClient, service: Service, corpus: list[Any]
) -> None:
    everything = url_get(client, service, f"{BASES[0]}/v1", {"_limit": "-1"}).json()
    for content_type in ("application/json", "text/plain"):
        response = form_get(
            client, service, f"{BASES[0]}/v1?_limit=-1", "name=ECB_FX", content_type
        )
        assert response.status_code == 200
        assert response.json() == everything
    with_charset = form_get(
        client, service, f"{BASES[0]}/v1?_limit=-1", "name=ECB_FX", f"{FORM}; charset=utf-8"
    )
    assert with_charset.json() and {d["name"] for d in with_charset.json()} == {"ECB_FX"}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ("name=between(a,b)", 400,
         "name: unknown function 'between' (known: range, gt, gte, lt, lte, in, ne, regex)"),
        ("_limit=-3", 400, "_limit: -3 is out of range (0 to 10000)"),
        (b"name=\xff\xfe", 400, "request body: the form query is not UTF-8"),
        (b"_limit=1&" + b"x" * MAX_BODY_BYTES, 413,
         f"request body over 1 MB ({MAX_BODY_BYTES} bytes)"),
    ],
)  # fmt: skip
def test_a_malformed_form_query_is_refused_by_name(
    client: TestClient,
    service: Service,
    corpus: list[Any],
    body: str | bytes,
    status: int,
    message: str,
) -> None:
    response = form_get(client, service, f"{BASES[0]}/v1", body)
    assert response.status_code == status, response.text
    assert response.json() == {"error": message, "status": status}
    assert response.headers["x-odsl-error"] == message
