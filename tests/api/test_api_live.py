"""Over real HTTP (uvicorn in a thread), and with runs that really run through the PhaseRunner."""

from __future__ import annotations

import gzip
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from tests.api.api_helpers import BASES, RUN_USER, Service, run_as_worker
from tests.documents import execution

PHASES = ["EXTRACT", "TRANSFORM", "SEND", "LOAD"]


def _urlopen(request: urllib.request.Request) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers.items()), error.read()


# --- real HTTP ----------------------------------------------------------------------------


def test_build_information_over_http(live_url: str) -> None:
    status, headers, body = _urlopen(urllib.request.Request(f"{live_url}{BASES[0]}"))
    assert status == 200
    assert headers["content-type"] == "application/json"
    info = json.loads(body)
    assert info["service"] == "process-exec"
    assert info["store"] == "sqlite"
    assert info["broker"] == "embedded"
    assert {"version", "commit", "buildTime"} <= set(info)


@pytest.mark.parametrize("base", BASES)
def test_trigger_over_http_without_content_type(live_url: str, service: Service, base: str) -> None:
    with httpx2.Client(base_url=live_url, timeout=30) as http:
        request = http.build_request(
            "POST",
            f"{base}/v1",
            headers=service.run_headers,
            content=json.dumps({"name": "DEMO", "body": {"log_lines": 2}}).encode(),
        )
        assert "content-type" not in request.headers
        response = http.send(request)
        assert response.status_code == 202
        doc = response.json()
        assert doc["status"] == "triggered"
        assert doc["runAs"] == RUN_USER
        assert response.headers["location"] == f"{base}/v1/{doc['_id']}"
        assert service.dispatcher.calls == [(doc["_id"], 0.0)]
        assert service.store.get_meta(doc["_id"])["input"] == {
            "sleep": 0,
            "fail_in": None,
            "log_lines": 2,
            "fail_times": None,
            "guard": None,
        }
        fetched = http.get(response.headers["location"], headers=service.read_headers)
        assert fetched.status_code == 200
        assert fetched.json() == doc


def test_errors_over_http(live_url: str, service: Service) -> None:
    request = urllib.request.Request(
        f"{live_url}{BASES[1]}/v1", data=b'{"name": "DEMO"}', method="POST"
    )
    status, headers, body = _urlopen(request)
    assert status == 401
    message = "missing credentials: send 'Authorization: Bearer <token>'"
    assert json.loads(body)["error"] == message
    assert headers["x-odsl-error"] == message

    request = urllib.request.Request(
        f"{live_url}{BASES[1]}/v1?start=range(2021-07-19,2021-07-32)",
        headers=service.read_headers,
    )
    status, headers, body = _urlopen(request)
    assert status == 400
    message = "start: '2021-07-32' is not a date or an ISO 8601 datetime"
    assert json.loads(body)["error"] == message
    assert headers["x-odsl-error"] == message
    assert service.count() == 0
    assert service.dispatcher.calls == []


def test_a_large_list_comes_gzipped_over_http(live_url: str, service: Service) -> None:
    expected = []
    for day in range(10, 20):
        doc = execution(f"ecb-{day}", f"2021-07-{day}T16:30:07.858Z")
        service.store.insert(doc)
        expected.insert(0, doc)
    request = urllib.request.Request(
        f"{live_url}{BASES[0]}/v1?name=ECB_FX",
        headers={**service.read_headers, "Accept-Encoding": "gzip"},
    )
    status, headers, raw = _urlopen(request)
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert headers["x-total-count"] == "10"
    body = gzip.decompress(raw)
    assert len(body) > 1024
    assert len(raw) < len(body)
    assert json.loads(body) == expected


# --- runs that really run -----------------------------------------------------------------


@pytest.mark.parametrize("base", BASES)
def test_a_finished_ecb_fx_run_has_the_seed_page_shape(
    client: TestClient, service: Service, base: str
) -> None:
    posted = client.post(f"{base}/v1", headers=service.run_headers, json={"name": "ECB_FX"})
    assert posted.status_code == 202
    execution_id = posted.json()["_id"]
    assert run_as_worker(service, execution_id) == "success"

    response = client.get(f"{base}/v1/private/{execution_id}", headers=service.read_headers)
    assert response.status_code == 200
    doc = response.json()
    assert doc["status"] == "success"
    assert doc["message"] == "Completed Successfully"
    assert doc["runAs"] == RUN_USER
    assert doc["end"] >= doc["start"]
    assert [phase["name"] for phase in doc["phases"]] == PHASES
    assert [phase["status"] for phase in doc["phases"]] == ["success"] * 4
    assert doc["phases"][-1]["log"][-1] == "Updated 32 series for 2021-07-01"
    assert doc["loaderMessage"] == "Updated 32 series for 2021-07-01"
    series = doc["data"]["series"]["2021-07-01"]
    assert len(series) == 32
    assert "#ECB_FX.EURUSD:SPOT" in series
    assert doc["data"]["curves"] == {}
    assert set(doc) >= {
        "_id", "service", "name", "environment", "trigger", "reason", "start", "end",
        "runAs", "status", "message", "phases", "loaderMessage", "data",
    }  # fmt: skip


def test_finished_runs_are_found_by_status_and_phase(client: TestClient, service: Service) -> None:
    ids = {}
    for label, body in (("ok", {}), ("broken", {"fail_in": "send"})):
        posted = client.post(
            f"{BASES[0]}/v1", headers=service.run_headers, json={"name": "DEMO", "body": body}
        )
        assert posted.status_code == 202
        ids[label] = posted.json()["_id"]
    assert run_as_worker(service, ids["ok"]) == "success"
    assert run_as_worker(service, ids["broken"]) == "failed"

    def listed(query: str) -> list[str]:
        response = client.get(f"{BASES[0]}/v1?{query}", headers=service.read_headers)
        assert response.status_code == 200
        return [doc["_id"] for doc in response.json()]

    assert listed("status=failed") == [ids["broken"]]
    assert listed("status=success&name=DEMO") == [ids["ok"]]
    assert listed("phases.status=failed") == [ids["broken"]]
    assert listed("phases.name=LOAD") == [ids["ok"]]
    failed = client.get(f"{BASES[0]}/v1/{ids['broken']}", headers=service.read_headers).json()
    assert failed["message"] == (
        "Failed in SEND: RuntimeError: failure requested in SEND (fail_in=SEND)"
    )
    assert [phase["status"] for phase in failed["phases"]] == ["success", "success", "failed"]


def test_a_running_execution_is_readable_while_it_runs(live_url: str, service: Service) -> None:
    with httpx2.Client(base_url=live_url, headers=service.read_headers, timeout=30) as http:
        posted = http.post(
            f"{BASES[0]}/v1",
            headers=service.run_headers,
            json={"name": "DEMO", "body": {"sleep": 1.5, "log_lines": 6}},
        )
        assert posted.status_code == 202
        execution_id = posted.json()["_id"]
        url = f"{BASES[0]}/v1/{execution_id}"

        result: dict[str, Any] = {}

        def work() -> None:
            result["status"] = run_as_worker(service, execution_id)

        worker = threading.Thread(target=work, name="phase-runner")
        worker.start()
        seen: list[dict[str, Any]] = []
        try:
            deadline = time.monotonic() + 60
            while worker.is_alive() and time.monotonic() < deadline:
                response = http.get(url)
                assert response.status_code == 200
                seen.append(response.json())
                time.sleep(0.05)
        finally:
            worker.join(timeout=60)
        assert not worker.is_alive()
        assert result == {"status": "success"}

        running = [doc for doc in seen if doc["status"] == "running"]
        assert running, f"never saw the run running: {[doc['status'] for doc in seen]}"
        with_running_phase = [
            doc for doc in running if any(p["status"] == "running" for p in doc["phases"])
        ]
        assert with_running_phase
        assert all("end" not in doc for doc in running)
        # the log grew while the run went on, and only by appending
        sizes = [sum(len(phase["log"]) for phase in doc["phases"]) for doc in running]
        assert len(set(sizes)) >= 3, sizes
        assert sizes == sorted(sizes)
        for earlier, later in itertools.pairwise(running):
            for index, phase in enumerate(earlier["phases"]):
                assert later["phases"][index]["log"][: len(phase["log"])] == phase["log"]

        final = http.get(url).json()
        assert final["status"] == "success"
        assert final["message"] == "Completed Successfully"
        assert [phase["name"] for phase in final["phases"]] == PHASES
        for phase in final["phases"]:
            assert phase["status"] == "success"
            assert len(phase["log"]) == 7
            assert phase["log"][0].endswith(f" info {phase['name']} line 1 of 6")
            assert phase["log"][-1].endswith(f" info Completed {phase['name']}")
        listed = http.get(f"{BASES[1]}/v1/all?status=success")
        assert listed.json() == [final]
