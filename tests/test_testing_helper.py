"""`procexec.testing.run`: a process run in the test, to its end, on a temporary store that is
removed afterwards (or the store given), whatever `PROCEXEC_*` say; parameters checked as a
trigger's; follow-up runs only when asked."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

import procexec
from procexec import Observation, PhaseContext, Process, testing
from procexec.engine.process import ProcessRegistry
from procexec.engine.store.sqlite import SQLiteStore
from procexec.examples import DEMO, ECB_FX, ECB_FX_CROSS


def greeter(name: str = "GREET") -> Process:
    process = Process(name, defaults={"who": "world", "dates": ["2024-05-02"]})

    @process.phase("EXTRACT")
    def extract(ctx: PhaseContext, _: Any) -> str:
        ctx.info(f"hello, {ctx.params['who']}")
        return str(ctx.params["who"])

    @process.phase("LOAD")
    def load(ctx: PhaseContext, who: str) -> int:
        rows = [Observation(f"#GREET.{who.upper()}", date, 1.0) for date in ctx.params["dates"]]
        ctx.loader_message(f"Greeted {who}")
        return ctx.load_series(rows)

    return process


def test_everything_an_author_uses_is_imported_from_procexec() -> None:
    from procexec.engine.context import PhaseContext as EnginePhaseContext
    from procexec.engine.process import Process as EngineProcess
    from procexec.engine.store.base import Observation as EngineObservation

    assert (procexec.Process, procexec.PhaseContext) == (EngineProcess, EnginePhaseContext)
    assert procexec.Observation is EngineObservation
    assert procexec.testing is testing and testing.run is procexec.testing.run
    assert set(procexec.__all__) == {"Observation", "PhaseContext", "Process", "testing"}
    with pytest.raises(AttributeError):
        _ = procexec.nothing  # type: ignore[attr-defined]


def test_a_run_returns_its_finished_document() -> None:
    run = testing.run(greeter(), {"who": "tests"})
    assert isinstance(run, dict)
    assert run.status == run["status"] == "success"
    assert run.message == "Completed Successfully"
    assert [phase["name"] for phase in run["phases"]] == ["EXTRACT", "LOAD"]
    assert run.log("EXTRACT") == ["info hello, tests", "info Completed EXTRACT"]
    assert run.log("load") == ["Greeted tests"]
    assert run["loaderMessage"] == "Greeted tests"
    assert run["reason"] == "Manually triggered by test" and run["environment"] == "production"
    assert run.results == {"EXTRACT": "tests", "LOAD": 1}
    assert run.series == {"#GREET.TESTS": {"2024-05-02": 1.0}}
    assert run.document == dict(run) and run.follow_ups == []
    with pytest.raises(
        KeyError, match=r"no phase 'SEND' in this run \(it ran \['EXTRACT', 'LOAD'\]\)"
    ):
        run.phase("SEND")


def test_a_failed_run_is_returned_not_raised() -> None:
    run = testing.run(DEMO, {"fail_in": "LOAD"})
    assert run.status == "failed"
    assert run.message == "Failed in LOAD: RuntimeError: failure requested in LOAD (fail_in=LOAD)"
    assert "LOAD" not in run.results and run.results["SEND"] == 3
    assert run.log("LOAD")[-1].startswith("error Traceback (most recent call last):")


def test_parameters_are_checked_as_a_trigger_checks_them() -> None:
    with pytest.raises(
        testing.BadRequest, match=r"^body\.sleep: Input should be greater than or equal to 0"
    ):
        testing.run(DEMO, {"sleep": -1})
    with pytest.raises(testing.BadRequest, match=r"^body\.slep: unknown parameter"):
        testing.run(DEMO, {"slep": 1})
    with pytest.raises(testing.BadRequest, match="must be a JSON object"):
        testing.run(DEMO, ["sleep"])  # type: ignore[arg-type]
    with pytest.raises(testing.NotFound, match="unknown process 'NOPE'"):
        testing.run("NOPE", registry=[DEMO])


def test_a_name_is_looked_up_in_the_registry_given() -> None:
    assert testing.run("DEMO", registry=ProcessRegistry([DEMO])).status == "success"
    assert testing.run("GREET", registry=[greeter(), DEMO]).results["EXTRACT"] == "world"
    with pytest.raises(ValueError, match="two processes are called DEMO"):
        testing.run(Process("DEMO", phases=DEMO.phases), registry=[DEMO])


def test_it_writes_into_no_store_of_the_settings_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = tmp_path / "service"
    monkeypatch.setenv("PROCEXEC_DATA_DIR", str(service))
    monkeypatch.setenv("PROCEXEC_STORE_URL", f"sqlite:///{service / 'procexec.db'}")
    monkeypatch.setenv("PROCEXEC_PROCESSES", "no.such.module")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    assert testing.run(greeter()).status == "success"
    assert not service.exists()
    assert list(temporary.iterdir()) == []


def test_a_store_given_is_kept_with_what_the_run_wrote(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "kept.db")
    try:
        run = testing.run(greeter(), {"who": "kept"}, store=store, environment="staging")
        assert store.get(run["_id"]) == run.document
        assert store.get_series("staging", "#GREET.KEPT") == {"2024-05-02": 1.0}
    finally:
        store.close()


def test_follow_up_runs_only_when_asked() -> None:
    registry = [ECB_FX_CROSS]
    alone = testing.run(ECB_FX, registry=registry)
    assert alone.status == "success" and alone.follow_ups == []
    with testing.temporary_store() as store:
        chained = testing.run(ECB_FX, registry=registry, store=store, follow_ups=True)
        assert [run["name"] for run in chained.follow_ups] == ["ECB_FX_CROSS"]
        cross = chained.follow_ups[0]
        assert cross.status == "success", cross.message
        assert cross["reason"] == f"subscription(ECB_FX,{chained['_id']})"
        assert cross.series["#ECB_FX_CROSS.GBPUSD:SPOT"] == {
            "2021-07-01": round(1.1884 / 0.86033, 6)
        }
        assert store.get(cross["_id"]) == cross.document


class KeyedParams(BaseModel):
    who: str = "world"
    api_key: SecretStr
    day: date = date(2024, 5, 2)


def keyed() -> Process:
    process = Process("KEYED", params=KeyedParams)

    @process.phase("EXTRACT")
    def extract(ctx: PhaseContext, _: Any) -> tuple[str, str, str]:
        return ctx.params.who, ctx.params.api_key.get_secret_value(), ctx.params.day.isoformat()

    return process


def test_parameters_may_be_an_instance_of_the_model() -> None:
    given = KeyedParams(who="tests", api_key=SecretStr("s3cr3t"), day=date(2024, 1, 31))
    run = testing.run(keyed(), given)
    assert run.status == "success", run.message
    assert run.results["EXTRACT"] == ("tests", "s3cr3t", "2024-01-31")  # the secret in clear
    assert testing.run(keyed(), {"api_key": "x"}).results["EXTRACT"] == ("world", "x", "2024-05-02")
    assert testing.run(DEMO, DEMO.params(log_lines=3)).log("EXTRACT")[:3] == [  # type: ignore[misc]
        "info EXTRACT line 1 of 3",
        "info EXTRACT line 2 of 3",
        "info EXTRACT line 3 of 3",
    ]


def test_a_subscribed_process_is_given_its_subscription() -> None:
    with testing.temporary_store() as store:
        loaded = testing.run(ECB_FX, store=store)
        ids = loaded["data"]["series"]["2021-07-01"]
        cross = testing.run(
            ECB_FX_CROSS, store=store, subscription={"series": {"2021-07-01": ids}, "curves": {}}
        )
    assert cross.status == "success", cross.message
    assert cross["trigger"] == "subscription"
    assert cross.series["#ECB_FX_CROSS.GBPUSD:SPOT"] == {"2021-07-01": round(1.1884 / 0.86033, 6)}
    # without one, as a manual trigger of it: nothing to derive
    alone = testing.run(ECB_FX_CROSS)
    assert alone.status == "failed" and alone["trigger"] == "manual"
    assert "no subscribed series dates" in alone.message


def test_a_follower_is_given_its_upstream_run() -> None:
    seen: list[Any] = []
    follower = Process("AFTER", follows={"BEFORE": ("success",)})

    @follower.phase("EXTRACT")
    def extract(ctx: PhaseContext, _: Any) -> None:
        seen.append((ctx.upstream, ctx.subscription, dict(ctx.params)))

    upstream = {"_id": "e1", "name": "BEFORE", "status": "success"}
    assert testing.run(follower, upstream=upstream)["trigger"] == "subscription"
    assert seen == [(upstream, None, {"upstream": upstream})]


def test_the_service_keys_are_not_parameters() -> None:
    with pytest.raises(testing.BadRequest, match=r"^body\.subscription: reserved"):
        testing.run(ECB_FX_CROSS, {"subscription": {"series": {}}})
