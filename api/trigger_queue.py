"""The API's triggers recorded and dispatched by threads of their own, several at a time.

Handing each trigger to Starlette's thread pool costs a thread's hop, and sixteen triggers at
once in sixteen threads contend for the interpreter's lock, the store's write lock (SQLite's
waiters sleep and try again) and the broker's connections. Here a trigger is put on a queue
and its event loop awaits it; each of `THREADS` threads takes what waits (up to `LIMIT`),
records the runs one after the other (`TriggerService.record`: the document first, it is the
outbox), then dispatches them (`TriggerService.send_all`: after a failed one the rest are left
for the housekeeper, not each waiting out the broker's retries), then answers them with one
call to each event loop. An answer comes, as before, once its run is recorded and dispatched
(or left for the housekeeper): a 202 promises the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
from typing import Any

from procexec.engine.trigger_service import TriggerService

logger = logging.getLogger(__name__)

#: threads that record and dispatch triggers, in each API process
THREADS = 2
#: triggers one thread takes at a time at most
LIMIT = 64

#: a trigger waiting: its event loop, its future, the process's name and `record`'s keywords
_Item = tuple[asyncio.AbstractEventLoop, "asyncio.Future[dict[str, Any]]", str, dict[str, Any]]
#: a trigger done: its loop, its future, its document or the error recording it raised
_Done = tuple[
    asyncio.AbstractEventLoop, "asyncio.Future[dict[str, Any]]", Any, BaseException | None
]


class TriggerQueue:
    """`trigger` as `TriggerService.trigger`, for the event loop (see the module's docstring)."""

    def __init__(self, triggers: TriggerService, threads: int = THREADS) -> None:
        self.triggers = triggers
        self.threads = threads
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pid = 0  # the process whose threads take the queue (a fork starts its own)

    async def trigger(self, name: str, **kwargs: Any) -> dict[str, Any]:
        """Record a new execution of `name` and dispatch it; its document (`record`'s keywords;
        `delay` in seconds)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._start()
        self._queue.put((loop, future, name, kwargs))
        return await future

    def _start(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                for number in range(self.threads):
                    name = f"triggers-{number}"
                    threading.Thread(target=self._run, name=name, daemon=True).start()
                self._pid = os.getpid()

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while len(items) < LIMIT:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                done = self._take(items)
            except BaseException as exc:  # a bug of this loop: every trigger taken answers it
                logger.exception("triggers failed")
                done = [(loop, future, None, exc) for loop, future, _, _ in items]
            _answer(done)

    def _take(self, items: list[_Item]) -> list[_Done]:
        done: list[_Done] = []
        runs: list[tuple[str, float, str | None]] = []
        try:
            with self.triggers.store.batch():  # one commit for them all, before any is sent
                for loop, future, name, kwargs in items:
                    try:
                        doc = self.triggers.record(name, **kwargs)
                    except Exception as exc:  # answered as `trigger` would raise it (404, …)
                        done.append((loop, future, None, exc))
                        continue
                    done.append((loop, future, doc, None))
                    runs.append((doc["_id"], kwargs.get("delay", 0.0), doc["name"]))
        except Exception as exc:  # the commit failed (the store is down): none is recorded
            return [(loop, future, None, exc) for loop, future, _, _ in items]
        self.triggers.send_all(runs)
        return done


def _answer(done: list[_Done]) -> None:
    """Each trigger's document or error to its future, with one call to each event loop."""
    loops: dict[asyncio.AbstractEventLoop, list[_Done]] = {}
    for item in done:
        loops.setdefault(item[0], []).append(item)
    for loop, items in loops.items():
        # a loop closed meanwhile (RuntimeError): nobody waits for those answers
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, items)


def _settle(done: list[_Done]) -> None:
    for _, future, doc, error in done:
        if future.done():  # the client left: its run is recorded and dispatched all the same
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(doc)
