"""Celery's task events, batched: what Flower shows of each run, at a fraction of the cost.

`TaskEventsEvery`, a step of the worker's consumer, makes the worker publish its task events
(`task-received`, `-started`, `-succeeded`, `-failed`, …) together every `INTERVAL` seconds,
or `LIMIT` at a time, where Celery publishes them at every turn of its event loop (one
message for about each event, a PUBLISH on Redis that the loop waits for). The worker already
buffers them (with an event loop: the prefork pool); only when they go changes.

With `task_send_sent_event`, Celery publishes one `task-sent` event per task, in the sending
thread, under one lock for the whole process: on Redis a PUBLISH more for each trigger, the
triggers of every worker thread queued behind one another. `SentEvents` is handed to
`send_task` as its `event_dispatcher`: Celery builds the same event (the task's id, name,
args and kwargs, queue) and calls its `publish`, which only appends it to a list. A thread
of its own publishes the list every `INTERVAL` seconds, `LIMIT` events a message: a message
whose body is a list of events, as a worker publishes its own buffered task events, which
Celery's event receiver (Flower's) reads event by event. An event may reach Flower after the
worker's `task-received` of its task: Celery's event state merges it without going back.

Events are best effort, as Celery's are: when the broker cannot take them they are dropped
(with a warning at most once a minute), never retried in the way of a trigger; at most
`KEEP` wait, the oldest dropped past it. Those of the last `INTERVAL` before the process
exits are not published (a broker that does not answer must not hold its exit): Flower shows
those runs from their worker's `task-received` on.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery import Celery, bootsteps
from celery.events import Event
from celery.utils.nodenames import anon_nodename
from celery.utils.time import utcoffset

logger = logging.getLogger(__name__)

#: seconds between two publications of the waiting events
INTERVAL = 0.25
#: events in one message at most
LIMIT = 500
#: events waiting at most (past it the oldest are dropped)
KEEP = 50_000
#: seconds between two warnings of events dropped
WARN_INTERVAL = 60.0


class SentEvents:
    """An `event_dispatcher` for `Celery.send_task` that batches its `task-sent` events."""

    def __init__(self, app: Celery, interval: float = INTERVAL) -> None:
        self.app = app
        self.interval = interval
        self.hostname = anon_nodename()  # as Celery's own dispatcher names the client
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pid = 0  # the process whose thread publishes (none yet; a fork starts its own)
        self._dropped = 0
        self._warned = -WARN_INTERVAL

    def publish(self, type: str, fields: dict[str, Any], *_: Any, **__: Any) -> None:
        """Called by Celery once the task is sent (with its producer, retry and policy, which
        the batch does not use): the event is kept for the next publication."""
        event = Event(
            type,
            hostname=self.hostname,
            utcoffset=utcoffset(),
            pid=os.getpid(),
            clock=self.app.clock.forward(),
            **fields,
        )
        with self._lock:
            if len(self._pending) >= KEEP:
                over = len(self._pending) - KEEP + 1
                del self._pending[:over]
                self._dropped += over
            self._pending.append(event)
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="task-sent events", daemon=True).start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Publish the waiting events now, `LIMIT` to a message."""
        with self._lock:
            batch, self._pending = self._pending, []
        for start in range(0, len(batch), LIMIT):
            chunk = batch[start : start + LIMIT]
            try:
                self._send(chunk)
            except Exception as exc:
                self._dropped += len(chunk)
                self._warn(exc)
        if self._dropped:
            self._warn(None)

    def _send(self, events: list[dict[str, Any]]) -> None:
        dispatcher = self.app.amqp._event_dispatcher  # Celery's own: its exchange, serializer
        with self.app.producer_pool.acquire(block=True, timeout=5) as producer:
            producer.publish(
                events,
                routing_key="task.multi",
                exchange=dispatcher.exchange.name,
                declare=[dispatcher.exchange],
                serializer=dispatcher.serializer,
                headers={"hostname": self.hostname},
                delivery_mode=dispatcher.delivery_mode,
                retry=False,
            )

    def _warn(self, exc: Exception | None) -> None:
        now = time.monotonic()
        if now - self._warned < WARN_INTERVAL:
            return
        self._warned = now
        logger.warning(
            "%d task-sent event(s) dropped (Flower shows those runs from their worker's "
            "task-received on)%s",
            self._dropped,
            f": {type(exc).__name__}: {exc}" if exc is not None else "",
        )
        self._dropped = 0


class TaskEventsEvery(bootsteps.StartStopStep):
    """The worker's buffered task events published every `INTERVAL` seconds (or once `LIMIT`
    wait), and at its stop, instead of at every turn of its event loop. Without an event loop
    (the threads and solo pools) Celery publishes each at once, as before."""

    requires = ("celery.worker.consumer.events:Events",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self.timer: Any = None

    def start(self, c: Any) -> None:
        dispatcher = c.event_dispatcher
        if c.hub is None or dispatcher is None or not dispatcher.buffer_group:
            return
        dispatcher.on_send_buffered = None  # not at every turn of the loop
        dispatcher.buffer_limit = LIMIT
        self.timer = c.hub.call_repeatedly(INTERVAL, self.flush, c)

    @staticmethod
    def flush(c: Any) -> None:
        if c.event_dispatcher is not None:  # None while the connection is being restarted
            c.event_dispatcher.flush()

    def stop(self, c: Any) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            self.flush(c)

    def shutdown(self, c: Any) -> None:
        self.stop(c)
