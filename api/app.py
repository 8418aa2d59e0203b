"""The FastAPI application: the routes mounted at both base paths, errors, compression."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware

import engine
from api import errors, health, processes
from api.deps import ServiceState
from api.health import Check, Children, Readiness
from api.routes import read_routes, router
from engine.cancellation import Revoke
from engine.config import Settings, load_registry
from engine.constants import SERVICE_NAME
from engine.process import ProcessRegistry
from engine.store import ExecutionStore, open_store
from engine.timeutil import iso_ms
from engine.tokens import TokenCache
from engine.trigger import Dispatch, TriggerService

#: where the API is mounted: the seed page's path, and the platform SDK's
BASE_PATHS = ("/service/process-exec", "/api/process-exec")
#: where the process list is mounted
PROCESS_PATHS = ("/service/process", "/api/process")

_STARTED = iso_ms()


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def build_information(settings: Settings) -> dict[str, Any]:
    return {
        "service": SERVICE_NAME,
        "version": engine.__version__,
        "commit": _git("rev-parse", "HEAD") or "unknown",
        "buildTime": _git("log", "-1", "--format=%cI") or _STARTED,
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
    settings = settings or Settings.from_env()
    store = store or open_store(settings.store_url)
    registry = registry or load_registry(settings)
    default_checks: dict[str, Check] = {"store": store.ping}
    if dispatch is None:
        from workers.celery_app import celery_dispatch, celery_ping, celery_revoke

        dispatch = celery_dispatch(settings)
        revoke = revoke or celery_revoke(settings)
        default_checks["broker"] = celery_ping(settings)
    app = FastAPI(
        title="procexec",
        version=engine.__version__,
        description="Process execution service: trigger processes and read their execution logs.",
    )
    app.state.procexec = ServiceState(
        settings=settings,
        store=store,
        registry=registry,
        triggers=TriggerService(store, registry, dispatch),
        build=build_information(settings),
        tokens=TokenCache(store),
        revoke=revoke,
        readiness=Readiness(default_checks if checks is None else checks, children),
    )
    errors.install(app)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.include_router(health.router)
    for base in BASE_PATHS:
        app.include_router(router, prefix=base)
    app.router.routes[0:0] = [route for base in BASE_PATHS for route in read_routes(base)]
    for base in PROCESS_PATHS:
        app.include_router(processes.router, prefix=base)
    return app


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory api.app:app_factory`."""
    return create_app()
