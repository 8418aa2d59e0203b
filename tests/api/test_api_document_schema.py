"""The documents the API answers are the ones its OpenAPI description declares: real runs of
real processes (the engine's `PhaseRunner` on the service's SQLite file), read back through
the list and get calls, whole and projected, each answer valid for the schema of its
operation in `/openapi.json`, and each whole document for the model (`engine.document`)."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient

from procexec.engine.document import Execution, field_names, json_schemas
from tests.api.api_helpers import BASES, Service, run_as_worker
from tests.documents import assert_execution

BASE = BASES[0]


def _answer_schema(
    client: TestClient, path: str, method: str = "get", status: str = "200"
) -> jsonschema_rs.Validator:
    """A validator of the JSON answer `/openapi.json` declares for an operation."""
    described = client.get("/openapi.json").json()
    answer = described["paths"][path][method]["responses"][status]
    schema = answer["content"]["application/json"]["schema"]
    return jsonschema_rs.validator_for({**schema, "components": described["components"]})


def _valid(validator: jsonschema_rs.Validator, value: Any) -> None:
    errors = [f"{error.instance_path}: {error.message}" for error in validator.iter_errors(value)]
    assert not errors, errors


@pytest.fixture
def runs(client: TestClient, service: Service) -> dict[str, str]:
    """Executions of every kind, triggered through the API and run by the engine: their ids
    by outcome; each trigger's 202 answer checked against its description."""
    trigger = _answer_schema(client, f"{BASE}/v1", "post", "202")
    bodies = {
        "loaded": {"name": "ECB_FX"},
        "success": {"name": "DEMO", "body": {"log_lines": 3}},
        "failed": {"name": "DEMO", "body": {"fail_in": "SEND"}},
        "capped": {"name": "DEMO", "body": {"log_lines": 2000}},
        "cancelled": {"name": "DEMO"},
        "triggered": {"name": "DEMO", "_reason": "left for a worker"},
    }
    ids = {}
    for outcome, body in bodies.items():
        answer = client.post(f"{BASE}/v1", json=body, headers=service.run_headers)
        assert answer.status_code == 202, answer.text
        _valid(trigger, answer.json())
        assert_execution(answer.json())
        ids[outcome] = answer.json()["_id"]
    for outcome in ("loaded", "success", "failed", "capped"):
        assert run_as_worker(service, ids[outcome]) == (
            "failed" if outcome == "failed" else "success"
        )
    cancel = _answer_schema(client, f"{BASE}/v1/{{execution_id}}/cancel", "post")
    answer = client.post(f"{BASE}/v1/{ids['cancelled']}/cancel", headers=service.run_headers)
    assert answer.status_code == 200, answer.text
    _valid(cancel, answer.json())
    return ids


def test_the_list_answers_executions_as_described(
    client: TestClient, service: Service, runs: dict[str, str]
) -> None:
    for path, url in [
        (f"{BASE}/v1", f"{BASE}/v1"),
        (f"{BASE}/v1/{{key}}", f"{BASE}/v1/private"),
        (f"{BASES[1]}/v1", f"{BASES[1]}/v1"),
    ]:
        described = _answer_schema(client, path)
        answer = client.get(url, headers=service.read_headers)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert {doc["_id"] for doc in page} >= set(runs.values())
        _valid(described, page)
        for doc in page:
            assert_execution(doc)
    loaded = Execution.model_validate(
        client.get(f"{BASE}/v1/{runs['loaded']}", headers=service.read_headers).json()
    )
    assert loaded.loader_message and loaded.data and loaded.data.series


def test_one_execution_answers_as_described(
    client: TestClient, service: Service, runs: dict[str, str]
) -> None:
    by_key = _answer_schema(client, f"{BASE}/v1/{{key}}")
    by_source = _answer_schema(client, f"{BASE}/v1/{{source}}/{{execution_id}}")
    for execution_id in runs.values():
        for validator, url in [
            (by_key, f"{BASE}/v1/{execution_id}"),
            (by_source, f"{BASE}/v1/private/{execution_id}"),
        ]:
            answer = client.get(url, headers=service.read_headers)
            assert answer.status_code == 200, answer.text
            _valid(validator, answer.json())
            assert_execution(answer.json())


@pytest.mark.parametrize(
    "project",
    ["name,status", "phases.name,phases.log", "data.series", "-phases", "_id", "end,loaderMessage"],
)
def test_a_projected_answer_is_as_described(
    client: TestClient, service: Service, runs: dict[str, str], project: str
) -> None:
    """`_project` may leave out any field but `_id`: the description requires `_id` alone."""
    described = _answer_schema(client, f"{BASE}/v1")
    answer = client.get(f"{BASE}/v1", params={"_project": project}, headers=service.read_headers)
    assert answer.status_code == 200, answer.text
    _valid(described, answer.json())
    one = _answer_schema(client, f"{BASE}/v1/{{source}}/{{execution_id}}")
    url = f"{BASE}/v1/private/{runs['loaded']}"
    answer = client.get(url, params={"_project": project}, headers=service.read_headers)
    _valid(one, answer.json())


def test_the_description_declares_the_model_s_fields(client: TestClient) -> None:
    """The components of `/openapi.json` are the models', every field described, every
    field but `_id` optional (`_project`), and nothing else allowed."""
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert {name: schemas[name] for name in json_schemas()} == json_schemas(projected=True)
    execution = schemas["Execution"]
    assert list(execution["properties"]) == list(field_names(Execution))
    assert execution["required"] == ["_id"]
    assert execution["additionalProperties"] is False
    for name in ("Execution", "Phase", "DataUpdates"):
        for field, described in schemas[name]["properties"].items():
            assert described.get("description"), f"{name}.{field}"
