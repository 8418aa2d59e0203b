"""The HTTP server against a real `procexec api` (`api/server.py`): a request's head read
against a clock, connections capped per client address and in all, the server's own answers
and the application's unhandled errors as JSON with the security headers, and a client that
leaves in the middle of a body logged in one line, no traceback.

Slow clients connect from other loopback addresses (127.0.0.2, …) than the ordinary client
(127.0.0.1), as clients on other hosts would. No test asserts on how fast anything is: the
timeouts are set small, and the bounds here are only how long a test waits before it fails.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from procexec.api.security_headers import API_POLICY
from tests.integration.harness import (
    BASE_PATH,
    Service,
    create_token,
    service_env,
    start_api,
)

pytestmark = [pytest.mark.e2e]

#: how long a test waits for what the server must do before it fails (not a speed assertion)
PATIENCE = 30.0
SLOW_HOST = "127.0.0.2"
PARTIAL_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"


def security_headers_of(head: str) -> dict[str, str]:
    """The security headers (and `x-odsl-error`) of a raw answer's head, by lower-case name."""
    found = {}
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        found[name.strip().lower()] = value.strip()
    return found


def assert_json_error(raw: bytes, status: int) -> dict[str, str]:
    """`raw` is a whole answer of `status`: a JSON error with the security headers."""
    head, _, body = raw.partition(b"\r\n\r\n")
    text = head.decode("latin-1")
    assert text.startswith(f"HTTP/1.1 {status} "), text[:200]
    headers = security_headers_of(text)
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["content-security-policy"] == API_POLICY
    assert headers["content-type"] == "application/json"
    error = json.loads(body)
    assert error["status"] == status and error["error"]
    assert headers["x-odsl-error"] == error["error"]
    return headers


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=PATIENCE, source_address=(source, 0)
    )
    return sock


def read_until_closed(sock: socket.socket, timeout: float = PATIENCE) -> bytes:
    """What the server sends until it closes the connection; fails if it does not within
    `timeout`."""
    sock.settimeout(timeout)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server did not close the connection within {timeout:g} s: {got[:200]!r}")
    return got


def is_open(sock: socket.socket, wait: float = 0.5) -> bool:
    """Whether the server has neither answered nor closed `sock` within `wait` s."""
    sock.settimeout(wait)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except TimeoutError:
        return True
    except ConnectionResetError:
        return False


@contextlib.contextmanager
def api(tmp_path: Path, **settings: str) -> Iterator[tuple[Service, int, str]]:
    """A real `procexec api` with these settings; its service, port and base URL."""
    env = service_env(tmp_path / "data", **settings)
    service, url = start_api(env, tmp_path)
    port = int(re.search(r":(\d+)/", url)[1])  # type: ignore[index]
    try:
        yield service, port, url
    finally:
        service.stop()


def test_a_slow_or_idle_request_head_is_cut_off(tmp_path: Path) -> None:
    with api(tmp_path, PROCEXEC_HEADER_TIMEOUT_SECONDS="0.5") as (service, port, _):
        # part of a head, then nothing: a 408, then the connection closes
        partial = connect(port, SLOW_HOST)
        partial.sendall(PARTIAL_HEAD)
        assert_json_error(read_until_closed(partial), 408)
        partial.close()

        # a header line every 0.1 s: each byte would restart uvicorn's own timer
        trickle = connect(port, SLOW_HOST)
        trickle.sendall(PARTIAL_HEAD)
        deadline = time.monotonic() + PATIENCE
        closed = False
        while not closed and time.monotonic() < deadline:
            try:
                trickle.sendall(b"X-Slow: 1\r\n")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            closed = closed or not is_open(trickle, 0.1)
        assert closed, "a client sending a header line every 0.1 s kept its connection"
        trickle.close()

        # nothing at all: closed without an answer
        idle = connect(port, SLOW_HOST)
        assert read_until_closed(idle) == b""
        idle.close()

        # a keep-alive connection: the clock starts again after each answer
        keep = connect(port)
        keep.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        keep.settimeout(PATIENCE)
        first = b""
        while not first.endswith(b'{"status":"ok"}'):  # the whole first answer
            chunk = keep.recv(65536)
            assert chunk, first
            first += chunk
        assert first.startswith(b"HTTP/1.1 200 "), first[:100]
        keep.sendall(PARTIAL_HEAD)
        assert_json_error(read_until_closed(keep), 408)
        keep.close()
        assert "closed: no request head within the header timeout" in service.output()


def test_connections_past_the_per_client_cap_are_refused_and_others_still_answered(
    tmp_path: Path,
) -> None:
    settings = {"PROCEXEC_HEADER_TIMEOUT_SECONDS": "60", "PROCEXEC_MAX_CONNECTIONS_PER_CLIENT": "5"}
    with api(tmp_path, **settings) as (service, port, url):
        slow = [connect(port, SLOW_HOST) for _ in range(5)]
        for sock in slow:
            sock.sendall(PARTIAL_HEAD)
        refused = []
        for _ in range(20):  # many more from the same address: each answered 503 and closed
            extra = connect(port, SLOW_HOST)
            with contextlib.suppress(OSError):
                extra.sendall(PARTIAL_HEAD)
            refused.append(read_until_closed(extra))
            extra.close()
        for raw in refused:
            headers = assert_json_error(raw, 503)
            assert f"too many connections from {SLOW_HOST}" in headers["x-odsl-error"]
        assert all(is_open(sock, 0.2) for sock in slow)  # the first five are still waiting

        with httpx2.Client(timeout=PATIENCE, trust_env=False) as client:  # another client
            assert client.get(url).status_code == 200
            root = url.removesuffix(BASE_PATH)
            assert client.get(f"{root}/healthz").status_code == 200

        slow.pop().close()  # one fewer: the address may connect again
        deadline = time.monotonic() + PATIENCE
        while True:
            again = connect(port, SLOW_HOST)
            again.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = read_until_closed(again)
            again.close()
            if answer.startswith(b"HTTP/1.1 200 "):
                break
            assert time.monotonic() < deadline, answer[:200]
            time.sleep(0.05)
        for sock in slow:
            sock.close()
        assert "refused 503: too many connections from one address" in service.output()


def test_past_the_cap_in_all_the_longest_waiting_connection_makes_room(tmp_path: Path) -> None:
    settings = {
        "PROCEXEC_HEADER_TIMEOUT_SECONDS": "60",
        "PROCEXEC_MAX_CONNECTIONS_PER_CLIENT": "0",
        "PROCEXEC_MAX_CONNECTIONS": "16",  # the least it takes
    }
    with api(tmp_path, **settings) as (_, port, url):
        slow = []
        for index in range(16):  # every place taken, from 16 addresses
            sock = connect(port, f"127.0.1.{index + 1}")
            sock.sendall(PARTIAL_HEAD)
            slow.append(sock)
        assert is_open(slow[0])
        with httpx2.Client(timeout=PATIENCE, trust_env=False) as client:
            assert client.get(url).status_code == 200
        assert_json_error(read_until_closed(slow[0]), 408)  # the oldest, closed for it
        assert all(is_open(sock, 0.2) for sock in slow[2:])
        for sock in slow:
            sock.close()


def test_the_servers_own_errors_are_json_with_the_security_headers(tmp_path: Path) -> None:
    with api(tmp_path) as (service, port, url):
        for request in (
            b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # a URL over 64 KB
            b"NOT HTTP AT ALL\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        ):
            sock = connect(port)
            sock.sendall(request)
            headers = assert_json_error(read_until_closed(sock), 400)
            assert headers["connection"] == "close"
            sock.close()

        # BodyLimit's refusal of a body without a token, outside the routes
        with httpx2.Client(timeout=PATIENCE, trust_env=False) as client:
            response = client.post(f"{url}/v1", content=b"{}")
        assert response.status_code == 401
        assert response.headers["content-security-policy"] == API_POLICY
        assert response.headers["x-content-type-options"] == "nosniff"
        assert service.alive()


#: a process whose parameter check has a bug: an error no handler of the API takes
BROKEN = """
from procexec.engine.process import Process

def _check(parameters):
    if parameters["boom"]:  # a trigger's own value: its defaults pass at start-up
        parameters["a parameter it forgot to default"]

BROKEN = Process(name="BROKEN", defaults={"boom": False}, check=_check)

@BROKEN.phase("extract")
def extract(ctx, previous):
    return None
"""


def test_an_unhandled_error_is_a_json_500_with_the_security_headers(tmp_path: Path) -> None:
    (tmp_path / "broken_process.py").write_text(BROKEN)
    env = service_env(
        tmp_path / "data", PROCEXEC_PROCESSES="broken_process", PYTHONPATH=str(tmp_path)
    )
    service, url = start_api(env, tmp_path)
    try:
        token = create_token(env, "tester", "run")
        with httpx2.Client(timeout=PATIENCE, trust_env=False) as client:
            headers = {"Authorization": f"Bearer {token}"}
            boom = {"name": "BROKEN", "body": {"boom": True}}
            response = client.post(f"{url}/v1", json=boom, headers=headers)
            xml = client.post(
                f"{url}/v1",
                json=boom,
                headers={**headers, "Accept": "application/xml"},
            )
    finally:
        service.stop()
    assert response.status_code == 500, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-security-policy"] == API_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.json()["error"].startswith("internal error")
    assert response.headers["x-odsl-error"] == response.json()["error"]
    assert "forgot" not in response.text  # what failed stays in the log
    assert xml.status_code == 500 and xml.headers["content-type"].startswith("application/xml")
    assert xml.headers["content-security-policy"] == API_POLICY
    output = service.output()
    assert "Exception in ASGI application" not in output
    assert output.count("KeyError: 'a parameter it forgot to default'") == 2  # once each


def test_aborted_uploads_are_one_line_each_without_a_traceback(tmp_path: Path) -> None:
    aborted = 6
    with api(tmp_path) as (service, port, url):
        env = service_env(tmp_path / "data")
        token = create_token(env, "uploader", "run")
        before = len(service.output())
        for _ in range(aborted):
            sock = connect(port)
            sock.sendall(
                f"POST {BASE_PATH}/v1 HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                "Content-Length: 100000\r\n\r\n".encode()
                + b'{"name": "DEMO", "body": {"x": "'
            )
            time.sleep(0.1)  # the body is being read
            sock.close()
        deadline = time.monotonic() + PATIENCE
        while service.output()[before:].count("the client left") < aborted:
            assert time.monotonic() < deadline, service.output()[before:]
            time.sleep(0.1)
        with httpx2.Client(timeout=PATIENCE, trust_env=False) as client:  # still answering
            assert client.get(url).status_code == 200
        time.sleep(0.5)  # anything late in the log
        lines = service.output()[before:].splitlines()
    assert not [line for line in lines if "Traceback" in line or "Exception" in line]
    about_uploads = [line for line in lines if "POST" in line]
    assert len(about_uploads) <= aborted, about_uploads
