"""`POST /v1/{id}/rerun[?from=PHASE|start]`: scope `run`, a 202 with the new execution and its
`Location`, on both mounts; the run it makes carries the phases before the failed one over and
runs from it; what cannot be rerun is a 409 or a 400 saying why, and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from procexec.engine.domain import Scope
from procexec.engine.process import Process
from procexec.engine.runner import PhaseRunner
from procexec.engine.tokens import create_token
from tests.api.api_helpers import BASES, RUN_USER, Service, bearer
from tests.documents import assert_execution


def failed_run(client: TestClient, service: Service, base: str, **body: Any) -> dict[str, Any]:
    """A DEMO run, run to its end (failed in LOAD unless `body` says otherwise)."""
    response = client.post(
        f"{base}/v1",
        json={"name": "DEMO", "body": {"fail_in": "LOAD", **body}},
        headers=service.run_headers,
    )
    assert response.status_code == 202, response.text
    execution_id = response.json()["_id"]
    PhaseRunner(service.store, service.registry, worker_id="w1").run(execution_id)
    doc = service.store.get(execution_id)
    assert doc is not None
    return doc


@pytest.mark.parametrize("base", BASES)
def test_rerun_a_run_failed_in_load(client: TestClient, service: Service, base: str) -> None:
    old = failed_run(client, service, base)
    assert old["status"] == "failed"

    response = client.post(f"{base}/v1/{old['_id']}/rerun", headers=service.run_headers)

    assert response.status_code == 202, response.text
    new = response.json()
    assert response.headers["location"] == f"{base}/v1/{new['_id']}"
    assert (new["trigger"], new["runAs"], new["status"]) == ("manual", RUN_USER, "triggered")
    assert new["reason"] == f"Rerun of {old['_id']} from LOAD"
    assert [phase["name"] for phase in new["phases"]] == ["EXTRACT", "TRANSFORM", "SEND"]
    assert service.dispatcher.calls[-1] == (new["_id"], 0.0)
    read = client.get(response.headers["location"], headers=service.read_headers)
    assert read.status_code == 200 and read.json() == new

    PhaseRunner(service.store, service.registry, worker_id="w2").run(new["_id"])
    done = service.store.get(new["_id"])
    assert done is not None
    assert_execution(done)
    assert done["phases"][:3] == new["phases"]  # not run again
    assert [(p["name"], p["status"]) for p in done["phases"][3:]] == [("LOAD", "failed")]
    assert service.store.get(old["_id"]) == old
    [action] = service.store.actions(action="rerun", target=old["_id"])
    assert (action.who, action.details["rerun"]) == (RUN_USER, new["_id"])


@pytest.mark.parametrize("base", BASES)
def test_rerun_from_start_and_from_a_phase(client: TestClient, service: Service, base: str) -> None:
    old = failed_run(client, service, base)
    url = f"{base}/v1/{old['_id']}/rerun"

    start = client.post(f"{url}?from=start", headers=service.run_headers)
    transform = client.post(f"{url}?from=TRANSFORM", headers=service.run_headers)
    later = client.post(f"{url}?from=cook", headers=service.run_headers)

    assert start.status_code == 202, start.text
    assert (start.json()["reason"], start.json()["phases"]) == (
        f"Rerun of {old['_id']} from EXTRACT",
        [],
    )
    assert transform.status_code == 202, transform.text
    assert [phase["name"] for phase in transform.json()["phases"]] == ["EXTRACT"]
    assert later.status_code == 400, later.text
    assert later.json()["error"].startswith("from: 'cook' is not a phase of DEMO")


@pytest.mark.parametrize("base", BASES)
def test_what_cannot_be_rerun_is_refused_saying_why(
    client: TestClient, service: Service, base: str
) -> None:
    response = client.post(f"{base}/v1", json={"name": "DEMO"}, headers=service.run_headers)
    triggered = response.json()["_id"]
    active = client.post(f"{base}/v1/{triggered}/rerun", headers=service.run_headers)
    assert active.status_code == 409, active.text
    assert active.json()["error"] == (
        f"execution '{triggered}' is still triggered: cancel it, or wait for it to end, before "
        "rerunning it"
    )
    assert active.headers["x-odsl-error"] == active.json()["error"]

    old = failed_run(client, service, base, fail_in="TRANSFORM")
    url = f"{base}/v1/{old['_id']}/rerun"
    after = client.post(f"{url}?from=LOAD", headers=service.run_headers)
    assert after.status_code == 409, after.text
    assert "from: LOAD comes after TRANSFORM" in after.json()["error"]

    service.store._connect().execute("DELETE FROM checkpoints WHERE id = ?", (old["_id"],))
    gone = client.post(url, headers=service.run_headers)
    assert gone.status_code == 409, gone.text
    assert "the checkpoint of EXTRACT is gone" in gone.json()["error"]
    assert client.post(f"{url}?from=start", headers=service.run_headers).status_code == 202
    assert len(service.store.actions(action="rerun")) == 1


@pytest.mark.parametrize("base", BASES)
def test_parameters_refused_now_are_a_400_naming_the_field(
    client: TestClient, service: Service, base: str
) -> None:
    old = failed_run(client, service, base)
    demo = service.registry.get("DEMO")
    assert demo is not None
    changed = Process("DEMO", defaults={"sleep": 0})  # `fail_in` is no parameter any more
    changed.phases = demo.phases
    service.registry._processes["DEMO"] = changed
    count = service.count()

    response = client.post(f"{base}/v1/{old['_id']}/rerun", headers=service.run_headers)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error.startswith(f"the parameters of '{old['_id']}' no longer hold for DEMO: ")
    assert "body.fail_in: unknown parameter" in error
    assert service.count() == count


@pytest.mark.parametrize("base", BASES)
def test_rerun_needs_the_run_scope_and_a_run_the_caller_may_read(
    client: TestClient, service: Service, base: str
) -> None:
    old = failed_run(client, service, base)
    url = f"{base}/v1/{old['_id']}/rerun"
    count = service.count()

    read_only = client.post(url, headers=service.read_headers)
    assert read_only.status_code == 403, read_only.text
    assert client.post(url).status_code == 401
    unknown = client.post(f"{base}/v1/no-such-run/rerun", headers=service.run_headers)
    assert unknown.status_code == 404, unknown.text
    elsewhere = client.post(url, headers={**service.run_headers, "x-odsl-environment": "staging"})
    assert elsewhere.status_code == 404, elsewhere.text
    limited = create_token(service.store, "dave", Scope.RUN, processes=["ECB_FX"])
    other = client.post(url, headers=bearer(limited))
    assert other.status_code == 404, other.text
    assert service.count() == count
    assert service.store.actions(action="rerun") == []


def test_the_description_lists_what_from_takes(client: TestClient) -> None:
    described = client.get("/openapi.json").json()
    for base in BASES:
        operation = described["paths"][f"{base}/v1/{{execution_id}}/rerun"]["post"]
        [start_from] = [p for p in operation["parameters"] if p["name"] == "from"]
        assert start_from["schema"]["enum"] == ["start", "EXTRACT", "LOAD", "SEND", "TRANSFORM"]
        assert set(operation["responses"]) >= {"202", "400", "403", "404", "409"}
