"""Request bodies bounded before they are read, and what a trigger may hold.

`BodyLimit` sits in front of every route: a request that carries a body (a `Content-Length`
other than 0, or a `Transfer-Encoding`) is authenticated first and refused 401 before a byte
of its body is read; then a truthful `Content-Length` over `MAX_BODY_BYTES` is refused 413 at
once, and any other body is counted while the route reads it and refused 413 at the byte past
the limit (a chunked body, or one longer than its `Content-Length` says). Both refusals close
the connection, so that the rest of the body is not read either.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from procexec.api.auth import caller
from procexec.api.errors import ApiError, error_response
from procexec.engine.domain import Scope as TokenScope
from procexec.engine.errors import ProcexecError, excerpt
from procexec.engine.tokens import TokenCache

#: the largest request body, in bytes (every route: triggers, form queries, schedules…)
MAX_BODY_BYTES = 1_048_576
#: the longest query string of a read's URL, in bytes (a longer query travels in a form body)
MAX_QUERY_STRING_BYTES = 65_536
#: the longest process name a trigger may give, in characters
MAX_NAME_CHARS = 200
#: the longest `_reason` of a trigger, in characters
MAX_REASON_CHARS = 1000
#: the largest parameters (`body` or `input`) of a trigger, in bytes of compact JSON
MAX_PARAMETERS_BYTES = 65_536
#: the deepest nesting of objects and arrays in a trigger's parameters (`{"a": 1}` is 1)
MAX_PARAMETERS_DEPTH = 32

#: a refused body is not read further: the connection closes after the answer
_CLOSE = {"Connection": "close"}


class BodyTooLarge(ApiError):
    """A request body past `MAX_BODY_BYTES`: a 413 naming the limit."""

    def __init__(self, limit: int = MAX_BODY_BYTES) -> None:
        super().__init__(413, f"request body over {_size(limit)} ({limit} bytes)", _CLOSE)


def _size(limit: int) -> str:
    for unit, factor in (("MB", 1 << 20), ("KB", 1 << 10)):
        if limit >= factor and limit % factor == 0:
            return f"{limit // factor} {unit}"
    return f"{limit} bytes"


def _announced(scope: Scope) -> int | None:
    """The body's announced length: its `Content-Length`; -1 for a body of unknown length (a
    `Transfer-Encoding`); None for no body. A malformed `Content-Length` is a 400 (servers
    refuse one before the app sees it; this covers any other)."""
    length: int | None = None
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            if not text.isdigit():
                raise ApiError(400, f"Content-Length: '{excerpt(text)}' is not a length", _CLOSE)
            length = int(text)
        elif name == b"transfer-encoding":
            return -1
    return length or None


class BodyLimit:
    """The ASGI middleware of the module's docstring; `tokens` verifies the caller's token."""

    def __init__(self, app: ASGIApp, tokens: TokenCache, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.tokens = tokens
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            length = _announced(scope)
            if length is None:
                await self.app(scope, receive, send)
                return
            # authentication first: a token the cache trusts on the loop, any other against
            # the store in a worker thread (a store that does not answer must not hold it)
            await caller(request, self.tokens, TokenScope.READ)
            if length > self.limit:
                raise BodyTooLarge(self.limit)
        except ApiError as exc:
            headers = {**(exc.headers or {}), **_CLOSE}
            await _refuse(request, send, exc.status, exc.message, headers)
            return
        except ProcexecError as exc:  # the store cannot be reached: a 503
            await _refuse(request, send, exc.status_code, str(exc), _CLOSE)
            return
        await self._counted(request, receive, send)

    async def _counted(self, request: Request, receive: Receive, send: Send) -> None:
        """The app, its body counted as it reads it: `BodyTooLarge` at the byte past the limit
        (answered by the app's handler of `ApiError`, or here if it escapes)."""
        received = 0
        read_whole = started = False

        async def counted_receive() -> Message:
            nonlocal received, read_whole
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
                read_whole = not message.get("more_body", False)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not read_whole:  # answered without its body (a cancel): not read after
                    headers = [(k, v) for k, v in message.get("headers", ()) if k != b"connection"]
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(request.scope, counted_receive, watched_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await _refuse(request, send, exc.status, exc.message, _CLOSE)


async def _refuse(
    request: Request, send: Send, status: int, message: str, headers: Mapping[str, str]
) -> None:
    """Answer the error without reading the request's body."""
    response = error_response(status, message, dict(headers), request.headers.get("accept"))
    await response(request.scope, _nothing, send)


async def _nothing() -> Message:  # an answer sent without reading the request
    return {"type": "http.disconnect"}


def check_trigger(
    name: str, params: Mapping[str, Any] | None, params_field: str, reason: str | None
) -> None:
    """A 400 naming the field when a trigger's name, reason or parameters pass their limits."""
    if len(name) > MAX_NAME_CHARS:
        raise ApiError(400, f"name: {len(name)} characters, at most {MAX_NAME_CHARS} allowed")
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise ApiError(
            400, f"_reason: {len(reason)} characters, at most {MAX_REASON_CHARS} allowed"
        )
    if params is None:
        return
    depth = nesting(params)
    if depth > MAX_PARAMETERS_DEPTH:
        raise ApiError(
            400,
            f"{params_field}: nested {depth} levels deep, at most {MAX_PARAMETERS_DEPTH} allowed",
        )
    size = len(json.dumps(params, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_PARAMETERS_BYTES:
        raise ApiError(
            400,
            f"{params_field}: {size} bytes as JSON, at most {MAX_PARAMETERS_BYTES} allowed",
        )


def nesting(value: Any) -> int:
    """How deep objects and arrays nest in `value` (a scalar is 0, `{}` and `[1]` are 1),
    walked without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest
