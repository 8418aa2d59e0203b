"""Runs one execution's phases in order and records everything in its document."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from engine.constants import PhaseStatus, Status
from engine.context import DataUpdates, PhaseContext
from engine.process import Process, ProcessRegistry
from engine.recorder import ExecutionRecorder
from engine.store.base import ExecutionStore, Update
from engine.timeutil import iso_ms, log_line

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
    ) -> None:
        self.store = store
        self.registry = registry
        self.worker_id = worker_id
        self.flush_interval = flush_interval

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
            return self._run_phases(doc, process, meta.get("input") or {}, recorder)

    def _run_phases(
        self,
        doc: dict[str, Any],
        process: Process,
        params: dict[str, Any],
        recorder: ExecutionRecorder,
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
                    recorder,
                    updates,
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
        self._finish(recorder, updates, status=status, message=message)
        return status.value

    @staticmethod
    def _finish(
        recorder: ExecutionRecorder, updates: DataUpdates, *, status: Status, message: str
    ) -> None:
        fields: dict[str, Any] = {"status": status.value, "message": message, "end": iso_ms()}
        if updates.loader_message is not None:
            fields["loaderMessage"] = updates.loader_message
        if updates:
            fields["data"] = updates.as_document()
        recorder.set(**fields)
