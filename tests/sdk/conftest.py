"""A live procexec (real uvicorn, real SQLite) and the platform's real `odsl` SDK pointed at it."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from procexec.api.app import create_app
from procexec.engine.plugins import load_registry
from procexec.engine.runner import PhaseRunner
from procexec.engine.settings import Settings
from procexec.engine.store import open_store
from procexec.engine.tokens import create_token


class _OfflineMSALApp:
    """Replaces `msal.PublicClientApplication`, whose constructor calls Microsoft's servers.

    Token and API-key logins never use it; every HTTP call of the SDK stays as it is.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def get_accounts(self) -> list[Any]:
        return []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveService:
    def __init__(self, data_dir: Path) -> None:
        self.settings = Settings.from_env({"PROCEXEC_DATA_DIR": str(data_dir)})
        self.store = open_store(self.settings.store_url)
        self.registry = load_registry(self.settings)
        self.runner = PhaseRunner(self.store, self.registry, flush_interval=0.05)
        self.threads: list[threading.Thread] = []
        app = create_app(
            self.settings, store=self.store, registry=self.registry, dispatch=self._dispatch
        )
        self.port = _free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.base = f"http://127.0.0.1:{self.port}/api/"

    def _dispatch(self, execution_id: str, delay: float, process: str | None = None) -> None:
        # The broker is covered by the end-to-end tests; here a run starts in a thread.
        thread = threading.Thread(target=self.runner.run, args=(execution_id,), daemon=True)
        self.threads.append(thread)
        thread.start()

    def wait_runs(self) -> None:
        for thread in self.threads:
            thread.join(30)

    def __enter__(self) -> LiveService:
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.wait_runs()
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    with LiveService(tmp_path_factory.mktemp("sdk-service")) as live:
        yield live


@pytest.fixture(scope="module")
def sdk_module(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The real `odsl.sdk` module from PyPI, imported without reaching Microsoft."""
    import msal

    if "odsl.sdk" not in sys.modules:
        original = msal.PublicClientApplication
        msal.PublicClientApplication = _OfflineMSALApp  # type: ignore[misc,assignment]
        try:
            from odsl import sdk
        finally:
            msal.PublicClientApplication = original  # type: ignore[misc]
    sdk = sys.modules["odsl.sdk"]
    # The SDK writes its token cache at exit: keep it out of the work tree.
    sdk.ODSL.cache.filename = str(tmp_path_factory.mktemp("odsl") / "token.odsl")
    return sdk


@pytest.fixture
def token(service: LiveService) -> str:
    return create_token(service.store, "alice", "run")


@pytest.fixture
def odsl(
    sdk_module: Any, service: LiveService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    monkeypatch.chdir(tmp_path)
    client = sdk_module.ODSL()
    client.url = service.base
    return client
