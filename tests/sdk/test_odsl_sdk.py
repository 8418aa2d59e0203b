"""The platform's own Python SDK (`odsl` from PyPI), unchanged, against a live procexec."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import pytest

from tests.sdk.conftest import LiveService


def _wait_finished(service: LiveService, execution_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        doc = service.store.get(execution_id)
        if doc and doc["status"] in ("success", "failed"):
            return doc
        time.sleep(0.05)
    raise AssertionError(f"execution {execution_id} did not finish")


def test_update_triggers_a_run_list_and_get_read_it(
    odsl: Any, service: LiveService, token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    odsl.loginWithToken(token)
    odsl.update("process-exec", "private", {"name": "ECB_FX", "body": {"timeout": 5}})
    assert capsys.readouterr().out.strip() == "202"  # update() prints the status code

    listed = odsl.list("process-exec", "private", {"name": "ECB_FX", "_limit": 5})
    assert isinstance(listed, list) and len(listed) >= 1
    execution_id = listed[0]["_id"]
    assert listed[0]["runAs"] == "alice"
    assert listed[0]["trigger"] == "manual"

    finished = _wait_finished(service, execution_id)
    assert finished["status"] == "success"
    got = odsl.get("process-exec", "private", execution_id)
    assert got == finished
    assert got["loaderMessage"] == "Updated 32 series for 2021-07-01"
    assert service.store.get_meta(execution_id)["input"]["timeout"] == 5


def test_list_with_the_seed_filters(odsl: Any, service: LiveService, token: str) -> None:
    from procexec.engine.domain import Trigger
    from procexec.engine.trigger_service import new_execution

    def seed(name: str, status: str, start: str) -> str:
        doc = new_execution(
            service="ETL",
            name=name,
            environment="production",
            trigger=Trigger.SCHEDULED,
            reason="seeded",
            run_as="alice",
        )
        doc.update(status=status, start=start)
        service.store.insert(doc)
        return str(doc["_id"])

    inside = seed("SDK_SEED", "failed", "2021-07-19T00:00:00.000Z")
    last = seed("SDK_SEED", "success", "2021-07-23T23:59:59.999Z")
    seed("SDK_SEED", "failed", "2021-07-24T00:00:00.000Z")
    seed("SDK_SEED", "failed", "2021-07-18T23:59:59.999Z")

    odsl.loginWithToken(token)
    by_name = odsl.list("process-exec", "private", {"name": "SDK_SEED"})
    assert len(by_name) == 4
    ranged = odsl.list(
        "process-exec", "private", {"name": "SDK_SEED", "start": "range(2021-07-19,2021-07-23)"}
    )
    assert [doc["_id"] for doc in ranged] == [last, inside]
    failed = odsl.list(
        "process-exec", "private", {"status": "failed", "start": "range(2021-07-19,2021-07-23)"}
    )
    assert [doc["_id"] for doc in failed] == [inside]
    everything = odsl.list("process-exec", "all", {"name": "SDK_SEED"})
    assert len(everything) == 4
    assert odsl.list("process-exec", "public", {"name": "SDK_SEED"}) == []

    headers = odsl.headers("process-exec", "private", {"name": "SDK_SEED"})
    assert headers["x-total-count"] == "4"


def test_login_with_api_key(odsl: Any, service: LiveService, token: str) -> None:
    odsl.loginWithAPIKey("alice", token)
    listed = odsl.list("process-exec", "private", {"_limit": 1})
    assert isinstance(listed, list)
    assert int(odsl.headers("process-exec")["x-total-count"]) >= len(listed)


def test_api_key_of_another_user_is_refused(
    odsl: Any, token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    odsl.loginWithAPIKey("mallory", token)
    answer = odsl.list("process-exec", "private", {})
    out = capsys.readouterr().out
    assert "ODSL error 401: the key does not belong to user 'mallory'" in out
    assert "does not belong" in answer


def test_errors_reach_the_user_through_x_odsl_error(
    odsl: Any, token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    odsl.loginWithToken(token)
    odsl.get("process-exec", "private", "no-such-execution")
    assert (
        "ODSL error 404: no execution 'no-such-execution' in environment 'production'"
        in capsys.readouterr().out
    )
    odsl.list("process-exec", "private", {"start": "range(2021-07-19)"})
    assert "ODSL error 400: start: range() takes two values, got 1" in capsys.readouterr().out
    odsl.update("process-exec", "private", {"name": "NO_SUCH_PROCESS"})
    out = capsys.readouterr().out
    assert "ODSL error 404: unknown process 'NO_SUCH_PROCESS'" in out
    assert out.strip().endswith("404")


def test_bad_token_is_reported(odsl: Any, capsys: pytest.CaptureFixture[str]) -> None:
    odsl.loginWithToken("pe_not-a-token")
    odsl.list("process-exec", "private", {})
    assert "ODSL error 401: invalid token" in capsys.readouterr().out


def _count(service: LiveService) -> int:
    with sqlite3.connect(service.settings.data_dir / "procexec.db") as conn:
        value: int = conn.execute("SELECT count(*) FROM executions").fetchone()[0]
    return value


@pytest.mark.parametrize(
    ("trigger", "told"),
    [
        (
            {"name": "DEMO", "body": {"slep": 1}},
            "body.slep: unknown parameter (did you mean 'sleep'?); "
            "DEMO takes fail_in, fail_times, guard, log_lines, sleep",
        ),
        (
            {"name": "DEMO", "body": {"log_lines": 1.5}},
            "body.log_lines: Input should be a valid integer, got a number with a fractional "
            "part (got 1.5)",
        ),
        ({"name": "DEMO", "bdy": {"sleep": 1}}, "bdy: not a key of a trigger; it takes name, "),
        ({"name": "ECB_FX", "body": {"date": "2021-07-02"}}, "body.date: unknown parameter; "),
    ],
)
def test_a_misspelt_parameter_is_told_and_nothing_is_recorded(
    odsl: Any,
    service: LiveService,
    token: str,
    capsys: pytest.CaptureFixture[str],
    trigger: dict[str, Any],
    told: str,
) -> None:
    odsl.loginWithToken(token)
    before, dispatched = _count(service), len(service.threads)
    odsl.update("process-exec", "private", trigger)
    out = capsys.readouterr().out
    assert f"ODSL error 400: {told}" in out
    assert out.strip().endswith("400")
    assert _count(service) == before and len(service.threads) == dispatched


def test_a_process_s_parameters_are_read_with_get(odsl: Any, token: str) -> None:
    """The catalogue through the SDK: `get("process", None, NAME)` is `/api/process/v1/NAME`,
    the process's description, phases, schedule and its parameters' JSON Schema."""
    odsl.loginWithToken(token)
    process = odsl.get("process", None, "ECB_FX")
    assert process["description"] == "ECB euro foreign exchange reference rates"
    assert process["phases"] == ["EXTRACT", "TRANSFORM", "SEND", "LOAD"]
    assert process["schedule"] == "30 16 * * 1-5"
    parameters = process["parameters"]
    assert parameters["additionalProperties"] is False
    assert set(parameters["properties"]) == {"url", "timeout"}
    assert parameters["properties"]["timeout"]["type"] == "number"
