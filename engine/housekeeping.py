"""Periodic housekeeping: runs whose worker died, triggers that never reached a worker, and
finished runs past their retention.

Safe to run from several places at once: every change is a conditional update that expects
the state it saw (status and the worker's claim token).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from procexec.engine.concurrency import Limits
from procexec.engine.domain import ACTIVE, LOADER_TICKET, Status
from procexec.engine.process import ProcessRegistry
from procexec.engine.store.base import ExecutionStore, Update
from procexec.engine.timeutil import iso_ms
from procexec.engine.trigger_service import TriggerService

if TYPE_CHECKING:
    from procexec.engine.notify import Notifier

logger = logging.getLogger(__name__)


@dataclass
class Report:
    resumed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    redispatched: list[str] = field(default_factory=list)
    #: runs whose batch waits for a loader, their LOAD sent to the loader queue again
    handed_again: list[str] = field(default_factory=list)
    #: how many finished runs past their retention were deleted
    purged: int = 0
    #: runs that waited for a slot of a concurrency limit, sent now that one is free
    woken: list[str] = field(default_factory=list)


class Housekeeper:
    def __init__(
        self,
        store: ExecutionStore,
        registry: ProcessRegistry,
        triggers: TriggerService,
        *,
        lost_timeout: float,
        redispatch_after: float,
        retention_days: float = 0.0,
        batch: int = 200,
        purge_batches: int = 10,
        notifier: Notifier | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.triggers = triggers
        self.lost_timeout = lost_timeout
        self.redispatch_after = redispatch_after
        self.retention_days = retention_days
        self.batch = batch
        #: the most batches of `batch` runs one pass deletes: a large backlog takes a few passes
        self.purge_batches = purge_batches
        #: tells the operator's webhook of lost runs and what became of them; None: nothing is
        self.notifier = notifier
        #: the concurrency limits: slots of ended runs given back, waiting runs sent
        self.limits = limits or Limits(store, registry, triggers, state_ttl=0)

    def run_once(self, now: datetime | None = None) -> Report:
        now = now or datetime.now(UTC)
        report = Report()
        self.reap_lost_runs(now, report)
        report.woken = self.limits.housekeep()  # after the runs failed as lost give theirs back
        self.redispatch(now, report)
        self.purge(now, report)
        return report

    def purge(self, now: datetime, report: Report) -> None:
        """Finished runs that ended more than `retention_days` ago: delete them, a batch at a
        time (each batch its own transaction). 0 (or not finite): keep them for ever."""
        if not 0 < self.retention_days < math.inf:
            return
        before = iso_ms(now - timedelta(days=self.retention_days))
        for _ in range(self.purge_batches):
            deleted = self.store.purge(before, self.batch)
            report.purged += deleted
            if deleted < self.batch:
                break

    def reap_lost_runs(self, now: datetime, report: Report) -> None:
        """Active runs without a heartbeat for `lost_timeout`: resume or fail them."""
        before = iso_ms(now - timedelta(seconds=self.lost_timeout))
        for execution_id, meta in self.store.stale(sorted(ACTIVE), "heartbeat", before, self.batch):
            doc = self.store.get(execution_id)
            if doc is None:
                continue
            worker = meta.get("worker")
            if isinstance(worker, str) and worker.startswith(LOADER_TICKET):
                self._hand_again(execution_id, str(doc["name"]), worker, now, report)
                continue
            process = self.registry.get(doc["name"])
            recoveries = int(meta.get("recoveries") or 0)
            lost = f"Worker lost: no heartbeat from {worker} for {self.lost_timeout:g} s"
            if process is not None and process.on_lost == "resume":
                if recoveries < process.max_recoveries:
                    resumed = self.store.update(
                        execution_id,
                        Update(
                            set={
                                "status": Status.TRIGGERED.value,
                                "message": f"{lost}; resuming "
                                f"(recovery {recoveries + 1} of {process.max_recoveries})",
                            },
                            fail_running_phases=lost,
                            meta={
                                "worker": None,
                                "heartbeat": None,
                                "recoveries": recoveries + 1,
                                "dispatched": iso_ms(now),
                            },
                            expect_status=ACTIVE,
                            expect_worker=worker,
                        ),
                    )
                    if resumed:
                        logger.warning("execution %s: %s; resuming", execution_id, lost)
                        report.resumed.append(execution_id)
                        self.triggers.send(execution_id)
                        if self.notifier is not None:
                            of = f"recovery {recoveries + 1} of {process.max_recoveries}"
                            message = f"{lost}; resuming ({of})"
                            self.notifier.lost(doc, Status.TRIGGERED.value, message)
                    continue
                lost += f"; gave up after {recoveries} recoveries"
            failed = self.store.update(
                execution_id,
                Update(
                    set={"status": Status.FAILED.value, "message": lost, "end": iso_ms(now)},
                    fail_running_phases=lost,
                    expect_status=ACTIVE,
                    expect_worker=worker,
                ),
            )
            if failed:
                logger.warning("execution %s: %s; failed", execution_id, lost)
                report.failed.append(execution_id)
                if self.notifier is not None:
                    self.notifier.lost(doc, Status.FAILED.value, lost)

    def _hand_again(
        self, execution_id: str, process: str, ticket: str, now: datetime, report: Report
    ) -> None:
        """A batch that waited `lost_timeout` for a loader: its LOAD is sent to the loader
        queue again under the same ticket (the loader that takes one message changes the claim,
        so a second copy finds nothing to do). Where nothing hands off to a loader any more,
        the run goes back to the run queue, and LOAD runs on the worker that takes it."""
        stamp = iso_ms(now)
        if self.triggers.hand_off is not None:
            marked = self.store.update(
                execution_id,
                Update(meta={"heartbeat": stamp}, expect_status=ACTIVE, expect_worker=ticket),
            )
            if marked and self.triggers.send_load(execution_id, ticket, process):
                logger.info("execution %s: LOAD sent to the loader queue again", execution_id)
                report.handed_again.append(execution_id)
            return
        back = self.store.update(
            execution_id,
            Update(
                set={"status": Status.TRIGGERED.value, "message": "Triggered (for LOAD)"},
                meta={"worker": None, "heartbeat": None, "dispatched": stamp},
                expect_status=ACTIVE,
                expect_worker=ticket,
            ),
        )
        if back and self.triggers.send(execution_id, process=process):
            report.redispatched.append(execution_id)

    def redispatch(self, now: datetime, report: Report) -> None:
        """Triggered runs that no worker took within `redispatch_after`: send them again.

        The document is the outbox: a trigger accepted while the broker was down, or whose
        message the broker lost, is sent again until a worker claims it.
        """
        stamp = iso_ms(now)
        before = iso_ms(now - timedelta(seconds=self.redispatch_after))
        triggered = [Status.TRIGGERED.value]
        for execution_id, meta in self.store.stale(triggered, "dispatched", before, self.batch):
            if meta.get("due") and meta["due"] > stamp:
                continue  # a delayed run, not yet due
            marked = self.store.update(
                execution_id,
                Update(meta={"dispatched": stamp}, expect_status=frozenset(triggered)),
            )
            if marked and self.triggers.send(execution_id):
                report.redispatched.append(execution_id)
