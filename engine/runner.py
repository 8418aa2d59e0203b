"""Runs one execution's phases in order and records everything in its document."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from engine.constants import PhaseStatus, Status, Trigger
from engine.context import DataUpdates, PhaseContext
from engine.errors import DuplicateExecution
from engine.process import Process, ProcessRegistry
from engine.recorder import ExecutionRecorder
from engine.store.base import ExecutionStore, Update
from engine.subscriptions import follow_ups
from engine.timeutil import iso_ms, log_line
from engine.trigger import TriggerService

logger = logging.getLogger(__name__)

COMPLETED = "Completed Successfully"
COMPLETED_WITH_WARNINGS = "Completed with warnings"


class PhaseRunner:
    """Claims a triggered execution and runs its process phase by phase.

    Claiming is a conditional update (`triggered` → `running`), so a task message delivered twice
    runs the execution once.
    """

    def __init__(
        self,
        store: ExecutionStore,
        registry: ProcessRegistry,
        *,
        worker_id: str = "local",
        flush_interval: float = 0.25,
        triggers: TriggerService | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.worker_id = worker_id
        self.flush_interval = flush_interval
        #: triggers the runs that subscribe to or follow a finished run; None: none are
        self.triggers = triggers

    def claim(self, execution_id: str) -> bool:
        return self.store.update(
            execution_id,
            Update(
                set={"status": Status.RUNNING.value, "message": "Running"},
                expect_status=frozenset({Status.TRIGGERED.value}),
                meta={"worker": self.worker_id, "heartbeat": iso_ms()},
            ),
        )

    def run(self, execution_id: str) -> str | None:
        """Run the execution if it is still `triggered`; returns its final status, or None."""
        if not self.claim(execution_id):
            logger.info("execution %s is not waiting to run; skipped", execution_id)
            return None
        doc = self.store.get(execution_id)
        meta = self.store.get_meta(execution_id)
        assert doc is not None  # claimed a moment ago
        process = self.registry.get(doc["name"])
        with ExecutionRecorder(
            self.store, execution_id, flush_interval=self.flush_interval
        ) as recorder:
            if process is None:
                recorder.set(
                    status=Status.FAILED.value,
                    message=f"Unknown process '{doc['name']}' on worker {self.worker_id}",
                    end=iso_ms(),
                )
                return Status.FAILED.value
            return self._run_phases(
                doc, process, meta.get("input") or {}, recorder, meta.get("chain") or []
            )

    def _run_phases(
        self,
        doc: dict[str, Any],
        process: Process,
        params: dict[str, Any],
        recorder: ExecutionRecorder,
        chain: list[str],
    ) -> str:
        updates = DataUpdates()
        previous: Any = None
        warnings = 0
        for phase in process.phases:
            index = recorder.start_phase(phase.name, f"Running {phase.name}")
            context = PhaseContext(
                execution=doc,
                phase=phase.name,
                phase_index=index,
                params=params,
                recorder=recorder,
                store=self.store,
                updates=updates,
            )
            loader_before = updates.loader_message
            try:
                previous = phase.function(context, previous)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                recorder.log(index, log_line("error", traceback.format_exc().rstrip()))
                recorder.end_phase(index, PhaseStatus.FAILED, error)
                self._finish(
                    doc,
                    recorder,
                    updates,
                    chain,
                    status=Status.FAILED,
                    message=f"Failed in {phase.name}: {error}",
                )
                return Status.FAILED.value
            warnings += context.warnings
            if updates.loader_message is not None and updates.loader_message != loader_before:
                # The loader's own report closes a loading phase's log, as on the platform.
                recorder.log(index, updates.loader_message)
            else:
                recorder.log(index, log_line("info", f"Completed {phase.name}"))
            recorder.end_phase(index, PhaseStatus.SUCCESS, f"Completed {phase.name}")
        status = Status.WARNING if warnings else Status.SUCCESS
        message = COMPLETED_WITH_WARNINGS if warnings else COMPLETED
        self._finish(doc, recorder, updates, chain, status=status, message=message)
        return status.value

    def _finish(
        self,
        doc: dict[str, Any],
        recorder: ExecutionRecorder,
        updates: DataUpdates,
        chain: list[str],
        *,
        status: Status,
        message: str,
    ) -> None:
        # Follow-up runs are recorded before the final status and sent after it: a worker that
        # dies in between leaves them `triggered`, for redelivery, never lost.
        recorded = self._record_follow_ups(doc, recorder, updates, chain, status)
        fields: dict[str, Any] = {"status": status.value, "message": message, "end": iso_ms()}
        if updates.loader_message is not None:
            fields["loaderMessage"] = updates.loader_message
        if updates:
            fields["data"] = updates.as_document()
        recorder.set(**fields)
        if self.triggers is not None:
            for execution_id in recorded:
                self.triggers.send(execution_id)

    def _record_follow_ups(
        self,
        doc: dict[str, Any],
        recorder: ExecutionRecorder,
        updates: DataUpdates,
        chain: list[str],
        status: Status,
    ) -> list[str]:
        if self.triggers is None:
            return []
        plan = follow_ups(self.registry, doc, status.value, updates, chain)
        last_phase = recorder.phase_count - 1
        for name in plan.cut:
            text = f"Not triggering {name}: it is upstream of this run (loop cut)"
            logger.warning("execution %s: %s", doc["_id"], text)
            if last_phase >= 0:
                recorder.log(last_phase, log_line("info", text))
        recorded = []
        for run in plan.runs:
            try:
                self.triggers.record(
                    run.process.name,
                    run_as=doc.get("runAs", ""),
                    environment=doc["environment"],
                    body=run.body,
                    trigger=Trigger.SUBSCRIPTION,
                    reason=run.reason,
                    execution_id=run.execution_id,
                    chain=[*chain, doc["name"]],
                )
            except DuplicateExecution:
                continue  # recorded by an earlier attempt of this run
            recorded.append(run.execution_id)
        return recorded
