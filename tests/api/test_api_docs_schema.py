"""`/openapi.json` as `/docs` uses it: the ways to log in on every call that needs one (and on
no other), the list call's options all declared, `_params` on the reads of one execution."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from procexec.api.docs_schema import SECURITY, SECURITY_SCHEMES
from procexec.engine.limits import MAX_LIMIT
from procexec.engine.query.params import OPTIONS
from tests.api.api_helpers import BASES, READ_USER, Service

PUBLIC = {"/healthz", "/readyz", *BASES}


def _described(client: TestClient) -> dict[str, Any]:
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    described: dict[str, Any] = answer.json()
    return described


def test_every_call_that_needs_credentials_declares_the_forms(client: TestClient) -> None:
    described = _described(client)
    assert described["components"]["securitySchemes"] == SECURITY_SCHEMES
    for path, operations in described["paths"].items():
        for method, operation in operations.items():
            if path in PUBLIC and method == "get":
                assert operation["security"] == [], path
            else:
                assert operation["security"] == SECURITY, (method, path)


def test_the_list_call_declares_every_option(client: TestClient) -> None:
    described = _described(client)
    for base in BASES:
        for path in (f"{base}/v1", f"{base}/v1/{{key}}"):
            operation = described["paths"][path]["get"]
            declared = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
            assert set(OPTIONS) <= set(declared), path
            assert all(declared[name]["description"] for name in OPTIONS)
            limit = declared["_limit"]["schema"]
            assert (limit["minimum"], limit["maximum"]) == (-1, MAX_LIMIT)
            assert "Any other query parameter filters on a field" in operation["description"]
        assert "_params" in {
            p["name"] for p in described["paths"][f"{base}/v1/{{key}}"]["get"]["parameters"]
        }
        one = described["paths"][f"{base}/v1/{{source}}/{{execution_id}}"]["get"]
        assert {"_project", "_params"} <= {p["name"] for p in one["parameters"]}


def test_the_declared_forms_are_the_ones_taken(client: TestClient, service: Service) -> None:
    """What Authorize sends for each scheme is taken: Bearer, Basic, the two headers."""
    token = service.read_token
    forms = [
        {"Authorization": f"Bearer {token}"},
        {"x-odsl-email": READ_USER, "x-odsl-key": token},
    ]
    for headers in forms:
        assert client.get(f"{BASES[0]}/v1", headers=headers).status_code == 200
    basic = client.get(f"{BASES[0]}/v1", auth=(READ_USER, token))
    assert basic.status_code == 200
