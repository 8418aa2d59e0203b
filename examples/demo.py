"""DEMO: four phases driven by the trigger's body, for trying and testing the service.

`sleep`: seconds per phase (fractions allowed); `fail_in`: the name of a phase that raises;
`log_lines`: lines logged per phase; `fail_times`: how many attempts of `fail_in` fail (then it
succeeds: for retries); `guard`: a folder where each phase holds a lock file while it runs, and
records an overlap if another copy of the same phase is running (for the fault-injection bench).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from procexec import PhaseContext, Process
from procexec.engine.domain import PHASES
from procexec.engine.pids import pid_alive

DEMO = Process(
    "DEMO",
    service="ETL",
    description="A demonstration process: sleeps, logs and fails on request",
    defaults={"sleep": 0, "fail_in": None, "log_lines": 1, "fail_times": None, "guard": None},
)


def _phase(ctx: PhaseContext, previous: Any) -> int:
    guard = ctx.params.get("guard")
    if not guard:
        return _work(ctx, previous)
    lock = Path(guard) / f"{ctx.execution_id}.{ctx.phase}.lock"
    if not _take(lock):
        (Path(guard) / f"{ctx.execution_id}.{ctx.phase}.overlap").touch()
        return _work(ctx, previous)
    try:
        return _work(ctx, previous)
    finally:
        lock.unlink(missing_ok=True)


def _take(lock: Path) -> bool:
    """Hold `lock` for this process; False if a live process holds it (a phase running twice).

    A lock left by a killed worker is stale: its process is gone, and the lock is taken over.
    """
    for _ in range(3):
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(lock.read_text() or 0)
            except (OSError, ValueError):
                continue  # being written or removed right now
            if holder and pid_alive(holder):
                return False
            lock.unlink(missing_ok=True)
            continue
        os.write(handle, str(os.getpid()).encode())
        os.close(handle)
        return True
    return False


def _work(ctx: PhaseContext, previous: Any) -> int:
    lines = int(ctx.params.get("log_lines") or 0)
    pause = float(ctx.params.get("sleep") or 0)
    for number in range(1, lines + 1):
        ctx.info(f"{ctx.phase} line {number} of {lines}")
        if pause:
            ctx.sleep(pause / lines)
    if pause and not lines:
        ctx.sleep(pause)
    fail_in = ctx.params.get("fail_in")
    fail_times = ctx.params.get("fail_times")
    failing = fail_times is None or ctx.attempt <= int(fail_times)
    if fail_in and str(fail_in).upper() == ctx.phase and failing:
        raise RuntimeError(f"failure requested in {ctx.phase} (fail_in={fail_in})")
    return (previous or 0) + 1


for _name in PHASES:
    DEMO.phase(_name)(_phase)
