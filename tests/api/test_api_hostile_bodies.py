"""Hostile bodies (issue 15): authentication before a body is read, a 1 MB limit on every body
however it is sent, limits on what a trigger holds, and errors that repeat a short excerpt.

The body tests call the app as its server does, through ASGI, with a body that records how much
of it the app took: a refused body must not be read, an oversized one not past the limit. One
test replays the attack over a real socket to a real uvicorn.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from procexec.api.errors import MAX_HEADER_CHARS, MAX_MESSAGE_CHARS
from procexec.api.limits import (
    MAX_BODY_BYTES,
    MAX_NAME_CHARS,
    MAX_PARAMETERS_BYTES,
    MAX_PARAMETERS_DEPTH,
    MAX_REASON_CHARS,
)
from tests.api.api_helpers import BASES, Service, free_process

CHUNK = 65_536
#: a body the attacker would send: 400 MB in chunks of 64 KB
ATTACK_CHUNKS = 400 * 16
FORM = "application/x-www-form-urlencoded"
TOO_LARGE = f"request body over 1 MB ({MAX_BODY_BYTES} bytes)"

#: every route that takes a body, and some that do not: (method, path, content type)
ROUTES = [
    ("GET", f"{BASES[0]}/v1", FORM),
    ("GET", f"{BASES[1]}/v1/private", FORM),
    ("POST", f"{BASES[0]}/v1", "application/json"),
    ("POST", BASES[1], "application/json"),
    ("POST", f"{BASES[0]}/v1/some-id/cancel", "application/json"),
    ("PUT", "/service/process/v1/DEMO/schedule", "application/json"),
    ("POST", "/service/process/v1/DEMO/enable", "application/json"),
    ("POST", "/healthz", "application/json"),
    ("POST", "/no/such/path", "application/json"),
]
#: the routes that read their body
READING_ROUTES = [ROUTES[0], ROUTES[1], ROUTES[2], ROUTES[3], ROUTES[5]]


@dataclass
class Body:
    """A request body of `chunks` pieces of `CHUNK` bytes, counting what the app received."""

    chunks: int
    #: the body's first bytes (the rest is `x`)
    prefix: bytes = b""
    received: int = 0
    calls: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)

    async def receive(self) -> dict[str, Any]:
        self.calls += 1
        if self.received < self.chunks * CHUNK:
            piece = (self.prefix if not self.received else b"") + b"x" * CHUNK
            self.received += CHUNK
            return {
                "type": "http.request",
                "body": piece[:CHUNK],
                "more_body": self.received < self.chunks * CHUNK,
            }
        await asyncio.sleep(3600)  # the client waits for its answer
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        status: int = self.sent[0]["status"]
        return status

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.sent[0]["headers"]}

    @property
    def error(self) -> str:
        payload: dict[str, Any] = json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))
        return str(payload["error"])


def call(service: Service, method: str, path: str, headers: dict[str, str], body: Body) -> Body:
    """`service.app` called with `body`, as uvicorn calls it (a hang is a failure)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }

    async def run() -> None:
        await asyncio.wait_for(service.app(scope, body.receive, body.send), timeout=30)

    asyncio.run(run())
    return body


def chunked(content_type: str, **extra: str) -> dict[str, str]:
    return {"Content-Type": content_type, "Transfer-Encoding": "chunked", **extra}


def lengthed(content_type: str, length: int, **extra: str) -> dict[str, str]:
    return {"Content-Type": content_type, "Content-Length": str(length), **extra}


# --- authentication before the body --------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "content_type"), ROUTES)
@pytest.mark.parametrize(
    "credentials",
    [{}, {"Authorization": "Bearer pe_not-a-token"}, {"Authorization": "Basic !!"}],
    ids=["none", "bad-token", "bad-basic"],
)
@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_a_body_without_valid_credentials_is_refused_401_unread(
    service: Service,
    method: str,
    path: str,
    content_type: str,
    credentials: dict[str, str],
    framing: str,
) -> None:
    headers = (
        chunked(content_type, **credentials)
        if framing == "chunked"
        else lengthed(content_type, ATTACK_CHUNKS * CHUNK, **credentials)
    )
    body = call(service, method, path, headers, Body(ATTACK_CHUNKS))
    assert body.status == 401, body.sent
    assert body.calls == 0 and body.received == 0  # not a byte read
    assert body.headers["connection"] == "close"
    assert body.headers["www-authenticate"] == 'Bearer realm="procexec"'
    assert body.error == body.headers["x-odsl-error"]
    assert service.count() == 0


def test_a_read_token_passes_the_check_and_the_route_refuses_it_unread(service: Service) -> None:
    headers = chunked("application/json", **service.read_headers)
    body = call(service, "POST", f"{BASES[0]}/v1", headers, Body(ATTACK_CHUNKS))
    assert body.status == 403
    assert body.received == 0
    assert body.headers["connection"] == "close"  # the body left unread is not read after


# --- the size limit on every body ----------------------------------------------------------


def writer(service: Service, path: str) -> dict[str, str]:
    """The credentials a write to `path` needs: an admin token for a process's settings."""
    return service.admin_headers if path.startswith("/service/process/") else service.run_headers


@pytest.mark.parametrize(("method", "path", "content_type"), ROUTES)
def test_a_truthful_content_length_over_the_limit_is_refused_413_at_once(
    service: Service, method: str, path: str, content_type: str
) -> None:
    headers = lengthed(content_type, MAX_BODY_BYTES + 1, **writer(service, path))
    body = call(service, method, path, headers, Body(ATTACK_CHUNKS))
    assert body.status == 413, body.sent
    assert body.received == 0
    assert body.error == TOO_LARGE
    assert body.headers["x-odsl-error"] == TOO_LARGE
    assert body.headers["connection"] == "close"
    assert service.count() == 0


@pytest.mark.parametrize(("method", "path", "content_type"), READING_ROUTES)
@pytest.mark.parametrize("framing", ["chunked", "false-content-length"])
def test_a_body_past_the_limit_is_refused_413_at_the_limit(
    service: Service, method: str, path: str, content_type: str, framing: str
) -> None:
    """Chunked, or longer than its `Content-Length` says (a server that trusts the framing
    would not deliver it; one behind a proxy may): counted, and stopped at the limit."""
    headers = (
        chunked(content_type, **writer(service, path))
        if framing == "chunked"
        else lengthed(content_type, 10, **writer(service, path))
    )
    body = call(service, method, path, headers, Body(ATTACK_CHUNKS))
    assert body.status == 413, body.sent
    assert body.error == TOO_LARGE
    assert body.headers["connection"] == "close"
    assert MAX_BODY_BYTES < body.received <= MAX_BODY_BYTES + CHUNK
    assert service.count() == 0
    assert service.dispatcher.calls == []


def test_a_body_within_the_limit_is_read(service: Service) -> None:
    """The limit is the limit: 1 MB exactly passes it (a trigger of that size is refused by
    its own limits, not by the body's)."""
    headers = chunked(FORM, **service.read_headers)
    whole = Body(MAX_BODY_BYTES // CHUNK, prefix=b"_limit=9")
    body = call(service, "GET", f"{BASES[0]}/v1", headers, whole)
    assert body.status == 400, body.sent  # `9xxx…` is not a number, and the message says so
    assert body.received == MAX_BODY_BYTES
    assert body.error.startswith("_limit: '9xxx") and body.error.endswith(" is not a whole number")
    assert len(body.error) <= MAX_MESSAGE_CHARS


def test_a_route_without_a_body_answers_and_closes_the_connection(service: Service) -> None:
    headers = chunked("application/json", **service.run_headers)
    body = call(service, "POST", f"{BASES[0]}/v1/some-id/cancel", headers, Body(ATTACK_CHUNKS))
    assert body.status == 404
    assert body.received == 0
    assert body.headers["connection"] == "close"


def _send_head_and_some(url: str, head: str, some: int) -> tuple[bytes, int]:
    """Over a real socket: the request's head and `some` bytes of its body, then nothing more;
    the answer read back (a hang is a failure), and how many bytes of body were sent."""
    parts = urllib.parse.urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
        sock.sendall(head.encode() + b"x" * some)
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    return answer, some


@pytest.mark.parametrize("credentials", ["", "Authorization: Bearer pe_wrong\r\n"])
def test_a_real_server_answers_401_before_the_body_is_sent(
    live_url: str, service: Service, credentials: str
) -> None:
    """The 400 MB form query of the issue: answered while the client has sent 64 KB of it."""
    head = (
        f"GET {BASES[0]}/v1 HTTP/1.1\r\nHost: test\r\nContent-Type: {FORM}\r\n"
        f"Content-Length: {400 * 1024 * 1024}\r\n{credentials}\r\n"
    )
    answer, _ = _send_head_and_some(live_url, head, CHUNK)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert b"\r\nconnection: close\r\n" in answer.lower()


def test_a_real_server_answers_413_before_the_body_is_sent(live_url: str, service: Service) -> None:
    head = (
        f"POST {BASES[0]}/v1 HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {service.run_token}\r\n"
        f"Content-Length: {400 * 1024 * 1024}\r\n\r\n"
    )
    answer, _ = _send_head_and_some(live_url, head, CHUNK)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert f"x-odsl-error: {TOO_LARGE}".encode() in answer


# --- what a trigger may hold -----------------------------------------------------------------


def _deep_list(levels: int) -> list[Any]:
    value: list[Any] = [1]
    for _ in range(levels - 1):
        value = [value]
    return value


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("payload", "query", "message"),
    [
        ({"name": "D" * (MAX_NAME_CHARS + 1)}, {},
         f"name: {MAX_NAME_CHARS + 1} characters, at most {MAX_NAME_CHARS} allowed"),
        ({"name": "D" * 1_000_000}, {},
         f"name: 1000000 characters, at most {MAX_NAME_CHARS} allowed"),
        ({"name": "DEMO", "_reason": "r" * (MAX_REASON_CHARS + 1)}, {},
         f"_reason: {MAX_REASON_CHARS + 1} characters, at most {MAX_REASON_CHARS} allowed"),
        ({"name": "DEMO"}, {"_reason": "r" * (MAX_REASON_CHARS + 1)},
         f"_reason: {MAX_REASON_CHARS + 1} characters, at most {MAX_REASON_CHARS} allowed"),
        ({"name": "DEMO", "body": {"x": "y" * MAX_PARAMETERS_BYTES}}, {},
         f"body: {MAX_PARAMETERS_BYTES + 8} bytes as JSON, at most {MAX_PARAMETERS_BYTES} allowed"),
        ({"name": "DEMO", "input": {"x": ["é" * 40_000]}}, {},
         f"input: 80010 bytes as JSON, at most {MAX_PARAMETERS_BYTES} allowed"),
        ({"name": "DEMO", "body": _deep(MAX_PARAMETERS_DEPTH + 1)}, {},
         f"body: nested {MAX_PARAMETERS_DEPTH + 1} levels deep, at most "
         f"{MAX_PARAMETERS_DEPTH} allowed"),
        ({"name": "DEMO", "body": {"a": _deep_list(MAX_PARAMETERS_DEPTH)}}, {},
         f"body: nested {MAX_PARAMETERS_DEPTH + 1} levels deep, at most "
         f"{MAX_PARAMETERS_DEPTH} allowed"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("base", [f"{BASES[0]}/v1", BASES[1]])
def test_a_trigger_past_a_limit_is_a_400_naming_the_field_and_nothing_is_written(
    client: TestClient,
    service: Service,
    base: str,
    payload: dict[str, Any],
    query: dict[str, str],
    message: str,
) -> None:
    before = service.count()
    response = client.post(base, params=query, headers=service.run_headers, json=payload)
    assert response.status_code == 400, response.text[:300]
    assert response.json() == {"error": message, "status": 400}
    assert response.headers["x-odsl-error"] == message
    assert service.count() == before == 0
    assert service.dispatcher.calls == []


def test_a_trigger_at_the_limits_is_accepted(client: TestClient, service: Service) -> None:
    deep = _deep(MAX_PARAMETERS_DEPTH)
    service.registry.add(free_process())
    payload = {"name": "FREE", "_reason": "r" * MAX_REASON_CHARS, "body": deep}
    response = client.post(f"{BASES[0]}/v1", headers=service.run_headers, json=payload)
    assert response.status_code == 202, response.text
    assert response.json()["reason"] == "r" * MAX_REASON_CHARS
    long_name = "D" * MAX_NAME_CHARS  # as long as allowed: then an unknown process
    response = client.post(f"{BASES[0]}/v1", headers=service.run_headers, json={"name": long_name})
    assert response.status_code == 404
    assert response.json()["error"] == f"unknown process '{'D' * 80}…'"
    assert service.count() == 1


# --- errors repeat a short excerpt ---------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "params", "headers", "status", "start"),
    [
        ("GET", "/service/process/v1/" + "P" * 20_000, {}, {}, 404, "unknown process 'PPP"),
        ("POST", "/service/process/v1/" + "P" * 20_000 + "/enable", {}, {}, 404,
         "unknown process 'PPP"),
        ("GET", f"{BASES[0]}/v1/" + "i" * 20_000, {}, {}, 404, "no execution 'iii"),
        ("GET", f"{BASES[0]}/v1/private/" + "i" * 20_000, {}, {}, 404, "no execution 'iii"),
        ("POST", f"{BASES[0]}/v1/" + "i" * 20_000 + "/cancel", {}, {}, 404,
         "no execution 'iii"),
        ("GET", f"{BASES[0]}/v1", {"_limit": "9" * 20_000}, {}, 400, "_limit: '999"),
        ("GET", f"{BASES[0]}/v1", {"start": "s" * 20_000}, {}, 400, "start: 'sss"),
        ("GET", f"{BASES[0]}/v1", {"_sort": "x" * 20_000}, {}, 400, "_sort: "),
        ("GET", f"{BASES[0]}/v1", {}, {"x-odsl-environment": "e!" * 50_000}, 400,
         "x-odsl-environment: 'e!e!"),
        ("GET", "/no/" + "p" * 20_000, {}, {}, 404, "no such path: /no/ppp"),
        ("DELETE", f"{BASES[0]}/v1/" + "%0A" * 1000, {}, {}, 405, "method DELETE"),
        ("POST", f"{BASES[0]}/v1", {"_delay": "\x00" * 20_000}, {}, 400, "_delay: '\\x00"),
    ],
)  # fmt: skip
def test_an_error_repeats_a_bounded_excerpt_of_the_input(
    client: TestClient,
    service: Service,
    method: str,
    path: str,
    params: dict[str, str],
    headers: dict[str, str],
    status: int,
    start: str,
) -> None:
    sent = {**(writer(service, path) if method == "POST" else service.run_headers), **headers}
    json_body = {"name": "DEMO"} if method == "POST" and "_delay" in params else None
    response = client.request(method, path, params=params, headers=sent, json=json_body)
    assert response.status_code == status, response.text[:300]
    message = response.json()["error"]
    header = response.headers["x-odsl-error"]
    assert message.startswith(start), message
    assert len(message) <= MAX_MESSAGE_CHARS
    assert len(header) <= MAX_HEADER_CHARS
    assert header.isascii() and "\r" not in header and "\n" not in header
    assert service.count() == 0


def test_an_excerpt_is_short_and_escaped(client: TestClient, service: Service) -> None:
    name = "\r\nSet-Cookie: a=b\x00" + "N" * 1000
    response = client.get(
        "/service/process/v1/" + urllib.parse.quote(name), headers=service.read_headers
    )
    assert response.status_code == 404
    escaped = "\\r\\nSet-Cookie: a=b\\x00"
    shown = escaped + "N" * (80 - len(escaped)) + "…"
    assert response.json()["error"] == f"unknown process '{shown}'"
    assert response.headers["x-odsl-error"] == f"unknown process '{shown[:-1]}\\u2026'"
    assert "set-cookie" not in response.headers
