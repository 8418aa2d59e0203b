"""Recording the runs that a finished run triggers (subscriptions and followers), before its
final status: a worker that dies in between leaves them `triggered`, for redelivery."""

from __future__ import annotations

import logging
from typing import Any

from procexec.engine.context import DataUpdates
from procexec.engine.domain import Status, Trigger
from procexec.engine.errors import DuplicateExecution
from procexec.engine.process import ProcessRegistry
from procexec.engine.recorder import ExecutionRecorder
from procexec.engine.subscriptions import follow_ups
from procexec.engine.timeutil import log_line
from procexec.engine.trigger_service import TriggerService

logger = logging.getLogger("procexec.engine.runner")


def record_follow_ups(
    triggers: TriggerService | None,
    registry: ProcessRegistry,
    doc: dict[str, Any],
    recorder: ExecutionRecorder,
    updates: DataUpdates,
    chain: list[str],
    status: Status,
) -> list[tuple[str, str]]:
    """Record the runs that follow this one; their ids and process names, to send."""
    if triggers is None:
        return []
    plan = follow_ups(registry, doc, status.value, updates, chain)
    last_phase = recorder.phase_count - 1
    for name in plan.cut:
        text = f"Not triggering {name}: it is upstream of this run (loop cut)"
        logger.warning("execution %s: %s", doc["_id"], text)
        if last_phase >= 0:
            recorder.log(last_phase, log_line("info", text))
    recorded = []
    for run in plan.runs:
        try:
            triggers.record(
                run.process.name,
                run_as=doc.get("runAs", ""),
                environment=doc["environment"],
                added=run.body,
                trigger=Trigger.SUBSCRIPTION,
                reason=run.reason,
                execution_id=run.execution_id,
                chain=[*chain, doc["name"]],
            )
        except DuplicateExecution:
            continue  # recorded by an earlier attempt of this run
        recorded.append((run.execution_id, run.process.name))
    return recorded
