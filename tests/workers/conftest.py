"""Fixtures of the CLI and dispatch tests: real `procexec` subprocesses on a fresh data folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from procexec.engine.store.sqlite import SQLiteStore
from tests.integration.harness import attach_service_output, service_env


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    attach_service_output(report, call)
    return report


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def env(data_dir: Path) -> dict[str, str]:
    """The environment of a procexec subprocess: this data folder, the embedded broker, and a
    store in it, as a service makes when it starts."""
    SQLiteStore(data_dir / "procexec.db").close()
    return service_env(data_dir)
