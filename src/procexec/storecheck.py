"""`procexec store check`: the configured store's health, as text or JSON.

The store is opened as it is (nothing made, nothing changed) and asked for its report
(`ExecutionStore.check`): whether it answers, which of the indexes the service makes it holds,
and its counts. The URL is shown with its password hidden.
"""

from __future__ import annotations

import json
from typing import Any

from procexec.engine.redact import mask_secrets, masked_url
from procexec.engine.store import StoreReport, sqlite_path


def kind_of(url: str) -> str:
    return "sqlite" if sqlite_path(url) is not None else "mongodb"


def _error(url: str, report: StoreReport) -> str | None:
    """The report's error, any URL in it (if a driver quoted it) with its password hidden."""
    return None if report.error is None else mask_secrets(report.error)


def verdict(url: str, report: StoreReport) -> str:
    """`healthy`, or `unhealthy: ` and why."""
    if not report.reachable:
        return f"unhealthy: the store does not answer: {_error(url, report)}"
    if report.error is not None:
        return f"unhealthy: {_error(url, report)}"
    if report.missing:
        count = len(report.missing)
        return (
            f"unhealthy: {count} index{'es' if count > 1 else ''} missing; the service makes "
            f"them when it opens the store (procexec standalone, api, worker or beat)"
        )
    return "healthy"


def as_json(url: str, report: StoreReport) -> str:
    document: dict[str, Any] = {
        "store": masked_url(url),
        "kind": report.kind,
        "healthy": report.healthy,
        "reachable": report.reachable,
        "error": _error(url, report),
        "indexes": [
            {"collection": index.collection, "name": index.name, "present": index.present}
            for index in report.indexes
        ],
        "executions": report.executions,
        "byStatus": dict(report.by_status),
        "checkpoints": report.checkpoints,
    }
    return json.dumps(document, indent=2)


def as_text(url: str, report: StoreReport) -> str:
    lines = [
        f"store:       {masked_url(url)} ({report.kind})",
        f"reachable:   {'yes' if report.reachable else 'no'}",
    ]
    if report.indexes:
        present = sum(index.present for index in report.indexes)
        lines.append(f"indexes:     {present} of {len(report.indexes)} present")
        width = max(len(index.collection) for index in report.indexes)
        lines += [
            f"  {'present' if index.present else 'MISSING'}  {index.collection:<{width}}  "
            f"{index.name}"
            for index in report.indexes
        ]
    if report.executions is not None:
        statuses = ", ".join(f"{status} {count}" for status, count in report.by_status.items())
        lines.append(f"executions:  {report.executions}" + (f" ({statuses})" if statuses else ""))
    if report.checkpoints is not None:
        lines.append(f"checkpoints: {report.checkpoints}")
    lines.append(verdict(url, report))
    return "\n".join(lines)
