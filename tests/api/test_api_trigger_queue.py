"""Triggers at once over real HTTP (`api.trigger_queue`): each recorded and dispatched once,
answered with its own document; an unknown process is still its own 404; with the broker
down every one is answered 202 and left triggered for the housekeeper, a batch not waiting
out the broker's retries once per run."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx2

from procexec.engine.errors import BrokerUnavailable
from tests.api.api_helpers import BASES, Service

TRIGGERS = 24


async def _post_all(url: str, headers: dict[str, str], bodies: list[Any]) -> list[Any]:
    async with httpx2.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        return await asyncio.gather(
            *(client.post(f"{BASES[i % 2]}/v1", json=body) for i, body in enumerate(bodies))
        )


def test_triggers_at_once_are_each_recorded_dispatched_and_answered_with_their_own_document(
    live_url: str, service: Service
) -> None:
    bodies: list[Any] = [{"name": "DEMO", "body": {"sleep": i}} for i in range(TRIGGERS)]
    bodies += [{"name": "NO_SUCH_PROCESS"}, {"name": "DEMO", "body": {"sleep": "x"}}]
    responses = asyncio.run(_post_all(live_url, service.run_headers, bodies))
    *accepted, unknown, invalid = responses
    assert [response.status_code for response in accepted] == [202] * TRIGGERS
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "unknown process 'NO_SUCH_PROCESS'"
    assert invalid.status_code == 400
    ids = [response.json()["_id"] for response in accepted]
    assert len(set(ids)) == TRIGGERS
    for i, response in enumerate(accepted):
        assert response.headers["location"].endswith(f"/v1/{ids[i]}")
        assert service.store.get_meta(ids[i])["input"]["sleep"] == i  # its own parameters
    assert sorted(call[0] for call in service.dispatcher.calls) == sorted(ids)  # once each
    assert service.count() == TRIGGERS


def test_with_the_broker_down_triggers_at_once_are_202_and_left_for_the_housekeeper(
    live_url: str, service: Service
) -> None:
    tried: list[str] = []
    lock = threading.Lock()

    def down(execution_id: str, delay: float, process: str | None) -> None:
        with lock:
            tried.append(execution_id)
        time.sleep(0.1)  # the broker's retries, shortened
        raise BrokerUnavailable("broker redis://127.0.0.1:1/0: connection refused")

    service.app.state.procexec.triggers.dispatch = down
    bodies: list[Any] = [{"name": "DEMO"} for _ in range(TRIGGERS)]
    responses = asyncio.run(_post_all(live_url, service.run_headers, bodies))
    assert [response.status_code for response in responses] == [202] * TRIGGERS
    for response in responses:
        execution_id = response.json()["_id"]
        doc = service.store.get(execution_id)
        assert doc is not None and doc["status"] == "triggered"
        assert service.store.get_meta(execution_id)["dispatched"] is None  # to be sent again
    # once one of a batch failed, the rest were not tried: not a wait per run
    assert 0 < len(tried) < TRIGGERS
