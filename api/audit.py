"""`GET /service/audit/v1`: the audit trail (`engine.audit`), newest first, for an admin token.

Mounted under its own path (`/service/audit`, `/api/audit`): under `/service/process/v1` the
segment after `v1` is a process's name.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from procexec.api.deps import Admin, StateDep
from procexec.api.errors import ApiError, error_responses
from procexec.api.times import ISO_TIME, check_time
from procexec.engine.audit import ACTIONS
from procexec.engine.audit_trail import DEFAULT_LIMIT, MAX_LIMIT, listed, trail_query
from procexec.engine.errors import excerpt

router = APIRouter()

#: the query parameters the trail takes
PARAMETERS = ("since", "action", "target", "_limit")

#: an action as the trail lists it (`engine.audit_trail.describe`)
ACTION: dict[str, Any] = {
    "type": "object",
    "required": ["at", "who", "action", "target", "details"],
    "properties": {
        "at": {"type": "string", "description": "when, ISO 8601 UTC"},
        "who": {"type": "string", "description": "a token's user, or cli:<OS user>"},
        "action": {"enum": list(ACTIONS)},
        "target": {"type": "string", "description": "a process, an execution id, a user"},
        "details": {"type": "object", "description": "what else says what was done"},
    },
}

#: the query parameters in the OpenAPI description
QUERY: dict[str, Any] = {
    "parameters": [
        {
            "name": "since",
            "in": "query",
            "required": False,
            "description": "actions at or after this ISO 8601 time (without an offset, UTC)",
            "schema": {"type": "string", "pattern": ISO_TIME},
        },
        {
            "name": "action",
            "in": "query",
            "required": False,
            "description": "actions of this kind only",
            "schema": {"enum": list(ACTIONS)},
        },
        {
            "name": "target",
            "in": "query",
            "required": False,
            "description": "actions on this process, execution id or user only",
            "schema": {"type": "string"},
        },
        {
            "name": "_limit",
            "in": "query",
            "required": False,
            "description": f"the most actions listed (default {DEFAULT_LIMIT})",
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_LIMIT,
                "default": DEFAULT_LIMIT,
            },
        },
    ]
}


def _query(request: Request) -> dict[str, str]:
    """Each parameter given once, or a 400 naming the unknown or repeated one."""
    given: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in PARAMETERS:
            raise ApiError(
                400, f"{excerpt(name)}: unknown parameter (parameters: {', '.join(PARAMETERS)})"
            )
        if name in given:
            raise ApiError(400, f"{name}: given more than once")
        given[name] = value
    return given


@router.get(
    "/v1",
    summary="The audit trail: operators' actions, newest first",
    responses={
        200: {
            "description": "OK",
            "content": {
                "application/json": {
                    "schema": {"type": "array", "items": ACTION, "maxItems": MAX_LIMIT}
                }
            },
        },
        **error_responses(400, 401, 403, 503),
    },
    openapi_extra=QUERY,
)
async def audit_trail(request: Request, state: StateDep, caller: Admin) -> Any:
    """Every operator action (enable, disable, schedule, limit, backfill, rerun, cancel, token
    create and revoke) with who, when and what; filtered by `since`, `action` and `target`, at
    most `_limit` (default 100, at most 1000)."""
    given = _query(request)
    if "since" in given:
        check_time("since", given["since"])
    query = trail_query(
        since=given.get("since"),
        action=given.get("action"),
        target=given.get("target"),
        limit=given.get("_limit"),
    )
    return await run_in_threadpool(listed, state.store, query)
