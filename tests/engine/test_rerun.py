"""Rerunning an execution from its failed phase (`engine.rerun`), on both stores: the carried
phases are not run again, the failed one and those after it are, a rerun whose worker is lost
resumes as any run does, and what cannot be rerun is refused, saying why."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest

from procexec.engine.context import PhaseContext
from procexec.engine.errors import BadRequest, Conflict, NotFound
from procexec.engine.housekeeping import Housekeeper
from procexec.engine.process import Process, ProcessRegistry
from procexec.engine.rerun import rerun_execution, rerun_failed
from procexec.engine.runner import PhaseRunner
from procexec.engine.store.base import ExecutionStore
from procexec.engine.store.mongo import MongoStore
from procexec.engine.store.sqlite import SQLiteStore
from procexec.engine.timeutil import iso_ms
from procexec.engine.trigger_service import TriggerService
from procexec.examples import demo
from procexec.examples.demo import DEMO
from tests.documents import assert_execution
from tests.engine.runs import (
    DEADLINE,
    ENV,
    FLUSH,
    LOST_TIMEOUT,
    NO_HEARTBEAT,
    REDISPATCH_AFTER,
    Background,
    Broker,
    past_lost_timeout,
    texts,
    wait_for,
)

PHASES = ("EXTRACT", "TRANSFORM", "SEND", "LOAD")


@dataclass
class Rig:
    """A store of either kind with the real runner, trigger service and housekeeper."""

    store: ExecutionStore
    registry: ProcessRegistry
    broker: Broker
    triggers: TriggerService
    housekeeper: Housekeeper
    #: each phase's calls, by process: the side effects of the test processes
    calls: dict[str, list[str]] = field(default_factory=dict)

    def runner(self, worker_id: str = "w1", **options: Any) -> PhaseRunner:
        options.setdefault("flush_interval", FLUSH)
        return PhaseRunner(
            self.store, self.registry, worker_id=worker_id, triggers=self.triggers, **options
        )

    def record(self, name: str, body: dict[str, Any] | None = None) -> str:
        doc = self.triggers.record(name, run_as="alice", environment=ENV, body=body)
        return str(doc["_id"])

    def doc(self, execution_id: str) -> dict[str, Any]:
        doc = self.store.get(execution_id)
        assert doc is not None, execution_id
        assert_execution(doc)
        return doc

    def rerun(self, execution_id: str, **options: Any) -> dict[str, Any]:
        return rerun_execution(self.store, self.triggers, execution_id, user="carol", **options)

    def drop_checkpoints(self, execution_id: str) -> None:
        """As retention does: the run's checkpoints gone."""
        if isinstance(self.store, SQLiteStore):
            self.store._connect().execute("DELETE FROM checkpoints WHERE id = ?", (execution_id,))
        else:
            assert isinstance(self.store, MongoStore)
            self.store.checkpoints.delete_many({"run": execution_id})
        assert self.store.load_checkpoint(execution_id) is None


@pytest.fixture
def rig(store: ExecutionStore) -> Iterator[Rig]:
    registry = ProcessRegistry([DEMO])
    broker = Broker()
    triggers = TriggerService(store, registry, broker)
    keeper = Housekeeper(
        store, registry, triggers, lost_timeout=LOST_TIMEOUT, redispatch_after=REDISPATCH_AFTER
    )
    yield Rig(store, registry, broker, triggers, keeper)


@pytest.fixture
def demo_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """DEMO's phases' work, counted: (execution id, phase) for each time a phase ran."""
    calls: list[tuple[str, str]] = []
    work = demo._work

    def counted(ctx: PhaseContext, previous: Any) -> int:
        calls.append((ctx.execution_id, ctx.phase))
        return work(ctx, previous)

    monkeypatch.setattr(demo, "_work", counted)
    return calls


def loads_when(rig: Rig, name: str, load: Any) -> Process:
    """A process whose first three phases count their calls and pass a growing list along,
    and whose LOAD is `load(ctx, previous)`."""
    process = Process(name)
    calls = rig.calls.setdefault(name, [])

    def make(phase: str) -> Any:
        def run(ctx: PhaseContext, previous: Any) -> Any:
            calls.append(phase)
            ctx.log(f"{phase} ran")
            return [*(previous or []), phase]

        return run

    for phase in PHASES[:3]:
        process.phase(phase)(make(phase))

    @process.phase("LOAD")
    def run_load(ctx: PhaseContext, previous: Any) -> Any:
        calls.append("LOAD")
        return load(ctx, previous)

    rig.registry.add(process)
    return process


def phases_of(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(phase["name"], phase["status"]) for phase in doc["phases"]]


def test_a_demo_run_failing_in_load_reruns_load_alone(
    rig: Rig, demo_calls: list[tuple[str, str]]
) -> None:
    old_id = rig.record("DEMO", {"fail_in": "LOAD"})
    assert rig.runner().run(old_id) == "failed"
    old = rig.doc(old_id)
    sent = len(rig.broker.calls)

    new = rig.rerun(old_id)

    new_id = new["_id"]
    assert new_id != old_id
    assert rig.broker.ids[sent:] == [new_id]  # recorded, then dispatched once
    assert (new["trigger"], new["runAs"], new["status"]) == ("manual", "carol", "triggered")
    assert new["reason"] == f"Rerun of {old_id} from LOAD"
    assert (new["name"], new["environment"]) == ("DEMO", ENV)
    assert rig.store.get_meta(new_id)["input"] == rig.store.get_meta(old_id)["input"]
    carried = new["phases"]
    assert phases_of(new) == [("EXTRACT", "success"), ("TRANSFORM", "success"), ("SEND", "success")]
    for before, after in zip(old["phases"], carried, strict=False):
        assert {**after, "log": after["log"][:-1]} == before
        assert texts(after["log"][-1:]) == [f"info Carried over from {old_id}: not run again"]

    assert rig.runner("w2").run(new_id) == "failed"

    # EXTRACT, TRANSFORM and SEND ran once, in the old run; LOAD in both
    assert demo_calls == [
        *((old_id, phase) for phase in PHASES),
        (new_id, "LOAD"),
    ]
    done = rig.doc(new_id)
    assert done["phases"][:3] == carried
    assert phases_of(done)[3] == ("LOAD", "failed")
    assert done["message"] == (
        "Failed in LOAD: RuntimeError: failure requested in LOAD (fail_in=LOAD)"
    )
    assert rig.doc(old_id) == old  # the old run is not changed
    [action] = rig.store.actions(action="rerun", target=old_id)
    assert (action.who, action.details) == ("carol", {"rerun": new_id, "from_phase": "LOAD"})


def test_a_rerun_whose_load_works_now_reads_as_a_whole_run(rig: Rig) -> None:
    state = {"fail": True}

    def load(ctx: PhaseContext, previous: Any) -> Any:
        ctx.log(f"loading {previous}")
        if state["fail"]:
            raise RuntimeError("the target is down")
        return previous

    loads_when(rig, "ONCE", load)
    old_id = rig.record("ONCE")
    assert rig.runner().run(old_id) == "failed"
    state["fail"] = False

    new_id = rig.rerun(old_id)["_id"]
    assert rig.runner("w2").run(new_id) == "success"

    assert rig.calls["ONCE"] == ["EXTRACT", "TRANSFORM", "SEND", "LOAD", "LOAD"]
    done = rig.doc(new_id)
    assert (done["status"], done["message"]) == ("success", "Completed Successfully")
    assert phases_of(done) == [(phase, "success") for phase in PHASES]
    load_log = texts(done["phases"][3]["log"])
    # LOAD took SEND's result from the old run's checkpoint
    assert load_log == ["info loading ['EXTRACT', 'TRANSFORM', 'SEND']", "info Completed LOAD"]
    assert done["start"] <= done["phases"][3]["start"] <= done["end"]


def test_a_rerun_whose_worker_is_killed_resumes_from_its_own_phase(rig: Rig) -> None:
    state = {"mode": "fail"}
    entered, release = threading.Event(), threading.Event()

    def load(ctx: PhaseContext, previous: Any) -> Any:
        if state["mode"] == "fail":
            raise RuntimeError("the target is down")
        if state["mode"] == "hang":  # the rerun's first worker dies here: no heartbeat
            state["mode"] = "work"
            ctx.log("first worker, about to die")
            entered.set()
            release.wait(DEADLINE)
        return previous

    loads_when(rig, "KILLED", load)
    old_id = rig.record("KILLED")
    assert rig.runner().run(old_id) == "failed"
    state["mode"] = "hang"
    new_id = rig.rerun(old_id)["_id"]
    dead = Background(
        rig.store,
        lambda: rig.runner("w2", heartbeat_interval=NO_HEARTBEAT).run(new_id),
        "dead-worker",
    )
    try:
        assert entered.wait(DEADLINE)
        wait_for(
            lambda: "info first worker, about to die" in texts(rig.doc(new_id)["phases"][3]["log"]),
            "the dying worker's line",
        )
        report = rig.housekeeper.run_once(past_lost_timeout())
        assert report.resumed == [new_id]
        assert phases_of(rig.doc(new_id))[3] == ("LOAD", "failed")

        assert rig.runner("w3").run(new_id) == "success"
    finally:
        release.set()
    dead.join()

    assert rig.calls["KILLED"] == ["EXTRACT", "TRANSFORM", "SEND", "LOAD", "LOAD", "LOAD"]
    done = rig.doc(new_id)
    assert done["status"] == "success"
    assert phases_of(done) == [(phase, "success") for phase in PHASES]
    for phase in done["phases"][:3]:
        assert texts(phase["log"]) == [
            f"info {phase['name']} ran",
            f"info Completed {phase['name']}",
            f"info Carried over from {old_id}: not run again",
        ]
    load_log = texts(done["phases"][3]["log"])
    assert load_log[0] == "info first worker, about to die"
    assert "info Resuming LOAD on w3" in load_log


def test_from_start_runs_every_phase(rig: Rig, demo_calls: list[tuple[str, str]]) -> None:
    old_id = rig.record("DEMO", {"fail_in": "SEND"})
    assert rig.runner().run(old_id) == "failed"
    rig.drop_checkpoints(old_id)  # it needs none

    new = rig.rerun(old_id, start_from="start")

    assert new["reason"] == f"Rerun of {old_id} from EXTRACT"
    assert new["phases"] == []
    assert rig.runner("w2").run(new["_id"]) == "failed"
    assert [phase for run, phase in demo_calls if run == new["_id"]] == [
        "EXTRACT",
        "TRANSFORM",
        "SEND",
    ]


def test_from_an_earlier_phase_carries_the_phases_before_it(
    rig: Rig, demo_calls: list[tuple[str, str]]
) -> None:
    old_id = rig.record("DEMO", {"fail_in": "LOAD"})
    assert rig.runner().run(old_id) == "failed"

    new = rig.rerun(old_id, start_from="transform")

    assert new["reason"] == f"Rerun of {old_id} from TRANSFORM"
    assert phases_of(new) == [("EXTRACT", "success")]
    assert rig.runner("w2").run(new["_id"]) == "failed"
    assert [phase for run, phase in demo_calls if run == new["_id"]] == [
        "TRANSFORM",
        "SEND",
        "LOAD",
    ]
    # DEMO counts its phases: TRANSFORM took EXTRACT's result, from the old run's checkpoint
    assert rig.store.load_checkpoint(new["_id"], 2) is not None


def test_a_successful_run_reruns_from_a_phase_it_names(rig: Rig) -> None:
    old_id = rig.record("DEMO")
    assert rig.runner().run(old_id) == "success"
    with pytest.raises(Conflict, match="ended success with no failed phase: from=start"):
        rig.rerun(old_id)

    new = rig.rerun(old_id, start_from="LOAD")

    assert phases_of(new) == [("EXTRACT", "success"), ("TRANSFORM", "success"), ("SEND", "success")]
    assert rig.runner("w2").run(new["_id"]) == "success"


def test_a_phase_after_the_failed_one_or_no_phase_is_refused(rig: Rig) -> None:
    old_id = rig.record("DEMO", {"fail_in": "TRANSFORM"})
    assert rig.runner().run(old_id) == "failed"
    sent = len(rig.broker.calls)

    with pytest.raises(Conflict, match="from: SEND comes after TRANSFORM, which did not finish"):
        rig.rerun(old_id, start_from="SEND")
    with pytest.raises(
        BadRequest, match="from: 'COOK' is not a phase of DEMO; it takes start, EXTRACT, TRANSFORM"
    ):
        rig.rerun(old_id, start_from="COOK")
    assert len(rig.broker.calls) == sent
    assert rig.store.actions(action="rerun") == []


def test_a_run_still_active_is_refused(rig: Rig) -> None:
    triggered = rig.record("DEMO")
    with pytest.raises(Conflict, match=f"'{triggered}' is still triggered: cancel it, or wait"):
        rig.rerun(triggered)
    assert rig.runner().claim(triggered) is not None
    with pytest.raises(Conflict, match="is still running"):
        rig.rerun(triggered)
    with pytest.raises(NotFound, match="no execution 'nope'"):
        rig.rerun("nope")


def test_a_run_whose_checkpoints_are_gone_is_refused_unless_from_start(rig: Rig) -> None:
    old_id = rig.record("DEMO", {"fail_in": "LOAD"})
    assert rig.runner().run(old_id) == "failed"
    rig.drop_checkpoints(old_id)

    with pytest.raises(Conflict, match=r"the checkpoint of SEND is gone .* from=start runs it all"):
        rig.rerun(old_id)
    assert rig.store.actions(action="rerun") == []

    new = rig.rerun(old_id, start_from="start")
    assert rig.runner("w2").run(new["_id"]) == "failed"
    assert phases_of(rig.doc(new["_id"]))[-1] == ("LOAD", "failed")


def test_parameters_the_process_refuses_now_are_a_400_naming_the_field(rig: Rig) -> None:
    process = Process("CHANGING", defaults={"rows": 1})
    process.phase("EXTRACT")(lambda ctx, previous: 1)
    process.phase("LOAD")(lambda ctx, previous: 1 / 0)
    rig.registry.add(process)
    old_id = rig.record("CHANGING", {"rows": 5})
    assert rig.runner().run(old_id) == "failed"

    # the process is redefined: `rows` is gone, `limit` is new
    changed = Process("CHANGING", defaults={"limit": 1})
    changed.phases = process.phases
    rig.registry._processes["CHANGING"] = changed

    with pytest.raises(BadRequest, match=f"parameters of '{old_id}' no longer hold for CHANGING: "):
        rig.rerun(old_id)
    with pytest.raises(BadRequest, match=r"body\.rows: unknown parameter"):
        rig.rerun(old_id)
    assert rig.store.load_checkpoint(old_id) is not None
    assert rig.store.actions(action="rerun") == []


def test_the_service_keys_stay_and_new_defaults_fill_in(rig: Rig) -> None:
    process = Process("KEYS", defaults={"rows": 1})
    process.phase("EXTRACT")(lambda ctx, previous: 1)
    process.phase("LOAD")(lambda ctx, previous: 1 / 0)
    rig.registry.add(process)
    old = rig.triggers.record(
        "KEYS", run_as="alice", environment=ENV, body={"rows": 5}, added={"upstream": "abc"}
    )
    assert rig.runner().run(old["_id"]) == "failed"
    changed = Process("KEYS", defaults={"rows": 1, "more": True})
    changed.phases = process.phases
    rig.registry._processes["KEYS"] = changed

    new = rig.rerun(old["_id"])

    assert rig.store.get_meta(new["_id"])["input"] == {"rows": 5, "more": True, "upstream": "abc"}


def failed_demo_runs(rig: Rig, count: int, **body: Any) -> list[str]:
    """`count` DEMO runs failing in LOAD, each started a millisecond after the one before."""
    ids = []
    for _ in range(count):
        time.sleep(0.002)
        ids.append(rig.record("DEMO", {"fail_in": "LOAD", **body}))
        assert rig.runner().run(ids[-1]) == "failed"
    return ids


def test_every_failed_run_of_a_range_is_rerun_a_batch_at_a_time(rig: Rig) -> None:
    since = iso_ms()
    runs = failed_demo_runs(rig, 3)
    good = rig.record("DEMO")
    assert rig.runner().run(good) == "success"
    other = rig.triggers.record("DEMO", run_as="alice", environment="staging", body={})
    assert rig.runner().run(other["_id"]) == "success"
    time.sleep(0.002)
    until = iso_ms()
    late = failed_demo_runs(rig, 1)  # after the range
    sent = len(rig.broker.calls)
    batch = partial(
        rerun_failed, rig.store, rig.triggers, user="ops", since=since, until=until, environment=ENV
    )

    first = batch(limit=2)

    assert [old for old, _, _ in first.made] == runs[:2]  # oldest first
    assert {phase for _, _, phase in first.made} == {"LOAD"}
    assert (first.refused, first.skipped, first.more) == ([], 0, True)
    assert rig.broker.ids[sent:] == [new for _, new, _ in first.made]  # recorded, then sent
    for old, new, _ in first.made:
        assert rig.doc(new)["reason"] == f"Rerun of {old} from LOAD"

    second = batch(limit=2)  # the same call goes on where the first stopped
    assert [old for old, _, _ in second.made] == runs[2:]
    assert (second.skipped, second.more) == (2, False)
    assert batch().made == []
    assert late[0] not in {a.target for a in rig.store.actions(action="rerun")}


def test_a_batch_passes_over_a_run_it_cannot_rerun(rig: Rig) -> None:
    since = iso_ms()
    gone, kept = failed_demo_runs(rig, 2)
    rig.drop_checkpoints(gone)
    loads_when(rig, "OTHER", lambda ctx, previous: 1 / 0)
    other = rig.record("OTHER")
    assert rig.runner().run(other) == "failed"

    batch = rerun_failed(
        rig.store,
        rig.triggers,
        user="ops",
        since=since,
        until=iso_ms(),
        environment=ENV,
        process="DEMO",
    )

    assert [old for old, _, _ in batch.made] == [kept]
    [(refused, why)] = batch.refused
    assert refused == gone and "the checkpoint of SEND is gone" in why
    with pytest.raises(NotFound, match="unknown process 'NOPE'"):
        rerun_failed(
            rig.store,
            rig.triggers,
            user="ops",
            since=since,
            until=iso_ms(),
            environment=ENV,
            process="NOPE",
        )
