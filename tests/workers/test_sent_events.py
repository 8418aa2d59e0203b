"""Celery's `task-sent` events, batched (`workers.sent_events`), on a real Redis: each trigger's
event reaches an event receiver (Flower's kind) with its task's id, name, kwargs and queue;
several go in one message."""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from procexec.engine.settings import Settings
from procexec.workers.celery_app import QUEUE, RUN_TASK, celery_dispatch, make_celery, sent_events
from tests.integration.harness import require_redis

pytestmark = pytest.mark.redis

REDIS_URL = os.environ.get("PROCEXEC_TEST_EVENTS_REDIS_URL", "redis://127.0.0.1:6379/14")


def test_task_sent_events_reach_a_receiver_batched_with_each_tasks_name_id_and_kwargs(
    tmp_path: Path,
) -> None:
    url = require_redis(REDIS_URL)
    settings = Settings.from_env({"PROCEXEC_DATA_DIR": str(tmp_path), "PROCEXEC_BROKER_URL": url})
    app = make_celery(settings)
    dispatch = celery_dispatch(settings, app)
    events: list[dict[str, Any]] = []
    bodies: list[Any] = []
    with app.connection() as conn:
        receiver = app.events.Receiver(conn, handlers={"task-sent": events.append})
        receive = receiver._receive

        def counted(body: Any, message: Any) -> None:
            bodies.append(body)
            receive(body, message)

        receiver._receive = counted  # type: ignore[method-assign]
        listening = threading.Thread(target=lambda: receiver.capture(timeout=30), daemon=True)
        listening.start()
        try:
            # the receiver subscribes in its own time: sent events until one comes back
            deadline = time.monotonic() + 15
            while not events:
                assert time.monotonic() < deadline, "no task-sent event came back"
                dispatch(f"warm-{uuid.uuid4()}", 0.0, "WARM")
                time.sleep(0.3)
            time.sleep(sent_events(app).interval * 2)
            events.clear()
            bodies.clear()
            ids = [str(uuid.uuid4()) for _ in range(3)]
            for execution_id in ids:
                dispatch(execution_id, 0.0, "DEMO")
            deadline = time.monotonic() + 10
            while {event["uuid"] for event in events} < set(ids):
                assert time.monotonic() < deadline, f"events of {ids} missing: {events}"
                time.sleep(0.05)
        finally:
            receiver.should_stop = True
            listening.join(10)
    for execution_id in ids:
        [event] = [event for event in events if event["uuid"] == execution_id]
        assert event["type"] == "task-sent"
        assert event["name"] == RUN_TASK
        assert event["queue"] == QUEUE
        assert event["kwargs"] == repr({"execution_id": execution_id, "process": "DEMO"})
    # one message per publication, a list of events, not one message per task
    assert all(isinstance(body, list) for body in bodies)
    assert len(bodies) < len(ids)
