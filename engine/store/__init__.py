"""Execution stores, chosen by URL: `sqlite:///path` (embedded) or `mongodb://…`."""

from __future__ import annotations

from pathlib import Path

from procexec.engine.redact import masked_url
from procexec.engine.store.base import (
    ExecutionStore,
    IndexState,
    Observation,
    StoreReport,
    TokenRecord,
    Update,
)

__all__ = [
    "ExecutionStore",
    "IndexState",
    "Observation",
    "StoreReport",
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


def _unsupported(url: str) -> ValueError:
    return ValueError(f"unsupported store URL {masked_url(url)!r}: use sqlite:///… or mongodb://…")


def _is_mongodb(url: str) -> bool:
    return url.startswith(("mongodb://", "mongodb+srv://"))


def open_store(url: str, *, prepare: bool = True) -> ExecutionStore:
    """Open the store that `url` names, making it (its file, tables, indexes) if it is not
    there yet; without `prepare`, as it is, making and changing nothing (`check` reports)."""
    path = sqlite_path(url)
    if path is not None:
        from procexec.engine.store.sqlite import SQLiteStore

        return SQLiteStore(path, prepare=prepare)
    if _is_mongodb(url):
        from procexec.engine.store.mongo import MongoStore

        return MongoStore(url, prepare=prepare)
    raise _unsupported(url)


def store_exists(url: str, timeout: float = 5.0) -> bool:
    """Whether the store that `url` names is there already (its file; its database, asked of
    the server within `timeout` seconds)."""
    path = sqlite_path(url)
    if path is not None:
        return path == ":memory:" or Path(path).is_file()
    if not _is_mongodb(url):
        raise _unsupported(url)
    from procexec.engine.store.mongo import database_exists

    return database_exists(url, timeout)
