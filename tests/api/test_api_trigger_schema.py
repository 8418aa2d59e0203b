"""The trigger's body in `/openapi.json` is one form for each process, its parameters as the
process declares them: the schema /docs shows is the one the API holds a trigger to. Each
body below is judged by the description and by the API, and both agree: what the schema
takes is accepted (202), what it refuses is a 400 naming the field."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient

from tests.api.api_helpers import BASES, Service

BASE = BASES[0]


def _described(client: TestClient) -> dict[str, Any]:
    described: dict[str, Any] = client.get("/openapi.json").json()
    return described


def _trigger_validator(client: TestClient, path: str) -> jsonschema_rs.Validator:
    described = _described(client)
    body = described["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    return jsonschema_rs.validator_for({**body["schema"], "components": described["components"]})


def test_each_process_has_its_form_and_its_parameters_schema(
    client: TestClient, service: Service
) -> None:
    described = _described(client)
    schemas = described["components"]["schemas"]
    for base in BASES:
        for path in (base, f"{base}/v1"):
            body = described["paths"][path]["post"]["requestBody"]["content"]["application/json"]
            forms = body["schema"]["oneOf"]
            named = {form["properties"]["name"].get("const"): form for form in forms}
            assert set(named) == {process.name for process in service.registry} | {None}
            for process in service.registry:
                reference = named[process.name]["properties"]["body"]["$ref"]
                assert reference == f"#/components/schemas/{process.name}.parameters"
            assert named["ECB_FX"]["description"] == (
                "ECB euro foreign exchange reference rates. Phases: EXTRACT, TRANSFORM, SEND, "
                "LOAD; defined schedule `30 16 * * 1-5` (UTC)."
            )
            assert named["ECB_FX_CROSS"]["description"].endswith(
                "Phases: EXTRACT, TRANSFORM, SEND, LOAD; runs when `#ECB_FX.*` load."
            )
    listed = client.get("/service/process/v1/DEMO", headers=service.read_headers).json()
    assert schemas["DEMO.parameters"] == {**listed["parameters"], "title": "DEMO.parameters"}
    assert schemas["DEMO.parameters"]["additionalProperties"] is False
    assert set(schemas["DEMO.parameters"]["properties"]) == {
        "sleep",
        "fail_in",
        "log_lines",
        "fail_times",
        "guard",
    }


@pytest.mark.parametrize(
    ("body", "accepted"),
    [
        ({"name": "DEMO"}, True),
        ({"name": "DEMO", "body": {"sleep": 0.1, "log_lines": 2, "fail_in": "LOAD"}}, True),
        ({"name": "DEMO", "input": {"guard": "a.b-c_1"}}, True),
        (
            {"name": "ECB_FX", "body": {"url": "https://www.ecb.europa.eu/x.xml", "timeout": 5}},
            True,
        ),
        ({"name": "ECB_FX_CROSS", "body": {}}, True),
        ({"name": "DEMO", "body": {"slep": 1}}, False),
        ({"name": "DEMO", "body": {"log_lines": 1.5}}, False),
        ({"name": "DEMO", "body": {"sleep": 601}}, False),
        ({"name": "DEMO", "body": {"fail_in": "NOWHERE"}}, False),
        ({"name": "DEMO", "body": {"guard": "../etc"}}, False),
        ({"name": "DEMO", "body": {"guard": "a\n"}}, False),
        ({"name": "DEMO", "bdy": {}}, False),
        ({"name": "DEMO", "body": {}, "input": {}}, False),
        ({"name": "ECB_FX", "body": {"url": "file:///etc/passwd"}}, False),
        ({"name": "ECB_FX", "body": {"timeout": 0}}, False),
        ({"name": "ECB_FX", "body": {"date": "2021-07-02"}}, False),
        ({"name": "ECB_FX_CROSS", "body": {"subscription": {}}}, False),
    ],
)
def test_the_description_and_the_api_agree_on_each_body(
    client: TestClient, service: Service, body: dict[str, Any], accepted: bool
) -> None:
    validator = _trigger_validator(client, f"{BASE}/v1")
    assert validator.is_valid(body) is accepted
    before = service.count()
    response = client.post(f"{BASE}/v1", headers=service.run_headers, json=body)
    if accepted:
        assert response.status_code == 202, response.text
        assert service.count() == before + 1
    else:
        assert response.status_code == 400, response.text
        assert response.headers["x-odsl-error"] == response.json()["error"]
        assert service.count() == before  # nothing recorded


def test_a_name_of_no_process_keeps_the_general_form(client: TestClient, service: Service) -> None:
    validator = _trigger_validator(client, f"{BASE}/v1")
    assert validator.is_valid({"name": "NOPE", "body": {"anything": 1}})
    assert not validator.is_valid({"name": " DEMO ", "body": {"anything": 1}})  # read as DEMO
    response = client.post(f"{BASE}/v1", headers=service.run_headers, json={"name": "NOPE"})
    assert response.status_code == 404
