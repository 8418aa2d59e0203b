"""`GET v1/events`: the changes of every run a filter selects, over real HTTP (uvicorn) on a
real SQLite store, the runs run by the engine's `PhaseRunner` as a worker would."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from procexec.api import runs_hub
from procexec.api.runs_hub import Change, RunsHub
from procexec.engine.query import parse_query
from procexec.engine.store.base import Update
from procexec.engine.store.mongo_runs import next_place
from procexec.engine.store.sqlite import SQLiteStore
from tests.api.api_helpers import BASES, Service
from tests.api.test_api_events import _events, _run, _trigger
from tests.engine.conftest import mongo_database
from tests.engine.store.documents import execution

BASE = BASES[0]


@pytest.fixture
def fast_hub(client: TestClient, service: Service) -> RunsHub:
    hub = RunsHub(service.store, service.settings.read_timeout)
    hub.poll_seconds = 0.02
    hub.idle_seconds = 3  # a stream left open closes, and the server stops
    service.app.state.runs_hub = hub
    return hub


def _collect(url: str, headers: dict[str, str], until: Any, into: list[dict[str, Any]]) -> None:
    for event in _events(url, headers):
        into.append(event)
        if until(into):
            return


def _follow(url: str, headers: dict[str, str], until: Any) -> tuple[threading.Thread, list[Any]]:
    received: list[dict[str, Any]] = []
    thread = threading.Thread(target=_collect, args=(url, headers, until, received), daemon=True)
    thread.start()
    time.sleep(0.5)  # connected, the hub's place read
    return thread, received


PHASES = ("EXTRACT", "TRANSFORM", "SEND", "LOAD")


def _phases_placed(events: list[dict[str, Any]]) -> bool:
    """Each event's phase is named by its index (the run's state rebuilt right)."""
    phases = [e["data"]["phase"] for e in events if e["data"]["phase"]]
    return bool(phases) and all(PHASES[p["index"]] == p["name"] for p in phases)


def _until(condition: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.02)


def _ended(execution_id: str) -> Any:
    def until(events: list[dict[str, Any]]) -> bool:
        return any(
            e["data"]["id"] == execution_id and e["data"]["status"] in ("success", "failed")
            for e in events
        )

    return until


def test_a_filter_selects_the_runs_whose_changes_come_through(
    client: TestClient, service: Service, live_url: str, fast_hub: RunsHub
) -> None:
    failing = _trigger(client, service, fail_in="TRANSFORM")
    passing = _trigger(client, service)
    url = f"{live_url}{BASE}/v1/events?status=in(failed,running)"
    thread, received = _follow(url, service.read_headers, _ended(failing))
    everything, received_all = _follow(
        f"{live_url}{BASE}/v1/events", service.read_headers, _ended(failing)
    )
    assert _run(service, passing) == "success"
    assert _run(service, failing) == "failed"
    thread.join(timeout=30)
    everything.join(timeout=30)
    assert not thread.is_alive() and not everything.is_alive()
    # the filtered stream: the failing run (running, then failed), never the passing one once
    # it succeeded
    assert {e["data"]["id"] for e in received} <= {failing, passing}
    assert all(
        e["data"]["status"] != "success" for e in received if e["data"]["id"] == passing
    ) or not [e for e in received if e["data"]["id"] == passing]
    mine = [e["data"] for e in received if e["data"]["id"] == failing]
    assert mine[-1]["status"] == "failed"
    assert {d["phase"]["name"] for d in mine if d["phase"]} >= {"EXTRACT", "TRANSFORM"}
    assert all(e["event"] == "change" for e in received)
    assert _phases_placed(received) and _phases_placed(received_all)
    ids = [int(e["id"]) for e in received]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    # the unfiltered one: both runs, the passing one to its success
    statuses = {e["data"]["id"]: e["data"]["status"] for e in received_all}
    assert statuses == {passing: "success", failing: "failed"}
    # no log line event: one event per change of a status, message or phase
    assert not any("lines" in e["data"] for e in received_all)


def test_a_filter_on_the_name_leaves_other_processes_out(
    client: TestClient, service: Service, live_url: str, fast_hub: RunsHub
) -> None:
    run = _trigger(client, service)
    url = f"{live_url}{BASE}/v1/events?name=NOT_DEMO"
    thread, received = _follow(url, service.read_headers, lambda events: True)
    assert _run(service, run) == "success"
    time.sleep(0.5)
    assert received == []
    other = f"{live_url}{BASE}/v1/events?_filter=name%3DDEMO%20or%20name%3DOTHER"
    with httpx.stream("GET", other, headers=service.read_headers, timeout=10) as answer:
        assert answer.status_code == 200
    thread.join(timeout=10)
    assert received == []


def test_resuming_from_last_event_id_sends_what_followed_it(
    client: TestClient, service: Service, live_url: str, fast_hub: RunsHub
) -> None:
    first = _trigger(client, service)
    url = f"{live_url}{BASE}/v1/events"
    thread, received = _follow(url, service.read_headers, _ended(first))
    assert _run(service, first) == "success"
    thread.join(timeout=30)
    assert len(received) >= 2
    cut = received[0]["id"]
    second = _trigger(client, service)
    assert _run(service, second) == "success"
    headers = {**service.read_headers, "Last-Event-ID": cut}
    resumed: list[dict[str, Any]] = []
    _collect(url, headers, _ended(second), resumed)
    assert resumed[: len(received) - 1] == received[1:]
    later = resumed[len(received) - 1 :]
    assert later and {e["data"]["id"] for e in later} == {second}
    assert all(int(e["id"]) > int(cut) for e in resumed)
    # the first run met after its first change: its state rebuilt from its journal
    assert resumed[0]["data"]["id"] == first and resumed[0]["data"]["seq"] > 1
    assert _phases_placed(resumed)
    query: list[dict[str, Any]] = []
    _collect(f"{url}?lastEventId={cut}", service.read_headers, _ended(second), query)
    assert query == resumed


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("statuss=failed", "statuss"),
        ("_filter=status%3D%3Dfailed", "_filter"),
        ("_distinct=name", "_distinct"),
    ],
)
def test_a_bad_filter_is_a_400_naming_it(
    client: TestClient, service: Service, fast_hub: RunsHub, query: str, named: str
) -> None:
    answer = client.get(f"{BASE}/v1/events?{query}", headers=service.read_headers)
    assert answer.status_code == 400, answer.text
    assert named in answer.json()["error"]


def test_a_bad_last_event_id_is_a_400(client: TestClient, service: Service) -> None:
    headers = {**service.read_headers, "Last-Event-ID": "12.x"}
    answer = client.get(f"{BASE}/v1/events", headers=headers)
    assert answer.status_code == 400
    assert "Last-Event-ID" in answer.json()["error"]


@pytest.mark.parametrize("base", BASES)
def test_no_token_is_a_401_under_both_mounts(client: TestClient, base: str) -> None:
    answer = client.get(f"{base}/v1/events")
    assert answer.status_code == 401


def test_streams_per_token_are_limited(
    client: TestClient, service: Service, fast_hub: RunsHub
) -> None:
    fast_hub.followers_per_token = 0
    answer = client.get(f"{BASE}/v1/events", headers=service.read_headers)
    assert answer.status_code == 429


def test_an_idle_stream_closes_with_a_comment(
    service: Service, live_url: str, fast_hub: RunsHub
) -> None:
    fast_hub.idle_seconds = 0.3
    with httpx.stream(
        "GET", f"{live_url}{BASE}/v1/events", headers=service.read_headers, timeout=10
    ) as answer:
        text = answer.read().decode()
    assert "closing: idle" in text


def test_the_stream_is_in_the_openapi_description(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for base in BASES:
        route = paths[f"{base}/v1/events"]["get"]
        assert "text/event-stream" in route["responses"]["200"]["content"]
        names = {p["name"] for p in route["parameters"]}
        assert {"Last-Event-ID", "_filter", "_search", "x-odsl-environment"} <= names


def _hub_changes(store: Any, writes: Any, count: int, **hub_options: Any) -> list[Change]:
    """The first `count` changes a hub over `store` tells a follower of every DEMO run while
    `writes()` changes the runs (the hub alone, no HTTP: the store is the point)."""

    async def main() -> list[Change]:
        hub = RunsHub(store, None)
        hub.poll_seconds, hub.idle_seconds = 0.02, 10
        for name, value in hub_options.items():
            setattr(hub, name, value)
        got: list[Change] = []

        async def consume() -> None:
            async for change in hub.follow(parse_query([("name", "DEMO")]), None):
                assert change is not None, f"idle after {got}"
                got.append(change)
                if len(got) == count:
                    return

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.1)
        await asyncio.to_thread(writes)
        await asyncio.wait_for(task, 20)
        return got

    return asyncio.run(main())


def test_on_mongodb_the_hub_follows_every_run_in_order_of_places() -> None:
    with mongo_database() as store:
        for name in ("a", "b"):
            store.insert(execution(name, "DEMO", "triggered", "2021-07-01T10:00:00.000Z"))

        def writes() -> None:
            store.update("a", Update(set={"status": "running", "message": "Running"}))
            store.update("b", Update(push={"phases": [{"name": "EXTRACT", "status": "running"}]}))
            store.update("a", Update(set={"status": "success", "message": "Done"}))

        got = _hub_changes(store, writes, 3)
    assert [(c.execution_id, c.data["status"]) for c in got] == [
        ("a", "running"),
        ("b", "triggered"),
        ("a", "success"),
    ]
    assert got[1].data["phase"] == {"index": 0, "name": "EXTRACT", "status": "running"}
    assert [c.pos for c in got] == [1, 2, 3]


def test_on_mongodb_a_place_never_written_is_passed_over_after_a_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A place handed out whose entry never comes (its writer died) holds the later ones back
    for `GAP_SECONDS`, no longer."""
    monkeypatch.setattr(runs_hub, "GAP_SECONDS", 0.5)
    with mongo_database() as store:
        store.insert(execution("a", "DEMO", "triggered", "2021-07-01T10:00:00.000Z"))

        def writes() -> None:
            next_place(store.places)  # place 1, never written
            store.update("a", Update(set={"status": "running", "message": "Running"}))

        began = time.monotonic()
        got = _hub_changes(store, writes, 1)
    assert [(c.pos, c.data["status"]) for c in got] == [(2, "running")]
    assert time.monotonic() - began >= 0.5


def test_a_follower_after_a_time_without_any_gets_no_backlog(
    client: TestClient, service: Service, live_url: str, fast_hub: RunsHub
) -> None:
    url = f"{live_url}{BASE}/v1/events"
    first = _trigger(client, service)
    thread, _ = _follow(url, service.read_headers, _ended(first))
    assert _run(service, first) == "success"
    thread.join(timeout=30)
    _until(lambda: not fast_hub._followers and fast_hub._poller and fast_hub._poller.done())
    unseen = _trigger(client, service)  # while no one follows
    assert _run(service, unseen) == "success"
    last = _trigger(client, service)
    thread, later = _follow(url, service.read_headers, _ended(last))
    assert _run(service, last) == "success"
    thread.join(timeout=30)
    assert {e["data"]["id"] for e in later} == {last}
    assert _phases_placed(later)


def test_a_follower_too_far_behind_is_closed(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that does not read is not kept up with forever: past `BACKLOG` polls waiting,
    its stream closes (it resumes from its last event id)."""
    monkeypatch.setattr(runs_hub, "BACKLOG", 1)
    store = SQLiteStore(tmp_path / "procexec.db")
    store.insert(execution("a", "DEMO", "triggered", "2021-07-01T10:00:00.000Z"))

    async def main() -> list[Change | None]:
        hub = RunsHub(store, None)
        hub.poll_seconds = 0.02
        got: list[Change | None] = []

        async def consume() -> None:
            async for change in hub.follow(parse_query([]), None):
                got.append(change)
                if change is None:
                    return
                if len(got) == 1:
                    await asyncio.sleep(1.5)  # not reading

        def writes() -> None:
            for status in ("running", "waiting", "running", "waiting"):
                store.update("a", Update(set={"status": status}))
                time.sleep(0.2)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.1)
        await asyncio.to_thread(writes)
        await asyncio.wait_for(task, 10)
        assert not hub._followers
        return got

    try:
        got = asyncio.run(main())
    finally:
        store.close()
    assert got[-1] is None and 2 <= len(got) <= 3
    assert [c.pos for c in got if c is not None] == list(range(1, len(got)))
