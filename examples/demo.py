"""DEMO: four phases driven by the trigger's body, for trying and testing the service.

`sleep`: seconds per phase (fractions allowed, at most `MAX_SLEEP`); `fail_in`: the name of a
phase that raises; `log_lines`: lines logged per phase (at most `MAX_LOG_LINES`); `fail_times`:
how many attempts of `fail_in` fail (then it succeeds: for retries); `guard`: a name (letters,
digits, `_`, `.`, `-`): each phase holds a lock file in `<data folder>/guards/<name>` while it
runs, and records an overlap there if another copy of the same phase is running (for the
fault-injection bench). A body outside these (`DemoParams`) is refused at trigger time with
a 400.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from procexec import PhaseContext, Process
from procexec.engine.domain import PHASES
from procexec.engine.pids import pid_alive
from procexec.engine.settings import Settings

#: the most seconds `sleep` may ask for, per phase
MAX_SLEEP = 600.0
#: the most lines `log_lines` may ask for, per phase
MAX_LOG_LINES = 10_000
#: a guard's name: a folder name, never a path
GUARD_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\Z")


class DemoParams(BaseModel):
    """DEMO's parameters."""

    sleep: float = Field(0, ge=0, le=MAX_SLEEP, description="seconds each phase takes")
    fail_in: Literal["EXTRACT", "TRANSFORM", "SEND", "LOAD"] | None = Field(
        None, description="the phase that raises (in any case)"
    )
    log_lines: int = Field(1, ge=0, le=MAX_LOG_LINES, description="lines each phase logs")
    fail_times: int | None = Field(
        None,
        ge=0,
        le=1_000_000,
        description="attempts of `fail_in` that fail before it succeeds (none: every one)",
    )
    guard: str | None = Field(
        None,
        # a lookahead for the end, where `$` would also take a final newline
        json_schema_extra={"pattern": GUARD_NAME.pattern.replace("\\Z", "(?![\\s\\S])")},
        description="a lock folder's name: each phase records an overlap there if another "
        "copy of it runs at once",
    )

    @field_validator("fail_in", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("guard")
    @classmethod
    def _a_name(cls, value: str | None) -> str | None:
        if value is not None and not GUARD_NAME.match(value):
            raise ValueError("expected a name (letters, digits, '_', '.', '-'; no path)")
        return value


DEMO = Process(
    "DEMO",
    service="ETL",
    description="A demonstration process: sleeps, logs and fails on request",
    params=DemoParams,
    # every phase may sleep its longest, with time to spare
    timeout=len(PHASES) * MAX_SLEEP + 600,
)


def guard_folder(name: str, data_dir: Path | None = None) -> Path:
    """The folder of guard `name`, under the data folder (the settings' unless given)."""
    if not GUARD_NAME.match(name):
        raise ValueError(f"guard: {name!r:.40} is not a name")
    folder = (data_dir or Settings.from_env().data_dir) / "guards" / name
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def _phase(ctx: PhaseContext, previous: Any) -> int:
    guard = ctx.params.guard
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
    params: DemoParams = ctx.params
    lines, pause = params.log_lines, params.sleep
    for number_ in range(1, lines + 1):
        ctx.info(f"{ctx.phase} line {number_} of {lines}")
        if pause:
            ctx.sleep(pause / lines)
    if pause and not lines:
        ctx.sleep(pause)
    fail_times = params.fail_times
    failing = fail_times is None or ctx.attempt <= fail_times
    if params.fail_in == ctx.phase and failing:
        raise RuntimeError(f"failure requested in {ctx.phase} (fail_in={params.fail_in})")
    return (previous or 0) + 1


for _name in PHASES:
    DEMO.phase(_name)(_phase)
