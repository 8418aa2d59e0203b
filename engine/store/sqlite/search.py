"""`_search` on SQLite: a search (`engine.search`) as an FTS5 MATCH on the full-text index
(`executions_fts`, made and kept by `schema`), whole sub-searches at once, restricted to the
query's environment when others exist."""

from __future__ import annotations

import sqlite3
from typing import Any

from procexec.engine.query import Query
from procexec.engine.search import AllOf, AnyOf, NoneOf, SearchNode, Term

FTS_SOURCE = "SELECT rowid FROM executions_fts WHERE executions_fts MATCH ?"
#: the FTS columns a search looks through (`env` only restricts)
_SEARCHED = "{id name message reason log}"


def _match(node: SearchNode, environment: str | None = None) -> str | None:
    """The FTS5 MATCH expression of a search, restricted to an environment when given."""
    query = _fts(node)
    if query is None:
        return None
    match = f"{_SEARCHED} : ({query})"
    if environment is not None:
        match += f' AND env : "e{environment.encode().hex()}"'
    return match


def _fts(node: SearchNode) -> str | None:
    """The FTS5 query of a search, or None when FTS5 cannot say it alone (a lone NOT)."""
    if isinstance(node, Term):
        return '"' + " ".join(node.words) + '"'
    if isinstance(node, AnyOf):
        items = [_fts(item) for item in node.items]
        if any(item is None for item in items):
            return None
        return "(" + " OR ".join(f"({item})" for item in items) + ")"
    if isinstance(node, AllOf):
        positive = [_fts(item) for item in node.items if not isinstance(item, NoneOf)]
        negative = [_fts(item.item) for item in node.items if isinstance(item, NoneOf)]
        if not positive or any(item is None for item in (*positive, *negative)):
            return None
        query = "(" + " AND ".join(f"({item})" for item in positive) + ")"
        for item in negative:
            query = f"({query} NOT ({item}))"
        return query
    return None


def search_sql(node: SearchNode, params: list[Any]) -> str:
    """A WHERE clause for a search: whole sub-searches go to the FTS index as one MATCH."""
    query = _match(node)
    if query is not None:
        params.append(query)
        return f"executions.rowid IN ({FTS_SOURCE})"
    if isinstance(node, NoneOf):
        return f"NOT ({search_sql(node.item, params)})"
    joiner = " AND " if isinstance(node, AllOf) else " OR "
    assert isinstance(node, AllOf | AnyOf)
    return "(" + joiner.join(search_sql(item, params) for item in node.items) + ")"


def search_match(conn: sqlite3.Connection, query: Query) -> str | None:
    """The FTS5 query of a list query's search, restricted to its environment when others
    exist; None without a search, or when the index cannot answer it alone (a lone NOT)."""
    if query.search is None:
        return None
    # Restricting the index to an environment costs a walk through that environment's token;
    # when the environment holds every execution (the common case) there is nothing to restrict.
    here, everywhere = conn.execute(
        "SELECT coalesce(sum(n) FILTER (WHERE environment = ?), 0), coalesce(sum(n), 0) "
        "FROM execution_totals",
        [query.environment],
    ).fetchone()
    return _match(query.search, None if here == everywhere else query.environment)
