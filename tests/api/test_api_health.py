"""`GET /healthz` and `GET /readyz`: no token, the store and the broker asked for real, a part
that does not answer named in a 503, a part that hangs bounded by the deadline."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from procexec.api.app import create_app
from procexec.api.health import Readiness
from procexec.engine.settings import Settings
from procexec.workers.celery_app import celery_ping
from tests.integration.harness import free_port


class SilentServer:
    """A TCP server that accepts connections, counts them, and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept, which then fails
        self._thread.join(5)
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def _settings(tmp_path: Path, broker_url: str | None = None) -> Settings:
    env = {"PROCEXEC_DATA_DIR": str(tmp_path)}
    if broker_url:
        env["PROCEXEC_BROKER_URL"] = broker_url
    return Settings.from_env(env)


def test_healthz_and_readyz_answer_without_a_token(client: TestClient) -> None:
    health = client.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    # The test app dispatches to a recorder, not Celery: only the store is asked.
    assert ready.json() == {"status": "ready", "checks": {"store": {"ready": True}}}


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_readyz_names_the_broker_that_refuses(tmp_path: Path, scheme: str) -> None:
    port = free_port()  # nothing listens there
    url = f"redis://127.0.0.1:{port}/0" if scheme == "redis" else f"amqp://u:pw@127.0.0.1:{port}//"
    with TestClient(create_app(_settings(tmp_path, url))) as client:
        response = client.get("/readyz")
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"].startswith("not ready: broker: "), body
    assert "refused" in body["error"].lower(), body
    assert "pw" not in body["error"]  # the broker's password is never shown
    assert response.headers["x-odsl-error"] == body["error"]
    assert body["checks"]["store"] == {"ready": True}
    assert body["checks"]["broker"]["ready"] is False


@pytest.mark.redis
def test_readyz_asks_the_real_broker(tmp_path: Path) -> None:
    from tests.integration.harness import require_redis

    with TestClient(create_app(_settings(tmp_path, require_redis()))) as client:
        response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["broker"] == {"ready": True}


def test_a_broker_that_hangs_is_not_ready_within_the_deadline(
    tmp_path: Path, silent: SilentServer
) -> None:
    settings = _settings(tmp_path, f"redis://127.0.0.1:{silent.port}/0")
    readiness = Readiness({"broker": celery_ping(settings)}, timeout=0.3, cache_seconds=0)
    problem, parts = readiness.report()
    assert problem == "broker: did not answer within 0.3 s"
    assert parts == {"broker": {"ready": False, "error": "did not answer within 0.3 s"}}
    # Asked again while the first call still hangs: it is waited for, not called anew.
    readiness.report()
    readiness.report()
    assert len(silent.accepted) == 1


def test_readyz_asks_its_parts_at_most_once_per_cache_period(
    tmp_path: Path, silent: SilentServer
) -> None:
    connections: list[int] = []

    def check() -> None:
        connections.append(1)
        socket.create_connection(("127.0.0.1", silent.port), timeout=2).close()

    readiness = Readiness({"broker": check}, cache_seconds=3600)
    for _ in range(5):
        assert readiness.report() == (None, {"broker": {"ready": True}})
    assert len(connections) == 1


def test_readyz_reports_the_children_on_every_call(tmp_path: Path) -> None:
    children = {"worker": {"running": True, "lastExit": None, "restarts": 0}}
    readiness = Readiness({}, lambda: {name: dict(state) for name, state in children.items()})
    assert readiness.report()[0] is None
    children["worker"] = {"running": False, "lastExit": "killed by SIGKILL after 3.0 s"}
    problem, parts = readiness.report()  # within the cache period: the children are read anew
    assert problem == "worker: not running (killed by SIGKILL after 3.0 s)"
    assert parts["children"]["worker"]["running"] is False
