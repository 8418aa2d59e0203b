"""`/metrics` after real runs of each outcome (the engine's `PhaseRunner` on the service's
SQLite file): the store's figures count them, the latency histogram counts requests by route,
the text parses as Prometheus's format, and `PROCEXEC_METRICS_TOKEN` closes it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from procexec.engine.settings import Settings
from tests.api.api_helpers import BASES, Dispatcher, Service, bearer, run_as_worker, start_service

BASE = BASES[0]


def scrape(client: TestClient, headers: dict[str, str] | None = None) -> list[Sample]:
    answer = client.get("/metrics", headers=headers or {})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.headers["x-content-type-options"] == "nosniff"  # the security headers
    families = text_string_to_metric_families(answer.text)
    return [sample for family in families for sample in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, [s for s in samples if s.name == name])
    return found[0]


def test_the_figures_count_runs_of_each_outcome(client: TestClient, service: Service) -> None:
    bodies = {
        "success": {"name": "DEMO", "body": {"log_lines": 3}},
        "failed": {"name": "DEMO", "body": {"fail_in": "SEND"}},
        "cancelled": {"name": "DEMO"},
        "triggered": {"name": "DEMO", "_reason": "left for a worker"},
        "loaded": {"name": "ECB_FX"},
    }
    ids = {}
    for outcome, body in bodies.items():
        answer = client.post(f"{BASE}/v1", json=body, headers=service.run_headers)
        assert answer.status_code == 202, answer.text
        ids[outcome] = answer.json()["_id"]
    assert run_as_worker(service, ids["success"]) == "success"
    assert run_as_worker(service, ids["failed"]) == "failed"
    assert run_as_worker(service, ids["loaded"]) == "success"
    answer = client.post(f"{BASE}/v1/{ids['cancelled']}/cancel", headers=service.run_headers)
    assert answer.status_code == 200, answer.text
    cancelled = client.get(f"{BASE}/v1/{ids['cancelled']}", headers=service.read_headers)
    cancelled_status = cancelled.json()["status"]

    samples = scrape(client)
    env = {"environment": "production"}
    assert value(samples, "procexec_store_up") == 1
    assert value(samples, "procexec_runs", process="DEMO", status="success", **env) == 1
    assert value(samples, "procexec_runs", process="ECB_FX", status="success", **env) == 1
    assert value(samples, "procexec_runs", process="DEMO", status=cancelled_status, **env) == (
        2 if cancelled_status == "failed" else 1
    )
    assert value(samples, "procexec_runs", process="DEMO", status="triggered", **env) == 1
    assert value(samples, "procexec_runs_running") == 0
    assert value(samples, "procexec_runs_waiting", **{"for": "worker"}) == 1
    assert value(samples, "procexec_runs_waiting", **{"for": "slot"}) == 0
    deliveries = [s for s in samples if s.name == "procexec_webhook_deliveries_total"]
    assert {s.labels["outcome"] for s in deliveries} >= {"delivered", "failed"}


def test_the_latency_histogram_counts_requests_by_route(
    client: TestClient, service: Service
) -> None:
    route = {"route": f"{BASE}/v1", "method": "GET"}
    name = "procexec_api_request_duration_seconds_count"
    before = [s for s in scrape(client) if s.name == name and s.labels == route]
    for _ in range(3):
        assert client.get(f"{BASE}/v1", headers=service.read_headers).status_code == 200
    assert client.get("/no/such/path").status_code == 404
    samples = scrape(client)
    assert value(samples, name, **route) == (before[0].value if before else 0) + 3
    assert value(samples, name, route="(none)", method="GET") >= 1
    assert value(samples, "procexec_api_request_duration_seconds_bucket", le="+Inf", **route)


def test_the_token_setting_closes_metrics(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"PROCEXEC_DATA_DIR": str(tmp_path), "PROCEXEC_METRICS_TOKEN": "scrape-me"}
    )
    service = start_service(settings, Dispatcher())
    try:
        with TestClient(service.app) as client:
            for headers in ({}, bearer("wrong"), {"Authorization": "Basic c2NyYXBlLW1l"}):
                answer = client.get("/metrics", headers=headers)
                assert answer.status_code == 401
                assert answer.headers["www-authenticate"] == "Bearer"
            assert value(scrape(client, bearer("scrape-me")), "procexec_store_up") == 1
    finally:
        service.store.close()


def test_metrics_is_no_part_of_the_openapi_description(client: TestClient) -> None:
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_a_store_that_does_not_answer_is_a_figure(
    client: TestClient, service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> object:
        raise OSError("down")

    monkeypatch.setattr(service.store, "process_states", broken)
    client.app.state.metrics.collector.figures.cache_seconds = 0
    assert value(scrape(client), "procexec_store_up") == 0
