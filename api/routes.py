"""The process execution calls of the seed page, mounted under each base path."""

from __future__ import annotations

from time import monotonic
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi import Query as QueryParam
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from procexec.api import listing
from procexec.api.access import SOURCES, Source, read_one, visible
from procexec.api.auth import authenticate, permit
from procexec.api.deps import (
    ENVIRONMENT_HEADER,
    EnvironmentDep,
    Reader,
    Runner,
    ServiceState,
    StateDep,
    get_environment,
    get_state,
)
from procexec.api.document_schema import (
    GET_OR_LIST_RESPONSES,
    GET_RESPONSES,
    LIST_RESPONSES,
    ONE_EXECUTION,
)
from procexec.api.errors import error_responses
from procexec.api.queries import (
    INLINE_QUERY_BYTES,
    QueryItems,
    QueryParts,
    cached,
    items_of,
    query_items,
    query_parts,
)
from procexec.api.trigger import TRIGGER_ROUTE, trigger
from procexec.engine import deadline
from procexec.engine.answers import answer_limit
from procexec.engine.cancellation import cancel_execution
from procexec.engine.domain import Scope
from procexec.engine.query import Query, parse_query
from procexec.engine.rerun import rerun_execution
from procexec.engine.store.base import InlineBudgetExceeded
from procexec.engine.tokens import restrict

router = APIRouter()

#: list parameters whose calls go straight to a worker thread: their answers are built in
#: Python (documents parsed, values gathered and sorted), work the store's budget cannot bound
THREADED_PARAMS = frozenset({"_project", "_distinct", "_fieldinfo", "_aggregate"})
#: a query that overran the loop's budget goes straight to a worker thread for this long
OVERRAN_SECONDS = 60.0
#: at most this many such queries are remembered (past it, the memory starts again)
OVERRAN_MAX = 1024
#: a remembered query whose run in a worker thread takes less than this is forgotten
QUICK_SECONDS = 0.001


@cached(lambda params: sum(len(name) + len(value) for name, value in params))
def _parsed(params: QueryItems, environment: str, processes: tuple[str, ...] = ()) -> Query:
    """The query of the list call's parameters, limited to the caller's `processes` (a `Query`
    is immutable: it may be shared)."""
    return restrict(parse_query(params, environment), processes)


@router.get("", summary="Build information of this service")
def build_info(state: StateDep) -> dict[str, Any]:
    """Service name, version, commit, build time, and the kinds of store and broker."""
    return state.build


def _list(request: Request, state: StateDep, source: str, query: Query) -> Response:
    """The list call: documents as JSON (CSV, XML as `Accept` asks), or `_distinct` values,
    `_fieldinfo` buckets, `_aggregate` results."""
    fmt = listing.response_format(request.headers.get("accept"))
    private = source != "public"  # executions are private data: nothing of them is public
    with answer_limit(state.settings.max_answer_bytes):  # read and built within it
        if query.distinct is not None:
            values = state.store.distinct(query) if private else []
            return listing.distinct_values(values, query.distinct, fmt)
        if query.fieldinfo is not None:
            buckets = state.store.fieldinfo(query) if private else []
            return listing.fieldinfo_buckets(buckets, query.fieldinfo, fmt)
        if query.aggregate is not None:
            results = state.store.aggregate(query) if private else []
            return listing.aggregate_results(results, fmt)
        docs, total = state.store.list_json(query) if private else ([], 0)
        return listing.page_answer(docs, total, fmt, query.project, query.exclude)


def _list_call(
    request: Request, source: str, query: QueryItems | QueryParts, started: float
) -> Response:
    """The list call, checks included: state, environment, caller, list; `query` its
    parameters, or the raw parts they are read from here (`items_of`).

    The hot path of the service: resolving `StateDep`, `EnvironmentDep` and `Reader` as
    FastAPI dependencies costs a thread hop each, more than an indexed query.

    All of it runs under the read's deadline (`engine.deadline`), counted from `started`, when
    the call arrived: reading the query, the store, the work on the rows after; past it, a 503
    (on the event loop, the store's budget is far tighter).
    """
    state = get_state(request)
    with deadline.reading(state.settings.read_timeout, started):
        environment = get_environment(request)
        caller = authenticate(request, state.tokens, Scope.READ)
        permit(caller, environment)
        params = items_of(*query) if isinstance(query, QueryParts) else query
        with state.store.limited(state.settings.read_timeout):
            response = _list(request, state, source, _parsed(params, environment, caller.processes))
        deadline.check()  # the answer built in time, or a 503 as the store's
        return response


async def _serve_list(request: Request, source: str) -> Response:
    """The list call: tried on the event loop under the store's budget, and run in a worker
    thread when it needs more.

    A page off an index, a selective search, a deep skip that jumps to its day take a fraction
    of a millisecond, less than the hop to a worker thread and back (a quarter of a
    millisecond on a busy machine). Straight to a thread go the calls the store cannot bound
    (its `inline()` is None), the answers built in Python (`THREADED_PARAMS`, CSV, XML), and,
    for `OVERRAN_SECONDS`, a query that overran the budget, so that a broad search polled by
    a dashboard does not pay for a failed try each time; unless its run in the thread proves
    quick (under `QUICK_SECONDS`), when it overran by a hiccup of the machine, not by its work,
    and is forgotten at once. A query longer than `INLINE_QUERY_BYTES` goes to a worker thread
    as it came, read there: its reading alone is more than the loop may spend."""
    started = monotonic()
    parts = await query_parts(request)
    if len(parts.url) + len(parts.form) > INLINE_QUERY_BYTES:
        return await run_in_threadpool(_list_call, request, source, parts, started)
    params = items_of(*parts)
    state = get_state(request)
    key = hash(params)  # a collision only sends a call to a worker thread
    simple = (
        all(name not in THREADED_PARAMS for name, _ in params)
        and listing.negotiate(request.headers.get("accept")) == "json"
    )
    bounded = state.store.inline() if simple and not _overran_lately(state, key) else None
    if bounded is not None:
        try:
            with bounded:
                return _list_call(request, source, params, started)
        except InlineBudgetExceeded:
            if len(state.overran) >= OVERRAN_MAX:
                state.overran.clear()
            state.overran[key] = monotonic() + OVERRAN_SECONDS
    began = monotonic()
    response = await run_in_threadpool(_list_call, request, source, params, started)
    if simple and monotonic() - began < QUICK_SECONDS:
        state.overran.pop(key, None)
    return response


def _overran_lately(state: ServiceState, key: int) -> bool:
    """Whether the query of this key overran the loop's budget in the last `OVERRAN_SECONDS`."""
    until = state.overran.get(key)
    if until is None:
        return False
    if until < monotonic():
        state.overran.pop(key, None)
        return False
    return True


@router.get(
    "/v1",
    summary="List process executions",
    responses={**LIST_RESPONSES, **error_responses(400, 401, 403, 413, 503)},
    openapi_extra=ENVIRONMENT_HEADER,
)
async def list_executions(request: Request) -> Response:
    """List executions, newest first: filters, `_filter`, `_search`, `_sort`, `_project`,
    `_limit`, `_skip`, `_distinct`; JSON, or CSV on `Accept: text/csv`. A long query may
    travel in an `application/x-www-form-urlencoded` body."""
    return await _serve_list(request, "private")


def _get_call(request: Request, execution_id: str, params: QueryItems) -> Response:
    """One execution, checks included, in one worker thread (as `_list_call`)."""
    state = get_state(request)
    environment = get_environment(request)
    caller = authenticate(request, state.tokens, Scope.READ)
    accept = request.headers.get("accept")
    return read_one(state, environment, caller, execution_id, params, accept)


@router.get(
    "/v1/{key}",
    summary="One execution, or a list by source",
    responses={**GET_OR_LIST_RESPONSES, **error_responses(400, 401, 403, 404, 413, 503)},
    openapi_extra=ENVIRONMENT_HEADER,
)
async def get_or_list(key: str, request: Request) -> Response:
    """`v1/{id}` reads one execution (`_project` picks its fields); `v1/private`, `v1/public`,
    `v1/all` list them (the platform's SDK lists through `v1/private`)."""
    if key in SOURCES:
        return await _serve_list(request, key)
    return await run_in_threadpool(_get_call, request, key, await query_items(request))


async def _get_or_list_endpoint(request: Request) -> Response:
    return await get_or_list(request.path_params["key"], request)


def read_routes(base: str) -> list[Route]:
    """The two hot read calls (`v1` and `v1/{key}`) under `base` as plain Starlette routes,
    to be placed before every other route.

    They call the same endpoints as the FastAPI routes above, which then serve only to
    describe them in the OpenAPI schema: FastAPI's request handling (its dependency solver,
    its response machinery, matching through every route before them) costs about as much
    as reading an indexed page.
    """
    return [
        Route(f"{base}/v1", list_executions, methods=["GET"], include_in_schema=False),
        Route(
            f"{base}/v1/{{key}}", _get_or_list_endpoint, methods=["GET"], include_in_schema=False
        ),
    ]


@router.get(
    "/v1/{source:source}/{execution_id}",
    summary="Retrieve one execution",
    responses={**GET_RESPONSES, **error_responses(400, 401, 403, 404, 413, 503)},
    openapi_extra=ENVIRONMENT_HEADER,
)
async def get_execution(
    source: Source,
    execution_id: str,
    request: Request,
    state: StateDep,
    environment: EnvironmentDep,
    caller: Reader,
) -> Response:
    """One execution by id, under a source segment (`private/<id>`); `_project` picks its fields."""
    params, accept = await query_items(request), request.headers.get("accept")
    return await run_in_threadpool(
        read_one, state, environment, caller, execution_id, params, accept, source
    )


@router.post(
    "/v1/{execution_id}/cancel",
    summary="Cancel an execution",
    response_model=None,  # the document as stored, described by `ONE_EXECUTION`
    responses={
        200: {"description": "The execution, failed as cancelled", **ONE_EXECUTION},
        **error_responses(400, 401, 403, 404, 409, 503),
    },
    openapi_extra=ENVIRONMENT_HEADER,
)
def cancel(
    execution_id: str, state: StateDep, environment: EnvironmentDep, caller: Runner
) -> dict[str, Any]:
    """Stop a triggered or running execution at once; it fails as cancelled by the caller."""
    # a 404 unless the caller's token may read it (its environments and processes)
    visible(state, environment, execution_id, caller)
    return cancel_execution(
        state.store,
        execution_id,
        user=caller.user,
        environment=environment,
        revoke=state.revoke,
    )


@router.post(
    "/v1/{execution_id}/rerun",
    summary="Rerun an execution from its failed phase",
    status_code=202,
    response_model=None,  # the document as stored, described by `ONE_EXECUTION`
    responses={
        202: {"description": "The new execution, triggered", **ONE_EXECUTION},
        **error_responses(400, 401, 403, 404, 409, 503),
    },
    openapi_extra=ENVIRONMENT_HEADER,
)
def rerun(
    execution_id: str,
    request: Request,
    state: StateDep,
    environment: EnvironmentDep,
    caller: Runner,
    start_from: Annotated[
        str | None,
        QueryParam(
            alias="from",
            description="the phase to start from instead of the failed one; `start`: every phase",
        ),
    ] = None,
) -> Response:
    """A new execution of the same process, environment and parameters, run by the caller,
    its phases before the failed one carried over from this one (`engine.rerun`)."""
    visible(state, environment, execution_id, caller)  # a 404 unless the caller may read it
    doc = rerun_execution(
        state.store,
        state.triggers,
        execution_id,
        user=caller.user,
        environment=environment,
        start_from=start_from,
    )
    base = request.url.path.rstrip("/").rsplit("/", 2)[0]
    return JSONResponse(doc, status_code=202, headers={"Location": f"{base}/{doc['_id']}"})


# described here, served by `api.trigger.trigger_routes` (the same endpoint, as a plain route)
router.post("/v1", summary="Trigger a process", **TRIGGER_ROUTE)(trigger)
router.post("", summary="Trigger a process (the platform SDK's `update()`)", **TRIGGER_ROUTE)(
    trigger
)
