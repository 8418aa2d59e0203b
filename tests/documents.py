"""Execution documents for tests to store: finished runs in the seed page's shape."""

from __future__ import annotations

from typing import Any


def execution(
    execution_id: str,
    start: str,
    *,
    name: str = "ECB_FX",
    status: str = "success",
    environment: str = "production",
    trigger: str = "scheduled",
) -> dict[str, Any]:
    """A finished execution document in the seed page's shape, to insert into the store."""
    end = start[:-5] + "999Z"
    phases = [
        {
            "name": phase,
            "start": start,
            "status": "failed" if status == "failed" and phase == "LOAD" else "success",
            "message": f"Completed {phase}",
            "log": [f"{start[:-1]}000000Z[UTC] info Completed {phase}"],
            "end": end,
        }
        for phase in ("EXTRACT", "TRANSFORM", "SEND", "LOAD")
    ]
    return {
        "_id": execution_id,
        "service": "ETL",
        "name": name,
        "environment": environment,
        "trigger": trigger,
        "status": status,
        "message": "Completed Successfully" if status == "success" else "Failed in LOAD",
        "reason": f"crontab({name},Thu Jul 01 2021 16:30:00 GMT+0000 (Greenwich Mean Time))",
        "start": start,
        "runAs": "com_walkfares",
        "phases": phases,
        "end": end,
    }
