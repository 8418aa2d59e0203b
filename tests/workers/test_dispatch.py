"""The Celery side: broker options per broker kind, and a dispatch that a real worker runs."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection
from kombu.transport import filesystem

from procexec.engine.plugins import load_registry
from procexec.engine.settings import Settings
from procexec.engine.store import open_store
from procexec.engine.store.base import ExecutionStore
from procexec.engine.timeutil import parse_iso
from procexec.engine.trigger_service import TriggerService
from procexec.workers import celery_app
from procexec.workers.celery_app import (
    QUEUE,
    RUN_TASK,
    broker_options,
    celery_dispatch,
    make_celery,
)
from tests.integration.harness import start_worker, stop_all, wait_stored_end


def test_embedded_broker_lives_in_the_data_folder(tmp_path: Path) -> None:
    settings = Settings.from_env({"PROCEXEC_DATA_DIR": str(tmp_path / "data")})
    url, options = broker_options(settings)

    assert url.startswith("procexecfs://")
    root = tmp_path / "data" / "broker"
    for key, folder in [
        ("data_folder_in", "queue"),
        ("data_folder_out", "queue"),
        ("processed_folder", "processed"),
        ("control_folder", "control"),
    ]:
        assert options[key] == str(root / folder), key
        assert Path(options[key]).is_absolute() and Path(options[key]).is_dir(), key
    assert 0 < options["polling_interval"] <= 0.5  # where no wake-up socket can be bound
    assert options["polling_interval"] <= options["fallback_interval"] <= 5  # a lost wake-up
    # kombu resolves the scheme to the hardened filesystem transport, hostname and all
    connection = Connection(url, transport_options=options)
    try:
        assert isinstance(connection.transport, filesystem.Transport)
        assert connection.hostname == "localhost"
    finally:
        connection.release()


def test_redis_broker_never_redelivers_a_running_task(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"PROCEXEC_DATA_DIR": str(tmp_path), "PROCEXEC_BROKER_URL": "redis://cache:6379/3"}
    )
    url, options = broker_options(settings)
    assert url == "redis://cache:6379/3"
    assert options["visibility_timeout"] >= 3600
    assert not (tmp_path / "broker").exists()  # nothing of the embedded broker


def test_other_brokers_get_no_transport_options(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"PROCEXEC_DATA_DIR": str(tmp_path), "PROCEXEC_BROKER_URL": "amqp://guest@rabbit//"}
    )
    assert broker_options(settings) == ("amqp://guest@rabbit//", {})


def test_the_celery_app_acks_late_and_keeps_no_results(tmp_path: Path) -> None:
    settings = Settings.from_env({"PROCEXEC_DATA_DIR": str(tmp_path)})
    app = make_celery(settings)
    try:
        assert app.conf.task_default_queue == QUEUE
        assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
        assert app.conf.worker_prefetch_multiplier == 1
        assert app.conf.task_ignore_result
        assert app.conf.procexec_settings is settings
    finally:
        app.close()


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[Settings, ExecutionStore]]:
    settings = Settings.from_env(
        {"PROCEXEC_DATA_DIR": str(tmp_path / "data"), "PROCEXEC_LOG_FLUSH_INTERVAL": "0.1"}
    )
    settings.data_dir.mkdir(parents=True)
    store = open_store(settings.store_url)
    yield settings, store
    store.close()
    celery_app._shared_app(settings).close()
    celery_app._shared_app.cache_clear()


def _messages(settings: Settings) -> list[dict[str, Any]]:
    queue = settings.data_dir / "broker" / "queue"
    return [
        json.loads(path.read_text())
        for path in sorted(queue.iterdir())
        if path.name.endswith(f".{QUEUE}.msg")
    ]


@pytest.mark.e2e
def test_a_dispatched_execution_is_run_by_a_worker(
    embedded: tuple[Settings, ExecutionStore], env: dict[str, str], tmp_path: Path
) -> None:
    settings, store = embedded
    triggers = TriggerService(store, load_registry(settings), celery_dispatch(settings))
    now = triggers.trigger("DEMO", run_as="erin", environment="production")
    later = triggers.trigger(
        "DEMO", run_as="erin", environment="production", body={"log_lines": 2}, delay=1.5
    )

    # Nothing consumes yet: the two task messages wait in the queue folder.
    # (by execution: the transport names its files by the millisecond, then a random id, so
    # two messages of one millisecond are listed in either order)
    messages = {}
    for message in _messages(settings):
        assert message["headers"]["task"] == RUN_TASK
        args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        # keywords, for Flower: the execution and its process's name
        assert args == [] and kwargs == {"execution_id": kwargs["execution_id"], "process": "DEMO"}
        messages[kwargs["execution_id"]] = message
    assert set(messages) == {now["_id"], later["_id"]}
    assert messages[now["_id"]]["headers"]["eta"] is None
    eta = datetime.fromisoformat(messages[later["_id"]]["headers"]["eta"])
    assert 1.0 < (eta - parse_iso(later["start"])).total_seconds() < 3
    waiting = store.get(now["_id"], "production")
    assert waiting is not None and waiting["status"] == "triggered"

    worker = start_worker(env, tmp_path)
    try:
        done = [wait_stored_end(store, doc["_id"], timeout=30) for doc in (now, later)]
        assert [doc["status"] for doc in done] == ["success", "success"], done
        # the delayed one waited for its countdown
        waited = parse_iso(done[1]["phases"][0]["start"]) - parse_iso(later["start"])
        assert waited.total_seconds() >= 1.4
        assert _messages(settings) == []  # consumed and acked: nothing left behind
    finally:
        stop_all(worker)
    assert worker.proc.returncode == 0
