"""One thread per process that does the background work of every open recorder: flushing its
buffered log lines, sending its heartbeat and watching its deadline.

A thread a run cost a start, a wake-up and a join each run (some 15% of a worker's time on a
short run); this one is started once per process (again in a forked child) and waits while no
run is open."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from typing import Protocol

logger = logging.getLogger(__name__)

#: the longest the thread sleeps with recorders open (it is woken when one opens)
LONGEST_SLEEP = 1.0


class Ticking(Protocol):
    execution_id: str

    def tick(self, now: float) -> float:
        """Do what is due at `now`; the monotonic time of the next thing due."""


class Flusher:
    def __init__(self) -> None:
        self._pid = -1
        self._lock = threading.Lock()
        self._open: set[Ticking] = set()
        self._wake = threading.Event()
        #: when the thread wakes by itself (inf: not before a recorder is added)
        self._sleep_until = math.inf
        #: recorders added so far (a round sees whether one came in while it ran)
        self._added = 0

    def add(self, recorder: Ticking, due: float) -> None:
        """Take `recorder` into the rounds, its first round due at `due` (monotonic)."""
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked child: a thread of its own
                self._pid = os.getpid()
                self._open = set()
                self._wake = threading.Event()
                self._sleep_until = math.inf
                threading.Thread(target=self._loop, name="recorders", daemon=True).start()
            self._open.add(recorder)
            self._added += 1
            # woken only when it would sleep past the recorder's first round: a wake-up is a
            # switch between threads, which a short run would pay every time
            wake = self._sleep_until > due
        if wake:
            self._wake.set()

    def remove(self, recorder: Ticking) -> None:
        with self._lock:
            self._open.discard(recorder)

    def _loop(self) -> None:
        wake = self._wake
        while True:
            with self._lock:
                recorders, seen = list(self._open), self._added
            now = time.monotonic()
            due = now + LONGEST_SLEEP if recorders else math.inf
            for recorder in recorders:
                try:
                    due = min(due, recorder.tick(now))
                except Exception:  # the next round tries again; its lines are kept
                    logger.exception("recording %s failed", recorder.execution_id)
            with self._lock:
                if self._added != seen:  # one came in during the round: round again
                    due = -math.inf
                self._sleep_until = due
            if due > -math.inf:
                wake.wait(None if due == math.inf else max(0.0, due - time.monotonic()))
            with self._lock:
                wake.clear()
                self._sleep_until = -math.inf  # awake: a recorder added now is seen next round

    def _forked(self) -> None:
        """In a forked child: the parent's thread is not here, nor may its lock be free."""
        self._lock = threading.Lock()
        self._pid = -1


#: this process's flusher
FLUSHER = Flusher()
os.register_at_fork(after_in_child=FLUSHER._forked)
