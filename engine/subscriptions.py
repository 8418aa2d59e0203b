"""Runs that trigger runs: data subscriptions and followers of another process's outcome.

A process subscribed to data ids (`#ECB_FX.*`) runs once for each upstream run whose LOAD
updated matching ids, with the fulfilled subscription (the matching ids by date) as input. A
process that follows another (`follows={"ECB_FX": ("success",)}`) runs once for each of its runs
that ends that way. Loops are cut: a process already upstream of a run is not triggered by it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from procexec.engine.context import DataUpdates
from procexec.engine.process import Process, ProcessRegistry

_NAMESPACE = uuid.UUID("0b3e2f6c-1d4a-4f6e-8a9b-7c5d3e2f1a0b")


@dataclass(frozen=True)
class FollowUp:
    """One run to trigger because of an upstream run."""

    process: Process
    execution_id: str
    reason: str
    body: dict[str, Any]


@dataclass
class FollowUps:
    runs: list[FollowUp] = field(default_factory=list)
    #: processes not triggered because they are upstream of this run already
    cut: list[str] = field(default_factory=list)


def follow_up_id(upstream_id: str, process: str) -> str:
    """The one id that the run of `process` caused by `upstream_id` can have."""
    return str(uuid.uuid5(_NAMESPACE, f"{upstream_id}/{process}"))


def _matching(process: Process, updated: Mapping[str, list[str]]) -> dict[str, list[str]]:
    matched: dict[str, list[str]] = {}
    for date, ids in updated.items():
        hits = [item for item in ids if process.subscribes_to(item)]
        if hits:
            matched[date] = hits
    return matched


def follow_ups(
    registry: ProcessRegistry,
    upstream: Mapping[str, Any],
    status: str,
    updates: DataUpdates,
    chain: Sequence[str],
) -> FollowUps:
    """The runs that an upstream run ending with `status` and `updates` triggers."""
    result = FollowUps()
    lineage = [*chain, upstream["name"]]
    ok = status in ("success", "warning")
    for process in registry:
        body: dict[str, Any] = {}
        reason = ""
        if ok and process.subscriptions:
            series, curves = _matching(process, updates.series), _matching(process, updates.curves)
            if series or curves:
                body["subscription"] = {"series": series, "curves": curves}
                reason = f"subscription({upstream['name']},{upstream['_id']})"
        if status in process.follows.get(upstream["name"], ()):
            reason = reason or f"follows({upstream['name']},{upstream['_id']},{status})"
        if not reason:
            continue
        if process.name in lineage:
            result.cut.append(process.name)
            continue
        body["upstream"] = {"_id": upstream["_id"], "name": upstream["name"], "status": status}
        result.runs.append(
            FollowUp(process, follow_up_id(upstream["_id"], process.name), reason, body)
        )
    return result
