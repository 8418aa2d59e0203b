"""Delivers webhook notifications in the background: a bounded queue and one thread per
process, so that a slow, failing or hanging receiver delays no run.

`Sender.submit` never blocks: a delivery goes into the queue, or, the queue full, is dropped
and counted. The thread posts each delivery with a timeout, and retries a failed one (any
answer but 2xx, or no answer) after a back-off that grows (1 s, then 4 s…) up to `attempts`
tries, other deliveries going on meanwhile. Each outcome is one log line (the URL shown by
its scheme and host alone) and a count (`DeliveryCounts`, read by whoever exports metrics).

The thread is started on first use, and again in a forked child (Celery's prefork workers
fork; the parent keeps and sends its own queue). `close` waits a few seconds for what is
queued (retries without their back-off) when the process exits: atexit for a process that
exits normally, the worker's own shutdown signal for a Celery child. A process killed with
SIGKILL loses what its queue held.
"""

from __future__ import annotations

import atexit
import base64
import heapq
import itertools
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

from procexec.engine.notify_settings import shown_url
from procexec.engine.redact import mask_secrets

logger = logging.getLogger(__name__)

#: deliveries waiting at most (past it a new one is dropped and counted)
CAPACITY = 1000
#: tries of one delivery, and the first back-off (each next one `BACKOFF_FACTOR` times longer)
ATTEMPTS = 3
BACKOFF = 1.0
BACKOFF_FACTOR = 4.0
#: seconds to connect, and to wait for each read of the answer
TIMEOUT = 5.0
#: seconds a process that exits waits for its queue
EXIT_DEADLINE = 5.0


@dataclass
class Delivery:
    """One webhook post: the exact body bytes (signed), its headers, and what the log says."""

    url: str
    body: bytes
    headers: Mapping[str, str]
    #: names the notification in log lines: `failed DEMO 1b2c…`
    label: str
    #: tries made so far
    tries: int = 0


class DeliveryCounts:
    """How many deliveries were delivered, retried (per retry), failed (gave up) or dropped
    (the queue full) in this process; `as_dict()` reads them at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.delivered = self.retried = self.failed = self.dropped = 0
        #: told of each outcome as it is counted (a process's metrics); one at most
        self.watcher: Callable[[str], None] | None = None

    def add(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)
        watcher = self.watcher
        if watcher is not None:
            try:
                watcher(name)
            except Exception:  # a figure not kept never stops a delivery
                logger.exception("notification outcome %s not counted", name)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            names = ("delivered", "retried", "failed", "dropped")
            return {name: getattr(self, name) for name in names}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer like any other that is not 2xx: no body is posted elsewhere."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
    """POST `body` to `url`; the answer's status (an error's too, `HTTPError`). A URL's
    `user:password@` is sent as basic authentication."""
    headers = dict(headers)
    parts = urlsplit(url)
    if parts.username is not None:
        userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(userinfo.encode()).decode()
        url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            answer.read(65536)
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


Post = Callable[[str, bytes, Mapping[str, str], float], int]


@dataclass(order=True)
class _Queued:
    due: float
    seq: int
    delivery: Delivery = field(compare=False)


class Sender:
    def __init__(
        self,
        *,
        capacity: int = CAPACITY,
        attempts: int = ATTEMPTS,
        backoff: float = BACKOFF,
        backoff_factor: float = BACKOFF_FACTOR,
        timeout: float = TIMEOUT,
        poster: Post = post,
    ) -> None:
        self.capacity = capacity
        self.attempts = attempts
        self.backoff = backoff
        self.backoff_factor = backoff_factor
        self.timeout = timeout
        self.poster = poster
        self.counts = DeliveryCounts()
        self._seq = itertools.count()
        self._reset()

    def _reset(self) -> None:
        self._pid = -1
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: list[_Queued] = []
        self._sending = 0
        #: closing: what is queued goes at once, without its back-off
        self._closing = False

    def submit(self, delivery: Delivery) -> bool:
        """Queue `delivery`; False (dropped, counted, logged) when the queue is full."""
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked child: a thread of its own
                self._pid = os.getpid()
                thread = threading.Thread(target=self._loop, name="notifications", daemon=True)
                thread.start()
            if len(self._queue) + self._sending >= self.capacity:
                full = True
            else:
                full = False
                heapq.heappush(self._queue, _Queued(time.monotonic(), next(self._seq), delivery))
                self._changed.notify_all()
        if full:
            self.counts.add("dropped")
            logger.warning(
                "notification %s to %s: dropped, %d waiting already",
                delivery.label,
                shown_url(delivery.url),
                self.capacity,
            )
        return not full

    def pending(self) -> int:
        """Deliveries queued or being sent."""
        with self._lock:
            return len(self._queue) + self._sending

    def flush(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for every queued delivery to be done; whether it is."""
        end = time.monotonic() + timeout
        with self._lock:
            while self._queue or self._sending:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def close(self, timeout: float = EXIT_DEADLINE) -> bool:
        """At exit: send what is queued at once (no back-off), waiting up to `timeout`."""
        with self._lock:
            if self._pid != os.getpid() or not (self._queue or self._sending):
                return True
            self._closing = True
            self._changed.notify_all()
        done = self.flush(timeout)
        if not done:
            logger.warning("notifications: %d not sent at exit", self.pending())
        return done

    def _loop(self) -> None:
        while True:
            with self._lock:
                while True:
                    now = time.monotonic()
                    if self._queue and (self._closing or self._queue[0].due <= now):
                        break
                    wait = self._queue[0].due - now if self._queue else None
                    self._changed.wait(wait)
                delivery = heapq.heappop(self._queue).delivery
                self._sending += 1
            try:
                self._send(delivery)
            finally:
                with self._lock:
                    self._sending -= 1
                    self._changed.notify_all()

    def _send(self, delivery: Delivery) -> None:
        delivery.tries += 1
        where = shown_url(delivery.url)
        try:
            status = self.poster(delivery.url, delivery.body, delivery.headers, self.timeout)
            problem = None if 200 <= status < 300 else f"HTTP {status}"
        except Exception as exc:  # no answer: refused, timed out, a broken connection
            reason = getattr(exc, "reason", None) or exc
            problem = mask_secrets(" ".join(f"{type(exc).__name__}: {reason}".split()))
            problem = problem.replace(delivery.url, where)
        tries = f"attempt {delivery.tries} of {self.attempts}"
        if problem is None:
            self.counts.add("delivered")
            logger.info("notification %s to %s: delivered (%s)", delivery.label, where, tries)
            return
        if delivery.tries >= self.attempts:
            self.counts.add("failed")
            logger.error(
                "notification %s to %s: failed, %s (%s); given up",
                delivery.label,
                where,
                problem,
                tries,
            )
            return
        pause = self.backoff * self.backoff_factor ** (delivery.tries - 1)
        self.counts.add("retried")
        logger.warning(
            "notification %s to %s: %s (%s); retrying in %g s",
            delivery.label,
            where,
            problem,
            tries,
            pause,
        )
        with self._lock:
            due = time.monotonic() + pause
            heapq.heappush(self._queue, _Queued(due, next(self._seq), delivery))
            self._changed.notify_all()

    def _forked(self) -> None:
        """In a forked child: the parent's thread is not here, nor may its lock be free."""
        self._reset()


#: this process's sender
SENDER = Sender()
os.register_at_fork(after_in_child=SENDER._forked)
atexit.register(SENDER.close)
