"""Shared test setup: the project's packages import from the work tree, installed or not."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.http_files import FileServer

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store file of `tests.volume.EXECUTIONS` executions, written once for the engine's and
    the API's read-limit tests: each copies it before opening it."""
    from tests.volume import write_store  # here: the work tree is on sys.path by now

    return write_store(tmp_path_factory.mktemp("volume") / "procexec.db")


@pytest.fixture
def file_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FileServer]:
    """A folder served over HTTP on 127.0.0.1, which `PROCEXEC_FETCH_ALLOW` allows for the
    test (`tests.http_files`)."""
    from tests.http_files import FileServer

    monkeypatch.setenv("PROCEXEC_FETCH_ALLOW", "127.0.0.1")
    folder = tmp_path / "served"
    folder.mkdir()
    with FileServer(folder) as server:
        yield server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Schemathesis's items (one per operation of `/openapi.json`) all share their function's
    node id: give each its operation (`…[GET /healthz]`), as pytest's own parameters do, so that
    pytest-xdist, which tells items apart by node id, runs every one and not the first alone."""
    for item in items:
        suffix = item.name[len(item.originalname) :] if isinstance(item, pytest.Function) else ""
        if suffix.startswith("[") and not item.nodeid.endswith(suffix):
            # pytest 9 keeps a node's id as a structured `_id` (schemathesis sets `_nodeid`)
            if hasattr(item, "_id"):
                item._id = type(item._id).parse(item.nodeid + suffix)
            else:
                item._nodeid = item.nodeid + suffix
