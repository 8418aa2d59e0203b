"""The process list: definitions, schedules and their state; enable, disable, reschedule.

Mounted under its own path (`/service/process`), since under `/service/process-exec/v1` every
segment is an execution key.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from procexec.api.auth import permit
from procexec.api.bodies import described, json_body
from procexec.api.deps import Admin, Reader, StateDep
from procexec.api.errors import ApiError, error_responses
from procexec.engine.errors import NotFound, excerpt
from procexec.engine.scheduler import change_process, describe, effective
from procexec.engine.tokens import allows_process

router = APIRouter()

#: a reschedule's body, as `reschedule` reads it
SCHEDULE_BODY = described(
    {
        "type": "object",
        "required": ["schedule"],
        "properties": {
            "schedule": {
                "type": ["string", "null"],
                "description": "five crontab fields; null: the definition's",
            },
            "timezone": {"type": ["string", "null"], "description": "an IANA name"},
        },
    }
)


@router.get("/v1", summary="List the known processes", responses=error_responses(401, 403, 503))
def list_processes(state: StateDep, caller: Reader) -> list[dict[str, Any]]:
    """Every process (the caller's token may read) with its schedule, enabled flag and next
    fire time."""
    states = state.store.process_states()
    return [
        describe(effective(p, states.get(p.name)))
        for p in state.registry
        if allows_process(caller, p.name)
    ]


@router.get("/v1/{name}", summary="One process", responses=error_responses(401, 403, 404, 503))
def get_process(name: str, state: StateDep, caller: Reader) -> dict[str, Any]:
    process = state.registry.get(name)
    if process is None or not allows_process(caller, name):
        raise NotFound(f"unknown process '{excerpt(name)}'")
    return describe(effective(process, state.store.process_states().get(name)))


@router.post(
    "/v1/{name}/enable", summary="Enable a process", responses=error_responses(401, 403, 404, 503)
)
def enable(name: str, state: StateDep, caller: Admin) -> dict[str, Any]:
    permit(caller, process=name)
    return describe(change_process(state.store, state.registry, name, enabled=True))


@router.post(
    "/v1/{name}/disable",
    summary="Disable a process (no scheduled runs)",
    responses=error_responses(401, 403, 404, 503),
)
def disable(name: str, state: StateDep, caller: Admin) -> dict[str, Any]:
    permit(caller, process=name)
    return describe(change_process(state.store, state.registry, name, enabled=False))


@router.put(
    "/v1/{name}/schedule",
    summary="Reschedule a process",
    responses=error_responses(400, 401, 403, 404, 503),
    openapi_extra=SCHEDULE_BODY,
)
@router.post(
    "/v1/{name}/schedule",
    summary="Reschedule a process (as PUT)",
    responses=error_responses(400, 401, 403, 404, 503),
    openapi_extra=SCHEDULE_BODY,
)
async def reschedule(name: str, request: Request, state: StateDep, caller: Admin) -> Any:
    """Body `{"schedule": "30 16 * * 1-5", "timezone": "Europe/London"}`; a null schedule
    returns to the definition's."""
    permit(caller, process=name)
    payload = json_body(await request.body() or b"null")
    if not isinstance(payload, dict) or "schedule" not in payload:
        raise ApiError(400, 'request body: expected {"schedule": "<five crontab fields>"}')
    schedule, timezone = payload.get("schedule"), payload.get("timezone")
    for field, value in (("schedule", schedule), ("timezone", timezone)):
        if value is not None and not isinstance(value, str):
            raise ApiError(400, f"{field}: must be a string")
    changed = change_process(
        state.store,
        state.registry,
        name,
        schedule=schedule,
        timezone=timezone,
        clear_schedule=schedule is None,
    )
    return describe(changed)
