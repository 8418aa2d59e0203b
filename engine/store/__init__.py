"""Execution stores, chosen by URL: `sqlite:///path` (embedded) or `mongodb://…`."""

from __future__ import annotations

from pathlib import Path

from procexec.engine.store.base import ExecutionStore, Observation, TokenRecord, Update

__all__ = [
    "ExecutionStore",
    "Observation",
    "TokenRecord",
    "Update",
    "open_store",
    "sqlite_path",
    "store_exists",
]


def sqlite_path(url: str) -> str | None:
    """The file of a `sqlite://` URL (None for another kind of store)."""
    if not url.startswith("sqlite://"):
        return None
    path = url.removeprefix("sqlite://")
    # sqlite:///relative/file and sqlite:////absolute/file, as SQLAlchemy writes them
    return path[1:] if path.startswith("/") else path


def open_store(url: str) -> ExecutionStore:
    """Open the store that `url` names, making it if it is not there yet."""
    path = sqlite_path(url)
    if path is not None:
        from procexec.engine.store.sqlite import SQLiteStore

        return SQLiteStore(path)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from procexec.engine.store.mongo import MongoStore

        return MongoStore(url)
    raise ValueError(f"unsupported store URL {url!r}: use sqlite:///… or mongodb://…")


def store_exists(url: str) -> bool:
    """Whether the store that `url` names is there already (its file; its database)."""
    path = sqlite_path(url)
    if path is not None:
        return path == ":memory:" or Path(path).is_file()
    from procexec.engine.store.mongo import database_exists

    return database_exists(url)
