"""PhaseRunner and TriggerService on a real SQLite store, with the bundled example processes."""

from __future__ import annotations

import copy
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from procexec import testing
from procexec.engine.domain import Trigger
from procexec.engine.errors import BadRequest, NotFound
from procexec.engine.process import Process, ProcessRegistry
from procexec.engine.query import parse_query
from procexec.engine.runner import PhaseRunner
from procexec.engine.store.base import ExecutionStore
from procexec.engine.store.sqlite import SQLiteStore
from procexec.engine.trigger_service import TriggerService
from procexec.examples.ecb_fx import ECB_FX, SAMPLE
from tests.http_files import FileServer
from tests.seed import seed_example

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LOG_STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z\[UTC\]"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
CRONTAB_REASON = "crontab(ECB_FX,Thu Jul 01 2021 16:30:00 GMT+0000 (Greenwich Mean Time))"

ECB_CURRENCIES = [
    "AUD", "BGN", "BRL", "CAD", "CHF", "CNY", "CZK", "DKK", "GBP", "HKD", "HRK", "HUF", "IDR",
    "ILS", "INR", "ISK", "JPY", "KRW", "MXN", "MYR", "NOK", "NZD", "PHP", "PLN", "RON", "RUB",
    "SEK", "SGD", "THB", "TRY", "USD", "ZAR",
]  # fmt: skip

#: the example document of the seed page (process-execution-api.md), verbatim
SEED_EXAMPLE: dict[str, Any] = seed_example()
SEED_SERIES: list[str] = SEED_EXAMPLE["data"]["series"]["2021-07-01"]


class Dispatched:
    """The dispatch seam of TriggerService: records what would go to the broker."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []

    def __call__(self, execution_id: str, delay: float, process: str | None = None) -> None:
        self.calls.append((execution_id, delay))


@pytest.fixture
def dispatched() -> Dispatched:
    return Dispatched()


@pytest.fixture
def triggers(
    sqlite_store: ExecutionStore, registry: ProcessRegistry, dispatched: Dispatched
) -> TriggerService:
    return TriggerService(sqlite_store, registry, dispatched)


@pytest.fixture
def runner(sqlite_store: ExecutionStore, registry: ProcessRegistry) -> PhaseRunner:
    return PhaseRunner(sqlite_store, registry, flush_interval=0.05)


def manual(triggers: TriggerService, name: str, body: dict[str, Any] | None = None) -> str:
    doc = triggers.trigger(name, run_as="alice", environment="production", body=body)
    execution_id: str = doc["_id"]
    return execution_id


def stored(store: ExecutionStore, execution_id: str) -> dict[str, Any]:
    doc = store.get(execution_id)
    assert doc is not None
    return doc


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def masked(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with its id, timestamps and log stamps replaced by what they must look like."""
    result = copy.deepcopy(doc)
    assert UUID.match(result["_id"]), result["_id"]
    result["_id"] = "<uuid>"
    for holder in (result, *result["phases"]):
        for key in ("start", "end"):
            assert TIMESTAMP.match(holder[key]), (key, holder[key])
            holder[key] = "<timestamp>"
    for phase in result["phases"]:
        phase["log"] = [re.sub(f"^{LOG_STAMP} ", "<stamp> ", line) for line in phase["log"]]
    return result


# --- ECB_FX as on the seed page --------------------------------------------------------------


def test_ecb_fx_run_matches_the_seed_example_field_for_field(
    triggers: TriggerService,
    runner: PhaseRunner,
    sqlite_store: ExecutionStore,
    dispatched: Dispatched,
) -> None:
    accepted = triggers.trigger(
        "ECB_FX",
        run_as="com_walkfares",
        environment="production",
        trigger=Trigger.SCHEDULED,
        reason=CRONTAB_REASON,
    )
    execution_id = accepted["_id"]
    assert dispatched.calls == [(execution_id, 0.0)]
    assert stored(sqlite_store, execution_id)["status"] == "triggered"

    assert runner.run(execution_id) == "success"
    doc = stored(sqlite_store, execution_id)

    # same keys in the same order, at the top level and in every phase
    assert list(doc) == list(SEED_EXAMPLE)
    assert [list(phase) for phase in doc["phases"]] == [
        list(phase) for phase in SEED_EXAMPLE["phases"]
    ]
    # and the same values, but for the id and the moments
    assert masked(doc) == masked(SEED_EXAMPLE)

    assert doc["status"] == "success"
    assert doc["message"] == "Completed Successfully"
    assert [p["name"] for p in doc["phases"]] == ["EXTRACT", "TRANSFORM", "SEND", "LOAD"]
    for phase in doc["phases"]:
        assert phase["status"] == "success"
        assert phase["message"] == f"Completed {phase['name']}"
    for phase in doc["phases"][:3]:
        assert len(phase["log"]) == 1
        assert re.match(f"^{LOG_STAMP} info Completed {phase['name']}$", phase["log"][0])
    assert re.match(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z\[UTC\] info Completed EXTRACT$",
        doc["phases"][0]["log"][0],
    )
    assert doc["phases"][3]["log"] == ["Updated 32 series for 2021-07-01"]
    assert doc["loaderMessage"] == "Updated 32 series for 2021-07-01"
    assert doc["data"]["series"]["2021-07-01"] == SEED_SERIES
    assert doc["data"] == {"curves": {}, "series": {"2021-07-01": SEED_SERIES}}
    assert doc["data"]["curves"] == {}
    assert [f"#ECB_FX.EUR{ccy}:SPOT" for ccy in ECB_CURRENCIES] == SEED_SERIES

    # moments run forwards: the run holds its phases, each phase starts after the last ended
    moments = [doc["start"]]
    for phase in doc["phases"]:
        moments += [phase["start"], phase["end"]]
    moments.append(doc["end"])
    assert moments == sorted(moments)

    meta = sqlite_store.get_meta(execution_id)
    assert meta["worker"].startswith("local#")  # the worker id and its claim's fencing token
    assert TIMESTAMP.match(meta["heartbeat"])
    assert meta["input"] == {"url": None, "timeout": 30}


def test_ecb_fx_loads_the_32_series_with_the_ecb_values() -> None:
    with testing.temporary_store() as store:
        run = testing.run(ECB_FX, store=store)
        assert run.status == "success", run.message
        assert store.get_series("staging", "#ECB_FX.EURUSD:SPOT") == {}  # its environment's only
    assert run.series["#ECB_FX.EURUSD:SPOT"] == {"2021-07-01": 1.1884}
    assert run.series["#ECB_FX.EURJPY:SPOT"] == {"2021-07-01": 132.42}
    assert run.series["#ECB_FX.EURGBP:SPOT"] == {"2021-07-01": 0.86033}
    assert list(run.series) == SEED_SERIES
    sample = SAMPLE.read_text()
    for series_id in SEED_SERIES:
        values = run.series[series_id]
        assert list(values) == ["2021-07-01"], series_id
        currency = series_id[len("#ECB_FX.EUR") : -len(":SPOT")]
        match = re.search(rf"currency='{currency}' rate='([0-9.]+)'", sample)
        assert match is not None, currency
        assert values["2021-07-01"] == float(match.group(1))


def test_ecb_fx_in_another_environment_writes_there() -> None:
    with testing.temporary_store() as store:
        run = testing.run(ECB_FX, environment="staging", store=store)
        assert store.get_series("staging", "#ECB_FX.EURUSD:SPOT") == {"2021-07-01": 1.1884}
        assert store.get_series("production", "#ECB_FX.EURUSD:SPOT") == {}
        assert store.get(run["_id"], environment="production") is None
    assert run["environment"] == "staging"


def test_ecb_fx_with_a_malformed_file_fails_in_transform(file_server: FileServer) -> None:
    broken = file_server.serve("broken.xml", "<gesmes:Envelope><Cube><Cube time='2021-07-01'>")
    run = testing.run(ECB_FX, {"url": broken})
    assert run.status == "failed"
    assert run.message.startswith("Failed in TRANSFORM: ParseError: ")
    assert [(p["name"], p["status"]) for p in run["phases"]] == [
        ("EXTRACT", "success"),
        ("TRANSFORM", "failed"),
    ]
    assert run.phase("TRANSFORM")["message"].startswith("ParseError: ")
    assert "Traceback (most recent call last)" in run.log("TRANSFORM")[-1]
    assert TIMESTAMP.match(run["end"])
    assert "data" not in run and "loaderMessage" not in run
    assert run.series == {}


def test_ecb_fx_with_xml_that_is_not_ecb_rates_fails_in_transform(
    file_server: FileServer,
) -> None:
    other = file_server.serve(
        "other.xml", "<?xml version='1.0'?><rates><rate currency='USD'>1.1</rate></rates>"
    )
    run = testing.run(ECB_FX, {"url": other})
    assert run.message == (
        "Failed in TRANSFORM: ValueError: no <Cube time='…'> element: "
        "not an ECB reference rates file"
    )


def test_ecb_fx_body_url_overrides_the_bundled_sample(file_server: FileServer) -> None:
    rates = file_server.serve(
        "eurofxref-2021-07-02.xml",
        SAMPLE.read_text()
        .replace("time='2021-07-01'", "time='2021-07-02'")
        .replace("rate='1.1884'", "rate='1.1851'"),
    )
    with testing.temporary_store() as store:
        run = testing.run(ECB_FX, {"url": rates}, store=store)
        assert store.get_meta(run["_id"])["input"] == {"url": rates, "timeout": 30}
    assert run.status == "success", run.message
    assert run["loaderMessage"] == "Updated 32 series for 2021-07-02"
    assert run["data"]["series"] == {"2021-07-02": SEED_SERIES}
    assert run.series["#ECB_FX.EURUSD:SPOT"] == {"2021-07-02": 1.1851}


# --- failures ------------------------------------------------------------------------------


def test_demo_fail_in_fails_the_phase_and_the_run(
    triggers: TriggerService, runner: PhaseRunner, sqlite_store: ExecutionStore
) -> None:
    execution_id = manual(triggers, "DEMO", {"fail_in": "send"})
    assert runner.run(execution_id) == "failed"
    doc = stored(sqlite_store, execution_id)
    error = "RuntimeError: failure requested in SEND (fail_in=SEND)"  # validated: upper case
    assert doc["status"] == "failed"
    assert doc["message"] == f"Failed in SEND: {error}"
    assert TIMESTAMP.match(doc["end"])
    # later phases never ran
    assert [(p["name"], p["status"]) for p in doc["phases"]] == [
        ("EXTRACT", "success"),
        ("TRANSFORM", "success"),
        ("SEND", "failed"),
    ]
    send = doc["phases"][2]
    assert send["message"] == error
    assert TIMESTAMP.match(send["end"])
    assert len(send["log"]) == 2
    assert re.match(f"^{LOG_STAMP} info SEND line 1 of 1$", send["log"][0])
    assert re.match(f"^{LOG_STAMP} error Traceback \\(most recent call last\\):\n", send["log"][1])
    assert 'in _work\n    raise RuntimeError(f"failure requested' in send["log"][1]
    assert send["log"][1].endswith(f"\n{error}")
    assert "data" not in doc and "loaderMessage" not in doc


def test_unknown_process_at_run_time_fails_clearly(
    sqlite_store: ExecutionStore, runner: PhaseRunner, dispatched: Dispatched
) -> None:
    # accepted by a service that knew GONE, run by a worker that does not
    gone = Process("GONE")
    gone.phase("EXTRACT")(lambda ctx, previous: None)
    elsewhere = TriggerService(sqlite_store, ProcessRegistry([gone]), dispatched)
    execution_id = elsewhere.trigger("GONE", run_as="alice", environment="production")["_id"]
    assert "GONE" not in runner.registry

    assert runner.run(execution_id) == "failed"
    doc = stored(sqlite_store, execution_id)
    assert doc["status"] == "failed"
    assert doc["message"] == "Unknown process 'GONE' on worker local"
    assert doc["phases"] == []
    assert TIMESTAMP.match(doc["end"])


def test_a_phase_that_warns_ends_the_run_with_warning(sqlite_store: ExecutionStore) -> None:
    careful = Process("CAREFUL", defaults={"start": 1})

    @careful.phase("EXTRACT")
    def extract(ctx: Any, previous: Any) -> int:
        assert previous is None
        return int(ctx.params["start"]) + 1

    @careful.phase("LOAD")
    def load(ctx: Any, previous: Any) -> int:
        ctx.warning(f"got {previous}")
        ctx.loader_message(f"Loaded {previous}")
        return int(previous)

    registry = ProcessRegistry([careful])
    triggers = TriggerService(sqlite_store, registry, lambda execution_id, delay: None)
    execution_id = triggers.trigger(
        "CAREFUL", run_as="alice", environment="production", body={"start": 41}
    )["_id"]
    assert PhaseRunner(sqlite_store, registry).run(execution_id) == "warning"
    doc = stored(sqlite_store, execution_id)
    assert doc["status"] == "warning"
    assert doc["message"] == "Completed with warnings"
    assert doc["loaderMessage"] == "Loaded 42"
    assert len(doc["phases"][1]["log"]) == 2
    assert re.match(f"^{LOG_STAMP} warning got 42$", doc["phases"][1]["log"][0])
    assert doc["phases"][1]["log"][1] == "Loaded 42"
    assert "data" not in doc


# --- claiming ----------------------------------------------------------------------------------


def test_a_second_run_of_the_same_execution_does_nothing(
    triggers: TriggerService, runner: PhaseRunner, sqlite_store: ExecutionStore
) -> None:
    execution_id = manual(triggers, "DEMO")
    assert runner.run(execution_id) == "success"
    before = stored(sqlite_store, execution_id)
    meta_before = sqlite_store.get_meta(execution_id)

    assert runner.run(execution_id) is None
    other_worker = PhaseRunner(sqlite_store, runner.registry, worker_id="other")
    assert other_worker.run(execution_id) is None
    assert stored(sqlite_store, execution_id) == before
    assert sqlite_store.get_meta(execution_id) == meta_before
    assert runner.run("no-such-execution") is None


def _race(
    worker: PhaseRunner,
    barrier: threading.Barrier,
    execution_id: str,
    results: dict[str, str | None],
) -> None:
    barrier.wait(timeout=30)
    results[worker.worker_id] = worker.run(execution_id)


def test_concurrent_runs_of_one_execution_claim_it_once(
    triggers: TriggerService, registry: ProcessRegistry, sqlite_store: ExecutionStore
) -> None:
    assert isinstance(sqlite_store, SQLiteStore)
    for _ in range(5):
        execution_id = manual(triggers, "DEMO")
        # two workers, each with its own connection to the same file
        workers = [
            PhaseRunner(SQLiteStore(sqlite_store.path), registry, worker_id=f"w{number}")
            for number in (1, 2)
        ]
        barrier = threading.Barrier(len(workers))
        results: dict[str, str | None] = {}
        threads = [
            threading.Thread(target=_race, args=(worker, barrier, execution_id, results))
            for worker in workers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
        assert sorted(results.values(), key=str) == [None, "success"]
        winner = next(name for name, result in results.items() if result == "success")
        assert sqlite_store.get_meta(execution_id)["worker"].startswith(f"{winner}#")
        doc = stored(sqlite_store, execution_id)
        assert [p["name"] for p in doc["phases"]] == ["EXTRACT", "TRANSFORM", "SEND", "LOAD"]
        for worker in workers:
            worker.store.close()


# --- streaming -----------------------------------------------------------------------------------


def test_a_running_phase_and_its_growing_log_are_visible_before_the_run_ends(
    triggers: TriggerService, runner: PhaseRunner, sqlite_store: ExecutionStore
) -> None:
    execution_id = manual(triggers, "DEMO", {"sleep": 1.2, "log_lines": 4})
    outcome: list[str | None] = []
    thread = threading.Thread(target=lambda: outcome.append(runner.run(execution_id)))
    thread.start()

    #: (phase index, its log) each time a reader saw a running phase
    seen: list[tuple[int, list[str]]] = []

    def grew() -> bool:
        doc = stored(sqlite_store, execution_id)
        running = [i for i, phase in enumerate(doc["phases"]) if phase["status"] == "running"]
        if running and not outcome:
            assert doc["status"] == "running"
            assert "end" not in doc
            index = running[-1]
            seen.append((index, list(doc["phases"][index]["log"])))
        # one phase seen running with some lines, and later, still running, with more
        sizes: dict[int, set[int]] = {}
        for index, log in seen:
            if log:
                sizes.setdefault(index, set()).add(len(log))
        return any(len(lengths) >= 2 for lengths in sizes.values())

    try:
        observed = wait_for(lambda: grew() or not thread.is_alive(), timeout=120)
        assert observed
    finally:
        thread.join(timeout=120)
    assert not thread.is_alive()
    assert outcome == ["success"]
    assert any(len(log) >= 1 for _, log in seen), "no running phase with log lines was seen"
    summary = [(index, len(log)) for index, log in seen]
    assert grew(), f"no phase log was seen growing while running: {summary}"

    final = stored(sqlite_store, execution_id)
    for index, log in seen:
        # what readers saw is the start of the final log, in order
        assert final["phases"][index]["log"][: len(log)] == log
    for phase in final["phases"]:
        lines = [re.sub(f"^{LOG_STAMP} ", "", line) for line in phase["log"]]
        name = phase["name"]
        assert lines == [f"info {name} line {n} of 4" for n in (1, 2, 3, 4)] + [
            f"info Completed {name}"
        ]


# --- parameters and triggering -------------------------------------------------------------------


def test_body_overrides_the_defaults(
    triggers: TriggerService, runner: PhaseRunner, sqlite_store: ExecutionStore
) -> None:
    execution_id = manual(triggers, "DEMO", {"log_lines": 3})
    assert sqlite_store.get_meta(execution_id)["input"] == {
        "sleep": 0,
        "fail_in": None,
        "log_lines": 3,
        "fail_times": None,
        "guard": None,
    }
    assert runner.run(execution_id) == "success"
    for phase in stored(sqlite_store, execution_id)["phases"]:
        lines = [re.sub(f"^{LOG_STAMP} ", "", line) for line in phase["log"]]
        assert lines == [f"info {phase['name']} line {n} of 3" for n in (1, 2, 3)] + [
            f"info Completed {phase['name']}"
        ]

    default_id = manual(triggers, "DEMO")
    assert sqlite_store.get_meta(default_id)["input"] == {
        "sleep": 0,
        "fail_in": None,
        "log_lines": 1,
        "fail_times": None,
        "guard": None,
    }


def test_trigger_records_a_triggered_execution_then_dispatches(
    triggers: TriggerService, sqlite_store: ExecutionStore, dispatched: Dispatched
) -> None:
    doc = triggers.trigger("DEMO", run_as="alice", environment="staging", delay=2.5)
    assert dispatched.calls == [(doc["_id"], 2.5)]
    assert stored(sqlite_store, doc["_id"]) == doc
    assert list(doc) == [
        "_id", "service", "name", "environment", "trigger", "status", "message", "reason",
        "start", "runAs", "phases",
    ]  # fmt: skip
    assert UUID.match(doc["_id"])
    assert TIMESTAMP.match(doc["start"])
    assert {k: v for k, v in doc.items() if k not in ("_id", "start")} == {
        "service": "ETL",
        "name": "DEMO",
        "environment": "staging",
        "trigger": "manual",
        "status": "triggered",
        "message": "Triggered",
        "reason": "Manually triggered by alice",
        "runAs": "alice",
        "phases": [],
    }
    again = triggers.trigger("DEMO", run_as="alice", environment="staging")
    assert again["_id"] != doc["_id"]


def test_trigger_refuses_unknown_processes_and_bad_bodies(
    triggers: TriggerService, sqlite_store: ExecutionStore, dispatched: Dispatched
) -> None:
    with pytest.raises(NotFound, match="unknown process 'NOPE'"):
        triggers.trigger("NOPE", run_as="alice", environment="production")
    with pytest.raises(BadRequest, match=r"^body: "):
        triggers.trigger(
            "DEMO",
            run_as="alice",
            environment="production",
            body=["not", "an", "object"],  # type: ignore[arg-type]
        )
    assert dispatched.calls == []
    assert sqlite_store.list(parse_query([])) == ([], 0)


def test_an_undeliverable_trigger_is_still_recorded(
    sqlite_store: ExecutionStore, registry: ProcessRegistry
) -> None:
    def broker_down(execution_id: str, delay: float) -> None:
        raise ConnectionError("broker unreachable")

    triggers = TriggerService(sqlite_store, registry, broker_down)
    doc = triggers.trigger("DEMO", run_as="alice", environment="production")
    assert stored(sqlite_store, doc["_id"])["status"] == "triggered"
    # a worker that gets it later still runs it
    assert PhaseRunner(sqlite_store, registry).run(doc["_id"]) == "success"
