"""Build information, and triggering runs with POST, under both mounts."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import procexec
from tests.api.api_helpers import BASES, RUN_USER, Service, bearer

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
REPO = Path(__file__).resolve().parents[2]


def _git_commit_type(commit: str) -> str:
    return subprocess.run(
        ["git", "cat-file", "-t", commit], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.parametrize("base", BASES)
def test_build_information_needs_no_token(client: TestClient, base: str) -> None:
    response = client.get(base)
    assert response.status_code == 200
    info = response.json()
    assert {"service", "version", "commit", "buildTime", "store", "broker"} <= set(info)
    assert info["service"] == "process-exec"
    assert info["version"] == procexec.__version__
    assert re.match(r"^[0-9a-f]{40}$", info["commit"])
    assert _git_commit_type(info["commit"]) == "commit"  # a commit of this repository
    assert re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", info["buildTime"])
    assert info["store"] == "sqlite"
    assert info["broker"] == "embedded"


@pytest.mark.parametrize("base", BASES)
def test_trigger_answers_202_with_the_new_document(
    client: TestClient, service: Service, base: str
) -> None:
    response = client.post(
        f"{base}/v1",
        headers=service.run_headers,
        json={"name": "ECB_FX"},
    )
    assert response.status_code == 202
    doc = response.json()
    assert UUID.match(doc["_id"])
    assert ISO_MS.match(doc["start"])
    assert doc == {
        "_id": doc["_id"],
        "service": "ETL",
        "name": "ECB_FX",
        "environment": "production",
        "trigger": "manual",
        "status": "triggered",
        "message": "Triggered",
        "reason": f"Manually triggered by {RUN_USER}",
        "start": doc["start"],
        "runAs": RUN_USER,
        "phases": [],
    }
    assert response.headers["location"] == f"{base}/v1/{doc['_id']}"
    assert service.dispatcher.calls == [(doc["_id"], 0.0)]
    assert service.dispatcher.processes == {doc["_id"]: "ECB_FX"}  # the task names its process
    # what was answered is what was stored
    assert service.store.get(doc["_id"]) == doc
    assert service.count() == 1


@pytest.mark.parametrize("base", BASES)
def test_the_stored_document_is_readable_at_its_location(
    client: TestClient, service: Service, base: str
) -> None:
    posted = client.post(f"{base}/v1", headers=service.run_headers, json={"name": "DEMO"})
    assert posted.status_code == 202
    fetched = client.get(posted.headers["location"], headers=service.read_headers)
    assert fetched.status_code == 200
    assert fetched.json() == posted.json()


@pytest.mark.parametrize("field", ["body", "input"])
@pytest.mark.parametrize("base", BASES)
def test_parameters_merge_with_the_process_defaults(
    client: TestClient, service: Service, base: str, field: str
) -> None:
    response = client.post(
        f"{base}/v1",
        headers=service.run_headers,
        json={"name": "DEMO", field: {"sleep": "0.5", "log_lines": 2}},
    )
    assert response.status_code == 202
    execution_id = response.json()["_id"]
    assert service.store.get_meta(execution_id)["input"] == {
        "sleep": 0.5,  # validated: the string of a number is the number
        "fail_in": None,
        "log_lines": 2,
        "fail_times": None,
        "guard": None,
    }
    # the parameters stay hidden: they are not part of the served document
    assert "input" not in response.json()
    assert "body" not in response.json()


def test_without_parameters_the_input_is_the_defaults(client: TestClient, service: Service) -> None:
    response = client.post(f"{BASES[0]}/v1", headers=service.run_headers, json={"name": "ECB_FX"})
    assert response.status_code == 202
    assert service.store.get_meta(response.json()["_id"])["input"] == {
        "url": None,
        "timeout": 30,
    }


@pytest.mark.parametrize("base", BASES)
def test_reason_and_delay(client: TestClient, service: Service, base: str) -> None:
    response = client.post(
        f"{base}/v1",
        headers=service.run_headers,
        json={"name": "DEMO", "_reason": "rerun after the fix", "_delay": 1500},
    )
    assert response.status_code == 202
    doc = response.json()
    assert doc["reason"] == "rerun after the fix"
    assert service.store.get(doc["_id"])["reason"] == "rerun after the fix"
    assert service.dispatcher.calls == [(doc["_id"], 1.5)]


def test_reason_and_delay_as_query_parameters(client: TestClient, service: Service) -> None:
    response = client.post(
        f"{BASES[0]}/v1?_reason=from%20the%20query&_delay=250",
        headers=service.run_headers,
        json={"name": "DEMO"},
    )
    assert response.status_code == 202
    doc = response.json()
    assert doc["reason"] == "from the query"
    assert service.dispatcher.calls == [(doc["_id"], 0.25)]


@pytest.mark.parametrize("base", BASES)
def test_a_json_body_without_content_type_is_accepted(
    client: TestClient, service: Service, base: str
) -> None:
    # the platform's SDK posts its JSON with no Content-Type header at all
    response = client.post(
        f"{base}/v1",
        headers=service.run_headers,
        content=json.dumps({"name": "DEMO", "body": {"log_lines": 3}}).encode(),
    )
    assert "content-type" not in response.request.headers
    assert response.status_code == 202
    doc = response.json()
    assert doc["name"] == "DEMO"
    assert service.store.get_meta(doc["_id"])["input"]["log_lines"] == 3
    assert service.dispatcher.calls == [(doc["_id"], 0.0)]


@pytest.mark.parametrize("base", BASES)
def test_post_without_release_segment_triggers_too(
    client: TestClient, service: Service, base: str
) -> None:
    # the SDK's update() posts to <url><service> with no /v1
    response = client.post(
        base,
        headers=service.run_headers,
        content=b'{"name": "DEMO", "input": {"sleep": 0}}',
    )
    assert response.status_code == 202
    doc = response.json()
    assert doc["status"] == "triggered"
    assert doc["runAs"] == RUN_USER
    assert response.headers["location"] == f"{base}/v1/{doc['_id']}"
    assert service.dispatcher.calls == [(doc["_id"], 0.0)]
    assert service.store.get(doc["_id"]) == doc


def test_trigger_in_another_environment(client: TestClient, service: Service) -> None:
    response = client.post(
        f"{BASES[0]}/v1",
        headers={**service.run_headers, "x-odsl-environment": "test"},
        json={"name": "DEMO"},
    )
    assert response.status_code == 202
    doc = response.json()
    assert doc["environment"] == "test"
    assert service.store.get(doc["_id"], "test") == doc
    assert service.store.get(doc["_id"], "production") is None


def test_each_trigger_is_a_new_execution(client: TestClient, service: Service) -> None:
    ids = []
    for _ in range(3):
        response = client.post(f"{BASES[0]}/v1", headers=service.run_headers, json={"name": "DEMO"})
        assert response.status_code == 202
        ids.append(response.json()["_id"])
    assert len(set(ids)) == 3
    assert [call[0] for call in service.dispatcher.calls] == ids
    assert service.count() == 3


def test_a_read_scope_token_can_read_what_a_run_token_triggered(
    client: TestClient, service: Service
) -> None:
    posted = client.post(f"{BASES[1]}/v1", headers=service.run_headers, json={"name": "DEMO"})
    listed = client.get(f"{BASES[1]}/v1", headers=bearer(service.read_token))
    assert listed.status_code == 200
    assert listed.json() == [posted.json()]
    assert listed.headers["x-total-count"] == "1"
