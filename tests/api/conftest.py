"""Fixtures of the API tests: the real app over a real SQLite file, real tokens, real HTTP.

Only the dispatch to the broker is replaced, by a recorder of `(execution_id, delay)`: the
broker is covered by the integration tests. Runs that must finish are run for real with the
engine's `PhaseRunner`.
"""

from __future__ import annotations

import copy
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from procexec.engine.settings import Settings
from tests.api.api_helpers import Dispatcher, Service, start_service
from tests.engine.query_strategies import DOCS, PROD


@pytest.fixture
def dispatcher() -> Dispatcher:
    return Dispatcher()


@pytest.fixture
def service(tmp_path: Path, dispatcher: Dispatcher) -> Iterator[Service]:
    settings = Settings.from_env({"PROCEXEC_DATA_DIR": str(tmp_path)})
    service = start_service(settings, dispatcher)
    assert service.db_path == tmp_path / "procexec.db"
    yield service
    service.store.close()


@pytest.fixture
def client(service: Service) -> Iterator[TestClient]:
    with TestClient(service.app) as test_client:
        yield test_client


@pytest.fixture
def corpus(service: Service) -> list[dict[str, Any]]:
    """The query tests' documents (`tests.engine.query_strategies.DOCS`) in the service's store;
    returns those of the production environment, the one the API's calls read by default."""
    for doc in DOCS:
        service.store.insert(copy.deepcopy(doc))
    return [doc for doc in DOCS if doc["environment"] == PROD]


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
def live_url(service: Service) -> Iterator[str]:
    """The app served by a real uvicorn server in a background thread; yields its base URL."""
    sock = _free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        service.app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        log_level="warning",
        ws="none",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive(), "the uvicorn server stopped while starting"
        assert time.monotonic() < deadline, "the uvicorn server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        assert not thread.is_alive(), "the uvicorn server did not stop"
