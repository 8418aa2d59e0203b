"""`GET /service/audit/v1` (and `/api/audit/v1`): the operators' actions taken through the API
listed with who did them, newest first, filtered and bounded; admin only; a 400 naming a bad
parameter."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from procexec.engine.store.base import Action
from tests.api.api_helpers import ADMIN_USER, BASES, RUN_USER, Service
from tests.api.test_api_processes import PROCESS_BASES, assert_error

AUDIT_BASES = ("/service/audit", "/api/audit")


def trail(client: TestClient, service: Service, base: str = AUDIT_BASES[0], **params: Any) -> Any:
    response = client.get(f"{base}/v1", params=params, headers=service.admin_headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("base", AUDIT_BASES)
def test_each_action_through_the_api_is_listed_with_who_did_it(
    client: TestClient, service: Service, base: str
) -> None:
    admin = {"headers": service.admin_headers}
    process = f"{PROCESS_BASES[1]}/v1"
    assert client.post(f"{process}/ECB_FX/disable", **admin).is_success
    assert client.post(f"{process}/ECB_FX/enable", **admin).is_success
    schedule = {"schedule": "0 7 * * *", "timezone": "Europe/London"}
    assert client.put(f"{process}/ECB_FX/schedule", json=schedule, **admin).is_success
    day = {"from": "2021-07-05", "to": "2021-07-06"}
    assert client.post(f"{process}/ECB_FX/backfill", json=day, **admin).is_success
    triggered = client.post(f"{BASES[0]}/v1", json={"name": "DEMO"}, headers=service.run_headers)
    execution_id = triggered.json()["_id"]
    cancelled = client.post(f"{BASES[0]}/v1/{execution_id}/cancel", headers=service.run_headers)
    assert cancelled.is_success
    items = trail(client, service, base)
    assert [(item["action"], item["who"], item["target"]) for item in items] == [
        ("cancel", RUN_USER, execution_id),
        ("backfill", ADMIN_USER, "ECB_FX"),
        ("schedule", ADMIN_USER, "ECB_FX"),
        ("enable", ADMIN_USER, "ECB_FX"),
        ("disable", ADMIN_USER, "ECB_FX"),
    ]
    assert items[0]["details"] == {"was": "triggered"}
    assert items[1]["details"] == {
        "from": "2021-07-05T00:00:00.000Z",
        "to": "2021-07-06T00:00:00.000Z",
        "made": 1,
        "existed": 0,
        "refused": 0,
    }
    assert items[2]["details"] == schedule
    assert all(item["at"].endswith("Z") for item in items)
    assert [item["at"] for item in items] == sorted((item["at"] for item in items), reverse=True)


def record(service: Service, at: str, who: str, action: str, target: str) -> None:
    service.store.record_action(Action(at, who, action, target, {"n": 1}))


@pytest.fixture
def recorded(service: Service) -> Service:
    record(service, "2021-07-01T10:00:00.000Z", "root", "enable", "DEMO")
    record(service, "2021-07-01T11:00:00.000Z", "cli:ops", "disable", "DEMO")
    record(service, "2021-07-02T09:00:00.000Z", "root", "enable", "ECB_FX")
    record(service, "2021-07-03T09:00:00.000Z", "cli:ops", "token-revoke", "bob")
    return service


def test_filters_and_limit(client: TestClient, recorded: Service) -> None:
    def targets(**params: Any) -> list[tuple[str, str]]:
        return [(i["action"], i["target"]) for i in trail(client, recorded, **params)]

    assert len(targets()) == 4
    assert targets(since="2021-07-02") == [("token-revoke", "bob"), ("enable", "ECB_FX")]
    assert targets(since="2021-07-01T12:30:00+02:00") == targets(since="2021-07-01T10:30")
    assert targets(since="2021-07-01T10:30") == targets()[:3]
    assert targets(action="enable") == [("enable", "ECB_FX"), ("enable", "DEMO")]
    assert targets(target="DEMO") == [("disable", "DEMO"), ("enable", "DEMO")]
    assert targets(target="DEMO", action="enable", since="2021-07-01") == [("enable", "DEMO")]
    assert targets(_limit=1) == [("token-revoke", "bob")]
    assert targets(_limit=1000) == targets()
    assert trail(client, recorded, _limit=2)[0] == {
        "at": "2021-07-03T09:00:00.000Z",
        "who": "cli:ops",
        "action": "token-revoke",
        "target": "bob",
        "details": {"n": 1},
    }


def test_the_default_limit_is_100(client: TestClient, service: Service) -> None:
    for minute in range(101):
        record(
            service, f"2021-07-01T10:{minute // 60:02d}:{minute % 60:02d}.000Z", "r", "cancel", "x"
        )
    items = trail(client, service)
    assert len(items) == 100
    assert items[-1]["at"] == "2021-07-01T10:00:01.000Z"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"since": "yesterday"},
            "since: 'yesterday' is not an ISO 8601 time, such as 2021-07-01T00:00:00Z",
        ),
        (
            {"since": "2021-02-30"},
            "since: '2021-02-30' is not an ISO 8601 time, such as 2021-07-01T00:00:00Z",
        ),
        (
            {"action": "reboot"},
            "action: unknown action 'reboot' (actions: enable, disable, schedule, limit, "
            "backfill, rerun, cancel, token-create, token-revoke)",
        ),
        ({"_limit": "0"}, "_limit: '0' is not a whole number from 1 to 1000"),
        ({"_limit": "1001"}, "_limit: '1001' is not a whole number from 1 to 1000"),
        ({"_limit": "ten"}, "_limit: 'ten' is not a whole number from 1 to 1000"),
        ({"_limit": "-1"}, "_limit: '-1' is not a whole number from 1 to 1000"),
        ({"who": "root"}, "who: unknown parameter (parameters: since, action, target, _limit)"),
        ({"target": ["a", "b"]}, "target: given more than once"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(
    client: TestClient, service: Service, params: dict[str, Any], message: str
) -> None:
    for base in AUDIT_BASES:
        response = client.get(f"{base}/v1", params=params, headers=service.admin_headers)
        assert_error(response, 400, message)


def test_only_an_admin_token_reads_the_trail(client: TestClient, service: Service) -> None:
    for headers, scope in ((service.read_headers, "read"), (service.run_headers, "run")):
        response = client.get(f"{AUDIT_BASES[0]}/v1", headers=headers)
        assert_error(response, 403, f"token scope '{scope}' does not allow 'admin'")
    response = client.get(f"{AUDIT_BASES[1]}/v1")
    assert response.status_code == 401


def test_the_trail_is_not_under_the_process_paths(client: TestClient, service: Service) -> None:
    response = client.get("/service/process/v1/audit", headers=service.admin_headers)
    assert_error(response, 404, "unknown process 'audit'")
