"""The FastAPI application: the routes mounted at both base paths, errors, compression."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware

import procexec
from procexec.api import (
    audit,
    dashboard,
    docs_schema,
    document_schema,
    errors,
    events,
    health,
    memory,
    metrics,
    processes,
    rerun_schema,
    runs_events,
    security_headers,
    trigger_schema,
)
from procexec.api.deps import ServiceState
from procexec.api.health import Check, Children, Readiness
from procexec.api.limits import BodyLimit
from procexec.api.routes import read_routes, router
from procexec.api.trigger import trigger_routes
from procexec.buildinfo import build_stamp
from procexec.engine.cancellation import Revoke
from procexec.engine.domain import SERVICE_NAME
from procexec.engine.process import ProcessRegistry
from procexec.engine.redact import redact_logging
from procexec.engine.settings import Settings
from procexec.engine.store import ExecutionStore
from procexec.engine.timeutil import iso_ms
from procexec.engine.tokens import TokenCache
from procexec.engine.trigger_service import Dispatch
from procexec.service import build

#: where the API is mounted: the seed page's path, and the platform SDK's
BASE_PATHS = ("/service/process-exec", "/api/process-exec")
#: how long a thread holds the interpreter's lock before it must let another run (`app_factory`)
SWITCH_SECONDS = 0.001
#: where the process list is mounted
PROCESS_PATHS = ("/service/process", "/api/process")
#: where the audit trail is mounted
AUDIT_PATHS = ("/service/audit", "/api/audit")

_STARTED = iso_ms()


def build_information(settings: Settings) -> dict[str, Any]:
    stamp = build_stamp()
    return {
        "service": SERVICE_NAME,
        "version": procexec.__version__,
        "commit": stamp["commit"] or "unknown",
        "buildTime": stamp["buildTime"] or _STARTED,
        "started": _STARTED,
        "store": settings.store_kind,
        "broker": settings.broker_kind,
    }


def create_app(
    settings: Settings | None = None,
    *,
    store: ExecutionStore | None = None,
    registry: ProcessRegistry | None = None,
    dispatch: Dispatch | None = None,
    revoke: Revoke | None = None,
    checks: Mapping[str, Check] | None = None,
    children: Children | None = None,
) -> FastAPI:
    """Build the API; by default everything comes from the environment's settings.

    `checks` are what `/readyz` asks: by default the store, and the broker when the API
    dispatches through Celery; `children`, the state of the processes a supervisor runs.
    """
    service = build(settings, store=store, registry=registry, dispatch=dispatch, revoke=revoke)
    memory.give_back_large_blocks()  # large answers leave nothing behind them (`api.memory`)
    default_checks: dict[str, Check] = {"store": service.store.ping}
    if service.broker_ping is not None:
        default_checks["broker"] = service.broker_ping
    app = FastAPI(
        title="procexec",
        version=procexec.__version__,
        description="Process execution service: trigger processes and read their execution logs.",
    )
    app.state.procexec = ServiceState(
        settings=service.settings,
        store=service.store,
        registry=service.registry,
        triggers=service.triggers,
        build=build_information(service.settings),
        tokens=TokenCache(service.store),
        revoke=service.revoke,
        readiness=Readiness(default_checks if checks is None else checks, children),
    )
    errors.install(app)
    document_schema.install(app)
    trigger_schema.install(app, [path for base in BASE_PATHS for path in (base, f"{base}/v1")])
    rerun_schema.install(app, [f"{base}/v1/{{execution_id}}/rerun" for base in BASE_PATHS])
    docs_schema.install(app, list(BASE_PATHS))
    security_headers.install(app)
    dashboard.install(app)
    app.state.metrics = metrics.Metrics(
        service.settings, service.store, service.registry, _queue_depth(service)
    )
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.add_middleware(BodyLimit, tokens=app.state.procexec.tokens)  # bodies, before routes
    app.add_middleware(metrics.RequestTimes, metrics=app.state.metrics)
    # outermost: the headers on every answer, BodyLimit's refusals and unhandled errors too
    app.add_middleware(security_headers.SecurityHeaders)
    app.include_router(health.router)
    app.include_router(metrics.router)
    for base in BASE_PATHS:
        app.include_router(router, prefix=base)
        app.include_router(runs_events.router, prefix=base)
        app.include_router(events.router, prefix=base)
    hot = [route for base in BASE_PATHS for route in (*read_routes(base), *trigger_routes(base))]
    streams = [
        route
        for base in BASE_PATHS
        for route in (*runs_events.runs_event_routes(base), *events.event_routes(base))
    ]
    app.router.routes[0:0] = streams
    app.router.routes[len(streams) : len(streams)] = hot
    for base in PROCESS_PATHS:
        app.include_router(processes.router, prefix=base)
    for base in AUDIT_PATHS:
        app.include_router(audit.router, prefix=base)
    return app


def _queue_depth(service: Any) -> Any:
    """The broker's queue depth reader, where the API sends runs through Celery."""
    if service.broker_ping is None:
        return None
    from procexec.workers.queue_depth import queue_depth

    return queue_depth(service.settings)


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory procexec.api.app:app_factory`: in each API process,
    once uvicorn has set up its logging, no password or token goes into a log line."""
    redact_logging()
    # a worker thread reading a long query or the rows of a `_distinct` holds the interpreter's
    # lock between I/O: the event loop waits for it at most this long, not CPython's 5 ms
    sys.setswitchinterval(SWITCH_SECONDS)
    return create_app()
