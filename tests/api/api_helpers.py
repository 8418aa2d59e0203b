"""Helpers of the API tests: the service under test, auth headers, seeded documents."""

from __future__ import annotations

import base64
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict

from procexec.api.app import create_app
from procexec.engine.domain import Scope
from procexec.engine.process import Process, ProcessRegistry
from procexec.engine.runner import PhaseRunner
from procexec.engine.settings import Settings
from procexec.engine.store.sqlite import SQLiteStore
from procexec.engine.tokens import create_token

#: what a refused field lists: the execution document's one schema (`procexec.engine.schema`)
KNOWN = (
    " (fields: _id, service, name, environment, trigger, status, message, reason, start, runAs, "
    "phases, end, loaderMessage, data; phases.<name|start|status|message|log|end>; any path "
    "under data)"
)
#: what a refused unknown parameter lists
OPTIONS = (
    " (options: _filter, _search, _sort, _project, _limit, _skip, _distinct, _fieldinfo, "
    "_aggregate; other parameters are filters on fields)"
)

#: the two mounts of the API: the seed page's path and the platform SDK's
BASES = ("/service/process-exec", "/api/process-exec")

RUN_USER = "alice"
READ_USER = "bob"
ADMIN_USER = "root"


@dataclass
class Dispatcher:
    """Stands in for the broker: records every `(execution_id, delay)` handed to it."""

    calls: list[tuple[str, float]] = field(default_factory=list)
    #: the process name each execution was sent with
    processes: dict[str, str | None] = field(default_factory=dict)

    def __call__(self, execution_id: str, delay: float, process: str | None = None) -> None:
        self.calls.append((execution_id, delay))
        self.processes[execution_id] = process


@dataclass
class Service:
    """The app under test and what the tests need to look behind it."""

    app: FastAPI
    settings: Settings
    store: SQLiteStore
    registry: ProcessRegistry
    dispatcher: Dispatcher
    run_token: str
    read_token: str
    admin_token: str

    @property
    def db_path(self) -> Path:
        return Path(self.store.path)

    def count(self) -> int:
        """How many executions the store file holds, in every environment."""
        with sqlite3.connect(self.db_path) as conn:
            value: int = conn.execute("SELECT count(*) FROM executions").fetchone()[0]
        return value

    @property
    def run_headers(self) -> dict[str, str]:
        return bearer(self.run_token)

    @property
    def read_headers(self) -> dict[str, str]:
        return bearer(self.read_token)

    @property
    def admin_headers(self) -> dict[str, str]:
        return bearer(self.admin_token)


def start_service(settings: Settings, dispatcher: Dispatcher) -> Service:
    """The real app over the SQLite store of `settings`, with a run token, a read token and an
    admin token (the caller closes `service.store`)."""
    app = create_app(settings, dispatch=dispatcher)
    state = app.state.procexec
    store = state.store
    assert isinstance(store, SQLiteStore)
    return Service(
        app=app,
        settings=settings,
        store=store,
        registry=state.registry,
        dispatcher=dispatcher,
        run_token=create_token(store, RUN_USER, Scope.RUN),
        read_token=create_token(store, READ_USER, Scope.READ),
        admin_token=create_token(store, ADMIN_USER, Scope.ADMIN),
    )


def run_as_worker(service: Service, execution_id: str) -> str | None:
    """Run an execution as a worker would: its own store connection to the same file; its
    final status."""
    worker_store = SQLiteStore(service.db_path)
    try:
        return PhaseRunner(worker_store, service.registry, worker_id="w1").run(execution_id)
    finally:
        worker_store.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, key: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{key}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def assert_bad_query(
    client: TestClient, service: Service, url: str, params: Any, message: str
) -> None:
    """A list query refused with a 400 naming the parameter: `message` exactly, in a JSON body
    and in `x-odsl-error`, whether JSON or CSV was asked for."""
    for accept in ("application/json", "text/csv"):
        headers = {**service.read_headers, "Accept": accept}
        response = client.get(url, params=params, headers=headers)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"error": message, "status": 400}
        assert response.headers["x-odsl-error"] == message


def watch_where_lists_run(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[int], list[str]]:
    """Spies on the list call: a mark in the first list each time it is tried on the event
    loop (the store's `inline()`), and in the second the name of each function handed to a
    worker thread (`routes.run_in_threadpool`)."""
    from procexec.api import routes

    tries: list[int] = []
    handed: list[str] = []
    inline, handover = service.store.inline, routes.run_in_threadpool

    def counted_inline() -> Any:
        tries.append(1)
        return inline()

    async def spy(function: Any, *args: Any) -> Any:
        handed.append(function.__name__)
        return await handover(function, *args)

    monkeypatch.setattr(service.store, "inline", counted_inline)
    monkeypatch.setattr(routes, "run_in_threadpool", spy)
    return tries, handed


class AnyParameters(BaseModel):
    """Parameters of any name and value: a model whose `extra` is `allow`."""

    model_config = ConfigDict(extra="allow")


def free_process() -> Process:
    """FREE, a one-phase process that takes any parameters (for the limits of a trigger's
    body, whatever a process takes); add it to an app's registry."""
    process = Process("FREE", params=AnyParameters)
    process.phase("LOAD")(lambda ctx, previous: None)
    return process
