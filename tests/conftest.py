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


#: the files that take longest, started first so that two xdist processes end together
#: (`make test` turns xdist's reordering by test count off); the others follow in their order
SLOW_FIRST = (
    "tests/api/test_api_fuzz.py",
    "tests/scheduling/test_beat.py",
    "tests/docs/test_docs.py",
    "tests/installed/test_scale_out.py",
    "tests/installed/test_installed.py",
    "tests/api/test_dashboard_browser.py",
    "tests/integration/test_client_cli.py",
    "tests/reliability/test_faults.py",
    "tests/integration/test_secrets.py",
    "tests/integration/test_one_line_errors.py",
    "tests/integration/test_end_to_end.py",
    "tests/reliability/test_limits.py",
)


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
    rank = {path: number for number, path in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))
