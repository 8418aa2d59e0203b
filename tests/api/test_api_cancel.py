"""`POST /v1/{id}/cancel`: scope `run`, the cancelled document back, on both mounts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from procexec.api.app import create_app
from procexec.engine.recorder import ExecutionRecorder
from procexec.engine.runner import PhaseRunner
from tests.api.api_helpers import BASES, RUN_USER, Service, bearer
from tests.documents import execution

FINISHED_ID = "05f1ec1a-f2a1-4cba-87d4-b46e0f8e40b6"


def trigger(client: TestClient, service: Service, base: str) -> dict[str, Any]:
    response = client.post(f"{base}/v1", json={"name": "DEMO"}, headers=service.run_headers)
    assert response.status_code == 202, response.text
    doc: dict[str, Any] = response.json()
    return doc


def start_running(service: Service, execution_id: str) -> None:
    """Claim the execution and start its first phase, as a worker would."""
    token = PhaseRunner(service.store, service.registry, worker_id="w1").claim(execution_id)
    assert token is not None
    recorder = ExecutionRecorder(service.store, execution_id, flush_interval=0.05, token=token)
    recorder.start_phase("EXTRACT", "Running EXTRACT")
    assert recorder.flush()  # as its recording thread would, within the flush interval


@pytest.mark.parametrize("base", BASES)
def test_cancel_a_triggered_execution(client: TestClient, service: Service, base: str) -> None:
    doc = trigger(client, service, base)

    response = client.post(f"{base}/v1/{doc['_id']}/cancel", headers=service.run_headers)

    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["_id"] == doc["_id"]
    assert (cancelled["status"], cancelled["message"]) == ("failed", f"Cancelled by {RUN_USER}")
    assert cancelled["end"] >= cancelled["start"]
    assert {key: cancelled[key] for key in ("name", "runAs", "reason", "start")} == {
        key: doc[key] for key in ("name", "runAs", "reason", "start")
    }
    stored = client.get(f"{base}/v1/{doc['_id']}", headers=service.read_headers)
    assert stored.json() == cancelled


@pytest.mark.parametrize("base", BASES)
def test_cancel_a_running_execution_fails_its_running_phase(
    client: TestClient, service: Service, base: str
) -> None:
    doc = trigger(client, service, base)
    start_running(service, doc["_id"])

    response = client.post(f"{base}/v1/{doc['_id']}/cancel", headers=service.run_headers)

    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert (cancelled["status"], cancelled["message"]) == ("failed", f"Cancelled by {RUN_USER}")
    [phase] = cancelled["phases"]
    assert (phase["name"], phase["status"], phase["message"]) == (
        "EXTRACT",
        "failed",
        f"Cancelled by {RUN_USER}",
    )
    assert phase["end"] == cancelled["end"]
    assert service.store.get_meta(doc["_id"])["worker"] is None  # its worker is fenced off


@pytest.mark.parametrize("base", BASES)
def test_cancel_needs_the_run_scope(client: TestClient, service: Service, base: str) -> None:
    doc = trigger(client, service, base)
    url = f"{base}/v1/{doc['_id']}/cancel"

    forbidden = client.post(url, headers=service.read_headers)
    assert forbidden.status_code == 403, forbidden.text
    assert "scope 'read'" in forbidden.json()["error"]
    missing = client.post(url)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    invalid = client.post(url, headers=bearer(service.run_token + "x"))
    assert invalid.status_code == 401
    assert invalid.json()["error"] == "invalid token"

    assert service.store.get(doc["_id"]) == doc  # untouched


@pytest.mark.parametrize("base", BASES)
def test_cancel_an_unknown_execution_is_404(
    client: TestClient, service: Service, base: str
) -> None:
    response = client.post(f"{base}/v1/no-such-execution/cancel", headers=service.run_headers)
    assert response.status_code == 404, response.text
    assert "no-such-execution" in response.json()["error"]
    assert "no-such-execution" in response.headers["x-odsl-error"]


@pytest.mark.parametrize("base", BASES)
def test_cancel_in_another_environment_is_404(
    client: TestClient, service: Service, base: str
) -> None:
    doc = trigger(client, service, base)
    response = client.post(
        f"{base}/v1/{doc['_id']}/cancel",
        headers={**service.run_headers, "x-odsl-environment": "staging"},
    )
    assert response.status_code == 404, response.text
    assert service.store.get(doc["_id"]) == doc


@pytest.mark.parametrize("base", BASES)
def test_cancel_a_finished_execution_is_409(
    client: TestClient, service: Service, base: str
) -> None:
    finished = execution(FINISHED_ID, "2021-07-01T16:30:07.858Z")
    service.store.insert(finished)

    response = client.post(f"{base}/v1/{FINISHED_ID}/cancel", headers=service.run_headers)

    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert "already finished (success)" in error
    assert response.headers["x-odsl-error"] == error
    assert service.store.get(FINISHED_ID) == finished


@pytest.mark.parametrize("base", BASES)
def test_cancel_twice_is_409_the_second_time(
    client: TestClient, service: Service, base: str
) -> None:
    doc = trigger(client, service, base)
    url = f"{base}/v1/{doc['_id']}/cancel"
    first = client.post(url, headers=service.run_headers)
    assert first.status_code == 200, first.text

    second = client.post(url, headers=service.run_headers)

    assert second.status_code == 409, second.text
    assert "already finished (failed)" in second.json()["error"]
    assert service.store.get(doc["_id"]) == first.json()


@pytest.fixture
def revoked(service: Service) -> Iterator[tuple[TestClient, list[str]]]:
    """The app with a recorder of revokes in place of Celery's."""
    calls: list[str] = []
    app = create_app(
        service.settings,
        store=service.store,
        registry=service.registry,
        dispatch=service.dispatcher,
        revoke=calls.append,
    )
    with TestClient(app) as client:
        yield client, calls


@pytest.mark.parametrize("base", BASES)
def test_cancel_revokes_the_task_of_the_execution(
    revoked: tuple[TestClient, list[str]], service: Service, base: str
) -> None:
    client, calls = revoked
    doc = trigger(client, service, base)
    finished = execution(FINISHED_ID, "2021-07-01T16:30:07.858Z")
    service.store.insert(finished)

    assert client.post(f"{base}/v1/{doc['_id']}/cancel", headers=service.run_headers).is_success
    refused = client.post(f"{base}/v1/{FINISHED_ID}/cancel", headers=service.run_headers)
    assert refused.status_code == 409
    assert calls == [doc["_id"]]  # only what was cancelled: the task id is the execution id
    assert service.dispatcher.calls == [(doc["_id"], 0.0)]
