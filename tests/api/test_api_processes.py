"""The process list API: schedules, enabled flags and next fire times; enable, disable, reschedule.

Mounted under its own path at both bases; reading needs a read token, changing a run token.
The app runs over a real SQLite file with the bundled example processes (DEMO, ECB_FX,
ECB_FX_CROSS).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from procexec.engine.crontab import Crontab
from procexec.engine.timeutil import iso_ms
from tests.api.api_helpers import Service

PROCESS_BASES = ("/service/process", "/api/process")

ECB_SCHEDULE = "30 16 * * 1-5"


def next_fires(expression: str, timezone: str = "UTC") -> set[str]:
    """The next fire time as of now, and as of a little later (a fire may fall in between)."""
    crontab = Crontab(expression, timezone)
    now = datetime.now(UTC)
    return {
        iso_ms(crontab.next_after(now)),
        iso_ms(crontab.next_after(now + timedelta(seconds=10))),
    }


def assert_error(response: httpx2.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == message
    assert response.headers["x-odsl-error"] == message


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


@pytest.mark.parametrize("base", PROCESS_BASES)
def test_list_shows_every_process_with_its_schedule_enabled_flag_and_next_fire(
    client: TestClient, service: Service, base: str
) -> None:
    expected_next = next_fires(ECB_SCHEDULE)
    response = client.get(f"{base}/v1", headers=service.read_headers)
    assert response.status_code == 200
    items = response.json()
    assert [item["name"] for item in items] == ["DEMO", "ECB_FX", "ECB_FX_CROSS"]
    ecb = by_name(items)["ECB_FX"]
    assert ecb["schedule"] == ECB_SCHEDULE
    assert ecb["timezone"] == "UTC"
    assert ecb["enabled"] is True
    assert ecb["nextFire"] in expected_next
    assert ecb["missedPolicy"] == "skip"
    assert ecb["missed"] == 0
    assert ecb["lastFire"] is None
    assert ecb["phases"] == ["EXTRACT", "TRANSFORM", "SEND", "LOAD"]
    demo = by_name(items)["DEMO"]
    assert (demo["schedule"], demo["nextFire"], demo["enabled"]) == (None, None, True)
    cross = by_name(items)["ECB_FX_CROSS"]
    assert cross["subscriptions"] == ["#ECB_FX.*"]
    assert cross["schedule"] is None
    # one process by name
    single = client.get(f"{base}/v1/ECB_FX", headers=service.read_headers)
    assert single.status_code == 200
    assert single.json()["schedule"] == ECB_SCHEDULE
    assert single.json()["nextFire"] in expected_next


@pytest.mark.parametrize("base", PROCESS_BASES)
def test_reading_needs_a_token(client: TestClient, base: str) -> None:
    response = client.get(f"{base}/v1")
    assert_error(response, 401, "missing credentials: send 'Authorization: Bearer <token>'")
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("base", PROCESS_BASES)
def test_an_unknown_process_is_404(client: TestClient, service: Service, base: str) -> None:
    message = "unknown process 'NOPE'"
    assert_error(client.get(f"{base}/v1/NOPE", headers=service.read_headers), 404, message)
    for verb in ("enable", "disable"):
        response = client.post(f"{base}/v1/NOPE/{verb}", headers=service.admin_headers)
        assert_error(response, 404, message)
    response = client.put(
        f"{base}/v1/NOPE/schedule", headers=service.admin_headers, json={"schedule": "* * * * *"}
    )
    assert_error(response, 404, message)
    assert service.store.process_states() == {}


@pytest.mark.parametrize("base", PROCESS_BASES)
def test_disable_and_enable_with_an_admin_token(
    client: TestClient, service: Service, base: str
) -> None:
    disabled = client.post(f"{base}/v1/ECB_FX/disable", headers=service.admin_headers)
    assert disabled.status_code == 200
    assert disabled.json()["enabled"] is False
    assert disabled.json()["nextFire"] is None
    assert service.store.process_states()["ECB_FX"].enabled is False
    listed = by_name(client.get(f"{base}/v1", headers=service.read_headers).json())
    assert (listed["ECB_FX"]["enabled"], listed["ECB_FX"]["nextFire"]) == (False, None)
    assert listed["DEMO"]["enabled"] is True
    expected_next = next_fires(ECB_SCHEDULE)
    enabled = client.post(f"{base}/v1/ECB_FX/enable", headers=service.admin_headers)
    assert enabled.status_code == 200
    assert enabled.json()["enabled"] is True
    assert enabled.json()["nextFire"] in expected_next
    assert service.store.process_states()["ECB_FX"].enabled is True
    assert service.count() == 0  # nothing was triggered


@pytest.mark.parametrize("base", PROCESS_BASES)
@pytest.mark.parametrize("scope", ["read", "run"])
def test_a_read_or_run_token_may_not_change_a_process(
    client: TestClient, service: Service, base: str, scope: str
) -> None:
    """Changing a process takes an admin token: a run token (which could before) may not."""
    headers = service.read_headers if scope == "read" else service.run_headers
    message = f"token scope '{scope}' does not allow 'admin'"
    for verb in ("enable", "disable"):
        response = client.post(f"{base}/v1/ECB_FX/{verb}", headers=headers)
        assert_error(response, 403, message)
    for method in ("put", "post"):
        response = client.request(
            method, f"{base}/v1/ECB_FX/schedule", headers=headers, json={"schedule": "* * * * *"}
        )
        assert_error(response, 403, message)
    assert service.store.process_states() == {}


@pytest.mark.parametrize("base", PROCESS_BASES)
def test_reschedule_with_a_timezone_and_back_to_the_definition(
    client: TestClient, service: Service, base: str
) -> None:
    expected_next = next_fires("0 7 * * *", "Europe/London")
    response = client.put(
        f"{base}/v1/ECB_FX/schedule",
        headers=service.admin_headers,
        json={"schedule": "0 7 * * *", "timezone": "Europe/London"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["schedule"], body["timezone"]) == ("0 7 * * *", "Europe/London")
    assert body["nextFire"] in expected_next
    state = service.store.process_states()["ECB_FX"]
    assert (state.schedule, state.timezone) == ("0 7 * * *", "Europe/London")
    listed = by_name(client.get(f"{base}/v1", headers=service.read_headers).json())
    assert listed["ECB_FX"]["schedule"] == "0 7 * * *"
    assert listed["ECB_FX"]["nextFire"] in expected_next
    # POST is accepted too, and a new crontab keeps the overridden timezone
    response = client.post(
        f"{base}/v1/ECB_FX/schedule", headers=service.admin_headers, json={"schedule": "15 8 * * *"}
    )
    assert response.status_code == 200
    assert (response.json()["schedule"], response.json()["timezone"]) == (
        "15 8 * * *",
        "Europe/London",
    )
    # a null schedule returns to the definition's
    expected_next = next_fires(ECB_SCHEDULE)
    cleared = client.put(
        f"{base}/v1/ECB_FX/schedule", headers=service.admin_headers, json={"schedule": None}
    )
    assert cleared.status_code == 200
    assert (cleared.json()["schedule"], cleared.json()["timezone"]) == (ECB_SCHEDULE, "UTC")
    assert cleared.json()["nextFire"] in expected_next
    assert service.count() == 0


@pytest.mark.parametrize("base", PROCESS_BASES)
def test_a_process_without_a_schedule_can_be_given_one(
    client: TestClient, service: Service, base: str
) -> None:
    expected_next = next_fires("*/5 * * * *")
    response = client.put(
        f"{base}/v1/DEMO/schedule", headers=service.admin_headers, json={"schedule": "*/5 * * * *"}
    )
    assert response.status_code == 200
    assert response.json()["schedule"] == "*/5 * * * *"
    assert response.json()["nextFire"] in expected_next


@pytest.mark.parametrize("base", PROCESS_BASES)
@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            {"schedule": "30 16 * *"},
            "schedule: crontab '30 16 * *' must have five fields"
            " (minute hour day-of-month month day-of-week)",
        ),
        (
            {"schedule": "0 30 16 * * 1"},
            "schedule: crontab '0 30 16 * * 1' must have five fields"
            " (minute hour day-of-month month day-of-week)",
        ),
        (
            {"schedule": "61 16 * * 1-5"},
            "schedule: crontab '61 16 * * 1-5': minute field '61' is not valid",
        ),
        (
            {"schedule": "30 16 * * 1-5", "timezone": "Mars/Olympus_Mons"},
            "schedule: unknown timezone 'Mars/Olympus_Mons'",
        ),
        ({"schedule": ""}, "schedule: required (five crontab fields)"),
        ({"schedule": 5}, "schedule: must be a string"),
        ({"schedule": "* * * * *", "timezone": 1}, "timezone: must be a string"),
        (
            {"timezone": "Europe/London"},
            'request body: expected {"schedule": "<five crontab fields>"}',
        ),
        ([], 'request body: expected {"schedule": "<five crontab fields>"}'),
    ],
)
def test_a_bad_schedule_is_400_and_changes_nothing(
    client: TestClient, service: Service, base: str, payload: Any, message: str
) -> None:
    response = client.put(f"{base}/v1/ECB_FX/schedule", headers=service.admin_headers, json=payload)
    assert_error(response, 400, message)
    assert service.store.process_states() == {}
    listed = client.get(f"{base}/v1/ECB_FX", headers=service.read_headers).json()
    assert listed["schedule"] == ECB_SCHEDULE


@pytest.mark.parametrize("base", PROCESS_BASES)
def test_malformed_json_is_400(client: TestClient, service: Service, base: str) -> None:
    response = client.put(
        f"{base}/v1/ECB_FX/schedule",
        headers={**service.admin_headers, "content-type": "application/json"},
        content=b"{not json",
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("request body: malformed JSON")
    assert response.headers["x-odsl-error"].startswith("request body: malformed JSON")


def test_the_process_list_is_not_under_the_execution_paths(
    client: TestClient, service: Service
) -> None:
    # under /service/process-exec/v1 every segment is an execution key
    response = client.get("/service/process-exec/v1/ECB_FX", headers=service.read_headers)
    assert response.status_code == 404
