"""The trigger call (`POST v1`, and the platform SDK's `POST` on the base path): its body read
and checked, the caller's token and limits, then the run recorded and dispatched by the
threads of `api.trigger_queue` (the document first, it is the outbox)."""

from __future__ import annotations

import math
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from starlette.routing import Route

from procexec.api.auth import caller, permit
from procexec.api.bodies import described, json_body
from procexec.api.deps import ENVIRONMENT_HEADER, get_environment, get_state
from procexec.api.document_schema import ONE_EXECUTION
from procexec.api.errors import ApiError, error_responses
from procexec.api.limits import check_trigger
from procexec.engine.domain import Scope
from procexec.engine.errors import excerpt

#: the longest `_delay` accepted on a trigger, in milliseconds (one day)
MAX_DELAY_MS = 86_400_000

#: a trigger's body, as `_trigger_request` reads it
TRIGGER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "not": {"required": ["body", "input"], "description": "`body` or `input`, not both"},
    "properties": {
        "name": {"type": "string", "pattern": r"\S", "description": "a process"},
        "body": {"type": "object", "description": "its parameters"},
        "input": {"type": "object", "description": "an alias of `body`"},
        "_reason": {"type": "string", "pattern": "^[^\\u0000]*$", "description": "no NUL"},
        "_delay": {
            "type": "number",
            "minimum": 0,
            "maximum": MAX_DELAY_MS,
            "description": "milliseconds before the run starts",
        },
    },
}
TRIGGER_BODY = described(TRIGGER_SCHEMA)

#: the keys a trigger's body may have
TRIGGER_KEYS = tuple(TRIGGER_SCHEMA["properties"])

#: how both trigger paths answer and what they take (their FastAPI routes, in `api.routes`)
TRIGGER_ROUTE: dict[str, Any] = {
    "status_code": 202,
    "responses": {
        202: {"description": "The new execution, triggered", **ONE_EXECUTION},
        **error_responses(400, 401, 403, 404, 413, 503),
    },
    "openapi_extra": {**TRIGGER_BODY, **ENVIRONMENT_HEADER},
}


def _trigger_request(
    raw: bytes, request: Request
) -> tuple[str, dict[str, Any] | None, str | None, float]:
    """Validate a trigger's JSON body: its process name, parameters, reason and delay."""
    if not raw.strip():
        raise ApiError(400, 'request body: expected a JSON object such as {"name": "ECB_FX"}')
    payload = json_body(raw)
    if not isinstance(payload, dict):
        raise ApiError(400, f"request body: expected a JSON object, got {type(payload).__name__}")
    unknown = [key for key in payload if key not in TRIGGER_KEYS]
    if unknown:
        raise ApiError(
            400,
            f"{excerpt(unknown[0])}: not a key of a trigger; it takes {', '.join(TRIGGER_KEYS)} "
            "(a process's parameters go in body)",
        )
    if "body" in payload and "input" in payload:
        raise ApiError(400, "input: an alias of body; give one of them, not both")
    for key in ("body", "input", "_reason", "_delay"):
        if key in payload and payload[key] is None:  # null is no value: leave the key out
            raise ApiError(400, f"{key}: null is not a value; leave {key} out instead")
    name = payload.get("name")
    if name is None:
        raise ApiError(400, "name: required (the name of the process to run)")
    if not isinstance(name, str) or not name.strip():
        raise ApiError(400, "name: must be a non-empty string")
    params = payload.get("body", payload.get("input"))
    if params is not None and not isinstance(params, dict):
        field = "body" if "body" in payload else "input"
        raise ApiError(400, f"{field}: must be a JSON object of parameters")
    reason = payload.get("_reason", request.query_params.get("_reason"))
    if reason is not None and not isinstance(reason, str):
        raise ApiError(400, "_reason: must be a string")
    delay_raw = payload.get("_delay", request.query_params.get("_delay", 0))
    if isinstance(delay_raw, bool):
        raise ApiError(400, f"_delay: '{excerpt(delay_raw)}' is not a number of milliseconds")
    try:
        delay_ms = float(delay_raw)
    except OverflowError:  # an integer past the largest float: out of range
        delay_ms = math.inf
    except (TypeError, ValueError):
        problem = f"_delay: '{excerpt(delay_raw)}' is not a number of milliseconds"
        raise ApiError(400, problem) from None
    if not math.isfinite(delay_ms) or not 0 <= delay_ms <= MAX_DELAY_MS:
        raise ApiError(400, f"_delay: must be between 0 and {MAX_DELAY_MS} milliseconds")
    check_trigger(name, params, "body" if "body" in payload else "input", reason)
    return name.strip(), params, reason, delay_ms / 1000


async def trigger(request: Request) -> Response:
    """Run a process: `{"name": "ECB_FX", "body": {...}}`; answers 202 with the new execution.

    Checked in the order FastAPI's dependencies checked it: the environment (400), the
    caller (401, 403), the body (400), the token's limits (403). On the event loop but for
    the run recorded and handed to the broker by the threads of `api.trigger_queue`: a token
    the cache trusts costs no thread (`api.auth.caller`)."""
    state = get_state(request)
    environment = get_environment(request)
    runner = await caller(request, state.tokens, Scope.RUN)
    name, params, reason, delay = _trigger_request(await request.body(), request)
    permit(runner, environment, name)
    doc = await state.trigger_queue.trigger(
        name, run_as=runner.user, environment=environment, body=params, reason=reason, delay=delay
    )
    base = request.url.path.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return JSONResponse(doc, status_code=202, headers={"Location": f"{base}/{doc['_id']}"})


def trigger_routes(base: str) -> list[Route]:
    """The trigger's two paths under `base` as plain Starlette routes, to be placed before
    every other route (as `api.routes.read_routes`): FastAPI's request handling would resolve
    the state, the environment and the caller as dependencies, a worker thread's hop each.
    The FastAPI routes of `api.routes` then serve only to describe them in the OpenAPI schema."""
    return [
        Route(f"{base}/v1", trigger, methods=["POST"], include_in_schema=False),
        Route(base, trigger, methods=["POST"], include_in_schema=False),
    ]
