"""Runs one execution's phases in order and records everything in its document."""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from typing import Any

from procexec.engine.checkpoints import MAX_CHECKPOINT_BYTES, Carried, keep, resume_point
from procexec.engine.context import DataUpdates, PhaseContext
from procexec.engine.control import RunAborted, RunControl
from procexec.engine.domain import (
    ACTIVE,
    LOAD_PHASE,
    LOADER_TICKET,
    PhaseStatus,
    Status,
    Trigger,
)
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


#: the message of a run whose batch waits on the loader queue
WAITING_FOR_LOADER = "Waiting for a loader"


class _HandOff(Exception):
    """Raised before LOAD where the batch goes to the loader queue: the run's recorder closes,
    then its claim passes to a ticket. Carries the run's process name, for the LOAD task."""

    def __init__(self, process: str) -> None:
        super().__init__(process)
        self.process = process


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

    def claim(self, execution_id: str, ticket: str | None = None) -> str | None:
        """Take a triggered execution, or with `ticket` a run whose batch waits for a loader
        under that ticket; returns this claim's fencing token, or None."""
        token = f"{self.worker_id}#{uuid.uuid4().hex[:12]}"
        expected = Status.RUNNING if ticket is not None else Status.TRIGGERED
        claimed = self.store.update(
            execution_id,
            Update(
                set={"status": Status.RUNNING.value, "message": "Running"},
                expect_status=frozenset({expected.value}),
                expect_worker=ticket,
                meta={"worker": token, "heartbeat": iso_ms()},
            ),
        )
        return token if claimed else None

    @property
    def hands_off(self) -> bool:
        """Whether this runner sends LOAD phases to the loader queue."""
        return self.triggers is not None and self.triggers.hand_off is not None

    def run(self, execution_id: str, ticket: str | None = None) -> str | None:
        """Run the execution if it is still `triggered`; returns its final status, or None.

        With `ticket` (a loader's task): run what is left, LOAD, of a run whose batch was
        handed over under that ticket. A run handed to the loader queue returns `running`.
        """
        token = self.claim(execution_id, ticket)
        if token is None:
            waiting = "waiting for this loader" if ticket else "waiting to run"
            logger.info("execution %s is not %s; skipped", execution_id, waiting)
            return None
        try:
            return self._run_claimed(execution_id, token, hand_off=ticket is None)
        except _HandOff as handing:
            return self._hand_off(execution_id, token, handing.process)

    def _hand_off(self, execution_id: str, token: str, process: str) -> str | None:
        """Pass this run's claim to a ticket, then send its LOAD to the loader queue. The
        document is the outbox: a message the broker loses is sent again by the housekeeper."""
        ticket = f"{LOADER_TICKET}{uuid.uuid4().hex[:12]}"
        handed = self.store.update(
            execution_id,
            Update(
                set={"status": Status.RUNNING.value, "message": WAITING_FOR_LOADER},
                meta={"worker": ticket, "heartbeat": iso_ms()},
                expect_status=ACTIVE,
                expect_worker=token,
            ),
        )
        if not handed:  # cancelled, or taken away, meanwhile
            doc = self.store.get(execution_id)
            return None if doc is None else str(doc["status"])
        assert self.triggers is not None  # hands_off
        self.triggers.send_load(execution_id, ticket, process)
        return Status.RUNNING.value

    def _run_claimed(self, execution_id: str, token: str, *, hand_off: bool) -> str | None:
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
                    hand_off=hand_off and self.hands_off,
                )
            except RunAborted as aborted:
                logger.info("execution %s stopped: %s", execution_id, aborted.reason)
                final = self.store.get(execution_id)
                return None if final is None else str(final["status"])

    def _run_phases(
        self,
        doc: dict[str, Any],
        process: Process,
        params: dict[str, Any],
        recorder: ExecutionRecorder,
        chain: list[str],
        control: RunControl,
        *,
        hand_off: bool = False,
    ) -> str:
        first, carried = resume_point(self.store, doc, len(process.phases))
        previous, updates, warnings = carried.result, carried.updates(), carried.warnings
        kept = True  # the result LOAD would take is kept (a checkpoint), or there is none
        run_started = time.monotonic()
        for phase in process.phases[first:]:
            if hand_off and phase.name == LOAD_PHASE and kept:
                raise _HandOff(process.name)
            resumed = phase.name in recorder.phase_names
            index = recorder.start_phase(
                phase.name, f"{'Resuming' if resumed else 'Running'} {phase.name}"
            )
            if resumed:
                recorder.log(index, log_line("info", f"Resuming {phase.name} on {self.worker_id}"))
            if hand_off and phase.name == LOAD_PHASE:
                recorder.log(
                    index,
                    log_line(
                        "warning",
                        f"{phase.name} runs on {self.worker_id}, not on the loader queue: the "
                        "previous phase's result could not be kept (not picklable, or over "
                        f"{MAX_CHECKPOINT_BYTES // (1024 * 1024)} MB)",
                    ),
                )
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
            kept = keep(self.store, doc["_id"], index, Carried.of(previous, updates, warnings))
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
