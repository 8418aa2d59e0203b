"""Every error as JSON `{"error": ...}` (XML `<error status="N">…</error>` for a client that
asks for XML), its text repeated in the `x-odsl-error` header."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from procexec.api import formats
from procexec.engine.errors import ProcexecError, QueryTimeout, excerpt
from procexec.engine.redact import mask_secrets

logger = logging.getLogger(__name__)

#: the control characters left once whitespace is folded into spaces
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: the longest error message: one that repeats more of the client's input than `excerpt`
#: lets through keeps its beginning and its end, the middle cut out
MAX_MESSAGE_CHARS = 500
#: the longest `x-odsl-error` value (escaping can lengthen a message up to ten times)
MAX_HEADER_CHARS = 1000


def bounded(message: str) -> str:
    """`message`, cut to `MAX_MESSAGE_CHARS` (its first 350 and last 149 characters around
    `…`): the last guard against an error that repeats a long input whole."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[:350] + "…" + message[-149:]


def error_header(message: str) -> str:
    """`message` as the `x-odsl-error` header's value.

    Header values must be single-line ASCII (clients decode them as ASCII or UTF-8) without
    control characters: a server refuses to send one with NUL (h11 drops the connection), or
    with any of them (httptools).
    """
    text = " ".join(bounded(message).split()).encode("ascii", "backslashreplace").decode("ascii")
    text = _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", text)
    return text if len(text) <= MAX_HEADER_CHARS else text[: MAX_HEADER_CHARS - 3] + "..."


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, accept: str | None = None
) -> Response:
    """The error as JSON, or as XML when `accept` (the request's `Accept`) asks for XML; any
    password or token in its text masked (`engine.redact`: a driver's error may quote a URL),
    its message `bounded`."""
    message = bounded(mask_secrets(message))
    all_headers = {"x-odsl-error": error_header(message), **(headers or {})}
    if formats.negotiate(accept) == "xml":
        return Response(
            formats.error_xml(message, status),
            status_code=status,
            media_type=formats.XML_TYPE,
            headers=all_headers,
        )
    return JSONResponse(
        {"error": message, "status": status}, status_code=status, headers=all_headers
    )


class ErrorBody(BaseModel):
    """An error as JSON: what was wrong, naming the parameter, header or body field."""

    error: str
    status: int


#: what each error status means, for the OpenAPI description
_MEANINGS = {
    400: "Malformed request: the message names the parameter, header or body field",
    401: "Missing or invalid credentials",
    403: "The token's scope or limits (environments, processes) do not allow this call",
    404: "No such execution, process or source",
    409: "The execution is not in a state that allows this: it has finished",
    413: "A request body over 1 MB (1048576 bytes)",
    429: "Too many at once: the message names the limit; `Retry-After` says when to try again",
    501: "Not available on this deployment's store (the all-runs stream on a store that keeps "
    "no journal of every run)",
    503: "The store cannot be reached, or a read ran past its time limit",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI description of a route's errors (its `responses=`): the JSON error (XML for
    a client that asks for it) with its text in `x-odsl-error`."""
    header = {"description": "the error's text", "required": True, "schema": {"type": "string"}}
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        headers = {"x-odsl-error": header}
        if status == 401:
            headers["WWW-Authenticate"] = {**header, "description": "the Bearer challenge"}
        responses[status] = {
            "model": ErrorBody,
            "description": _MEANINGS[status],
            "headers": headers,
            "content": {"application/xml": {"schema": {"type": "string"}}},
        }
    return responses


#: the methods a 405's `Allow` may name
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """The methods some route serves on the request's path. Starlette's 405 names only those
    of the first route it found there: `GET` alone where a second route serves `POST`."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)


def _accept(request: Request) -> str | None:
    return request.headers.get("accept")


class ApiError(Exception):
    """An error raised by the API layer itself (authentication, authorisation)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, exc.headers, _accept(request))

    @app.exception_handler(ProcexecError)
    async def _engine_error(request: Request, exc: ProcexecError) -> Response:
        if isinstance(exc, QueryTimeout):  # the query's breadth, not the service's fault
            url = request.url
            logger.warning("read stopped: %s %s?%s", request.method, url.path, url.query)
        elif exc.status_code >= 500:
            logger.error("request failed: %s", exc)
        return error_response(exc.status_code, str(exc), accept=_accept(request))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        return error_response(400, f"invalid request: {problems}", accept=_accept(request))

    app.openapi = _without_validation_status(app)  # type: ignore[method-assign]

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        message = str(exc.detail)
        headers = dict(exc.headers or {})
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such path: {excerpt(request.url.path)}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {excerpt(request.url.path)}"
            headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
        return error_response(exc.status_code, message, headers, _accept(request))


#: what FastAPI describes for a request its validation refuses; procexec answers those 400
_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def _without_validation_status(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """`app.openapi`, without the 422 FastAPI lists on every operation with parameters: a
    request its validation refuses is answered 400 (`_validation`), as described."""
    describe = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = describe()  # FastAPI keeps it as app.openapi_schema: changed in place
        for operations in schema["paths"].values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        schemas = schema.get("components", {}).get("schemas", {})
        for name in _VALIDATION_SCHEMAS:
            schemas.pop(name, None)
        return schema

    return openapi
