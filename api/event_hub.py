"""The API process's hub of live events: one poll of the store per followed run, whatever the
number of its followers.

Every `POLL_SECONDS`, one worker thread asks the store for the journal entries of every run
someone follows, after the last one read (`ExecutionStore.changes`): one query per run, never
one per follower. Their events (`engine.run_events`) are kept for the run while it is followed
and handed to each follower from where it stands, so a follower that joins late, or resumes
from a `Last-Event-ID`, costs no query but the first of its run. A run no one follows any more
is forgotten; one that ended is forgotten once its last follower has left.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from procexec.api.errors import ApiError
from procexec.engine.run_events import Event, RunEvents
from procexec.engine.store.base import ExecutionStore

#: seconds between two polls of the store for the followed runs
POLL_SECONDS = 0.2
#: streams one token may hold open at once
FOLLOWERS_PER_TOKEN = 10
#: seconds a stream may go without an event before it closes
IDLE_SECONDS = 300.0
#: seconds a stream may last at most (a follower reconnects with its `Last-Event-ID`)
LIFETIME_SECONDS = 3600.0


@dataclass
class _Run:
    execution_id: str
    events: RunEvents
    told: list[Event] = field(default_factory=list)
    followers: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def publish(self, events: list[Event]) -> None:
        if events:
            self.told.extend(events)
            self.changed.set()
            self.changed = asyncio.Event()


class TokenStreams:
    """How many streams each token holds open, at most `followers_per_token` (a 429 past it);
    `STREAMS` names them in the error."""

    STREAMS = "event streams"
    followers_per_token: int
    _tokens: dict[str, int]

    def admit(self, token: str) -> None:
        """Count one more stream of `token`; a 429 past `followers_per_token`."""
        if self._tokens.get(token, 0) >= self.followers_per_token:
            raise ApiError(
                429,
                f"too many open {self.STREAMS}: at most {self.followers_per_token} per token",
                {"Retry-After": "5"},
            )
        self._tokens[token] = self._tokens.get(token, 0) + 1

    def leave(self, token: str) -> None:
        left = self._tokens.get(token, 0) - 1
        if left > 0:
            self._tokens[token] = left
        else:
            self._tokens.pop(token, None)


class EventHub(TokenStreams):
    """The runs followed in this process, polled together (`follow`)."""

    def __init__(
        self, store: ExecutionStore, max_log_lines: int, read_timeout: float | None
    ) -> None:
        self.store = store
        self.max_log_lines = max_log_lines
        self.read_timeout = read_timeout
        self.poll_seconds = POLL_SECONDS
        self.followers_per_token = FOLLOWERS_PER_TOKEN
        self.idle_seconds = IDLE_SECONDS
        self.lifetime_seconds = LIFETIME_SECONDS
        self._runs: dict[str, _Run] = {}
        self._tokens: dict[str, int] = {}
        self._poller: asyncio.Task[None] | None = None

    async def open(self, execution_id: str) -> _Run:
        """The run, followed from here on: read whole (document and journal) on first follow,
        once however many followers arrive together."""
        run = self._runs.get(execution_id)
        if run is None:
            run = self._runs[execution_id] = _Run(execution_id, RunEvents(self.max_log_lines))
            try:
                run.told = await run_in_threadpool(self._first_read, execution_id, run.events)
            except BaseException:
                self._runs.pop(execution_id, None)
                run.ready.set()
                raise
            run.ready.set()
        run.followers += 1
        await run.ready.wait()
        self._start()
        return run

    def _first_read(self, execution_id: str, events: RunEvents) -> list[Event]:
        with self.store.limited(self.read_timeout):
            found = self.store.get_at(execution_id)
            entries = self.store.changes(execution_id, 0)
        if found is None:
            return []
        doc, seq = found
        told: list[Event] = []
        if not entries or entries[0][0] > 1:  # its start is not in the journal: as it is now
            told.extend(events.opening(doc, seq if not entries else entries[0][0] - 1))
        for number, entry in entries:
            told.extend(events.feed(number, entry))
        told.extend(events.closing(doc, seq))
        return told

    def close(self, run: _Run) -> None:
        run.followers -= 1
        if run.followers <= 0:
            self._runs.pop(run.execution_id, None)

    async def follow(
        self, execution_id: str, after: tuple[int, float]
    ) -> AsyncIterator[Event | None]:
        """The run's events after the position `after`, until its end; None when the stream
        has been idle for `idle_seconds` or open for `lifetime_seconds` (it then closes)."""
        run = await self.open(execution_id)
        loop = asyncio.get_running_loop()
        closes = loop.time() + self.lifetime_seconds
        try:
            sent = 0
            while True:
                while sent < len(run.told):
                    event = run.told[sent]
                    sent += 1
                    if event.cursor > after:
                        yield event
                if run.events.ended:
                    return
                waiting = min(self.idle_seconds, closes - loop.time())
                try:
                    await asyncio.wait_for(run.changed.wait(), max(0.0, waiting))
                except TimeoutError:
                    yield None
                    return
        finally:
            self.close(run)

    def _start(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll_forever())

    async def _poll_forever(self) -> None:
        while self._runs:
            await asyncio.sleep(self.poll_seconds)
            runs = [r for r in list(self._runs.values()) if r.ready.is_set() and not r.events.ended]
            if not runs:
                continue
            with contextlib.suppress(Exception):  # a store that fails now is asked again later
                read = await run_in_threadpool(self._poll, runs)
                for run, entries in read:
                    run.publish([e for n, entry in entries for e in run.events.feed(n, entry)])

    def _poll(self, runs: list[_Run]) -> list[tuple[_Run, list[tuple[int, dict[str, Any]]]]]:
        with self.store.limited(self.read_timeout):
            return [(run, self.store.changes(run.execution_id, run.events.seq)) for run in runs]
