"""The API process's hub of the all-runs stream (`GET v1/events`): one poll of the store's
journal of every run per interval, whatever the number of followers.

Every `POLL_SECONDS`, one worker thread reads the journal entries written since the last one
read (`ExecutionStore.journal_since`, one query). Each entry that changes a run (its status,
message or a phase; log lines alone are left to the per-run stream) becomes one `change`
event numbered by the entry's place in that journal. Which followers it goes to is decided
per distinct filter, not per follower: one lookup by id of the runs changed in that interval
(`Query` restricted to their ids), shared by every follower of the same filter. A filter is
thus applied to the runs as they are when the poll reads them.

A follower that resumes (`Last-Event-ID`) first reads the journal from there to where the hub
stands (its own query, once, when it connects), then takes the hub's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from procexec.api.errors import ApiError
from procexec.api.event_hub import TokenStreams
from procexec.engine.query import And, Condition, Query
from procexec.engine.store.base import ExecutionStore, JournalRow

#: seconds between two polls of the journal
POLL_SECONDS = 0.5
#: all-runs streams one token may hold open at once
FOLLOWERS_PER_TOKEN = 5
#: seconds a stream may go without an event before it closes
IDLE_SECONDS = 300.0
#: seconds a stream may last at most (a follower reconnects with its `Last-Event-ID`)
LIFETIME_SECONDS = 3600.0
#: journal entries read at most per poll (the rest at the next)
BATCH = 500
#: journal entries a resuming follower may ask to catch up at most
CATCH_UP = 5000
#: runs whose last known state the hub remembers
REMEMBERED_RUNS = 10_000
#: polls' changes a follower may have waiting at most; past it, its stream is closed
BACKLOG = 1000
#: seconds a place missing from the journal is waited for, where places come out of order
GAP_SECONDS = 5.0


@dataclass(frozen=True)
class Change:
    pos: int
    execution_id: str
    data: dict[str, Any]


@dataclass(eq=False)
class _Follower:
    query: Query
    queue: asyncio.Queue[list[Change] | None] = field(default_factory=asyncio.Queue)
    #: told to close: it fell `BACKLOG` polls behind (a client that does not read)
    behind: bool = False


class RunsHub(TokenStreams):
    """The all-runs streams of this process, fed by one poller (`follow`)."""

    STREAMS = "all-runs streams"

    def __init__(self, store: ExecutionStore, read_timeout: float | None) -> None:
        self.store = store
        self.read_timeout = read_timeout
        self.poll_seconds = POLL_SECONDS
        self.followers_per_token = FOLLOWERS_PER_TOKEN
        self.idle_seconds = IDLE_SECONDS
        self.lifetime_seconds = LIFETIME_SECONDS
        self.head: int | None = None  # the place of the last entry read
        self._followers: set[_Follower] = set()
        self._tokens: dict[str, int] = {}
        self._runs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._poller: asyncio.Task[None] | None = None
        self._reading = asyncio.Lock()
        self._gap: tuple[int, float] | None = None  # a place missing, since when (`_unbroken`)

    def _read(self, call: Any, *args: Any) -> Any:
        with self.store.limited(self.read_timeout):
            try:
                return call(*args)
            except NotImplementedError as exc:
                raise ApiError(501, f"the all-runs stream: {exc}") from exc

    async def prepare(self) -> None:
        """Where the journal stands (a 501 on a store that keeps none): read by the first
        follower, and again by the first after a time without any (the poller stopped then:
        a follower that starts from now gets no backlog of that time, and the runs' states
        kept from before it are forgotten)."""
        async with self._reading:
            idle = not self._followers and (self._poller is None or self._poller.done())
            if self.head is None or idle:
                self.head = await run_in_threadpool(self._read, self.store.journal_head)
                self._runs.clear()

    async def follow(self, query: Query, after: int | None) -> AsyncIterator[Change | None]:
        """The changes of the runs `query` selects after the journal's place `after` (None:
        from now on); None when the stream has been idle for `idle_seconds` or open for
        `lifetime_seconds` (it then closes)."""
        await self.prepare()
        follower = _Follower(query)
        self._followers.add(follower)
        self._start()
        loop = asyncio.get_running_loop()
        closes = loop.time() + self.lifetime_seconds
        try:
            head = self.head or 0
            if after is not None and after < head:
                for change in await run_in_threadpool(self._catch_up, query, after, head):
                    yield change
            while True:
                waiting = max(0.0, min(self.idle_seconds, closes - loop.time()))
                try:
                    changes = await asyncio.wait_for(follower.queue.get(), waiting)
                except TimeoutError:
                    changes = None
                if changes is None:  # idle, open too long, or too far behind
                    yield None
                    return
                for change in changes:
                    if after is None or change.pos > after:
                        yield change
        finally:
            self._followers.discard(follower)

    def _catch_up(self, query: Query, after: int, head: int) -> list[Change]:
        """The changes `query` selects between the places `after` and `head` (at most
        `CATCH_UP` entries before `head`)."""
        after = max(after, head - CATCH_UP)
        rows: list[JournalRow] = []
        while after < head:
            batch = self._read(self.store.journal_since, after, min(BATCH, head - after))
            if not batch:
                break
            rows.extend(row for row in batch if row.pos <= head)
            after = batch[-1].pos
        states: dict[str, dict[str, Any]] = {}
        changes = [c for row in rows if (c := _change(row, states, self._history)) is not None]
        chosen = self._selected(query, {c.execution_id for c in changes})
        return [c for c in changes if c.execution_id in chosen]

    def _selected(self, query: Query, ids: set[str]) -> set[str]:
        """Which of the runs `ids` the query selects (one query to the store)."""
        if not ids:
            return set()
        among = Condition("_id", "in", tuple(sorted(ids)))
        where = among if query.where is None else And((among, query.where))
        asked = dataclasses.replace(
            query, where=where, limit=len(ids), skip=0, project=("_id",), exclude=None
        )
        docs, _ = self._read(self.store.list, asked)
        return {str(doc["_id"]) for doc in docs}

    def _start(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll_forever())

    async def _poll_forever(self) -> None:
        while self._followers:
            await asyncio.sleep(self.poll_seconds)
            with contextlib.suppress(Exception):  # a store that fails now is asked again later
                await self._poll_once()

    async def _poll_once(self) -> None:
        after = self.head or 0
        rows, changes = await run_in_threadpool(self._poll, after)
        if not rows:
            return
        self.head = rows[-1].pos
        if not changes or not self._followers:
            return
        ids = {c.execution_id for c in changes}
        by_query: dict[Query, list[_Follower]] = {}
        for follower in self._followers:
            by_query.setdefault(follower.query, []).append(follower)
        for query, followers in by_query.items():
            chosen = await run_in_threadpool(self._selected, query, ids)
            told = [c for c in changes if c.execution_id in chosen]
            if told:
                for follower in followers:
                    if follower.behind:
                        continue
                    if follower.queue.qsize() >= BACKLOG:
                        follower.behind = True  # it resumes from its last event id
                        follower.queue.put_nowait(None)
                        continue
                    follower.queue.put_nowait(told)

    def _poll(self, after: int) -> tuple[list[JournalRow], list[Change]]:
        """The journal's entries after `after` and their events (in a worker thread)."""
        rows: list[JournalRow] = self._read(self.store.journal_since, after, BATCH)
        if not self.store.journal_in_order:
            rows = self._unbroken(after, rows)
        changes = [c for row in rows if (c := _change(row, self._runs, self._history))]
        while len(self._runs) > REMEMBERED_RUNS:
            self._runs.popitem(last=False)
        return rows, changes

    def _unbroken(self, after: int, rows: list[JournalRow]) -> list[JournalRow]:
        """The entries up to the first place missing after `after`, on a store whose places
        are handed out before their entries are written (MongoDB): one missing is waited for
        `GAP_SECONDS` (its writer is on its way), then passed over (its writer never wrote it:
        it died, or its entry was written by an earlier attempt)."""
        taken: list[JournalRow] = []
        expected = after + 1
        for row in rows:
            if row.pos != expected:
                now = time.monotonic()
                if self._gap is None or self._gap[0] != expected:
                    self._gap = (expected, now)
                if now - self._gap[1] < GAP_SECONDS:
                    break
            taken.append(row)
            expected = row.pos + 1
        return taken

    def _history(self, execution_id: str) -> list[tuple[int, dict[str, Any]]]:
        """A run's whole journal (read once, for a run first met after its first change)."""
        found: list[tuple[int, dict[str, Any]]] = self._read(self.store.changes, execution_id, 0)
        return found


def _change(row: JournalRow, states: dict[str, dict[str, Any]], history: Any) -> Change | None:
    """The event of one journal entry, None when it changes no status, message or phase; the
    run's state kept in `states`, rebuilt from its earlier entries (`history(id)`, read once)
    when the run is met after its first change."""
    entry = row.entry
    sets: dict[str, Any] = dict(entry.get("set") or {})
    pushed = (entry.get("push") or {}).get("phases")
    told = "status" in sets or "message" in sets or "failRunning" in entry or pushed
    state = states.get(row.execution_id)
    if state is None:
        state = {"name": row.doc.get("name"), "status": "triggered", "message": None}
        state.update(phases=0, phase=None)
        if row.seq > 1:
            for number, earlier in history(row.execution_id):
                if number < row.seq:
                    _apply(state, earlier)
    states[row.execution_id] = state
    if isinstance(states, OrderedDict):
        states.move_to_end(row.execution_id)
    _apply(state, entry)
    if not (told or any(path.startswith("phases.") for path in sets)):
        return None
    data = {
        "id": row.execution_id,
        "seq": row.seq,
        "name": state["name"],
        "status": state["status"],
        "phase": None if state["phase"] is None else dict(state["phase"]),
        "message": state["message"],
    }
    return Change(row.pos, row.execution_id, data)


def _apply(state: dict[str, Any], entry: dict[str, Any]) -> None:
    """A run's state (status, message, phases begun, the phase last changed) after `entry`."""
    sets: dict[str, Any] = dict(entry.get("set") or {})
    for value in (entry.get("push") or {}).get("phases") or []:
        state["phase"] = _phase(state["phases"], value)
        state["phases"] += 1
    for path, value in sets.items():
        parts = path.split(".")
        if len(parts) < 2 or parts[0] != "phases" or not parts[1].isdigit():
            continue
        index = int(parts[1])
        if len(parts) == 2 and isinstance(value, dict):
            state["phase"] = _phase(index, value)
            state["phases"] = max(state["phases"], index + 1)
        elif len(parts) == 3 and parts[2] in ("name", "status"):
            phase = state["phase"]
            if phase is None or phase["index"] != index:
                phase = state["phase"] = {"index": index, "name": None, "status": None}
            phase[parts[2]] = value
    if "failRunning" in entry and state["phase"] and state["phase"]["status"] == "running":
        state["phase"] = {**state["phase"], "status": "failed"}
    state["status"] = sets.get("status", state["status"])
    state["message"] = sets.get("message", state["message"])


def _phase(index: int, value: dict[str, Any]) -> dict[str, Any]:
    return {"index": index, "name": value.get("name"), "status": value.get("status")}
