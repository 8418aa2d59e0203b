"""DEMO: four phases driven by the trigger's body, for trying and testing the service.

`sleep`: seconds per phase (fractions allowed); `fail_in`: the name of a phase that raises;
`log_lines`: lines logged per phase.
"""

from __future__ import annotations

import time
from typing import Any

from engine import PhaseContext, Process
from engine.constants import PHASES

DEMO = Process(
    "DEMO",
    service="ETL",
    description="A demonstration process: sleeps, logs and fails on request",
    defaults={"sleep": 0, "fail_in": None, "log_lines": 1},
)


def _phase(ctx: PhaseContext, previous: Any) -> int:
    lines = int(ctx.params.get("log_lines") or 0)
    pause = float(ctx.params.get("sleep") or 0)
    for number in range(1, lines + 1):
        ctx.info(f"{ctx.phase} line {number} of {lines}")
        if pause:
            time.sleep(pause / lines)
    if pause and not lines:
        time.sleep(pause)
    fail_in = ctx.params.get("fail_in")
    if fail_in and str(fail_in).upper() == ctx.phase:
        raise RuntimeError(f"failure requested in {ctx.phase} (fail_in={fail_in})")
    return (previous or 0) + 1


for _name in PHASES:
    DEMO.phase(_name)(_phase)
