"""Execution documents for tests to store: finished runs in the seed page's shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema_rs
from pydantic import ValidationError

from procexec.engine.document import Execution, json_schemas


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
    end = start[:-4] + "999Z"  # the same second, its last millisecond
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


def assert_execution(doc: Mapping[str, Any]) -> None:
    """`doc` is a whole execution document as the engine writes it: valid for the model
    (`engine.document.Execution`) and for its JSON Schema (what the API's description holds,
    but with the fields a whole document always has required)."""
    try:
        Execution.model_validate(doc)
    except ValidationError as exc:
        raise AssertionError(f"{doc.get('_id')}: {exc}") from None
    errors = [f"{error.instance_path}: {error.message}" for error in _WHOLE.iter_errors(doc)]
    assert not errors, f"{doc.get('_id')}: {errors}"


#: the JSON Schema of a whole document (`engine.document.json_schemas`, its refs made local)
_WHOLE = jsonschema_rs.validator_for(
    {**json_schemas("#/$defs/{model}")["Execution"], "$defs": json_schemas("#/$defs/{model}")}
)
