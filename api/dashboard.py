"""The web dashboard at `/`: one HTML page and its scripts and styles, served from the package.

No build step and nothing from a CDN: `api/web/` holds plain HTML, JavaScript modules and CSS,
installed with the package (pyproject.toml's package-data). The page calls the API from the
browser with the token its user typed (kept in the tab's sessionStorage), so it needs no route
of its own beyond its files. It is served under `PAGE_POLICY`: scripts, styles, images and
calls from this origin only, no inline script or style, no form posted anywhere, no framing.
Its files get the API's own policy (`api.security_headers`), and the other headers of every
answer, from `SecurityHeaders`.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Scope

#: where the page's scripts and styles are served
FILES_PATH = "/dashboard"
#: the page's policy: nothing inline, nothing from another origin
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
#: the page and its files are small and change with the release: always revalidated (ETag)
CACHE = "no-cache"


def web_files() -> Path:
    """The folder of the dashboard's files in the installed package."""
    folder = Path(str(importlib.resources.files("procexec.api") / "web"))
    if not (folder / "index.html").is_file():
        raise RuntimeError(f"the dashboard's files are missing from {folder}")
    return folder


class _Files(StaticFiles):
    """The page's files, each revalidated (`CACHE`) so that an upgrade is seen at once."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = CACHE
        return response


def install(app: FastAPI) -> None:
    """Serve the page at `/` and its files under `FILES_PATH`."""
    folder = web_files()
    page = (folder / "index.html").read_text(encoding="utf-8")
    app.mount(FILES_PATH, _Files(directory=folder), name="dashboard")

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def dashboard(request: Request) -> HTMLResponse:
        return HTMLResponse(
            page, headers={"Content-Security-Policy": PAGE_POLICY, "Cache-Control": CACHE}
        )
