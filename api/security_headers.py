"""Security headers on every answer, and the API's documentation page served from the package.

Every response carries `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`,
`Referrer-Policy: no-referrer` and a Content-Security-Policy: the API's own answers (JSON, CSV,
XML, errors) `default-src 'none'; frame-ancestors 'none'` (OWASP's advice for an API: nothing
in them may load or run, nor be framed); the HTML of `/docs` a policy that lets Swagger UI run
from this origin only (`DOCS_POLICY`), its inline start-up script allowed by a nonce drawn for
each page.

Swagger UI's files (`swagger-ui-bundle.js`, `swagger-ui.css`, the favicon) come from the
`fastapi-offline` package, served under `STATIC_PATH`: nothing of the page loads from a CDN,
and it works offline. `/redoc`, which FastAPI loads from a CDN and Google Fonts, is off. A
pure ASGI middleware sets the headers: the hot read routes are plain Starlette routes, and a
`BaseHTTPMiddleware` would cost them a task and a queue each.
"""

from __future__ import annotations

import importlib.resources
import logging
import secrets
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from procexec.api.errors import error_response
from procexec.engine.errors import excerpt

logger = logging.getLogger(__name__)

#: where Swagger UI's files are served
STATIC_PATH = "/docs/static"
#: the policy of every answer but the documentation page's
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
#: the documentation page's policy; `{nonce}` is drawn for each page
DOCS_POLICY = (
    "default-src 'none'; script-src 'self' 'nonce-{nonce}'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
#: the headers every response carries (a route's own Content-Security-Policy stands)
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_POLICY = b"content-security-policy"


def swagger_files() -> Path:
    """The folder of Swagger UI's files in the `fastapi-offline` package."""
    folder = Path(str(importlib.resources.files("fastapi_offline") / "static"))
    if not (folder / "swagger-ui-bundle.js").is_file():
        raise RuntimeError(f"Swagger UI's files are missing from {folder} (fastapi-offline)")
    return folder


class SecurityHeaders:
    """Adds `HEADERS`, and `API_POLICY` unless the response set a policy of its own.

    The outermost of the app's middleware, it also answers what escapes the rest: an error
    no handler took is a JSON 500 (`errors.error_response`) with these headers, logged once
    with its traceback, instead of Starlette's plain-text one; a client that left while its
    request's body was being read (`ClientDisconnect`) is one line in the log, no traceback.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(header for header in HEADERS if header[0] not in present)
                if _POLICY not in present:
                    headers.append((_POLICY, API_POLICY.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except ClientDisconnect:  # nobody to answer
            logger.info("%s: the client left before its request's body was read", _line(scope))
        except Exception as exc:
            if started:  # part of the answer has gone: uvicorn closes the connection
                raise
            logger.error("%s: unhandled error", _line(scope), exc_info=exc)
            accept = Headers(scope=scope).get("accept")
            response = error_response(500, INTERNAL_ERROR, accept=accept)
            await response(scope, receive, send_with_headers)


#: the text of a 500: what failed is in the server's log, not in the answer
INTERNAL_ERROR = "internal error: the request failed on the server (its log says why)"


def _line(scope: Scope) -> str:
    """The request's method and path (cut short) for a log line."""
    return f"{scope.get('method', '')} {excerpt(str(scope.get('path', '')))}"


def _with_nonce(page: HTMLResponse) -> HTMLResponse:
    """The page with a fresh nonce on each of its inline scripts, and the policy allowing it."""
    nonce = secrets.token_urlsafe(18)
    html = bytes(page.body).decode().replace("<script>", f'<script nonce="{nonce}">')
    return HTMLResponse(html, headers={"Content-Security-Policy": DOCS_POLICY.format(nonce=nonce)})


def install(app: FastAPI) -> None:
    """Serve `/docs` from the package (FastAPI's own `/docs` and `/redoc` load from a CDN).
    The headers are set by `SecurityHeaders`, added last (the outermost) by `api.app`."""
    own = {app.docs_url, app.swagger_ui_oauth2_redirect_url, app.redoc_url} - {None}
    app.router.routes[:] = [
        route for route in app.router.routes if getattr(route, "path", None) not in own
    ]
    app.docs_url = app.redoc_url = None
    redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"
    app.mount(STATIC_PATH, StaticFiles(directory=swagger_files()), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _with_nonce(
            get_swagger_ui_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=f"{app.title} - Swagger UI",
                swagger_js_url=f"{root}{STATIC_PATH}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{STATIC_PATH}/swagger-ui.css",
                swagger_favicon_url=f"{root}{STATIC_PATH}/favicon.png",
                oauth2_redirect_url=f"{root}{redirect_url}",
                # no badge fetched from validator.swagger.io
                swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
            )
        )

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return _with_nonce(get_swagger_ui_oauth2_redirect_html())
