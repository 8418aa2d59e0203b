"""DEMO: four phases driven by the trigger's body, for trying and testing the service.

`sleep`: seconds per phase (fractions allowed, at most `MAX_SLEEP`); `fail_in`: the name of a
phase that raises; `log_lines`: lines logged per phase (at most `MAX_LOG_LINES`); `fail_times`:
how many attempts of `fail_in` fail (then it succeeds: for retries); `guard`: a name (letters,
digits, `_`, `.`, `-`): each phase holds a lock file in `<data folder>/guards/<name>` while it
runs, and records an overlap there if another copy of the same phase is running (for the
fault-injection bench). A body outside these is refused at trigger time with a 400.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from procexec import PhaseContext, Process
from procexec.engine.domain import PHASES
from procexec.engine.pids import pid_alive
from procexec.engine.settings import Settings
from procexec.examples.checks import number

#: the most seconds `sleep` may ask for, per phase
MAX_SLEEP = 600.0
#: the most lines `log_lines` may ask for, per phase
MAX_LOG_LINES = 10_000
#: a guard's name: a folder name, never a path
GUARD_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\Z")


def check(params: Mapping[str, Any]) -> None:
    """Each parameter within its bounds; a `ValueError` naming the first that is not."""
    number(params, "sleep", 0, MAX_SLEEP)
    number(params, "log_lines", 0, MAX_LOG_LINES)
    number(params, "fail_times", 0, 1_000_000)
    fail_in = params.get("fail_in")
    if fail_in and (not isinstance(fail_in, str) or fail_in.upper() not in PHASES):
        raise ValueError(f"fail_in: expected one of {', '.join(PHASES)}, got {fail_in!r:.40}")
    guard = params.get("guard")
    if guard is not None and (not isinstance(guard, str) or not GUARD_NAME.match(guard)):
        raise ValueError(
            f"guard: expected a name (letters, digits, '_', '.', '-'; no path), got {guard!r:.40}"
        )


DEMO = Process(
    "DEMO",
    service="ETL",
    description="A demonstration process: sleeps, logs and fails on request",
    defaults={"sleep": 0, "fail_in": None, "log_lines": 1, "fail_times": None, "guard": None},
    # every phase may sleep its longest, with time to spare
    timeout=len(PHASES) * MAX_SLEEP + 600,
    check=check,
)


def guard_folder(name: str, data_dir: Path | None = None) -> Path:
    """The folder of guard `name`, under the data folder (the settings' unless given)."""
    if not GUARD_NAME.match(name):
        raise ValueError(f"guard: {name!r:.40} is not a name")
    folder = (data_dir or Settings.from_env().data_dir) / "guards" / name
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def _phase(ctx: PhaseContext, previous: Any) -> int:
    check(ctx.params)  # as at trigger time: a run recorded otherwise is held to it too
    guard = ctx.params.get("guard")
    if not guard:
        return _work(ctx, previous)
    folder = guard_folder(guard)
    lock = folder / f"{ctx.execution_id}.{ctx.phase}.lock"
    if not _take(lock):
        (folder / f"{ctx.execution_id}.{ctx.phase}.overlap").touch()
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
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
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
    lines = int(number(ctx.params, "log_lines", 0, MAX_LOG_LINES))
    pause = number(ctx.params, "sleep", 0, MAX_SLEEP)
    for number_ in range(1, lines + 1):
        ctx.info(f"{ctx.phase} line {number_} of {lines}")
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
