"""Every error as JSON `{"error": ...}` (XML `<error status="N">…</error>` for a client that
asks for XML), its text repeated in the `x-odsl-error` header."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from api import formats
from engine.errors import ProcexecError

logger = logging.getLogger(__name__)


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, accept: str | None = None
) -> Response:
    """The error as JSON, or as XML when `accept` (the request's `Accept`) asks for XML."""
    # Header values must be single-line ASCII (clients decode them as ASCII or UTF-8).
    header_text = " ".join(message.split()).encode("ascii", "backslashreplace").decode("ascii")
    all_headers = {"x-odsl-error": header_text, **(headers or {})}
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
        if exc.status_code >= 500:
            logger.error("request failed: %s", exc)
        return error_response(exc.status_code, str(exc), accept=_accept(request))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        return error_response(400, f"invalid request: {problems}", accept=_accept(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such path: {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        return error_response(exc.status_code, message, dict(exc.headers or {}), _accept(request))
