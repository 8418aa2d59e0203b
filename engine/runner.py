"""Runs one execution's phases in order and records everything in its document."""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from procexec.engine.checkpoints import MAX_CHECKPOINT_BYTES, Carried, pack, resume_point
from procexec.engine.concurrency import Limits
from procexec.engine.context import DataUpdates, PhaseContext
from procexec.engine.control import RunAborted, RunControl
from procexec.engine.domain import (
    ACTIVE,
    LOAD_PHASE,
    LOADER_TICKET,
    TERMINAL,
    PhaseStatus,
    Status,
)
from procexec.engine.errors import BadRequest
from procexec.engine.follow_up_runs import record_follow_ups
from procexec.engine.phase_timing import arm_timeout, wait_to_retry
from procexec.engine.process import Process, ProcessRegistry
from procexec.engine.recorder import ExecutionRecorder, new_phase
from procexec.engine.store.base import ExecutionStore, Update
from procexec.engine.timeutil import iso_ms, log_line
from procexec.engine.trigger_service import TriggerService

if TYPE_CHECKING:
    from procexec.engine.notify import Notifier

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


@dataclass(frozen=True)
class _Start:
    """Where a run starts, as read before its claim (`PhaseRunner._start`)."""

    process: Process | None
    #: the index of the first phase to run, and what it takes (`resume_point`)
    first: int
    carried: Carried
    #: the entry of the first phase, begun by the claim; None where it exists (a resumed
    #: phase) or is handed over
    opening: dict[str, Any] | None
    #: LOAD goes to the loader queue
    hand_off: bool


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
        loads_here: bool = False,
        notifier: Notifier | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.worker_id = worker_id
        self.flush_interval = flush_interval
        #: triggers the runs that subscribe to or follow a finished run; None: none are
        self.triggers = triggers
        self.heartbeat_interval = heartbeat_interval
        self.max_log_lines = max_log_lines
        #: this worker consumes the loader queue itself: LOAD runs here, never handed over to
        #: itself (a message, a claim and a recorder saved a run)
        self.loads_here = loads_here
        #: tells the operator's webhook of finished runs (`engine.notify`); None: nothing is
        self.notifier = notifier
        #: the concurrency limits its runs are held to (`engine.concurrency`)
        self.limits = limits or Limits(store, registry, triggers)

    def claim(
        self,
        execution_id: str,
        ticket: str | None = None,
        *,
        seq: int | None = None,
        opening: dict[str, Any] | None = None,
    ) -> str | None:
        """Take a triggered execution, or with `ticket` a run whose batch waits for a loader
        under that ticket; returns this claim's fencing token, or None. With `seq`, only while
        the document is still as read at that sequence number; with `opening`, the claim also
        begins that phase (`recorder.new_phase`): one write."""
        token = f"{self.worker_id}#{uuid.uuid4().hex[:12]}"
        expected = Status.RUNNING if ticket is not None else Status.TRIGGERED
        message = "Running" if opening is None else str(opening["message"])
        claimed = self.store.update(
            execution_id,
            Update(
                set={"status": Status.RUNNING.value, "message": message},
                push=None if opening is None else {"phases": [opening]},
                expect_status=frozenset({expected.value}),
                expect_worker=ticket,
                expect_seq=seq,
                meta={"worker": token, "heartbeat": iso_ms()},
            ),
        )
        return token if claimed else None

    @property
    def hands_off(self) -> bool:
        """Whether this runner sends LOAD phases to the loader queue."""
        return (
            self.triggers is not None and self.triggers.hand_off is not None and not self.loads_here
        )

    def run(self, execution_id: str, ticket: str | None = None) -> str | None:
        """Run the execution if it is still `triggered`; returns its final status, or None;
        `triggered` where a concurrency limit keeps it waiting for a slot (`engine.concurrency`).

        With `ticket` (a loader's task): run what is left, LOAD, of a run whose batch was
        handed over under that ticket. A run handed to the loader queue returns `running`.
        """
        expected = Status.RUNNING if ticket is not None else Status.TRIGGERED
        found = self.store.get_at(execution_id)
        start = None
        if found is not None and found[0].get("status") == expected.value:
            start = self._start(found[0], ticket is None)
            process = start.process if ticket is None else None
            limited = process is not None and self.limits.limited(process)
            if (
                process is not None
                and limited
                and not self.limits.admit(found[0], process, found[1])
            ):
                return Status.TRIGGERED.value  # waits for a slot
            if limited and start.opening is not None:  # it begins now, its slot taken
                start.opening["start"] = iso_ms()
            token = self.claim(execution_id, ticket, seq=found[1], opening=start.opening)
            if limited and token is None and self.store.holder(execution_id)[0] in TERMINAL:
                self.limits.release(execution_id)  # ended meanwhile: the slot just taken
        if found is None or start is None or token is None:
            waiting = "waiting for this loader" if ticket else "waiting to run"
            logger.info("execution %s is not %s; skipped", execution_id, waiting)
            return None
        try:
            status = self._run_claimed(found[0], start, token)
        except _HandOff as handing:
            return self._hand_off(execution_id, token, handing.process)
        if status in TERMINAL and self.limits.limited(start.process):
            self.limits.release(execution_id)
        return status

    def _start(self, doc: dict[str, Any], may_hand_off: bool) -> _Start:
        """Where a run read before its claim starts: its process, the first phase to run and
        what that phase takes, and the entry of that phase when the claim can begin it."""
        process = self.registry.get(doc["name"])
        if process is None:
            return _Start(None, 0, Carried(None), None, False)
        first, carried = resume_point(self.store, doc, len(process.phases))
        hand_off = may_hand_off and self.hands_off
        opening = None
        if first < len(process.phases) and first == len(doc.get("phases") or []):
            name = process.phases[first].name
            if not (hand_off and name == LOAD_PHASE):
                opening = new_phase(name, f"Running {name}")
        return _Start(process, first, carried, opening, hand_off)

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

    def _run_claimed(self, doc: dict[str, Any], start: _Start, token: str) -> str | None:
        execution_id = doc["_id"]
        if start.opening is not None:
            doc = {**doc, "phases": [*(doc.get("phases") or []), start.opening]}
        meta = self.store.get_meta(execution_id)
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
            if start.process is None:
                recorder.set(
                    status=Status.FAILED.value,
                    message=f"Unknown process '{doc['name']}' on worker {self.worker_id}",
                    end=iso_ms(),
                )
                return Status.FAILED.value
            try:
                return self._run_phases(
                    doc,
                    start,
                    meta.get("input") or {},
                    recorder,
                    meta.get("chain") or [],
                    control,
                )
            except RunAborted as aborted:
                logger.info("execution %s stopped: %s", execution_id, aborted.reason)
                final = self.store.get(execution_id)
                if final and self.notifier and str(final["message"]).startswith("Timed out"):
                    self.notifier.finished(final, str(final["status"]), str(final["message"]))
                return None if final is None else str(final["status"])

    def _run_phases(
        self,
        doc: dict[str, Any],
        start: _Start,
        params: dict[str, Any],
        recorder: ExecutionRecorder,
        chain: list[str],
        control: RunControl,
    ) -> str:
        process, hand_off, carried = start.process, start.hand_off, start.carried
        assert process is not None
        previous, updates, warnings = carried.result, carried.updates(), carried.warnings
        try:
            arguments = process.arguments(params)
        except BadRequest as exc:  # recorded under a definition since changed
            self._refuse(doc, start, recorder, chain, updates, str(exc))
            return Status.FAILED.value
        kept = True  # the result LOAD would take is kept (a checkpoint), or there is none
        run_started = time.monotonic()
        for number, phase in enumerate(process.phases[start.first :]):
            if hand_off and phase.name == LOAD_PHASE and kept:
                raise _HandOff(process.name)
            resumed = phase.name in recorder.phase_names
            if number == 0 and start.opening is not None:  # begun by the claim
                resumed, index = False, recorder.phase_names.index(phase.name)
            else:
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
                    params=arguments,
                    service_keys=params,
                    recorder=recorder,
                    store=self.store,
                    updates=updates,
                    control=control,
                    attempt=attempt,
                )
                arm_timeout(recorder, control, process, phase, run_started)
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
                    arm_timeout(recorder, control, process, phase, run_started, phase_limit=False)
                    wait_to_retry(recorder, control, index, phase.name, of, delay)
                finally:
                    recorder.deadline = None
            previous = result
            warnings += context.warnings
            if updates.loader_message is not None and updates.loader_message != loader_before:
                # The loader's own report closes a loading phase's log, as on the platform.
                recorder.log(index, updates.loader_message)
            else:
                recorder.log(index, log_line("info", f"Completed {phase.name}"))
            blob = pack(Carried.of(previous, updates, warnings))
            kept = blob is not None
            recorder.end_phase(index, PhaseStatus.SUCCESS, f"Completed {phase.name}", blob)
            control.check()
        status = Status.WARNING if warnings else Status.SUCCESS
        message = COMPLETED_WITH_WARNINGS if warnings else COMPLETED
        self._finish(doc, recorder, updates, chain, status=status, message=message)
        return status.value

    def _refuse(
        self,
        doc: dict[str, Any],
        start: _Start,
        recorder: ExecutionRecorder,
        chain: list[str],
        updates: DataUpdates,
        problem: str,
    ) -> None:
        """Fail a run whose recorded parameters its process refuses now, before any phase."""
        assert start.process is not None
        first = start.process.phases[start.first].name
        message = f"Failed in {first}: its parameters are refused: {problem}"
        if first in recorder.phase_names:
            recorder.end_phase(recorder.phase_names.index(first), PhaseStatus.FAILED, message)
        self._finish(doc, recorder, updates, chain, status=Status.FAILED, message=message)

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
        recorded = record_follow_ups(
            self.triggers, self.registry, doc, recorder, updates, chain, status
        )
        fields: dict[str, Any] = {"status": status.value, "message": message, "end": iso_ms()}
        if updates.loader_message is not None:
            fields["loaderMessage"] = updates.loader_message
        if updates:
            fields["data"] = updates.as_document()
        written = recorder.set(**fields)
        if written and self.notifier is not None:  # the final status is in the store
            self.notifier.finished(doc, status.value, message)
        if self.triggers is not None:
            for execution_id, process in recorded:
                self.triggers.send(execution_id, process=process)
