"""Execution stores, chosen by URL: `sqlite:///path` (embedded) or `mongodb://…`."""

from __future__ import annotations

from procexec.engine.store.base import ExecutionStore, Observation, TokenRecord, Update

__all__ = ["ExecutionStore", "Observation", "TokenRecord", "Update", "open_store"]


def open_store(url: str) -> ExecutionStore:
    """Open the store that `url` names."""
    if url.startswith("sqlite://"):
        from procexec.engine.store.sqlite import SQLiteStore

        path = url.removeprefix("sqlite://")
        # sqlite:///relative/file and sqlite:////absolute/file, as SQLAlchemy writes them
        return SQLiteStore(path[1:] if path.startswith("/") else path)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from procexec.engine.store.mongo import MongoStore

        return MongoStore(url)
    raise ValueError(f"unsupported store URL {url!r}: use sqlite:///… or mongodb://…")
