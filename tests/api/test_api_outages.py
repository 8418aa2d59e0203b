"""The API while the broker or the store is down: a trigger is accepted while the broker is
down and sent later; the API answers 503 while the store is down, writes nothing, and
recovers when it is back. The engine's bench (tests.engine.runs) stands behind the app.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from procexec.api.app import create_app
from procexec.engine.domain import Scope
from procexec.engine.process import Process, ProcessRegistry
from procexec.engine.settings import Settings
from procexec.engine.store.sqlite import SQLiteStore
from procexec.engine.tokens import create_token
from procexec.examples.demo import DEMO
from tests.engine.runs import Bench, Broker, count_executions, open_bench


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    """The engine tests' bench (tests/engine/conftest.py has the same one): the app is built
    over its store, registry and broker."""
    with open_bench(tmp_path) as opened:
        yield opened


def test_the_api_accepts_a_trigger_while_the_broker_is_down(bench: Bench, tmp_path: Path) -> None:
    settings = Settings.from_env({"PROCEXEC_DATA_DIR": str(tmp_path / "data")})
    app = create_app(settings, store=bench.store, registry=bench.registry, dispatch=bench.broker)
    token = create_token(bench.store, "alice", Scope.RUN)
    bench.broker.down = True
    with TestClient(app) as client:
        response = client.post(
            "/service/process-exec/v1",
            json={"name": "DEMO"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 202, response.text
    doc = response.json()
    assert doc["status"] == "triggered"
    assert bench.broker.failures == 1
    assert bench.doc(doc["_id"]) == doc

    bench.broker.down = False
    assert bench.housekeeper.run_once().redispatched == [doc["_id"]]
    assert bench.runner().run(doc["_id"]) == "success"


class FailingRegistry(ProcessRegistry):
    """A registry whose lookup can pull the store's volume away: the store dies mid-request."""

    def __init__(self, store: SQLiteStore, folder: Path) -> None:
        super().__init__([DEMO])
        self.store = store
        self.folder = folder
        self.pull = False

    def get(self, name: str) -> Process | None:
        if self.pull:
            self.pull = False
            self.folder.rename(self.folder.with_name("volume.unmounted"))
            self.store.close()  # this thread's connection drops with it
        return super().get(name)


def test_the_api_answers_503_when_the_store_is_down_and_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "volume"
    away = tmp_path / "volume.unmounted"
    store = SQLiteStore(folder / "procexec.db")
    registry = FailingRegistry(store, folder)
    broker = Broker()
    settings = Settings.from_env({"PROCEXEC_DATA_DIR": str(folder)})
    app = create_app(settings, store=store, registry=registry, dispatch=broker)
    headers = {"Authorization": f"Bearer {create_token(store, 'alice', Scope.RUN)}"}
    store.close()
    url = "/service/process-exec/v1"
    try:
        # Down before the request: the token cannot even be checked.
        folder.rename(away)
        with TestClient(app) as client:
            response = client.post(url, json={"name": "DEMO"}, headers=headers)
            assert response.status_code == 503, response.text
            body = response.json()
            assert body["status"] == 503
            assert "SQLite store" in body["error"], body
            assert response.headers["x-odsl-error"]
            assert client.get(url, headers=headers).status_code == 503

            # Back: the same app recovers.
            away.rename(folder)
            response = client.post(url, json={"name": "DEMO"}, headers=headers)
            assert response.status_code == 202, response.text
            accepted = response.json()["_id"]

            # Down in the middle of a trigger, after the token was checked.
            registry.pull = True
            response = client.post(url, json={"name": "DEMO"}, headers=headers)
            assert response.status_code == 503, response.text
            assert "SQLite store" in response.json()["error"]
            away.rename(folder)
            listed = client.get(url, headers=headers)
            assert listed.status_code == 200, listed.text
            assert [doc["_id"] for doc in listed.json()] == [accepted]
    finally:
        store.close()
        if away.exists():
            away.rename(folder)
    assert count_executions(folder / "procexec.db") == 1
    assert broker.ids == [accepted]
