"""What the engine's in-process reliability tests share: a `Bench` (a real SQLite file
with the real `PhaseRunner`, `ExecutionRecorder`, `TriggerService` and `Housekeeper`), the
`Broker` that stands in for Celery (a recorder of dispatches that can be made to fail), and the
tools to run and watch executions.

A worker that dies is a runner whose phase hangs without heartbeats; the lost-run timeout is
crossed with a fixed clock handed to the housekeeper. Phases that must be observed mid-run block
on events that the test sets, so nothing depends on how fast this machine is: waits have
deadlines, never speed limits. The `bench` fixture is in tests/engine/conftest.py.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from procexec.engine.cancellation import cancel_execution as engine_cancel
from procexec.engine.context import PhaseContext
from procexec.engine.housekeeping import Housekeeper
from procexec.engine.process import Process, ProcessRegistry
from procexec.engine.runner import PhaseRunner
from procexec.engine.store.base import ExecutionStore
from procexec.engine.store.sqlite import SQLiteStore
from procexec.engine.trigger_service import TriggerService
from procexec.examples.demo import DEMO

T = TypeVar("T")

#: seconds without a heartbeat after which the housekeeper takes a run's worker for dead
LOST_TIMEOUT = 5.0
#: seconds after which a run still `triggered` is sent again
REDISPATCH_AFTER = 10.0
#: the recorder's flush interval in these tests: short, so readers see lines soon
FLUSH = 0.02
#: no heartbeat after the claim: the worker of such a runner looks dead once the clock moves
NO_HEARTBEAT = 3600.0
#: the longest any wait in these tests may take before the test fails
DEADLINE = 15.0

ENV = "production"


class Broker:
    """Stands in for Celery: records `(execution_id, delay)`, or raises while `down`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []
        #: the process name each execution was last sent with
        self.processes: dict[str, str | None] = {}
        self.failures = 0
        self.down = False

    def __call__(self, execution_id: str, delay: float, process: str | None = None) -> None:
        if self.down:
            self.failures += 1
            raise ConnectionError("Error 111 connecting to the broker: Connection refused")
        self.calls.append((execution_id, delay))
        self.processes[execution_id] = process

    @property
    def ids(self) -> list[str]:
        return [execution_id for execution_id, _ in self.calls]


class Background:
    """Runs a call in a thread; `join` returns its result or raises its error."""

    def __init__(self, store: ExecutionStore, call: Callable[[], Any], name: str) -> None:
        self.store = store
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, args=(call,), name=name, daemon=True)
        self.thread.start()

    def _main(self, call: Callable[[], Any]) -> None:
        try:
            self.result = call()
        except BaseException as exc:  # handed to the test by join()
            self.error = exc
        finally:
            self.store.release_thread()

    def join(self, timeout: float = DEADLINE) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"{self.thread.name} did not stop within {timeout} s"
        if self.error is not None:
            raise self.error
        return self.result


def cancel_execution(store: ExecutionStore, execution_id: str, **options: Any) -> dict[str, Any]:
    """`engine.cancellation.cancel_execution`, its document typed for indexing."""
    return dict(engine_cancel(store, execution_id, **options))


def wait_for(check: Callable[[], T | None], what: str, timeout: float = DEADLINE) -> T:
    """Poll `check` until it returns something true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.005)


def texts(lines: list[str]) -> list[str]:
    """Log lines without their timestamp: `info Completed EXTRACT`."""
    return [line.split(" ", 1)[1] for line in lines]


@dataclass
class Bench:
    """A real store (SQLite unless given another), a registry of test processes, a broker
    stand-in and a housekeeper."""

    store: ExecutionStore
    registry: ProcessRegistry
    broker: Broker
    triggers: TriggerService
    housekeeper: Housekeeper
    runners: list[PhaseRunner] = field(default_factory=list)

    def add(self, process: Process) -> Process:
        self.registry.add(process)
        return process

    def runner(self, worker_id: str = "w1", **options: Any) -> PhaseRunner:
        options.setdefault("flush_interval", FLUSH)
        runner = PhaseRunner(
            self.store, self.registry, worker_id=worker_id, triggers=self.triggers, **options
        )
        self.runners.append(runner)
        return runner

    def record(self, name: str, body: dict[str, Any] | None = None, **options: Any) -> str:
        doc = self.triggers.record(name, run_as="alice", environment=ENV, body=body, **options)
        return str(doc["_id"])

    def doc(self, execution_id: str) -> dict[str, Any]:
        doc = self.store.get(execution_id)
        assert doc is not None, execution_id
        return doc

    def phase(self, execution_id: str, name: str) -> dict[str, Any]:
        phases = {phase["name"]: phase for phase in self.doc(execution_id)["phases"]}
        assert name in phases, f"no phase {name} in {sorted(phases)}"
        return phases[name]

    def status(self, execution_id: str) -> str:
        return str(self.doc(execution_id)["status"])


@contextmanager
def open_bench(folder: Path, store: ExecutionStore | None = None) -> Iterator[Bench]:
    """A `Bench` over `store`, or a new SQLite store under `folder`, with DEMO; the store closed
    after."""
    owned = store is None
    store = store or SQLiteStore(folder / "data" / "procexec.db")
    try:
        registry = ProcessRegistry([DEMO])
        broker = Broker()
        triggers = TriggerService(store, registry, broker)
        housekeeper = Housekeeper(
            store,
            registry,
            triggers,
            lost_timeout=LOST_TIMEOUT,
            redispatch_after=REDISPATCH_AFTER,
        )
        yield Bench(store, registry, broker, triggers, housekeeper)
    finally:
        if owned:
            store.close()


def later(seconds: float) -> datetime:
    """A fixed clock `seconds` from now, for the housekeeper."""
    return datetime.now(UTC) + timedelta(seconds=seconds)


def past_lost_timeout() -> datetime:
    return later(LOST_TIMEOUT + 1)


def steps(name: str, *phases: str, **options: Any) -> tuple[Process, dict[str, int]]:
    """A process whose phases count their calls and pass a growing list along."""
    process = Process(name, **options)
    calls: dict[str, int] = {}

    def make(phase: str) -> Callable[[PhaseContext, Any], Any]:
        def run(ctx: PhaseContext, previous: Any) -> Any:
            calls[phase] = calls.get(phase, 0) + 1
            ctx.log(f"{phase} ran")
            return [*(previous or []), phase]

        return run

    for phase in phases:
        process.phase(phase)(make(phase))
    return process, calls


def flaky(process: Process, phase: str, failures: int, **options: Any) -> list[tuple[int, str]]:
    """Add a phase that fails its first `failures` attempts; returns (attempt, status) seen."""
    attempts: list[tuple[int, str]] = []

    @process.phase(phase, **options)
    def run(ctx: PhaseContext, previous: Any) -> str:
        doc = ctx._store.get(ctx.execution_id)
        assert doc is not None
        attempts.append((ctx.attempt, f"{doc['status']}: {doc['message']}"))
        ctx.log(f"attempt {ctx.attempt} starts")
        ctx.sleep(0.15)  # long enough for the watcher to see `retrying`
        if ctx.attempt <= failures:
            raise RuntimeError(f"flaky attempt {ctx.attempt}")
        ctx.log(f"attempt {ctx.attempt} worked")
        return "fetched"

    return attempts


def count_executions(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        value: int = conn.execute("SELECT count(*) FROM executions").fetchone()[0]
    finally:
        conn.close()
    return value
