"""The SQLite store down (its folder renamed or removed): every call raises StoreUnavailable,
nothing is half-written, and a missing folder is not silently recreated.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from procexec.engine.errors import StoreUnavailable
from procexec.engine.housekeeping import Housekeeper
from procexec.engine.process import ProcessRegistry
from procexec.engine.store.sqlite import SQLiteStore
from procexec.engine.trigger_service import TriggerService
from procexec.examples.demo import DEMO
from tests.engine.runs import ENV, Broker, cancel_execution, count_executions


def test_a_store_whose_folder_is_gone_raises_store_unavailable(tmp_path: Path) -> None:
    folder = tmp_path / "volume"
    store = SQLiteStore(folder / "procexec.db")
    broker = Broker()
    triggers = TriggerService(store, ProcessRegistry([DEMO]), broker)
    kept = triggers.trigger("DEMO", run_as="alice", environment=ENV)
    store.close()  # this thread's connection; the next call opens a new one
    folder.rename(tmp_path / "volume.unmounted")  # the volume goes away
    try:
        with pytest.raises(StoreUnavailable, match="unable to open database file"):
            triggers.trigger("DEMO", run_as="alice", environment=ENV)
        with pytest.raises(StoreUnavailable, match="SQLite store"):
            store.get(kept["_id"])
        with pytest.raises(StoreUnavailable):
            cancel_execution(store, kept["_id"], user="carol")
        keeper = Housekeeper(
            store, ProcessRegistry([DEMO]), triggers, lost_timeout=5, redispatch_after=5
        )
        with pytest.raises(StoreUnavailable):
            keeper.run_once()
        assert broker.calls == [(kept["_id"], 0.0)]  # nothing dispatched for the refused one
    finally:
        store.close()
        (tmp_path / "volume.unmounted").rename(folder)
    assert count_executions(folder / "procexec.db") == 1  # nothing half-written
    again = SQLiteStore(folder / "procexec.db")
    try:
        assert again.get(kept["_id"]) == kept
    finally:
        again.close()


def test_a_removed_store_folder_is_not_silently_recreated(tmp_path: Path) -> None:
    """Removed for good (not renamed): a new connection fails instead of starting empty."""
    folder = tmp_path / "volume"
    store = SQLiteStore(folder / "procexec.db")
    store.close()
    shutil.rmtree(folder)
    try:
        with pytest.raises(StoreUnavailable):
            store.get("anything")
        assert not folder.exists()
    finally:
        store.close()
