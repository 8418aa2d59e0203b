"""DEMO is bounded: `sleep` at most 600 s a phase, `guard` a name whose lock files live under
the data folder (never a path), every parameter checked at trigger time (a 400 naming it) and
again when a phase runs; every bundled process has a time limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from procexec import testing
from procexec.engine.errors import BadRequest
from procexec.engine.process import ProcessRegistry
from procexec.engine.query import parse_query
from procexec.engine.runner import PhaseRunner
from procexec.engine.settings import Settings
from procexec.engine.store.base import ExecutionStore, Update
from procexec.engine.trigger_service import TriggerService
from procexec.examples import DEMO, ECB_FX, ECB_FX_CROSS


@pytest.fixture
def triggers(sqlite_store: ExecutionStore, registry: ProcessRegistry) -> TriggerService:
    return TriggerService(sqlite_store, registry, lambda *_: None)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"sleep": 1e9}, r"sleep: Input should be less than or equal to 600 \(got 1000000000.0\)"),
        ({"sleep": 601}, "sleep: Input should be less than or equal to 600"),
        ({"sleep": -1}, "sleep: Input should be greater than or equal to 0"),
        ({"sleep": "nan"}, "sleep: Input should be less than or equal to 600"),
        ({"sleep": "soon"}, "sleep: Input should be a valid number"),
        ({"log_lines": 10**9}, "log_lines: Input should be less than or equal to 10000"),
        ({"log_lines": 1.5}, "log_lines: Input should be a valid integer, got a number with a"),
        ({"fail_times": "x"}, "fail_times: Input should be a valid integer"),
        (
            {"fail_in": "NOWHERE"},
            "fail_in: Input should be 'EXTRACT', 'TRANSFORM', 'SEND' or 'LOAD'",
        ),
        ({"guard": "/tmp"}, "guard: Value error, expected a name"),
        ({"guard": "../../etc"}, "guard: Value error, expected a name"),
        ({"guard": ".."}, "guard: Value error, expected a name"),
        ({"guard": "a/b"}, "guard: Value error, expected a name"),
        ({"guard": "a\\b"}, "guard: Value error, expected a name"),
        ({"guard": "a\n"}, "guard: Value error, expected a name"),
        ({"guard": ["x"]}, "guard: Input should be a valid string"),
        ({"slep": 1}, r"slep: unknown parameter \(did you mean 'sleep'\?\); DEMO takes fail_in,"),
    ],
)
def test_demo_refuses_bad_parameters_at_trigger_time(
    triggers: TriggerService, sqlite_store: ExecutionStore, body: dict[str, Any], why: str
) -> None:
    with pytest.raises(testing.BadRequest, match=f"^body.{why}"):
        testing.run(DEMO, body)
    with pytest.raises(BadRequest, match=f"^body.{why}"):
        triggers.trigger("DEMO", run_as="alice", environment="production", body=body)
    assert sqlite_store.list(parse_query({}))[0] == []  # nothing recorded


def test_demo_takes_values_in_pydantic_s_default_mode(
    triggers: TriggerService, sqlite_store: ExecutionStore
) -> None:
    """Strings of numbers are numbers, `true` is 1, `fail_in` any case: the values recorded
    are those the phases receive."""
    doc = triggers.trigger(
        "DEMO",
        run_as="alice",
        environment="production",
        body={"sleep": "0.5", "log_lines": "2", "fail_in": "load", "fail_times": True},
    )
    assert sqlite_store.get_meta(doc["_id"])["input"] == {
        "sleep": 0.5,
        "fail_in": "LOAD",
        "log_lines": 2,
        "fail_times": 1,
        "guard": None,
    }


def test_the_longest_sleep_is_accepted(triggers: TriggerService) -> None:
    triggers.trigger("DEMO", run_as="alice", environment="production", body={"sleep": 600})


def test_guard_lock_files_live_under_the_data_folder(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROCEXEC_DATA_DIR", str(settings.data_dir))  # the worker's settings
    run = testing.run(DEMO, {"guard": "bench", "log_lines": 1})
    assert run.status == "success", run.message
    assert run.log("EXTRACT") == ["info EXTRACT line 1 of 1", "info Completed EXTRACT"]
    folder = settings.data_dir / "guards" / "bench"
    assert folder.is_dir() and list(folder.iterdir()) == []  # each lock taken and given back
    assert folder.stat().st_mode & 0o777 == 0o700


def test_a_run_recorded_with_a_path_fails_before_touching_it(
    sqlite_store: ExecutionStore, registry: ProcessRegistry, tmp_path: Path
) -> None:
    """A run whose parameters were stored without the trigger's check (an older version, or
    written to the store directly) is held to it before its first phase runs."""
    target = tmp_path / "elsewhere"
    target.mkdir()
    triggers = TriggerService(sqlite_store, registry, lambda *_: None)
    doc = triggers.trigger("DEMO", run_as="alice", environment="production")
    sqlite_store.update(doc["_id"], Update(meta={"input": {"guard": str(target)}}))
    assert PhaseRunner(sqlite_store, registry, flush_interval=0.05).run(doc["_id"]) == "failed"
    final = sqlite_store.get(doc["_id"])
    assert final is not None
    assert final["message"].startswith(
        "Failed in EXTRACT: its parameters are refused: "
        "parameters.guard: Value error, expected a name"
    )
    assert final["phases"][0]["status"] == "failed"
    assert list(target.iterdir()) == []


def test_every_bundled_process_has_a_time_limit() -> None:
    assert DEMO.timeout == 4 * 600 + 600
    assert ECB_FX.timeout == 300
    assert ECB_FX_CROSS.timeout == 300
