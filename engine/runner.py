"""Runs one execution's phases in order and records everything in its document."""

from __future__ import annotations

import logging
import pickle
import time
import traceback
import uuid
from typing import Any

from procexec.engine.context import DataUpdates, PhaseContext
from procexec.engine.control import RunAborted, RunControl
from procexec.engine.domain import PhaseStatus, Status, Trigger
from procexec.engine.errors import DuplicateExecution
from procexec.engine.process import PhaseDefinition, Process, ProcessRegistry
from procexec.engine.recorder import ExecutionRecorder
from procexec.engine.store.base import ExecutionStore, Update
from procexec.engine.subscriptions import follow_ups
from procexec.engine.timeutil import iso_ms, log_line
from procexec.engine.trigger_service import TriggerService

logger = logging.getLogger(__name__)

COMPLETED = "Completed Successfully"
COMPLETED_WITH_WARNINGS = "Completed with warnings"


#: the largest phase result kept as a checkpoint for resuming a recovered run
MAX_CHECKPOINT_BYTES = 4 * 1024 * 1024


class PhaseRunner:
    """Claims a triggered execution and runs its process phase by phase.

    Claiming is a conditional update (`triggered` → `running`) that gives the run a fresh
    fencing token: a task message delivered twice runs the execution once, and a worker that
    lost its claim (cancelled, timed out, or presumed dead) can write nothing more.
    """

    def __init__(
        self,
        store: ExecutionStore,
        registry: ProcessRegistry,
        *,
        worker_id: str = "local",
        flush_interval: float = 0.25,
        triggers: TriggerService | None = None,
        heartbeat_interval: float = 5.0,
        max_log_lines: int = 1000,
    ) -> None:
        self.store = store
        self.registry = registry
        self.worker_id = worker_id
        self.flush_interval = flush_interval
        #: triggers the runs that subscribe to or follow a finished run; None: none are
        self.triggers = triggers
        self.heartbeat_interval = heartbeat_interval
        self.max_log_lines = max_log_lines

    def claim(self, execution_id: str) -> str | None:
        """Take a triggered execution; returns this claim's fencing token, or None."""
        token = f"{self.worker_id}#{uuid.uuid4().hex[:12]}"
        claimed = self.store.update(
            execution_id,
            Update(
                set={"status": Status.RUNNING.value, "message": "Running"},
                expect_status=frozenset({Status.TRIGGERED.value}),
                meta={"worker": token, "heartbeat": iso_ms()},
            ),
        )
        return token if claimed else None

    def run(self, execution_id: str) -> str | None:
        """Run the execution if it is still `triggered`; returns its final status, or None."""
        token = self.claim(execution_id)
        if token is None:
            logger.info("execution %s is not waiting to run; skipped", execution_id)
            return None
        doc = self.store.get(execution_id)
        meta = self.store.get_meta(execution_id)
        assert doc is not None  # claimed a moment ago
        process = self.registry.get(doc["name"])
        control = RunControl()
        with ExecutionRecorder(
            self.store,
            execution_id,
            flush_interval=self.flush_interval,
            token=token,
            control=control,
            heartbeat_interval=self.heartbeat_interval,
            max_log_lines=self.max_log_lines,
            phases=doc.get("phases") or [],
        ) as recorder:
            if process is None:
                recorder.set(
                    status=Status.FAILED.value,
                    message=f"Unknown process '{doc['name']}' on worker {self.worker_id}",
                    end=iso_ms(),
                )
                return Status.FAILED.value
            try:
                return self._run_phases(
                    doc,
                    process,
                    meta.get("input") or {},
                    recorder,
                    meta.get("chain") or [],
                    control,
                )
            except RunAborted as aborted:
                logger.info("execution %s stopped: %s", execution_id, aborted.reason)
                final = self.store.get(execution_id)
                return None if final is None else str(final["status"])

    def _resume_point(self, doc: dict[str, Any], process: Process) -> tuple[int, Any]:
        """The first phase to run and the result it takes: after the last checkpoint."""
        phases = doc.get("phases") or []
        done = 0
        for phase in phases:
            if phase.get("status") != PhaseStatus.SUCCESS.value:
                break
            done += 1
        if done == 0:
            return 0, None
        checkpoint = self.store.load_checkpoint(doc["_id"])
        if checkpoint is None or checkpoint[0] != done - 1 or done > len(process.phases):
            return 0, None
        return done, pickle.loads(checkpoint[1])

    def _checkpoint(self, execution_id: str, index: int, result: Any) -> None:
        try:
            blob = pickle.dumps(result)
        except Exception:  # not picklable: a recovered run starts again from the first phase
            return
        if len(blob) <= MAX_CHECKPOINT_BYTES:
            self.store.save_checkpoint(execution_id, index, blob)

    def _run_phases(
        self,
        doc: dict[str, Any],
        process: Process,
        params: dict[str, Any],
        recorder: ExecutionRecorder,
        chain: list[str],
        control: RunControl,
    ) -> str:
        updates = DataUpdates()
        first, previous = self._resume_point(doc, process)
        warnings = 0
        run_started = time.monotonic()
        for phase in process.phases[first:]:
            resumed = phase.name in recorder.phase_names
            index = recorder.start_phase(
                phase.name, f"{'Resuming' if resumed else 'Running'} {phase.name}"
            )
            if resumed:
                recorder.log(index, log_line("info", f"Resuming {phase.name} on {self.worker_id}"))
            retries = phase.retries if phase.retries is not None else process.retries
            delay = phase.retry_delay if phase.retry_delay is not None else process.retry_delay
            loader_before = updates.loader_message
            attempt = 1
            while True:
                context = PhaseContext(
                    execution=doc,
                    phase=phase.name,
                    phase_index=index,
                    params=params,
                    recorder=recorder,
                    store=self.store,
                    updates=updates,
                    control=control,
                    attempt=attempt,
                )
                self._arm_timeout(recorder, control, process, phase, run_started)
                try:
                    result = phase.function(context, previous)
                    control.check()  # a timeout or a cancellation while the phase ran
                    break
                except RunAborted:
                    raise
                except Exception as exc:
                    recorder.deadline = None
                    control.check()
                    error = f"{type(exc).__name__}: {exc}"
                    recorder.log(index, log_line("error", traceback.format_exc().rstrip()))
                    if attempt > retries:
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
                    attempt += 1
                    of = f"attempt {attempt} of {retries + 1}"
                    # the run's own limit holds while it waits to retry, too
                    self._arm_timeout(
                        recorder, control, process, phase, run_started, phase_limit=False
                    )
                    self._wait_to_retry(recorder, control, index, phase.name, of, delay)
                finally:
                    recorder.deadline = None
            previous = result
            warnings += context.warnings
            if updates.loader_message is not None and updates.loader_message != loader_before:
                # The loader's own report closes a loading phase's log, as on the platform.
                recorder.log(index, updates.loader_message)
            else:
                recorder.log(index, log_line("info", f"Completed {phase.name}"))
            recorder.end_phase(index, PhaseStatus.SUCCESS, f"Completed {phase.name}")
            control.check()
            self._checkpoint(doc["_id"], index, previous)
        status = Status.WARNING if warnings else Status.SUCCESS
        message = COMPLETED_WITH_WARNINGS if warnings else COMPLETED
        self._finish(doc, recorder, updates, chain, status=status, message=message)
        return status.value

    @staticmethod
    def _wait_to_retry(
        recorder: ExecutionRecorder,
        control: RunControl,
        index: int,
        phase: str,
        of: str,
        delay: float,
    ) -> None:
        """Between two attempts: `waiting` for the delay, then `retrying`."""
        recorder.log(index, log_line("info", f"Retrying {phase} in {delay:g} s ({of})"))
        recorder.set(status=Status.WAITING.value, message=f"Waiting to retry {phase} ({of})")
        control.check()
        control.sleep(delay)
        recorder.set(status=Status.RETRYING.value, message=f"Retrying {phase} ({of})")
        control.check()

    @staticmethod
    def _arm_timeout(
        recorder: ExecutionRecorder,
        control: RunControl,
        process: Process,
        phase: PhaseDefinition,
        run_started: float,
        *,
        phase_limit: bool = True,
    ) -> None:
        """Set the recorder's watchdog to fail the run when the phase or the run overruns."""
        now = time.monotonic()
        limits = []
        if phase_limit and phase.timeout is not None:
            limits.append(
                (now + phase.timeout, f"the phase ran longer than its {phase.timeout:g} s limit")
            )
        if process.timeout is not None:
            limits.append(
                (
                    run_started + process.timeout,
                    f"the run ran longer than its {process.timeout:g} s limit",
                )
            )
        if not limits:
            recorder.deadline = None
            return
        deadline, why = min(limits)

        def expire() -> None:
            recorder.fail(f"Timed out in {phase.name}: {why}", f"Timed out: {why}")
            control.abort(f"timed out in {phase.name}")

        recorder.on_deadline = expire
        recorder.deadline = deadline

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
            for execution_id, process in recorded:
                self.triggers.send(execution_id, process=process)

    def _record_follow_ups(
        self,
        doc: dict[str, Any],
        recorder: ExecutionRecorder,
        updates: DataUpdates,
        chain: list[str],
        status: Status,
    ) -> list[tuple[str, str]]:
        """Record the runs that follow this one; their ids and process names, to send."""
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
            recorded.append((run.execution_id, run.process.name))
        return recorded
