"""Runs that trigger runs: data subscriptions, followers of an outcome, loops cut.

A real SQLite store and the real PhaseRunner with a TriggerService; only the broker is replaced,
by a recorder of what would be dispatched (each recorded run is then run by the test itself).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procexec.engine.context import DataUpdates, PhaseContext
from procexec.engine.process import Process, ProcessRegistry
from procexec.engine.query import parse_query
from procexec.engine.runner import PhaseRunner
from procexec.engine.store.base import Observation, Update
from procexec.engine.store.sqlite import SQLiteStore
from procexec.engine.subscriptions import follow_up_id, follow_ups
from procexec.engine.trigger_service import TriggerService
from procexec.examples.ecb_fx import ECB_FX
from procexec.examples.ecb_fx_cross import ECB_FX_CROSS
from tests.http_files import FileServer

ECB_CURRENCIES = [
    "AUD", "BGN", "BRL", "CAD", "CHF", "CNY", "CZK", "DKK", "GBP", "HKD", "HRK", "HUF", "IDR",
    "ILS", "INR", "ISK", "JPY", "KRW", "MXN", "MYR", "NOK", "NZD", "PHP", "PLN", "RON", "RUB",
    "SEK", "SGD", "THB", "TRY", "USD", "ZAR",
]  # fmt: skip
ECB_IDS = [f"#ECB_FX.EUR{currency}:SPOT" for currency in ECB_CURRENCIES]
#: the cross rates of 2021-07-01 from the bundled sample, each EUR<quote> / EUR<base>, 6 places
CROSS_RATES = {
    "GBPUSD": 1.38133,  # 1.1884 / 0.86033
    "USDJPY": 111.427129,  # 132.42 / 1.1884
    "USDCHF": 0.924352,  # 1.0985 / 1.1884
    "AUDUSD": 0.750442,  # 1.1884 / 1.5836
    "USDCAD": 1.236789,  # 1.4698 / 1.1884
    "GBPJPY": 153.917683,  # 132.42 / 0.86033
}
LOOP_CUT = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z\[UTC\] info "
    r"Not triggering (\S+): it is upstream of this run \(loop cut\)$"
)


class Dispatched:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []

    def __call__(self, execution_id: str, delay: float, process: str | None = None) -> None:
        self.calls.append((execution_id, delay))

    @property
    def ids(self) -> list[str]:
        return [execution_id for execution_id, _ in self.calls]


class Rig:
    """A store, a registry, a trigger service and a runner that share them."""

    def __init__(self, path: Path, registry: ProcessRegistry) -> None:
        self.store = SQLiteStore(path)
        self.registry = registry
        self.dispatched = Dispatched()
        self.triggers = TriggerService(self.store, registry, self.dispatched)
        self.runner = PhaseRunner(self.store, registry, flush_interval=0.05, triggers=self.triggers)

    def manual(self, name: str, body: dict[str, Any] | None = None) -> str:
        doc = self.triggers.trigger(name, run_as="alice", environment="production", body=body)
        execution_id: str = doc["_id"]
        return execution_id

    def doc(self, execution_id: str) -> dict[str, Any]:
        doc = self.store.get(execution_id)
        assert doc is not None, execution_id
        return doc

    def of(self, name: str) -> list[dict[str, Any]]:
        docs, _ = self.store.list(parse_query([("name", name), ("_limit", "-1")]))
        return docs

    def run_all(self, limit: int = 20) -> list[str]:
        """Run every dispatched execution, and those they dispatch, in order; returns the ids."""
        ran: list[str] = []
        while len(ran) < len(self.dispatched.ids):
            assert len(ran) < limit, f"more than {limit} runs: a loop? {ran}"
            execution_id = self.dispatched.ids[len(ran)]
            self.runner.run(execution_id)
            ran.append(execution_id)
        return ran


@pytest.fixture
def rig_factory(tmp_path: Path) -> Iterator[Any]:
    rigs: list[Rig] = []

    def make(*processes: Process) -> Rig:
        rig = Rig(tmp_path / "procexec.db", ProcessRegistry(processes))
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.store.close()


@pytest.fixture
def ecb(rig_factory: Any) -> Rig:
    rig: Rig = rig_factory(ECB_FX, ECB_FX_CROSS)
    return rig


def cuts(doc: dict[str, Any]) -> list[str]:
    """The processes whose loop cut the last phase of a run logged."""
    return [match[1] for line in doc["phases"][-1]["log"] if (match := LOOP_CUT.match(line))]


# --- ECB_FX → ECB_FX_CROSS ------------------------------------------------------------------


def test_ecb_fx_triggers_exactly_one_ecb_fx_cross_with_the_fulfilled_subscription(
    ecb: Rig,
) -> None:
    upstream = ecb.manual("ECB_FX")
    assert ecb.runner.run(upstream) == "success"
    assert ecb.doc(upstream)["status"] == "success"
    crosses = ecb.of("ECB_FX_CROSS")
    assert len(crosses) == 1
    cross = crosses[0]
    assert cross["_id"] == follow_up_id(upstream, "ECB_FX_CROSS")
    assert cross["trigger"] == "subscription"
    assert cross["reason"] == f"subscription(ECB_FX,{upstream})"
    assert cross["status"] == "triggered"
    assert cross["runAs"] == "alice"  # the upstream's user
    assert cross["environment"] == "production"
    assert cross["service"] == "ETL"
    # recorded, then dispatched once, after the upstream's final status
    assert ecb.dispatched.ids == [upstream, cross["_id"]]
    meta = ecb.store.get_meta(cross["_id"])
    assert meta["input"] == {
        "subscription": {"series": {"2021-07-01": ECB_IDS}, "curves": {}},
        "upstream": {"_id": upstream, "name": "ECB_FX", "status": "success"},
    }
    assert meta["chain"] == ["ECB_FX"]
    assert cuts(ecb.doc(upstream)) == []


def test_ecb_fx_cross_succeeds_and_loads_its_six_cross_series(ecb: Rig) -> None:
    upstream = ecb.manual("ECB_FX")
    ran = ecb.run_all()
    assert len(ran) == 2
    cross = ecb.doc(ran[1])
    assert cross["name"] == "ECB_FX_CROSS"
    assert cross["status"] == "success", cross
    assert [phase["name"] for phase in cross["phases"]] == ["EXTRACT", "TRANSFORM", "SEND", "LOAD"]
    assert cross["loaderMessage"] == "Updated 6 series for 2021-07-01"
    cross_ids = [f"#ECB_FX_CROSS.{pair}:SPOT" for pair in CROSS_RATES]
    assert cross["data"] == {"curves": {}, "series": {"2021-07-01": cross_ids}}
    for pair, rate in CROSS_RATES.items():
        assert ecb.store.get_series("production", f"#ECB_FX_CROSS.{pair}:SPOT") == {
            "2021-07-01": rate
        }, pair
    assert ecb.store.get_series("production", "#ECB_FX_CROSS.GBPUSD:SPOT")["2021-07-01"] == round(
        1.1884 / 0.86033, 6
    )
    # the cross series match no subscription: the chain ends here
    assert ecb.dispatched.ids == [upstream, cross["_id"]]
    assert len(ecb.of("ECB_FX")) == 1


def test_a_failed_ecb_fx_triggers_no_subscriber(ecb: Rig, file_server: FileServer) -> None:
    upstream = ecb.manual("ECB_FX", {"url": f"{file_server.url}/missing.xml"})  # a 404
    assert ecb.runner.run(upstream) == "failed"
    assert ecb.of("ECB_FX_CROSS") == []
    assert ecb.dispatched.ids == [upstream]


def test_follow_ups_are_recorded_once_when_the_upstream_finishes_again(ecb: Rig) -> None:
    """A second finish of the same upstream run (a redelivered or recovered run, or another
    runner) records no second follow-up and dispatches nothing again."""
    upstream = ecb.manual("ECB_FX")
    assert ecb.runner.run(upstream) == "success"
    cross_id = follow_up_id(upstream, "ECB_FX_CROSS")
    # the upstream is handed back as if its worker had been lost, and runs again elsewhere
    assert ecb.store.update(upstream, Update(set={"status": "triggered", "phases": []}))
    other = PhaseRunner(ecb.store, ecb.registry, flush_interval=0.05, triggers=ecb.triggers)
    assert other.run(upstream) == "success"
    assert [doc["_id"] for doc in ecb.of("ECB_FX_CROSS")] == [cross_id]
    assert ecb.dispatched.ids == [upstream, cross_id]
    # and once the follow-up has run, a third finish still leaves it alone
    assert ecb.runner.run(cross_id) == "success"
    assert ecb.store.update(upstream, Update(set={"status": "triggered", "phases": []}))
    assert ecb.runner.run(upstream) == "success"
    assert [doc["status"] for doc in ecb.of("ECB_FX_CROSS")] == ["success"]
    assert ecb.dispatched.ids == [upstream, cross_id]


def test_each_upstream_run_triggers_its_own_follow_up(ecb: Rig) -> None:
    first, second = ecb.manual("ECB_FX"), ecb.manual("ECB_FX")
    ecb.runner.run(first)
    ecb.runner.run(second)
    reasons = sorted(doc["reason"] for doc in ecb.of("ECB_FX_CROSS"))
    assert reasons == sorted([f"subscription(ECB_FX,{first})", f"subscription(ECB_FX,{second})"])


# --- test processes ----------------------------------------------------------------------------


def _ok(ctx: PhaseContext, previous: Any) -> str:
    if ctx.params.get("fail"):
        raise RuntimeError("failure requested")
    return "ok"


def simple(name: str, **options: Any) -> Process:
    """A one-phase process; `{"fail": true}` in its input makes it fail."""
    definition = Process(name, defaults={"fail": False}, **options)
    definition.phase("LOAD")(_ok)
    return definition


def loader(name: str, ids: list[str], **options: Any) -> Process:
    """A process whose LOAD writes `ids` for 2024-01-02."""
    definition = Process(name, **options)

    @definition.phase("LOAD")
    def load(ctx: PhaseContext, previous: Any) -> int:
        return ctx.load_series(Observation(item, "2024-01-02", 1.0) for item in ids)

    return definition


def test_a_follower_of_failed_runs_after_a_failure_only(rig_factory: Any) -> None:
    rig: Rig = rig_factory(
        simple("X"),
        simple("ON_FAIL", follows={"X": ("failed",)}),
        simple("ON_OK", follows={"X": "success"}),
        simple("ON_ANY", follows={"X": ("success", "warning", "failed")}),
    )
    failed = rig.manual("X", {"fail": True})
    assert rig.runner.run(failed) == "failed"
    assert [doc["reason"] for doc in rig.of("ON_FAIL")] == [f"follows(X,{failed},failed)"]
    assert rig.of("ON_OK") == []
    assert len(rig.of("ON_ANY")) == 1
    on_fail = rig.of("ON_FAIL")[0]
    assert on_fail["trigger"] == "subscription"
    assert on_fail["_id"] == follow_up_id(failed, "ON_FAIL")
    assert rig.store.get_meta(on_fail["_id"])["input"] == {
        "fail": False,  # its own default, beside the key the service adds
        "upstream": {"_id": failed, "name": "X", "status": "failed"},
    }
    succeeded = rig.manual("X")
    assert rig.runner.run(succeeded) == "success"
    assert [doc["reason"] for doc in rig.of("ON_OK")] == [f"follows(X,{succeeded},success)"]
    assert len(rig.of("ON_FAIL")) == 1  # still only the one after the failure
    assert len(rig.of("ON_ANY")) == 2
    # the followers themselves run, and trigger nobody
    ran = rig.run_all()
    assert {rig.doc(i)["status"] for i in ran} == {"success", "failed"}
    assert len(ran) == 2 + 4  # X twice; ON_FAIL and ON_ANY, then ON_OK and ON_ANY


def test_subscription_and_follows_on_the_same_run_trigger_once(rig_factory: Any) -> None:
    rig: Rig = rig_factory(
        loader("SOURCE", ["#SRC.A", "#OTHER.B"]),
        simple("BOTH", subscriptions=("#SRC.*",), follows={"SOURCE": ("success",)}),
        simple("ELSEWHERE", subscriptions=("#NOPE.*",)),
    )
    upstream = rig.manual("SOURCE")
    rig.runner.run(upstream)
    both = rig.of("BOTH")
    assert [doc["reason"] for doc in both] == [f"subscription(SOURCE,{upstream})"]
    assert rig.store.get_meta(both[0]["_id"])["input"]["subscription"] == {
        "series": {"2024-01-02": ["#SRC.A"]},
        "curves": {},
    }
    assert rig.of("ELSEWHERE") == []


def test_a_loop_between_two_followers_is_cut_and_logged(
    rig_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rig: Rig = rig_factory(
        simple("A", follows={"B": ("success",)}),
        simple("B", follows={"A": ("success",)}),
    )
    caplog.set_level(logging.WARNING, "procexec.engine.runner")
    first = rig.manual("A")
    ran = rig.run_all()
    assert [rig.doc(i)["name"] for i in ran] == ["A", "B"]
    assert len(rig.of("A")) == 1
    assert len(rig.of("B")) == 1
    b = rig.of("B")[0]
    assert b["reason"] == f"follows(A,{first},success)"
    assert b["status"] == "success"
    assert rig.store.get_meta(b["_id"])["chain"] == ["A"]
    # the cut is logged in the last phase of the run that would have triggered the loop
    assert cuts(b) == ["A"]
    assert cuts(rig.doc(first)) == []
    assert any(
        "Not triggering A: it is upstream of this run (loop cut)" in record.getMessage()
        and b["_id"] in record.getMessage()
        for record in caplog.records
    )


def test_a_three_step_loop_is_cut_where_it_closes(rig_factory: Any) -> None:
    rig: Rig = rig_factory(
        simple("A", follows={"C": ("success",)}),
        simple("B", follows={"A": ("success",)}),
        simple("C", follows={"B": ("success",)}),
    )
    rig.manual("B")
    ran = rig.run_all()
    assert [rig.doc(i)["name"] for i in ran] == ["B", "C", "A"]
    assert cuts(rig.doc(ran[2])) == ["B"]
    assert rig.store.get_meta(ran[2])["chain"] == ["B", "C"]


def test_a_process_subscribed_to_its_own_output_does_not_retrigger_itself(
    rig_factory: Any,
) -> None:
    rig: Rig = rig_factory(loader("SELF", ["#SELF.VALUE"], subscriptions=("#SELF.*",)))
    first = rig.manual("SELF")
    assert rig.run_all() == [first]
    assert len(rig.of("SELF")) == 1
    doc = rig.doc(first)
    assert doc["status"] == "success"
    assert cuts(doc) == ["SELF"]
    assert doc["phases"][-1]["name"] == "LOAD"


def test_a_subscriber_in_a_chain_back_to_the_source_is_cut(rig_factory: Any) -> None:
    """SOURCE loads #SRC.*, DERIVED subscribes to it and loads #SRC.DERIVED, which SOURCE's
    own subscription would match: SOURCE is not triggered again."""
    rig: Rig = rig_factory(
        loader("SOURCE", ["#SRC.RAW"], subscriptions=("#SRC.DERIVED",)),
        loader("DERIVED", ["#SRC.DERIVED"], subscriptions=("#SRC.RAW",)),
    )
    source = rig.manual("SOURCE")
    ran = rig.run_all()
    assert [rig.doc(i)["name"] for i in ran] == ["SOURCE", "DERIVED"]
    assert cuts(rig.doc(ran[1])) == ["SOURCE"]
    assert rig.doc(ran[1])["reason"] == f"subscription(SOURCE,{source})"


# --- the plan itself ---------------------------------------------------------------------------


def test_follow_ups_plan_matches_ids_by_date_and_cuts_the_lineage() -> None:
    registry = ProcessRegistry(
        [
            simple("FX_WATCH", subscriptions=("#ECB_FX.EURUSD:*", "#ECB_FX.EURGBP:*")),
            simple("ALL_FX", subscriptions=("#ECB_FX.*",)),
            simple("CURVES", subscriptions=("CURVE.*",)),
            simple("UPSTREAM_OF_ALL", subscriptions=("#ECB_FX.*",)),
        ]
    )
    updates = DataUpdates()
    updates.add_series("2021-07-01", ["#ECB_FX.EURUSD:SPOT", "#ECB_FX.EURJPY:SPOT"])
    updates.add_series("2021-07-02", ["#ECB_FX.EURGBP:SPOT"])
    updates.add_curves("2021-07-02", ["CURVE.GAS"])
    upstream = {"_id": "up-1", "name": "ECB_FX"}
    plan = follow_ups(registry, upstream, "success", updates, ["UPSTREAM_OF_ALL"])
    by_name = {run.process.name: run for run in plan.runs}
    assert sorted(by_name) == ["ALL_FX", "CURVES", "FX_WATCH"]
    assert plan.cut == ["UPSTREAM_OF_ALL"]
    assert by_name["FX_WATCH"].body["subscription"] == {
        "series": {"2021-07-01": ["#ECB_FX.EURUSD:SPOT"], "2021-07-02": ["#ECB_FX.EURGBP:SPOT"]},
        "curves": {},
    }
    assert by_name["CURVES"].body["subscription"] == {
        "series": {},
        "curves": {"2021-07-02": ["CURVE.GAS"]},
    }
    assert by_name["ALL_FX"].execution_id == follow_up_id("up-1", "ALL_FX")
    assert by_name["ALL_FX"].reason == "subscription(ECB_FX,up-1)"
    # a failed or warning run
    assert follow_ups(registry, upstream, "failed", updates, []).runs == []
    assert len(follow_ups(registry, upstream, "warning", updates, []).runs) == 4
