"""Every refusal: its status, a JSON error naming the problem, the same text in x-odsl-error,
and nothing written nor dispatched."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from tests.api.api_helpers import BASES, OPTIONS, Service, bearer
from tests.documents import execution


def assert_refused(
    response: httpx2.Response, service: Service, status: int, message: str, *, count: int = 0
) -> None:
    """`message` exactly, in the body and the header; the store and the broker untouched."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == message
    assert body["status"] == status
    assert response.headers["x-odsl-error"] == message
    assert service.count() == count
    assert service.dispatcher.calls == []


MISSING = "missing credentials: send 'Authorization: Bearer <token>'"


# --- authentication -----------------------------------------------------------------------


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, MISSING),
        ({"Authorization": "Bearer pe_not-a-real-token"}, "invalid token"),
        (
            {"Authorization": "Token abc"},
            "Authorization: expected 'Bearer <token>' or 'Basic <user:key>'",
        ),
        (
            {"Authorization": "Bearer"},
            "Authorization: expected 'Bearer <token>' or 'Basic <user:key>'",
        ),
        ({"Authorization": "Basic %%%"}, "Authorization: Basic credentials are not base64"),
        ({"Authorization": "Basic YWxpY2U="}, "Authorization: Basic credentials must be user:key"),
        ({"x-odsl-email": "alice"}, "x-odsl-email and x-odsl-key must be sent together"),
    ],
    ids=[
        "none",
        "bad-token",
        "unknown-kind",
        "empty-bearer",
        "basic-not-b64",
        "basic-no-key",
        "email-without-key",
    ],
)
def test_post_without_valid_credentials_is_401(
    client: TestClient, service: Service, base: str, headers: dict[str, str], message: str
) -> None:
    response = client.post(f"{base}/v1", headers=headers, json={"name": "DEMO"})
    assert_refused(response, service, 401, message)
    assert response.headers["www-authenticate"] == 'Bearer realm="procexec"'


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("path", ["v1", "v1/private", "v1/some-id", "v1/private/some-id"])
def test_reading_without_a_token_is_401(
    client: TestClient, service: Service, base: str, path: str
) -> None:
    response = client.get(f"{base}/{path}")
    assert_refused(response, service, 401, MISSING)
    bad = client.get(f"{base}/{path}", headers=bearer("pe_wrong"))
    assert_refused(bad, service, 401, "invalid token")


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("path", ["/v1", ""])
def test_a_read_token_may_not_trigger(
    client: TestClient, service: Service, base: str, path: str
) -> None:
    response = client.post(f"{base}{path}", headers=service.read_headers, json={"name": "DEMO"})
    assert_refused(response, service, 403, "token scope 'read' does not allow 'run'")


# --- bad trigger requests -----------------------------------------------------------------

BODY_EXPECTED = 'request body: expected a JSON object such as {"name": "ECB_FX"}'


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", BODY_EXPECTED),
        (b"  \n ", BODY_EXPECTED),
        (b"[1, 2]", "request body: expected a JSON object, got list"),
        (b'[{"name": "DEMO"}]', "request body: expected a JSON object, got list"),
        (b'"DEMO"', "request body: expected a JSON object, got str"),
        (b"42", "request body: expected a JSON object, got int"),
        (b"null", "request body: expected a JSON object, got NoneType"),
        (b"{}", "name: required (the name of the process to run)"),
        (b'{"body": {"a": 1}}', "name: required (the name of the process to run)"),
        (b'{"name": 7}', "name: must be a non-empty string"),
        (b'{"name": ["DEMO"]}', "name: must be a non-empty string"),
        (b'{"name": "  "}', "name: must be a non-empty string"),
        (b'{"name": "DEMO", "body": [1]}', "body: must be a JSON object of parameters"),
        (b'{"name": "DEMO", "body": "sleep=1"}', "body: must be a JSON object of parameters"),
        (b'{"name": "DEMO", "input": 5}', "input: must be a JSON object of parameters"),
        (b'{"name": "DEMO", "_reason": 5}', "_reason: must be a string"),
        (b'{"name": "DEMO", "_delay": "soon"}', "_delay: 'soon' is not a number of milliseconds"),
        (b'{"name": "DEMO", "_delay": true}', "_delay: 'True' is not a number of milliseconds"),
        (b'{"name": "DEMO", "_delay": [1]}', "_delay: '[1]' is not a number of milliseconds"),
        (b'{"name": "DEMO", "_delay": -1}', "_delay: must be between 0 and 86400000 milliseconds"),
        (
            b'{"name": "DEMO", "_delay": 86400001}',
            "_delay: must be between 0 and 86400000 milliseconds",
        ),
        (
            b'{"name": "DEMO", "_delay": Infinity}',
            "_delay: must be between 0 and 86400000 milliseconds",
        ),
        (b"[" * 100_000, "request body: malformed JSON: nested too deeply"),
    ],
)
def test_bad_trigger_bodies_are_400(
    client: TestClient, service: Service, base: str, content: bytes, message: str
) -> None:
    response = client.post(f"{base}/v1", headers=service.run_headers, content=content)
    assert_refused(response, service, 400, message)


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize(
    "content", [b"{", b"{name: 'DEMO'}", b'{"name": "DEMO",}', b"\xff\xfe\xfa", b"nope"]
)
def test_malformed_json_is_400(
    client: TestClient, service: Service, base: str, content: bytes
) -> None:
    response = client.post(
        f"{base}/v1",
        headers={**service.run_headers, "Content-Type": "application/json"},
        content=content,
    )
    assert response.status_code == 400
    message = response.json()["error"]
    assert message.startswith("request body: malformed JSON: ")
    assert_refused(response, service, 400, message)


def test_bad_delay_in_the_query_is_400(client: TestClient, service: Service) -> None:
    response = client.post(
        f"{BASES[0]}/v1?_delay=later", headers=service.run_headers, json={"name": "DEMO"}
    )
    assert_refused(response, service, 400, "_delay: 'later' is not a number of milliseconds")


@pytest.mark.parametrize("base", BASES)
def test_unknown_process_is_404(client: TestClient, service: Service, base: str) -> None:
    response = client.post(f"{base}/v1", headers=service.run_headers, json={"name": "NO_SUCH"})
    assert_refused(response, service, 404, "unknown process 'NO_SUCH'")
    # names are case-sensitive
    lower = client.post(f"{base}/v1", headers=service.run_headers, json={"name": "ecb_fx"})
    assert_refused(lower, service, 404, "unknown process 'ecb_fx'")


def test_a_non_ascii_error_travels_escaped_in_the_header(
    client: TestClient, service: Service
) -> None:
    response = client.post(f"{BASES[0]}/v1", headers=service.run_headers, json={"name": "ÉTL€"})
    assert response.status_code == 404
    assert response.json()["error"] == "unknown process 'ÉTL€'"
    assert response.headers["x-odsl-error"] == "unknown process '\\xc9TL\\u20ac'"
    assert service.count() == 0
    assert service.dispatcher.calls == []


def test_bad_environment_header_is_400(client: TestClient, service: Service) -> None:
    response = client.post(
        f"{BASES[0]}/v1",
        headers={**service.run_headers, "x-odsl-environment": "prod/../x"},
        json={"name": "DEMO"},
    )
    message = "x-odsl-environment: 'prod/../x' is not an environment name"
    assert_refused(response, service, 400, message)


# --- bad reads ----------------------------------------------------------------------------


@pytest.fixture
def one_execution(service: Service) -> dict[str, Any]:
    doc = execution("ecb-1", "2021-07-21T16:30:07.858Z")
    service.store.insert(doc)
    return doc


@pytest.mark.parametrize("base", BASES)
def test_unknown_execution_is_404(
    client: TestClient, service: Service, one_execution: dict[str, Any], base: str
) -> None:
    for path in ("v1/nope", "v1/private/nope", "v1/all/nope"):
        response = client.get(f"{base}/{path}", headers=service.read_headers)
        assert_refused(
            response, service, 404, "no execution 'nope' in environment 'production'", count=1
        )


@pytest.mark.parametrize("base", BASES)
def test_unknown_source_is_404(
    client: TestClient, service: Service, one_execution: dict[str, Any], base: str
) -> None:
    response = client.get(f"{base}/v1/secret/ecb-1", headers=service.read_headers)
    assert_refused(response, service, 404, f"no such path: {base}/v1/secret/ecb-1", count=1)
    public = client.get(f"{base}/v1/public/ecb-1", headers=service.read_headers)
    assert_refused(public, service, 404, "no public execution 'ecb-1'", count=1)


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "name=foo(ECB_FX)",
            "name: unknown function 'foo' (known: range, gt, gte, lt, lte, in, ne, regex)",
        ),
        (
            "start=range(2021-07-19,2021-13-40)",
            "start: '2021-13-40' is not a date or an ISO 8601 datetime",
        ),
        (
            "start=range(yesterday,2021-07-23)",
            "start: 'yesterday' is not a date or an ISO 8601 datetime",
        ),
        ("start=range(2021-07-19)", "start: range() takes two values, got 1"),
        (
            "start=0001-01-01T00:00:00%2B01:00",
            "start: '0001-01-01T00:00:00+01:00' is not a date or an ISO 8601 datetime",
        ),
        (
            'name={"$where":"sleep(1000)"}',
            'name: operators are not allowed in a value (\'{"$where":"sleep(1000)"}\')',
        ),
        ("status=$ne", "status: operators are not allowed in a value ('$ne')"),
        ("$where=1", "$where: '$where' is not a field name"),
        ("_limit=-5", "_limit: -5 is out of range (0 to 10000)"),
        ("_limit=ten", "_limit: 'ten' is not a whole number"),
        ("_skip=-1", "_skip: -1 is out of range (0 to 1000000000)"),
        ("_bogus=1", "_bogus: unknown query parameter" + OPTIONS),
        ("_sort=", "_sort: no sort key given"),
        (
            "_sort=-phases",
            "_sort: cannot sort by 'phases' (sortable: _id, service, name, "
            "environment, trigger, status, message, reason, start, runAs, end, loaderMessage)",
        ),
        (
            "name=regex(()",
            "name: bad regular expression '(': missing ): (",
        ),
    ],
)
def test_bad_list_queries_are_400(
    client: TestClient,
    service: Service,
    one_execution: dict[str, Any],
    base: str,
    query: str,
    message: str,
) -> None:
    for path in ("v1", "v1/private", "v1/public"):
        response = client.get(f"{base}/{path}?{query}", headers=service.read_headers)
        assert_refused(response, service, 400, message, count=1)


def test_unknown_path_and_method(client: TestClient, service: Service) -> None:
    response = client.get(f"{BASES[0]}/v2", headers=service.read_headers)
    assert_refused(response, service, 404, f"no such path: {BASES[0]}/v2")
    deleted = client.delete(f"{BASES[0]}/v1", headers=service.run_headers)
    assert_refused(deleted, service, 405, f"method DELETE is not allowed on {BASES[0]}/v1")


def test_the_description_promises_400_not_422(client: TestClient, service: Service) -> None:
    """FastAPI lists a 422 on every operation with parameters; procexec answers 400."""
    schema = client.get("/openapi.json").json()
    statuses = {
        (method, path): set(operation["responses"])
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    }
    assert not [where for where, answers in statuses.items() if "422" in answers]
    assert "ValidationError" not in json.dumps(schema)
    assert "400" in statuses[("put", "/service/process/v1/{name}/schedule")]
    # and a body the validation refuses is a 400, as described
    response = client.put(
        "/service/process/v1/ECB_FX/schedule", json={"schedule": 5}, headers=service.admin_headers
    )
    assert response.status_code == 400
