"""`POST /service/process/v1/{name}/backfill` over the real app (a real SQLite file, the bundled
example processes): admin only, the beat's runs, never twice, a dry run, the refusals."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from procexec.engine.crontab import crontab_reason
from procexec.engine.scheduler import scheduled_execution_id
from procexec.engine.timeutil import parse_iso
from tests.api.api_helpers import ADMIN_USER, Service
from tests.api.test_api_processes import PROCESS_BASES, assert_error

#: ECB_FX fires at 16:30 on weekdays: five times in this week
WEEK = {"from": "2021-07-05T00:00:00Z", "to": "2021-07-12T00:00:00Z"}
WEEK_FIRES = [f"2021-07-{day:02d}T16:30:00.000Z" for day in range(5, 10)]


def post(client: TestClient, service: Service, body: Any, name: str = "ECB_FX", **kw: Any) -> Any:
    headers = kw.pop("headers", service.admin_headers)
    base = kw.pop("base", PROCESS_BASES[0])
    return client.post(f"{base}/v1/{name}/backfill", headers=headers, json=body)


@pytest.mark.parametrize("base", PROCESS_BASES)
def test_a_backfill_makes_the_beats_runs_once(
    client: TestClient, service: Service, base: str
) -> None:
    response = post(client, service, WEEK, base=base)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["process"] == "ECB_FX" and answer["dryRun"] is False
    assert (answer["from"], answer["to"]) == (
        "2021-07-05T00:00:00.000Z",
        "2021-07-12T00:00:00.000Z",
    )
    assert [run["fireTime"] for run in answer["runs"]] == WEEK_FIRES
    assert (answer["made"], answer["existed"], answer["refused"], answer["new"]) == (5, 0, 0, 0)
    for run in answer["runs"]:
        fire = parse_iso(run["fireTime"])
        assert run["id"] == scheduled_execution_id("production", "ECB_FX", fire)
        assert run["state"] == "made"
        doc = service.store.get(run["id"])
        assert doc is not None
        assert (doc["trigger"], doc["reason"], doc["runAs"]) == (
            "scheduled",
            crontab_reason("ECB_FX", fire),
            "scheduler",
        )
    assert [call[0] for call in service.dispatcher.calls] == [run["id"] for run in answer["runs"]]
    again = post(client, service, WEEK, base=base).json()
    assert [run["state"] for run in again["runs"]] == ["existed"] * 5
    assert (again["made"], again["existed"]) == (0, 5)
    assert len(service.dispatcher.calls) == 5
    assert service.count() == 5
    trail = service.store.actions(action="backfill")
    assert [(action.who, action.target) for action in trail] == [(ADMIN_USER, "ECB_FX")] * 2
    assert trail[-1].details == {
        "from": "2021-07-05T00:00:00.000Z",
        "to": "2021-07-12T00:00:00.000Z",
        "made": 5,
        "existed": 0,
        "refused": 0,
    }


def test_a_day_of_an_hourly_schedule_makes_24_runs(client: TestClient, service: Service) -> None:
    path = f"{PROCESS_BASES[0]}/v1/ECB_FX/schedule"
    assert client.put(
        path, headers=service.admin_headers, json={"schedule": "0 * * * *"}
    ).is_success
    day = {"from": "2021-07-01", "to": "2021-07-02"}
    assert post(client, service, day).json()["made"] == 24
    assert post(client, service, day).json()["existed"] == 24
    assert service.count() == 24


def test_a_dry_run_lists_and_makes_nothing(client: TestClient, service: Service) -> None:
    post(client, service, {"from": "2021-07-06T00:00:00Z", "to": "2021-07-07T00:00:00Z"})
    answer = post(client, service, {**WEEK, "dryRun": True}).json()
    assert answer["dryRun"] is True
    assert [(run["fireTime"], run["state"]) for run in answer["runs"]] == [
        (fire, "existed" if fire.startswith("2021-07-06") else "new") for fire in WEEK_FIRES
    ]
    assert (answer["new"], answer["existed"], answer["made"]) == (4, 1, 0)
    assert service.count() == 1
    assert len(service.store.actions(action="backfill")) == 1


def test_a_read_or_run_token_may_not_backfill(client: TestClient, service: Service) -> None:
    for headers, scope in ((service.read_headers, "read"), (service.run_headers, "run")):
        response = post(client, service, WEEK, headers=headers)
        assert_error(response, 403, f"token scope '{scope}' does not allow 'admin'")
    assert service.count() == 0


@pytest.mark.parametrize(
    ("name", "body", "status", "message"),
    [
        ("NOPE", WEEK, 404, "unknown process 'NOPE'"),
        ("DEMO", WEEK, 409, "process DEMO has no schedule: nothing to backfill"),
        ("ECB_FX", [], 400, 'request body: expected {"from": "<ISO time>", "to": "<ISO time>"}'),
        ("ECB_FX", {"to": WEEK["to"]}, 400, "from: required (an ISO 8601 time)"),
        ("ECB_FX", {**WEEK, "to": 5}, 400, "to: must be a string (an ISO 8601 time)"),
        ("ECB_FX", {**WEEK, "dryRun": "yes"}, 400, "dryRun: must be true or false"),
        (
            "ECB_FX",
            {**WEEK, "until": "x"},
            400,
            "request body: unknown field 'until' (fields: from, to, dryRun)",
        ),
        (
            "ECB_FX",
            {**WEEK, "from": "monday"},
            400,
            "from: 'monday' is not an ISO 8601 time, such as 2021-07-01T00:00:00Z",
        ),
        (
            "ECB_FX",
            {"from": "2021-07-05", "to": "2999-01-01"},
            400,
            "to: 2999-01-01T00:00:00.000Z is in the future: a backfill makes the runs of past "
            "fire times (the beat makes the others)",
        ),
        (
            "ECB_FX",
            {"from": "2015-01-01", "to": "2021-01-01"},
            400,
            "from, to: ECB_FX's schedule fires more than 1000 times from "
            "2015-01-01T00:00:00.000Z to 2021-01-01T00:00:00.000Z; a backfill makes at most "
            "1000 runs: split the range",
        ),
    ],
)
def test_refusals_name_the_problem_and_make_nothing(
    client: TestClient, service: Service, name: str, body: Any, status: int, message: str
) -> None:
    assert_error(post(client, service, body, name=name), status, message)
    assert service.count() == 0
    assert service.store.actions(action="backfill") == []


def test_malformed_json_is_400(client: TestClient, service: Service) -> None:
    response = client.post(
        f"{PROCESS_BASES[0]}/v1/ECB_FX/backfill", headers=service.admin_headers, content=b"{"
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("request body: malformed JSON")
