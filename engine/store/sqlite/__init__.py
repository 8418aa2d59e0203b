"""The embedded store: one SQLite file, WAL, the document as JSON with indexed generated columns.

- `store`: `SQLiteStore` (connections, documents, tokens, series, checkpoints, processes)
- `schema`: the tables, the full-text index, the counters and the triggers that keep them;
  stores made by an earlier version brought up to date
- `compiler`: filters to SQL (WHERE, ORDER BY)
- `search`: `_search` as an FTS5 MATCH
- `pages`: the list call: pages, totals from the counters, deep skips
- `fields`: `_distinct` and `_fieldinfo`
- `aggregate`: `_aggregate`, a pipeline as one SQL statement
- `deadlines`: statements bounded in time (the API's read limit, the event loop's budget)
- `retention`: finished runs past their time deleted in batches (`purge`)
- `tokens`: the API tokens' table, and the columns added to it since its first version
"""

from __future__ import annotations

from procexec.engine.store.sqlite.schema import COLUMNS
from procexec.engine.store.sqlite.store import SQLiteStore

__all__ = ["COLUMNS", "SQLiteStore"]
