"""The process list: definitions, schedules and their state; enable, disable, reschedule.

Mounted under its own path (`/service/process`), since under `/service/process-exec/v1` every
segment is an execution key.
"""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import available_timezones

from fastapi import APIRouter, Request

from procexec.api import backfill as backfill_routes
from procexec.api.auth import permit
from procexec.api.bodies import described, json_body
from procexec.api.deps import Admin, Reader, StateDep
from procexec.api.errors import ApiError, error_responses
from procexec.engine.crontab import Crontab, ScheduleError
from procexec.engine.errors import NotFound, excerpt
from procexec.engine.scheduler import change_process, describe, effective
from procexec.engine.tokens import allows_process

router = APIRouter()


MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _names(*words: str) -> str:
    """Three-letter names in any case (`jan`, `JAN`, `Jan`), as croniter reads them."""
    return "|".join("".join(f"[{c.lower()}{c.upper()}]" for c in word) for word in words)


def _field(value: str) -> str:
    """A crontab field of `value`s: `*` or a value or a range, with a step; a list of those."""
    item = rf"(\*|({value})(-({value}))?)(/[1-9][0-9]*)?"
    return rf"{item}(,{item})*"


#: the crontabs a reschedule takes (the schema's pattern, and the route's check): five fields
#: of numbers in their ranges, `*`, ranges `a-b`, steps `/n`, lists `a,b`, month and weekday
#: names
CRONTAB = (
    r"^[ \t]*"
    + r"[ \t]+".join(
        _field(value)
        for value in (
            "[0-5]?[0-9]",
            "[01]?[0-9]|2[0-3]",
            "0?[1-9]|[12][0-9]|3[01]",
            "0?[1-9]|1[0-2]|"
            + _names(
                *[
                    "jan",
                    "feb",
                    "mar",
                    "apr",
                    "may",
                    "jun",
                    "jul",
                    "aug",
                    "sep",
                    "oct",
                    "nov",
                    "dec",
                ]
            ),
            "0?[0-7]|" + _names(*["sun", "mon", "tue", "wed", "thu", "fri", "sat"]),
        )
    )
    + r"[ \t]*$"
)
_CRONTAB = re.compile(CRONTAB.removesuffix("$") + r"\Z")

#: the timezones a reschedule takes: the IANA names of the system's database (or tzdata's)
ZONES = sorted(available_timezones())
_ZONES = frozenset(ZONES)

#: a reschedule's body, as `reschedule` reads it
SCHEDULE_BODY = described(
    {
        "type": "object",
        "required": ["schedule"],
        "properties": {
            "schedule": {
                "type": ["string", "null"],
                "pattern": CRONTAB,
                "description": "five crontab fields (minute hour day-of-month month "
                "day-of-week: numbers, `*`, ranges, steps, lists, names); null: the definition's",
            },
            "timezone": {
                "anyOf": [{"enum": ZONES}, {"type": "null"}],
                "description": "an IANA name (`Europe/London`); null: the one in use",
            },
        },
    }
)


def _check_schedule(schedule: str | None, timezone: str | None) -> None:
    """A 400 for a schedule or timezone outside the schema's (`CRONTAB`, `ZONES`), with
    croniter's word on what is wrong when it has one."""
    if timezone is not None and timezone not in _ZONES:
        raise ApiError(400, f"schedule: unknown timezone '{excerpt(timezone)}'")
    if schedule is None or _CRONTAB.match(schedule):
        return
    if not schedule.strip():
        raise ApiError(400, "schedule: required (five crontab fields)")
    try:
        Crontab(schedule)
    except ScheduleError as exc:
        raise ApiError(400, f"schedule: {exc}") from None
    raise ApiError(  # croniter's extensions (`L`, `#`, `?`, seconds) are not offered
        400,
        f"schedule: crontab '{excerpt(schedule)}' is not five fields of numbers in their "
        "ranges, *, ranges, steps, lists and names",
    )


#: a process as the process list shows it (`engine.scheduler.describe`)
PROCESS: dict[str, Any] = {
    "type": "object",
    "required": ["name", "service", "enabled", "phases", "defaults", "parameters"],
    "properties": {
        "name": {"type": "string"},
        "service": {"type": "string"},
        "description": {"type": "string"},
        "environment": {"type": "string", "description": "where its scheduled runs run"},
        "enabled": {"type": "boolean", "description": "false: no scheduled runs"},
        "schedule": {"type": ["string", "null"], "description": "five crontab fields"},
        "timezone": {"type": "string", "description": "the IANA zone the crontab is read in"},
        "missedPolicy": {"enum": ["skip", "latest"]},
        "nextFire": {"type": ["string", "null"]},
        "lastFire": {"type": ["string", "null"]},
        "missed": {"type": "integer", "minimum": 0},
        "phases": {"type": "array", "items": {"type": "string"}},
        "defaults": {"type": "object", "description": "each parameter's default, secrets masked"},
        "parameters": {
            "type": "object",
            "description": "the JSON Schema of its parameters (a trigger's `body`)",
        },
        "subscriptions": {"type": "array", "items": {"type": "string"}},
        "follows": {"type": "object", "additionalProperties": {"type": "array"}},
        "maxRunning": {
            "type": ["integer", "null"],
            "minimum": 1,
            "description": "runs of it that may run at once (its definition's or an "
            "operator's limit); null: no limit",
        },
        "limitKey": {
            "type": ["string", "null"],
            "description": "the parameter per value of which `maxRunning` holds",
        },
    },
}


def _answers(schema: dict[str, Any], *errors: int) -> dict[int | str, Any]:
    return {
        200: {"description": "OK", "content": {"application/json": {"schema": schema}}},
        **error_responses(*errors),
    }


@router.get(
    "/v1",
    summary="List the known processes",
    responses=_answers({"type": "array", "items": PROCESS}, 401, 403, 503),
)
def list_processes(state: StateDep, caller: Reader) -> list[dict[str, Any]]:
    """Every process (the caller's token may read) with its schedule, enabled flag and next
    fire time."""
    states = state.store.process_states()
    return [
        describe(effective(p, states.get(p.name)))
        for p in state.registry
        if allows_process(caller, p.name)
    ]


@router.get("/v1/{name}", summary="One process", responses=_answers(PROCESS, 401, 403, 404, 503))
def get_process(name: str, state: StateDep, caller: Reader) -> dict[str, Any]:
    process = state.registry.get(name)
    if process is None or not allows_process(caller, name):
        raise NotFound(f"unknown process '{excerpt(name)}'")
    return describe(effective(process, state.store.process_states().get(name)))


@router.post(
    "/v1/{name}/enable", summary="Enable a process", responses=_answers(PROCESS, 401, 403, 404, 503)
)
def enable(name: str, state: StateDep, caller: Admin) -> dict[str, Any]:
    permit(caller, process=name)
    return describe(
        change_process(state.store, state.registry, name, enabled=True, who=caller.user)
    )


@router.post(
    "/v1/{name}/disable",
    summary="Disable a process (no scheduled runs)",
    responses=_answers(PROCESS, 401, 403, 404, 503),
)
def disable(name: str, state: StateDep, caller: Admin) -> dict[str, Any]:
    permit(caller, process=name)
    return describe(
        change_process(state.store, state.registry, name, enabled=False, who=caller.user)
    )


@router.put(
    "/v1/{name}/schedule",
    summary="Reschedule a process",
    responses=_answers(PROCESS, 400, 401, 403, 404, 503),
    openapi_extra=SCHEDULE_BODY,
)
@router.post(
    "/v1/{name}/schedule",
    summary="Reschedule a process (as PUT)",
    responses=_answers(PROCESS, 400, 401, 403, 404, 503),
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
    _check_schedule(schedule, timezone)
    changed = change_process(
        state.store,
        state.registry,
        name,
        schedule=schedule,
        timezone=timezone,
        clear_schedule=schedule is None,
        who=caller.user,
    )
    return describe(changed)


router.include_router(backfill_routes.router)  # POST /v1/{name}/backfill
