"""The HTTP server: uvicorn on httptools, each request's head read against a clock and the
connections bounded per client address and in all (docs/design.md, "The HTTP server").

`BoundedHttpProtocol`, uvicorn's httptools protocol with three additions, is what `procexec api`
and `procexec standalone` serve with (`http=BoundedHttpProtocol`):

- a clock on the request's head: from the connection, and from the end of each answer, a
  client has `PROCEXEC_HEADER_TIMEOUT_SECONDS` to send its request line and headers; then the
  connection is closed (answered 408 first if a request had begun). uvicorn's own keep-alive
  timer starts again at every byte, so a client sending one header line every few seconds
  would hold its connection for ever;
- a cap per client address (`PROCEXEC_MAX_CONNECTIONS_PER_CLIENT`): a connection past it is
  answered 503 and closed before a byte of it is read;
- a cap in all (`PROCEXEC_MAX_CONNECTIONS`, held `FILES_RESERVE` under the open-files limit):
  past it, the connection that has waited longest for a request's head is closed to make room,
  and when none is waiting the new one is answered 503.

The server's own answers (these, and httptools' 400 for a request it cannot parse: a URL or
headers too long, a malformed line) carry the security headers and a JSON `{"error": …}` with
its text in `x-odsl-error`, as the application's errors do. Connections cut or refused are
logged at most once a minute for each reason, with their count, so that an attack of thousands
of connections leaves a few lines.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import resource
import time
import weakref
from dataclasses import dataclass
from functools import cache
from typing import Any

from uvicorn.config import LOGGING_CONFIG, Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from procexec.api.errors import error_header
from procexec.api.security_headers import API_POLICY, HEADERS
from procexec.engine.log_format import LogFormat
from procexec.engine.settings import Settings

logger = logging.getLogger(__name__)

#: open files left for the rest of the process (the store, the broker, logs) when the cap of
#: connections is taken from the open-files limit
FILES_RESERVE = 128
#: the fewest connections the cap in all allows, whatever the open-files limit
MIN_CONNECTIONS = 16
#: seconds between two log lines of one reason to cut or refuse connections
LOG_INTERVAL = 60.0


@dataclass(frozen=True)
class Limits:
    """The limits of one API process: seconds for a request's head; connections per client
    address (0: none) and in all."""

    header_timeout: float
    per_client: int
    total: int

    @classmethod
    def of(cls, settings: Settings, open_files: int | None = None) -> Limits:
        """The settings' limits, the cap in all held `FILES_RESERVE` under `open_files` (the
        process's soft RLIMIT_NOFILE by default)."""
        if open_files is None:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            open_files = -1 if soft == resource.RLIM_INFINITY else soft
        total = settings.max_connections or math.inf
        if open_files >= 0:
            total = min(total, max(MIN_CONNECTIONS, open_files - FILES_RESERVE))
        return cls(
            settings.header_timeout,
            settings.max_connections_per_client,
            0 if total == math.inf else int(total),
        )


@cache
def limits() -> Limits:
    """The limits of the environment's settings, read once per process."""
    return Limits.of(Settings.from_env())


class Tally:
    """An event counted, and logged at most once per `LOG_INTERVAL` with its count since the
    last line."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.count = 0
        self.logged = -math.inf

    def note(self, client: str) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.logged >= LOG_INTERVAL:
            logger.warning(
                "%s: %d connection(s) since the last such line, the latest from %s",
                self.what,
                self.count,
                client or "a local socket",
            )
            self.count = 0
            self.logged = now


TIMED_OUT = Tally("closed: no request head within the header timeout")
EVICTED = Tally("closed to make room: waited longest for a request head")
REFUSED_CLIENT = Tally("refused 503: too many connections from one address")
REFUSED_TOTAL = Tally("refused 503: too many connections, none waiting for a request head")


class Connections:
    """The open connections of one server: their number, per client address, and those
    waiting for a request's head, oldest first."""

    def __init__(self) -> None:
        self.open = 0
        self.per_client: dict[str, int] = {}
        self.waiting: dict[BoundedHttpProtocol, None] = {}


#: each server's connections (`procexec standalone` runs one; tests may run several)
_SERVERS: weakref.WeakKeyDictionary[ServerState, Connections] = weakref.WeakKeyDictionary()


def answer(
    status: int,
    message: str,
    default_headers: list[tuple[bytes, bytes]],
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> bytes:
    """A whole HTTP answer that closes the connection: the error as JSON, with its text in
    `x-odsl-error` and the security headers of every answer."""
    body = json.dumps({"error": message, "status": status}).encode()
    headers = [
        *default_headers,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (b"x-odsl-error", error_header(message).encode()),
        *HEADERS,
        (b"content-security-policy", API_POLICY.encode()),
        *extra,
    ]
    lines = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return STATUS_LINE[status] + lines + b"\r\n" + body


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the clock and the caps of the module's docstring."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits()
        self.all = _SERVERS.setdefault(server_state, Connections())
        self.head_timer: asyncio.TimerHandle | None = None
        #: whether part of a request's head has come (a 408 is then owed)
        self.in_head = False
        #: the client address this connection is counted under; None: not counted
        self.counted_as: str | None = None

    # -- the caps -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        host = self.client[0] if self.client else ""
        per_client, total = self.limits.per_client, self.limits.total
        if per_client and self.all.per_client.get(host, 0) >= per_client:
            REFUSED_CLIENT.note(host)
            self.refuse(503, f"too many connections from {host} (at most {per_client})")
            return
        if total and self.all.open >= total:
            oldest = next(iter(self.all.waiting), None)
            if oldest is None:
                REFUSED_TOTAL.note(host)
                self.refuse(503, f"too many connections (at most {total})")
                return
            EVICTED.note(oldest.counted_as or "")
            oldest.cut()
        self.all.open += 1
        self.all.per_client[host] = self.all.per_client.get(host, 0) + 1
        self.counted_as = host
        self.await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self.release()
        super().connection_lost(exc)

    def release(self) -> None:
        """No longer counted, nor waiting (once, however often called)."""
        self.stop_waiting()
        host, self.counted_as = self.counted_as, None
        if host is None:
            return
        self.all.open -= 1
        left = self.all.per_client.get(host, 1) - 1
        if left > 0:
            self.all.per_client[host] = left
        else:
            self.all.per_client.pop(host, None)

    def refuse(self, status: int, message: str) -> None:
        extra = ((b"retry-after", b"1"),) if status == 503 else ()
        self.transport.write(answer(status, message, self.server_state.default_headers, extra))
        self.transport.close()

    # -- the clock on a request's head ----------------------------------------------------

    def await_head(self) -> None:
        """Start the clock: the next request's head must come within the header timeout."""
        self.stop_waiting()
        self.head_timer = self.loop.call_later(self.limits.header_timeout, self.head_timed_out)
        self.all.waiting[self] = None

    def stop_waiting(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
        self.all.waiting.pop(self, None)

    def head_timed_out(self) -> None:
        self.head_timer = None
        TIMED_OUT.note(self.counted_as or "")
        self.cut()

    def cut(self) -> None:
        """Close this connection, which is waiting for a request's head: a 408 first if part
        of one has come."""
        self.stop_waiting()
        if not self.transport.is_closing():
            if self.in_head:
                seconds = f"{self.limits.header_timeout:g}"
                self.refuse(408, f"the request's line and headers did not come within {seconds} s")
            else:
                self.transport.close()
        self.release()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.stop_waiting()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        queued = bool(self.pipeline)  # a request whose head has come starts now
        super().on_response_complete()
        if not queued and not self.transport.is_closing():
            self.await_head()

    def handle_websocket_upgrade(self) -> None:
        """The connection goes to a WebSocket protocol (when one is installed), which is not
        counted: it is released here, or its place would be held for ever."""
        self.release()
        super().handle_websocket_upgrade()

    # -- the server's own answers ---------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        """httptools could not parse the request (a URL or headers too long, a malformed
        line): a JSON 400 with the security headers, then the connection closes."""
        self.in_head = False
        self.stop_waiting()
        text = "invalid HTTP request: malformed, or its line or headers too long"
        self.refuse(400, text)


def uvicorn_log_config(log_format: LogFormat) -> dict[str, Any]:
    """uvicorn's `log_config`: its own (coloured text) for text; for JSON, uvicorn's loggers
    keep no handler of their own and pass their lines to the root's."""
    if log_format == "text":
        return LOGGING_CONFIG
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "loggers": {
            name: {"handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
