"""Celery's task events, batched (`workers.sent_events`), on a real Redis: each trigger's
`task-sent` event reaches an event receiver (Flower's kind) with its task's id, name, kwargs
and queue; a prefork worker's own task events (received, started, succeeded, failed with the
run's message) reach it too; several events go in one message."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from procexec.engine.settings import Settings
from procexec.service import build
from procexec.workers.celery_app import QUEUE, RUN_TASK, celery_dispatch, make_celery, sent_events
from tests.integration.harness import require_redis, service_env, start_worker, stop_all
from tests.shared_redis import shared_redis_url

pytestmark = pytest.mark.redis

REDIS_URL = shared_redis_url("PROCEXEC_TEST_EVENTS_REDIS_URL", 14)


@contextmanager
def receiving(app: Celery) -> Iterator[tuple[list[dict[str, Any]], list[Any]]]:
    """A receiver of every task event of `app`'s broker: the events, and the messages' bodies
    they came in. Ready (subscribed) when entered."""
    events: list[dict[str, Any]] = []
    bodies: list[Any] = []
    with app.connection() as conn:
        receiver = app.events.Receiver(conn, handlers={"*": events.append})
        receive = receiver._receive

        def counted(body: Any, message: Any) -> None:
            bodies.append(body)
            receive(body, message)

        receiver._receive = counted  # type: ignore[method-assign]
        listening = threading.Thread(target=lambda: receiver.capture(timeout=60), daemon=True)
        listening.start()
        try:
            # the receiver subscribes in its own time: an event, no task, until one comes back
            batch, deadline = sent_events(app), time.monotonic() + 15
            while not any(event.get("uuid") == "warm-up" for event in events):
                assert time.monotonic() < deadline, "no event came back"
                batch.publish("task-sent", {"uuid": "warm-up", "name": "warm-up"})
                time.sleep(0.3)
            time.sleep(batch.interval * 2)
            events.clear()
            bodies.clear()
            yield events, bodies
        finally:
            receiver.should_stop = True
            listening.join(10)


def _wait(events: list[dict[str, Any]], done: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"events missing: {events}"
        time.sleep(0.05)


def test_task_sent_events_reach_a_receiver_batched_with_each_tasks_name_id_and_kwargs(
    tmp_path: Path,
) -> None:
    url = require_redis(REDIS_URL)
    settings = Settings.from_env({"PROCEXEC_DATA_DIR": str(tmp_path), "PROCEXEC_BROKER_URL": url})
    app = make_celery(settings)
    dispatch = celery_dispatch(settings, app)
    with receiving(app) as (events, bodies):
        ids = [str(uuid.uuid4()) for _ in range(3)]
        for execution_id in ids:
            dispatch(execution_id, 0.0, "DEMO")
        _wait(events, lambda: {event.get("uuid") for event in events} >= set(ids))
    for execution_id in ids:
        [event] = [event for event in events if event["uuid"] == execution_id]
        assert event["type"] == "task-sent"
        assert event["name"] == RUN_TASK
        assert event["queue"] == QUEUE
        assert event["kwargs"] == repr({"execution_id": execution_id, "process": "DEMO"})
    # one message per publication, a list of events, not one message per task
    assert all(isinstance(body, list) for body in bodies)
    assert len(bodies) < len(ids)


def test_a_prefork_workers_task_events_reach_a_receiver_batched(tmp_path: Path) -> None:
    """The prefork pool's worker publishes its buffered task events every quarter second
    (`TaskEventsEvery`): received, started, then succeeded, or failed with the run's message."""
    url = require_redis(REDIS_URL)
    env = service_env(tmp_path / "data", url)
    settings = Settings.from_env(env)
    service = build(settings)
    worker = start_worker(env, tmp_path, pool="prefork", concurrency=1)
    try:
        with receiving(make_celery(settings)) as (events, bodies):
            ok = service.triggers.trigger("DEMO", run_as="ops", environment="production")
            bad = service.triggers.trigger(
                "DEMO", run_as="ops", environment="production", body={"fail_in": "EXTRACT"}
            )

            def seen(task: str, kind: str) -> bool:
                return any(e.get("uuid") == task and e["type"] == kind for e in events)

            _wait(
                events,
                lambda: seen(ok["_id"], "task-succeeded") and seen(bad["_id"], "task-failed"),
            )
        failed = service.store.get(bad["_id"])
    finally:
        stop_all(worker)
        service.store.close()
    assert failed is not None and failed["status"] == "failed"
    for task in (ok["_id"], bad["_id"]):
        kinds = [e["type"] for e in events if e.get("uuid") == task]
        assert {"task-sent", "task-received", "task-started"} <= set(kinds), kinds
        [received] = [e for e in events if e.get("uuid") == task and e["type"] == "task-received"]
        assert received["name"] == RUN_TASK
        assert "'process': 'DEMO'" in received["kwargs"]
        assert received["hostname"].startswith("procexec-test-")
    [failure] = [e for e in events if e.get("uuid") == bad["_id"] and e["type"] == "task-failed"]
    assert failed["message"] in failure["exception"]  # the run's own message
    worker_events = [e for e in events if str(e.get("hostname", "")).startswith("procexec-test-")]
    worker_bodies = [
        body
        for body in bodies
        if isinstance(body, list) and str(body[0].get("hostname", "")).startswith("procexec-test-")
    ]
    assert len(worker_bodies) < len([e for e in worker_events if e["type"].startswith("task-")])
