"""`GET v1/events`: changes to every run a list filter selects, as Server-Sent Events.

The list call's filters (`field=value`, `_filter`, `_search`; `_sort`, `_limit`, `_skip`,
`_project` mean nothing to a stream and are ignored; `_distinct`, `_fieldinfo`, `_aggregate`
are refused), the same checks as a read (token, environment, the token's environments and
processes). One `change` event per change of a run's status, message or phases, its id the
entry's place in the journal of every run, from now on or after a `Last-Event-ID`
(`api.runs_hub`); `: ping` comments keep an idle connection open.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from sse_starlette import ServerSentEvent
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import Route

from procexec.api.auth import caller, permit
from procexec.api.deps import get_environment, get_state
from procexec.api.errors import ApiError, error_responses
from procexec.api.events import event_stream, last_event_id, resume_parameters, stream_answer
from procexec.api.queries import query_items
from procexec.api.runs_hub import Change, RunsHub
from procexec.engine.domain import Scope
from procexec.engine.errors import BadRequest
from procexec.engine.query import Query, parse_query
from procexec.engine.query.params import ANSWERS
from procexec.engine.tokens import restrict

router = APIRouter()

#: list options a stream has no use for: ignored
IGNORED = ("_sort", "_limit", "_skip", "_project", "lastEventId")


def hub(request: Request) -> RunsHub:
    """The app's all-runs hub, made on first use."""
    found: RunsHub | None = getattr(request.app.state, "runs_hub", None)
    if found is None:
        state = get_state(request)
        found = RunsHub(state.store, state.settings.read_timeout)
        request.app.state.runs_hub = found
    return found


def _cursor(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    if not text.isdigit() or len(text) > 18:
        raise ApiError(400, f"Last-Event-ID: '{value[:40]}' is not an event id of this stream")
    return int(text)


def _query(params: list[tuple[str, str]], environment: str, processes: tuple[str, ...]) -> Query:
    for name, _ in params:
        if name in ANSWERS:
            raise BadRequest(f"{name}: not for a stream (it follows runs, not answers)")
    return restrict(parse_query(params, environment, ignore=IGNORED), processes)


async def follow_runs(request: Request) -> Response:
    """The endpoint of `v1/events` (served as a plain route, `runs_event_routes`)."""
    state = get_state(request)
    environment = get_environment(request)
    reader = await caller(request, state.tokens, Scope.READ)
    permit(reader, environment)
    params = list(await query_items(request))
    query = await run_in_threadpool(_query, params, environment, reader.processes)
    after = _cursor(last_event_id(request))
    events = hub(request)
    await events.prepare()  # a store that keeps no such journal: a 501 before the answer
    return event_stream(events, reader.token_hash, events.follow(query, after), _told)


def _told(change: Change) -> ServerSentEvent:
    data = json.dumps(change.data, separators=(",", ":"))
    return ServerSentEvent(data=data, event="change", id=str(change.pos))


_STREAM = stream_answer(
    "Changes to the selected runs as Server-Sent Events (`change`: the run's `id`, `name`, "
    "`status`, `phase` {`index`, `name`, `status`}, `message`, `seq`)",
    ["change"],
    r"^\d+$",
)
_PARAMETERS = resume_parameters(
    "resume after this event (its id, a place in the journal)", r"^\s*(\d{1,18})?\s*$"
)


@router.get(
    "/v1/events",
    summary="Follow the changes of every run a filter selects",
    response_class=Response,
    responses={200: _STREAM, **error_responses(400, 401, 403, 429, 501, 503)},
    openapi_extra=_PARAMETERS,
)
async def follow(request: Request) -> Response:
    """Changes of status, message and phases of the runs the list call's filters select, as
    Server-Sent Events, from now on or after `Last-Event-ID`; log lines are in each run's own
    stream (`v1/{id}/events`)."""
    return await follow_runs(request)


def runs_event_routes(base: str) -> list[Route]:
    """The stream's route under `base`, placed before `v1/{key}` and `v1/{source}/{id}`."""
    return [Route(f"{base}/v1/events", follow_runs, methods=["GET"], include_in_schema=False)]
