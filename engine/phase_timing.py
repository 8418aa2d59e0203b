"""A phase's clock: the watchdog that fails a run when a phase or the run overruns its limit,
and the wait between two attempts of a phase."""

from __future__ import annotations

import time

from procexec.engine.control import RunControl
from procexec.engine.domain import Status
from procexec.engine.process import PhaseDefinition, Process
from procexec.engine.recorder import ExecutionRecorder
from procexec.engine.timeutil import log_line


def wait_to_retry(
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


def arm_timeout(
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
