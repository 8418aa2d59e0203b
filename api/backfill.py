"""`POST /service/process/v1/{name}/backfill`: the runs a process's schedule would have made over
a past range (`engine.backfill`), for an admin token; included in the process routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from procexec.api.auth import permit
from procexec.api.bodies import described, json_body
from procexec.api.deps import Admin, StateDep
from procexec.api.errors import ApiError, error_responses
from procexec.api.times import ISO_TIME, check_time
from procexec.engine.backfill import MAX_FIRES, BackfillService
from procexec.engine.errors import excerpt

router = APIRouter()

#: the fields of a backfill's body
FIELDS = ("from", "to", "dryRun")

#: a backfill's body, as `backfill` reads it
BACKFILL_BODY = described(
    {
        "type": "object",
        "required": ["from", "to"],
        "additionalProperties": False,
        "properties": {
            "from": {
                "type": "string",
                "pattern": ISO_TIME,
                "description": "the first instant of the range, included: ISO 8601 "
                "(`2021-07-01T00:00:00Z`; without an offset, UTC)",
            },
            "to": {
                "type": "string",
                "pattern": ISO_TIME,
                "description": "the end of the range, not included (a day is `2021-07-01` to "
                "`2021-07-02`); not after now",
            },
            "dryRun": {
                "type": "boolean",
                "description": "true: list the fire times and which runs exist; make none",
            },
        },
    }
)

#: one fire time of a backfill
RUN: dict[str, Any] = {
    "type": "object",
    "required": ["fireTime", "id", "state"],
    "properties": {
        "fireTime": {"type": "string"},
        "id": {"type": "string", "description": "its run's execution id (the beat's)"},
        "state": {
            "enum": ["made", "existed", "refused", "new"],
            "description": "its run made now, there already, refused by its process's check; "
            "in a dry run, new or existed",
        },
        "message": {"type": "string", "description": "why a refused run was refused"},
    },
}
#: a backfill's answer (`engine.backfill.Backfill.describe`)
BACKFILL: dict[str, Any] = {
    "type": "object",
    "required": ["process", "from", "to", "dryRun", "runs", "made", "existed", "refused", "new"],
    "properties": {
        "process": {"type": "string"},
        "from": {"type": "string"},
        "to": {"type": "string"},
        "dryRun": {"type": "boolean"},
        "runs": {"type": "array", "items": RUN, "maxItems": MAX_FIRES},
        **{
            count: {"type": "integer", "minimum": 0}
            for count in ("made", "existed", "refused", "new")
        },
    },
}


def _read(payload: Any) -> tuple[str, str, bool]:
    """The body's `from`, `to` and `dryRun`, or a 400 naming what is wrong."""
    if not isinstance(payload, dict):
        raise ApiError(400, 'request body: expected {"from": "<ISO time>", "to": "<ISO time>"}')
    unknown = [key for key in payload if key not in FIELDS]
    if unknown:
        raise ApiError(
            400,
            f"request body: unknown field '{excerpt(unknown[0])}' (fields: {', '.join(FIELDS)})",
        )
    for field in ("from", "to"):
        if field not in payload:
            raise ApiError(400, f"{field}: required (an ISO 8601 time)")
        if not isinstance(payload[field], str):
            raise ApiError(400, f"{field}: must be a string (an ISO 8601 time)")
        check_time(field, payload[field])
    dry_run = payload.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise ApiError(400, "dryRun: must be true or false")
    return payload["from"], payload["to"], dry_run


@router.post(
    "/v1/{name}/backfill",
    summary="Backfill a process's schedule over a past range",
    responses={
        200: {"description": "OK", "content": {"application/json": {"schema": BACKFILL}}},
        **error_responses(400, 401, 403, 404, 409, 503),
        409: {**error_responses(409)[409], "description": "The process has no schedule"},
    },
    openapi_extra=BACKFILL_BODY,
)
async def backfill(name: str, request: Request, state: StateDep, caller: Admin) -> Any:
    """Body `{"from": "2021-07-01", "to": "2021-07-02", "dryRun": false}`: one run per fire
    time of the schedule in `[from, to)`, each the one the beat would have made (trigger
    `scheduled`, its reason and id), made only where none exists; at most 1000 fire times."""
    permit(caller, process=name)
    start, end, dry_run = _read(json_body(await request.body() or b"null"))
    service = BackfillService(state.store, state.registry, state.triggers)
    process = service.process(name)
    permit(caller, environment=process.environment)
    done = await run_in_threadpool(
        service.backfill, name, start, end, who=caller.user, dry_run=dry_run
    )
    return done.describe()
