"""A folder served over real HTTP on 127.0.0.1 (http.server in a thread), for the processes
that fetch URLs: ECB_FX fetches only http(s) from the hosts `PROCEXEC_FETCH_ALLOW` allows, so
a test that feeds it a file serves the file here and allows 127.0.0.1 in its environment.

`redirects` maps a path to a Location: that path answers 302 there (to test that each hop is
checked).
"""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path
from types import TracebackType
from typing import Any


class _Handler(http.server.SimpleHTTPRequestHandler):
    redirects: dict[str, str] = {}

    def do_GET(self) -> None:
        location = self.redirects.get(self.path)
        if location is None:
            super().do_GET()
            return
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"moved")  # bytes a refused redirect must not store

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FileServer:
    """Serves `folder` at `url` (`http://127.0.0.1:<port>`) until closed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.redirects: dict[str, str] = {}
        handler = type("Handler", (_Handler,), {"redirects": self.redirects})
        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(handler, directory=str(folder))
        )
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, name: str, content: str | bytes) -> str:
        """Write `name` into the folder; its URL."""
        path = self.folder / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return f"{self.url}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def __enter__(self) -> FileServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
