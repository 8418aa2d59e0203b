"""A real webhook receiver for the notification tests: `http.server` in a thread on
127.0.0.1, answering each post with the next status of a script (then 200), or hanging until
released; it keeps every post's path, headers and exact body bytes."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True)
class Post:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)
        return found

    def signed_with(self, secret: str) -> bool:
        """Whether its `X-Procexec-Signature` is the body's HMAC-SHA256 by `secret`."""
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.headers.get("x-procexec-signature", ""))


class Receiver:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        host, port = server.server_address[:2]
        self.url = f"http://{host}:{port}/hook"
        self.posts: list[Post] = []
        #: the statuses of the next answers, in order (then 200)
        self.script: list[int] = []
        #: set: every post waits until `release` is set
        self.hang = False
        self.hanging = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()

    def received(self, post: Post) -> int:
        with self._lock:
            self.posts.append(post)
            return self.script.pop(0) if self.script else 200

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Post]:
        """The posts once there are `count` of them; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.posts) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"{len(self.posts)} post(s) received within {timeout:g} s, not {count}")
            time.sleep(0.01)
        return list(self.posts)


@contextmanager
def receiver() -> Iterator[Receiver]:
    """A receiver listening on a free port of 127.0.0.1, stopped afterwards."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = {key.lower(): value for key, value in self.headers.items()}
            status = found.received(Post(self.path, headers, body))
            if found.hang:
                found.hanging.set()
                found.release.wait(30)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    found = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, name="receiver", daemon=True)
    thread.start()
    try:
        yield found
    finally:
        found.release.set()
        server.shutdown()
        server.server_close()
