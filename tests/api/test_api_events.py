"""`GET v1/{id}/events`: a run followed live over real HTTP (uvicorn), run by the engine's
`PhaseRunner` in a thread as a worker would."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from procexec.api.event_hub import EventHub
from procexec.engine.runner import PhaseRunner
from procexec.engine.store.sqlite import SQLiteStore
from tests.api.api_helpers import BASES, Service, bearer

BASE = BASES[0]
PHASES = ("EXTRACT", "TRANSFORM", "SEND", "LOAD")


def _trigger(client: TestClient, service: Service, **body: Any) -> str:
    answer = client.post(
        f"{BASE}/v1", json={"name": "DEMO", "body": body}, headers=service.run_headers
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["_id"])


def _run(service: Service, execution_id: str, max_log_lines: int = 1000) -> str | None:
    store = SQLiteStore(service.db_path)
    try:
        runner = PhaseRunner(
            store,
            service.registry,
            worker_id="w1",
            flush_interval=0.02,
            max_log_lines=max_log_lines,
        )
        return runner.run(execution_id)
    finally:
        store.close()


def _events(url: str, headers: dict[str, str]) -> Iterator[dict[str, Any]]:
    """The events of a stream, as it sends them, until it closes."""
    with httpx.stream("GET", url, headers=headers, timeout=30) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("text/event-stream")
        event: dict[str, Any] = {}
        for line in answer.iter_lines():
            if not line:
                if "data" in event:
                    event["data"] = json.loads(event["data"])
                    yield event
                event = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                event[name] = value[1:] if value.startswith(" ") else value


def _lines(events: list[dict[str, Any]]) -> dict[int, list[str]]:
    lines: dict[int, list[str]] = {}
    for event in events:
        if event["event"] == "log":
            lines.setdefault(event["data"]["phase"], []).extend(event["data"]["lines"])
    return lines


def _text(line: str) -> str:
    return line.split(" ", 2)[2]


@pytest.fixture
def fast_hub(client: TestClient, service: Service) -> None:
    settings = service.settings
    events = EventHub(service.store, settings.max_log_lines, settings.read_timeout)
    events.poll_seconds = 0.02
    service.app.state.event_hub = events


def test_a_follower_gets_each_line_once_in_order_then_the_final_status(
    client: TestClient, service: Service, live_url: str, fast_hub: None
) -> None:
    execution_id = _trigger(client, service, log_lines=500, sleep=1)
    url = f"{live_url}{BASE}/v1/{execution_id}/events"
    received: list[dict[str, Any]] = []
    follower = threading.Thread(target=lambda: received.extend(_events(url, service.read_headers)))
    follower.start()
    assert _run(service, execution_id) == "success"
    follower.join(timeout=30)
    assert not follower.is_alive(), "the stream did not close after the run ended"
    lines = _lines(received)
    for index, phase in enumerate(PHASES):
        expected = [f"{phase} line {n} of 500" for n in range(1, 501)] + [f"Completed {phase}"]
        assert [_text(line) for line in lines[index]] == expected
    assert received[-1]["event"] == "end"
    assert received[-1]["data"]["status"] == "success"
    assert [e["data"]["status"] for e in received if e["event"] == "status"][-1] == "success"
    stored = client.get(f"{BASE}/v1/{execution_id}", headers=service.read_headers).json()
    assert {i: p["log"] for i, p in enumerate(stored["phases"])} == lines
    ids = [event["id"] for event in received]
    assert len(ids) == len(set(ids))


def test_resuming_from_last_event_id_sends_nothing_twice(
    client: TestClient, service: Service, live_url: str, fast_hub: None
) -> None:
    execution_id = _trigger(client, service, log_lines=50)
    assert _run(service, execution_id) == "success"
    url = f"{live_url}{BASE}/v1/{execution_id}/events"
    whole = list(_events(url, service.read_headers))  # a finished run: its history, then closed
    assert whole[-1]["event"] == "end"
    for cut in range(len(whole) - 1):
        headers = {**service.read_headers, "Last-Event-ID": whole[cut]["id"]}
        assert list(_events(url, headers)) == whole[cut + 1 :]
    query = f"{url}?lastEventId={whole[1]['id']}"
    assert list(_events(query, service.read_headers)) == whole[2:]


def test_the_log_cap_marker_is_sent_once_and_no_dropped_line(
    client: TestClient, service: Service, live_url: str, fast_hub: None
) -> None:
    service.app.state.event_hub.max_log_lines = 20
    execution_id = _trigger(client, service, log_lines=100)
    assert _run(service, execution_id, max_log_lines=20) == "success"
    received = list(_events(f"{live_url}{BASE}/v1/{execution_id}/events", service.read_headers))
    stored = client.get(f"{BASE}/v1/{execution_id}", headers=service.read_headers).json()
    for index, lines in _lines(received).items():
        assert [_text(line) for line in lines] == [
            _text(line) for line in stored["phases"][index]["log"]
        ]
        assert sum("log lines dropped" in line for line in lines) == 1


def test_the_stream_is_checked_as_a_read(
    client: TestClient, service: Service, fast_hub: None
) -> None:
    execution_id = _trigger(client, service)
    url = f"{BASE}/v1/{execution_id}/events"
    assert client.get(url).status_code == 401
    assert client.get(url, headers=bearer("nope")).status_code == 401
    other = {**service.read_headers, "x-odsl-environment": "elsewhere"}
    assert client.get(url, headers=other).status_code == 404
    assert client.get(f"{BASE}/v1/unknown/events", headers=service.read_headers).status_code == 404
    bad = {**service.read_headers, "Last-Event-ID": "x"}
    assert client.get(url, headers=bad).status_code == 400
    # `v1/private/events` is still the read of an execution under a source
    assert client.get(f"{BASE}/v1/private/events", headers=service.read_headers).status_code == 404


def test_a_token_may_hold_so_many_streams(
    client: TestClient, service: Service, fast_hub: None
) -> None:
    execution_id = _trigger(client, service)
    events = service.app.state.event_hub
    events.followers_per_token = 0
    answer = client.get(f"{BASE}/v1/{execution_id}/events", headers=service.read_headers)
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "5"
    assert "at most 0 per token" in answer.text


def test_many_followers_cost_one_journal_query_per_poll(
    client: TestClient, service: Service, live_url: str, fast_hub: None
) -> None:
    events = service.app.state.event_hub
    calls: list[str] = []
    real = events.store.changes

    def counted(execution_id: str, after: int = 0) -> Any:
        calls.append(execution_id)
        return real(execution_id, after)

    events.store.changes = counted  # type: ignore[method-assign]
    execution_id = _trigger(client, service, log_lines=20, sleep=1)
    url = f"{live_url}{BASE}/v1/{execution_id}/events"
    results: list[list[dict[str, Any]]] = [[] for _ in range(8)]
    followers = [
        threading.Thread(target=lambda out=out: out.extend(_events(url, service.read_headers)))
        for out in results
    ]
    began = time.monotonic()
    for follower in followers:
        follower.start()
    assert _run(service, execution_id) == "success"
    for follower in followers:
        follower.join(timeout=30)
    assert all(result == results[0] for result in results)
    assert results[0][-1]["event"] == "end"
    # the first read, then one query a poll while the run went on: not one per follower
    polls = (time.monotonic() - began) / events.poll_seconds
    assert len(calls) <= polls + 2, (len(calls), polls)
