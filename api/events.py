"""`GET v1/{id}/events`: a run's status changes, phase changes and log lines as Server-Sent
Events, from its start or after a `Last-Event-ID`, closing once the run has ended.

The same checks as a read (token, environment, the token's environments and processes); no
read deadline (`engine.deadline`): a stream lasts as long as its run, within limits of its own
(`api.event_hub`: streams per token, idle time, lifetime). Every event's id is the journal's
sequence number (`engine.run_events`); `: ping` comments keep an idle connection open.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.responses import Response
from starlette.routing import Route

from procexec.api.access import SOURCES, visible
from procexec.api.auth import caller
from procexec.api.deps import ENVIRONMENT_HEADER, get_environment, get_state
from procexec.api.errors import ApiError, error_responses
from procexec.api.event_hub import EventHub, TokenStreams
from procexec.engine.domain import Scope
from procexec.engine.run_events import Event, parse_cursor

#: seconds between two `: ping` comments of a stream with nothing to tell
PING_SECONDS = 15
#: the comment a stream closes with when it has been idle or open too long
CLOSING = "closing: idle or open too long; resume from the last event id"

T = TypeVar("T")

router = APIRouter()


class RunIdConvertor(StringConvertor):
    """An execution id that is not a source segment: `v1/private/events` stays the read of
    the execution `events` under the `private` source (`api.routes.get_execution`)."""

    regex = "(?!(?:" + "|".join(sorted(SOURCES)) + ")/)[^/]+"


register_url_convertor("run", RunIdConvertor())


def hub(request: Request) -> EventHub:
    """The app's hub, made on first use."""
    found: EventHub | None = getattr(request.app.state, "event_hub", None)
    if found is None:
        state = get_state(request)
        found = EventHub(state.store, state.settings.max_log_lines, state.settings.read_timeout)
        request.app.state.event_hub = found
    return found


def _sse(event: Event) -> ServerSentEvent:
    return ServerSentEvent(
        data=json.dumps(event.data, separators=(",", ":")), event=event.kind, id=event.id
    )


async def follow_run(request: Request) -> Response:
    """The endpoint of `v1/{id}/events` (served as a plain route, `event_routes`)."""
    execution_id = request.path_params["execution_id"]
    state = get_state(request)
    environment = get_environment(request)
    reader = await caller(request, state.tokens, Scope.READ)
    await run_in_threadpool(visible, state, environment, execution_id, reader)
    try:
        after = parse_cursor(last_event_id(request))
    except ValueError as exc:
        raise ApiError(400, f"Last-Event-ID: {exc}") from exc
    events = hub(request)
    return event_stream(events, reader.token_hash, events.follow(execution_id, after), _sse)


def last_event_id(request: Request) -> str | None:
    """Where a follower resumes: its `Last-Event-ID` header, or `lastEventId` in the query (a
    browser's EventSource cannot send a header)."""
    return request.headers.get("last-event-id") or request.query_params.get("lastEventId")


def event_stream(
    streams: TokenStreams,
    token: str,
    items: AsyncIterator[T | None],
    told: Callable[[T], ServerSentEvent],
) -> Response:
    """The answer of a stream of `items`, each told as `told` says, counted among `token`'s
    streams while it is open; an item None closes it with a comment saying how to resume."""
    streams.admit(token)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        try:
            async for item in items:
                if item is None:
                    yield ServerSentEvent(comment=CLOSING)
                    return
                yield told(item)
        finally:
            streams.leave(token)

    return EventSourceResponse(stream(), ping=PING_SECONDS, headers={"Cache-Control": "no-store"})


def stream_answer(description: str, kinds: list[str], id_pattern: str) -> dict[str, Any]:
    """The OpenAPI answer of an event stream: events of `kinds`, ids of `id_pattern`."""
    return {
        "description": description,
        "content": {
            "text/event-stream": {
                "schema": {  # one event
                    "type": "object",
                    "properties": {
                        "event": {"type": "string", "enum": kinds},
                        "id": {"type": "string", "pattern": id_pattern},
                        "data": {"type": "string", "description": "the event's fields, as JSON"},
                    },
                    "required": ["event", "id", "data"],
                }
            }
        },
    }


def resume_parameters(description: str, pattern: str) -> dict[str, Any]:
    """The OpenAPI parameters of an event stream: the environment and `Last-Event-ID`."""
    last_event_id = {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string", "pattern": pattern},
    }
    return {"parameters": [*ENVIRONMENT_HEADER["parameters"], last_event_id]}


_STREAM = stream_answer(
    "The run's events as Server-Sent Events (`status`, `phase`, `log`, `end`), closing after `end`",
    ["status", "phase", "log", "end"],
    r"^\d+(\.\d+)?$",
)
_LAST_EVENT_ID = resume_parameters(
    "resume after this event (its id: `12` or `12.3`)", r"^\s*(\d{1,18}(\.\d{1,4})?)?\s*$"
)


@router.get(
    "/v1/{execution_id}/events",
    summary="Follow an execution's events",
    response_class=Response,
    responses={200: _STREAM, **error_responses(400, 401, 403, 404, 429, 503)},
    openapi_extra=_LAST_EVENT_ID,
)
async def follow(execution_id: str, request: Request) -> Response:
    """Status changes, phases begun and ended, and log lines of one execution as Server-Sent
    Events, from its start or after `Last-Event-ID`; the stream closes after the `end` event,
    which carries the final status."""
    return await follow_run(request)


def event_routes(base: str) -> list[Route]:
    """The stream's route under `base`, placed before `v1/{key}` and `v1/{source}/{id}`."""
    return [
        Route(
            f"{base}/v1/{{execution_id:run}}/events",
            follow_run,
            methods=["GET"],
            include_in_schema=False,
        )
    ]
