"""Hostile regular expressions (issue 15): patterns that make a backtracking engine take hours
(`^.{7}([0-9a-f-]+)+Z`, `(a+)+$`, `(a|aa)+$`, `(.*a){20}`) against stored runs with long values
that almost match, through every path that takes a pattern (`regex()`, `regex()` in a `_filter`
expression, `$regex` in a JSON `_filter`, a relaxed `/…/` literal, `$match` in `_aggregate`), on
both stores: each is answered, 200 with the right rows; what only a backtracking engine can do
is a 400 naming the pattern. While a client sends them, another's plain calls keep being
answered.

Over real HTTP, every call under a generous hang-detection deadline (`HANG_SECONDS`), not a
timing: SQLite behind `procexec api` in a subprocess (its own event loop and interpreter, as
deployed); MongoDB (mongomock through its adapter, or the server of
`PROCEXEC_TEST_MONGODB_URI`) behind a uvicorn server in a thread of the test.
"""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
import uvicorn

from procexec.api.app import create_app
from procexec.engine.domain import Scope
from procexec.engine.settings import Settings
from procexec.engine.store.sqlite import SQLiteStore
from procexec.engine.tokens import create_token
from tests.api.api_helpers import Dispatcher
from tests.engine.conftest import MONGO_URI, mongo_database
from tests.engine.query_strategies import DOCS, PROD
from tests.integration.harness import BASE_PATH, service_env, start_api, stop_all

#: a call not answered by then is taken as hung (a backtracking match takes hours)
HANG_SECONDS = 60.0
#: how long the almost-matching values are, in characters
LONG = 5000
#: runs besides the two below, each with long values that match none of the patterns
FILLERS = 60


def _run(run_id: str, status: str, name: str, message: str) -> dict[str, Any]:
    doc = copy.deepcopy(next(doc for doc in DOCS if doc["environment"] == PROD))
    doc.update(_id=run_id, status=status, name=name, message=message)
    return doc


#: matches none of the patterns, by a hair: no final Z, a final !, nineteen a's
NEAR = _run("h000001-" + "0123456789abcdef-" * (LONG // 17), "failed", "a" * LONG + "!",
            "a" * 19 + "b" * LONG)  # fmt: skip
#: matches each of them
HIT = _run("h000002-" + "0123456789abcdef-" * (LONG // 17) + "Z", "success", "a" * LONG,
           "ba" * 20 + "x" * LONG)  # fmt: skip
RUNS = [
    NEAR,
    HIT,
    *(_run(f"f{i:06d}-xyz", "running", "b" * LONG, "b" * LONG + "!") for i in range(FILLERS)),
]

#: (field, pattern): each matches HIT alone among RUNS
HOSTILE = [
    ("_id", "^.{7}([0-9a-f-]+)+Z"),
    ("name", "(a+)+$"),
    ("name", "(a|aa)+$"),
    ("message", "(.*a){20}"),
    ("message", "(?i)(.*A){20}"),
]
#: what RE2 cannot match in linear time: refused, with the reason RE2 gives
REFUSED = [
    ("(a+)\\1$", "invalid escape sequence"),  # a backreference
    ("^(?=a)a+$", "invalid perl operator"),  # lookahead
    ("(?<!b)a+$", "invalid perl operator"),  # lookbehind
    ("(?>a+)+$", "invalid perl operator"),  # an atomic group
    ("(a++)+$", "bad repetition operator"),  # a possessive quantifier
    ("a+\\Z", "invalid escape sequence"),  # Python's and PCRE's end, not RE2's
    ("(a{1000}){1000}", "invalid repetition size"),
    ("(?i)(\\pL{1,10}\\s?){40}z", "too large for RE2's memory bound"),
]
#: a pattern past the longest accepted (500 characters)
TOO_LONG = "(a+)+" * 101 + "$"


def paths(field: str, pattern: str) -> dict[str, list[tuple[str, str]]]:
    """The list call's parameters that apply `pattern` to `field`, by path."""
    group = {"$group": {"_id": "$status", "n": {"$sum": 1}}}
    return {
        "regex()": [(field, f"regex({pattern})")],
        "_filter regex()": [("_filter", f"{field}=regex({pattern})")],
        "$regex": [("_filter", json.dumps({field: {"$regex": pattern}}))],
        "/…/": [("_filter", f"{{{field}: /{pattern.replace('/', chr(92) + '/')}/}}")],
        "$match": [("_aggregate", json.dumps([{"$match": {field: {"$regex": pattern}}}, group]))],
    }


PATHS = list(paths("name", "a"))


@dataclass
class Api:
    url: str
    token: str

    def client(self) -> httpx2.Client:
        return httpx2.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=HANG_SECONDS,
            trust_env=False,
        )


@pytest.fixture(scope="module")
def sqlite_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """`procexec api` in a subprocess, over a SQLite store holding RUNS."""
    data = tmp_path_factory.mktemp("hostile-sqlite")
    store = SQLiteStore(data / "procexec.db")
    for run in RUNS:
        store.insert(copy.deepcopy(run))
    token = create_token(store, "reader", Scope.READ)
    store.close()
    api, url = start_api(service_env(data), data)
    try:
        yield Api(url, token)
    finally:
        stop_all(api)


def _serve_in_thread(app: Any) -> Iterator[str]:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(app, log_config=None, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}{BASE_PATH}"
        finally:
            server.should_exit = True
            thread.join(timeout=HANG_SECONDS)


@pytest.fixture(scope="module")
def mongo_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The app over a MongoDB store holding RUNS, served by uvicorn in a thread."""
    with mongo_database() as store:
        for run in RUNS:
            store.insert(copy.deepcopy(run))
        token = create_token(store, "reader", Scope.READ)
        settings = Settings.from_env({"PROCEXEC_DATA_DIR": str(tmp_path_factory.mktemp("m"))})
        app = create_app(settings, store=store, dispatch=Dispatcher())
        for url in _serve_in_thread(app):
            yield Api(url, token)


@pytest.fixture(params=["sqlite", "mongodb" if MONGO_URI else "mongomock"])
def api(request: pytest.FixtureRequest) -> Api:
    name = "sqlite_api" if request.param == "sqlite" else "mongo_api"
    found: Api = request.getfixturevalue(name)
    return found


def listed(client: httpx2.Client, params: list[tuple[str, str]]) -> httpx2.Response:
    return client.get("/v1", params=params)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("field", "pattern"), HOSTILE)
def test_a_hostile_pattern_is_answered_with_the_right_rows(
    api: Api, path: str, field: str, pattern: str
) -> None:
    with api.client() as client:
        response = listed(client, paths(field, pattern)[path])
    assert response.status_code == 200, response.text
    if path == "$match":
        assert response.json() == [{"_id": "success", "n": 1}]
    else:
        assert [row["_id"] for row in response.json()] == [HIT["_id"]]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("pattern", "reason"), REFUSED)
def test_a_pattern_only_backtracking_can_match_is_a_400_naming_it(
    api: Api, path: str, pattern: str, reason: str
) -> None:
    with api.client() as client:
        response = listed(client, paths("name", pattern)[path])
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert f"bad regular expression '{pattern}': {reason}" in message
    assert response.headers["x-odsl-error"] == message


@pytest.mark.parametrize("path", PATHS)
def test_a_pattern_too_long_is_a_400_with_a_short_excerpt(api: Api, path: str) -> None:
    with api.client() as client:
        response = listed(client, paths("name", TOO_LONG)[path])
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert f"regular expression '{TOO_LONG[:40]}…' is longer than 500 characters" in message
    assert len(message) < 200


def test_plain_calls_are_answered_while_another_client_sends_hostile_patterns(api: Api) -> None:
    """Three clients send every hostile and refused pattern through every path, round after
    round; meanwhile another client's plain calls are each answered (200, the right rows), and
    some of them while the hostile calls still run."""
    rounds = 3
    hostile = [
        params
        for field, pattern in [*HOSTILE, *(("name", p) for p, _ in REFUSED)]
        for params in paths(field, pattern).values()
    ]
    answered: list[int] = []
    failures: list[BaseException] = []
    running = threading.Event()
    running.set()

    def attack() -> None:
        try:
            with api.client() as client:
                for _ in range(rounds):
                    for params in hostile:
                        answered.append(listed(client, params).status_code)
        except BaseException as exc:  # reported by the test below
            failures.append(exc)

    attackers = [threading.Thread(target=attack, name=f"attacker-{i}") for i in range(3)]
    for thread in attackers:
        thread.start()
    plain_during = 0
    with api.client() as client:
        while any(thread.is_alive() for thread in attackers) or plain_during == 0:
            response = client.get("/v1", params={"status": "success"})
            assert response.status_code == 200, response.text
            assert [row["_id"] for row in response.json()] == [HIT["_id"]]
            plain_during += any(thread.is_alive() for thread in attackers)
    for thread in attackers:
        thread.join(timeout=HANG_SECONDS)
    assert not failures, failures
    assert len(answered) == 3 * rounds * len(hostile)
    assert set(answered) == {200, 400}
    assert plain_during > 0
