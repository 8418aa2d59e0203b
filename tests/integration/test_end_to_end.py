"""The whole service end to end, on each broker: the CLI's token, HTTP, a real worker, SQLite.

A run triggered over HTTP must come back, field for field, like the example on the seed page.
"""

from __future__ import annotations

import itertools
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.integration.harness import (
    ISO_MS,
    Stack,
    api_client,
    create_token,
    run_cli,
    trigger,
    wait_terminal,
)
from tests.seed import seed_example

pytestmark = pytest.mark.e2e

#: the example execution of the seed page (`seed/process-execution-api.md`), verbatim
SEED_EXAMPLE: dict[str, Any] = seed_example()

#: the stamp of a log line: nanoseconds, `Z[UTC]`
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z\[UTC\]"
PHASES = ["EXTRACT", "TRANSFORM", "SEND", "LOAD"]


def log_line_pattern(level: str, text: str) -> str:
    return f"^{STAMP} {level} {re.escape(text)}$"


@pytest.fixture(scope="module")
def alice(stack: Stack) -> str:
    """A token for alice, made by the CLI in the stack's data folder."""
    return create_token(stack.env, "alice")


def test_token_create_prints_only_the_token(stack: Stack) -> None:
    result = run_cli("token", "create", "--user", "alice", env=stack.env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    assert result.stdout == lines[0] + "\n"
    assert re.fullmatch(r"pe_[A-Za-z0-9_-]{40,}", lines[0])


def test_ecb_fx_matches_the_seed_example(stack: Stack, alice: str) -> None:
    with api_client(stack.url, alice) as client:
        execution_id = trigger(client, "ECB_FX")
        doc = wait_terminal(client, execution_id)

        # Top level: the seed's fields, in the seed's order.
        assert list(doc) == list(SEED_EXAMPLE), doc
        assert doc["_id"] == execution_id
        for field in ("service", "name", "environment", "status", "message", "loaderMessage"):
            assert doc[field] == SEED_EXAMPLE[field], field
        assert doc["trigger"] == "manual"
        assert doc["runAs"] == "alice"
        assert doc["reason"] == "Manually triggered by alice"
        assert ISO_MS.match(doc["start"]) and ISO_MS.match(doc["end"]), doc
        assert doc["start"] <= doc["end"]

        # Phases: the seed's four, each with the seed's fields, status, message and log.
        assert [phase["name"] for phase in doc["phases"]] == PHASES
        previous_end = doc["start"]
        for phase, seed in zip(doc["phases"], SEED_EXAMPLE["phases"], strict=True):
            assert list(phase) == list(seed), phase
            assert phase["name"] == seed["name"]
            assert phase["status"] == seed["status"] == "success"
            assert phase["message"] == seed["message"] == f"Completed {seed['name']}"
            assert ISO_MS.match(phase["start"]) and ISO_MS.match(phase["end"]), phase
            assert previous_end <= phase["start"] <= phase["end"] <= doc["end"]
            previous_end = phase["end"]
            if phase["name"] == "LOAD":
                assert phase["log"] == seed["log"] == ["Updated 32 series for 2021-07-01"]
                continue
            pattern = log_line_pattern("info", f"Completed {phase['name']}")
            assert re.match(pattern, seed["log"][0])  # the pattern is the seed's format
            assert len(phase["log"]) == 1 and re.match(pattern, phase["log"][0]), phase["log"]
            # the line is stamped while the phase ran (nanoseconds, cut to the phase's ms)
            assert phase["start"][:23] <= phase["log"][0][:23] <= phase["end"][:23]

        # Data: the 32 series of the seed, in alphabetical order, and no curves.
        assert doc["data"] == SEED_EXAMPLE["data"]
        series = doc["data"]["series"]["2021-07-01"]
        assert len(series) == 32 and series == sorted(series)
        assert series[0] == "#ECB_FX.EURAUD:SPOT" and series[-1] == "#ECB_FX.EURZAR:SPOT"
        assert doc["data"]["curves"] == {}

        # The same document under a source segment, and in the list.
        assert client.get(f"v1/private/{execution_id}").json() == doc
        listed = client.get("v1", params={"name": "ECB_FX", "status": "success"})
        assert listed.status_code == 200
        assert execution_id in [row["_id"] for row in listed.json()]
        assert int(listed.headers["x-total-count"]) >= 1


def test_a_running_execution_shows_its_log_growing(stack: Stack, alice: str) -> None:
    seen_running: list[str] = []
    growth: list[tuple[str, int, int]] = []
    last: dict[int, dict[str, Any]] = {}

    def watch(doc: dict[str, Any]) -> None:
        if doc["status"] == "running":
            seen_running.append(doc["message"])
        for index, phase in enumerate(doc["phases"]):
            before = last.get(index)
            if (
                phase["status"] == "running"
                and before is not None
                and before["status"] == "running"
                and len(phase["log"]) > len(before["log"])
            ):
                # lines are only ever appended, in order
                assert phase["log"][: len(before["log"])] == before["log"]
                growth.append((phase["name"], len(before["log"]), len(phase["log"])))
            last[index] = phase

    with api_client(stack.url, alice) as client:
        execution_id = trigger(client, "DEMO", {"sleep": 2, "log_lines": 8})
        doc = wait_terminal(client, execution_id, interval=0.1, on_poll=watch)

    assert seen_running, "never saw the execution running"
    assert growth, "never saw a running phase's log grow between two polls"
    assert doc["status"] == "success" and doc["message"] == "Completed Successfully"
    assert [phase["name"] for phase in doc["phases"]] == PHASES
    for phase in doc["phases"]:
        name = phase["name"]
        assert phase["status"] == "success" and phase["message"] == f"Completed {name}"
        expected = [f"{name} line {n} of 8" for n in range(1, 9)] + [f"Completed {name}"]
        assert len(phase["log"]) == len(expected), phase["log"]
        for line, text in zip(phase["log"], expected, strict=True):
            assert re.match(log_line_pattern("info", text), line), line
    assert "loaderMessage" not in doc and "data" not in doc


def test_a_failing_phase_fails_the_run(stack: Stack, alice: str) -> None:
    with api_client(stack.url, alice) as client:
        execution_id = trigger(client, "DEMO", {"fail_in": "SEND"})
        doc = wait_terminal(client, execution_id)

    error = "RuntimeError: failure requested in SEND (fail_in=SEND)"
    assert doc["status"] == "failed"
    assert "SEND" in doc["message"] and error in doc["message"], doc["message"]
    assert ISO_MS.match(doc["end"])
    # LOAD never ran.
    assert [phase["name"] for phase in doc["phases"]] == ["EXTRACT", "TRANSFORM", "SEND"]
    assert [phase["status"] for phase in doc["phases"]] == ["success", "success", "failed"]
    send = doc["phases"][2]
    assert send["message"] == error
    assert ISO_MS.match(send["end"])
    assert re.match(log_line_pattern("info", "SEND line 1 of 1"), send["log"][0])
    traceback = send["log"][-1]
    first_line = traceback.splitlines()[0]
    assert re.match(log_line_pattern("error", "Traceback (most recent call last):"), first_line)
    assert 'examples/demo.py", line' in traceback
    assert traceback.endswith(error)
    assert "loaderMessage" not in doc and "data" not in doc


def test_several_runs_at_once_all_succeed(stack: Stack, alice: str) -> None:
    count = 6
    with api_client(stack.url, alice) as client:
        with ThreadPoolExecutor(count) as pool:
            ids = list(pool.map(lambda n: trigger(client, "DEMO", {"sleep": 0.2}), range(count)))
        assert len(set(ids)) == count
        docs = [wait_terminal(client, execution_id) for execution_id in ids]

    assert [doc["status"] for doc in docs] == ["success"] * count, docs
    for doc in docs:
        assert [phase["status"] for phase in doc["phases"]] == ["success"] * 4
    # The worker runs two at once: some runs overlapped in time.
    spans = sorted((doc["phases"][0]["start"], doc["end"]) for doc in docs)
    assert any(
        later_start < earlier_end
        for (_, earlier_end), (later_start, _) in itertools.pairwise(spans)
    ), spans


def test_runs_are_listed_newest_first(stack: Stack, alice: str) -> None:
    with api_client(stack.url, alice) as client:
        first = trigger(client, "DEMO")
        wait_terminal(client, first)
        time.sleep(0.01)
        second = trigger(client, "DEMO")
        wait_terminal(client, second)
        response = client.get("v1", params={"name": "DEMO", "_limit": 2})
    assert response.status_code == 200
    assert [row["_id"] for row in response.json()] == [second, first]
    assert int(response.headers["x-total-count"]) >= 2
