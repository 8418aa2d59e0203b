"""The HTTP client of the commands that talk to a running API (`procexec.client_cli`): the
standard library's `urllib`, no dependency.

The API's root comes from `--url` or `PROCEXEC_URL` (`http://127.0.0.1:8080`; a URL that
already ends in `/service/process-exec` is taken as it is), the token from `--token` or
`PROCEXEC_TOKEN`. Every failure is a `ClientError` of one line: the URL unreachable, or the
API's answer (`401: …`, `404: …`, with the API's own message); the token is never in it.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

#: where the execution calls are mounted under the API's root
BASE_PATH = "/service/process-exec"
#: seconds a call has to answer (a stream: between two of its lines, pings every 15 s)
TIMEOUT = 30.0
#: how many times a stream that closed before its run ended is opened again
RECONNECTS = 20


class ClientError(Exception):
    """A call that did not get its answer, told in one line."""


@dataclass(frozen=True)
class Event:
    id: str
    kind: str
    data: dict[str, Any]


def settings(url: str | None, token: str | None) -> tuple[str, str]:
    """The API's base (its execution calls') and the token, from the options or else the
    environment; a `ClientError` when one is missing."""
    root = url or os.environ.get("PROCEXEC_URL") or ""
    if not root.strip():
        raise ClientError("no API: give --url or set PROCEXEC_URL (e.g. http://127.0.0.1:8080)")
    root = root.strip().rstrip("/")
    if urllib.parse.urlsplit(root).scheme not in ("http", "https"):
        raise ClientError(f"--url/PROCEXEC_URL: {root[:80]!r} is not an http(s) URL")
    base = root if root.endswith(BASE_PATH) else root + BASE_PATH
    secret = token or os.environ.get("PROCEXEC_TOKEN") or ""
    if not secret.strip():
        raise ClientError("no token: give --token or set PROCEXEC_TOKEN")
    return base, secret.strip()


class ApiClient:
    """Calls to the execution API at `base` with `token`."""

    def __init__(
        self, base: str, token: str, environment: str | None = None, timeout: float = TIMEOUT
    ) -> None:
        self.base = base
        self._token = token
        self.environment = environment
        self.timeout = timeout

    def _open(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]] = (),
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        url = self.base + path
        if params:
            url += "?" + urllib.parse.urlencode(list(params))
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.environment:
            request.add_header("x-odsl-environment", self.environment)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            raise ClientError(_refusal(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            where = urllib.parse.urlsplit(self.base)
            raise ClientError(f"cannot reach {where.scheme}://{where.netloc}: {reason}") from None

    def call(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]] = (),
        body: Any = None,
    ) -> tuple[Any, dict[str, str]]:
        """The JSON answer of one call and its headers."""
        with self._open(method, path, params, body) as answer:
            try:
                raw = answer.read()
            except (TimeoutError, OSError) as exc:
                raise ClientError(f"the API did not finish its answer: {exc}") from None
            headers = {name.lower(): value for name, value in answer.headers.items()}
        try:
            return json.loads(raw), headers
        except ValueError:
            raise ClientError("the API answered something else than JSON") from None

    def events(self, path: str, params: Sequence[tuple[str, str]] = ()) -> Iterator[Event]:
        """A Server-Sent Events stream's events; opened again after its last event id when
        the API closes it (idle, or open too long), until the caller stops."""
        last: str | None = None
        for _ in range(RECONNECTS):
            headers = {"Accept": "text/event-stream"}
            if last is not None:
                headers["Last-Event-ID"] = last
            with self._open("GET", path, params, headers=headers) as answer:
                for event in _read_events(answer):
                    last = event.id or last
                    yield event
        raise ClientError(f"the stream closed {RECONNECTS} times; giving up")


def _read_events(answer: Any) -> Iterator[Event]:
    fields: dict[str, str] = {}
    while True:
        try:
            raw = answer.readline()
        except (TimeoutError, OSError) as exc:
            raise ClientError(f"the stream stopped: {exc}") from None
        if not raw:
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if "data" in fields:
                try:
                    data = json.loads(fields["data"])
                except ValueError:
                    data = {"text": fields["data"]}
                yield Event(fields.get("id", ""), fields.get("event", "message"), data)
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            fields[name] = fields[name] + "\n" + value if name in fields else value


def _refusal(exc: urllib.error.HTTPError) -> str:
    """`<status>: <the API's message>`, in one line."""
    try:
        body = json.loads(exc.read() or b"{}")
        message = body.get("error") or body.get("detail") or exc.reason
    except (ValueError, AttributeError, OSError):
        message = exc.headers.get("x-odsl-error") or exc.reason
    if not isinstance(message, str):
        message = json.dumps(message)
    return f"{exc.code}: {' '.join(message.split())}"
