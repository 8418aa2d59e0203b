"""Shared test setup: the project's packages import from the work tree, installed or not."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store file of `tests.volume.EXECUTIONS` executions, written once for the engine's and
    the API's read-limit tests: each copies it before opening it."""
    from tests.volume import write_store  # here: the work tree is on sys.path by now

    return write_store(tmp_path_factory.mktemp("volume") / "procexec.db")
