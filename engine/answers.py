"""How large one API answer may grow (`Settings.max_answer_bytes`), counted as it is read.

The API reads under `answer_limit(limit)`. Inside it, the stores count each document of a
page as they fetch it (`gathered`), and stop with `AnswerTooLarge` once the page passes the
limit: a page of 10,000 documents of 300 KB is refused after about a hundred of them, not read
whole first. A stored document larger than the limit alone is refused before it is parsed.
The answer built from what was read (JSON, CSV, XML; `_distinct` values, `_fieldinfo`
buckets, `_aggregate` results; one execution) is held to the same limit (`fits`), so that
no format makes a larger answer than the one counted.

The engine's own reads (a worker, the beat) happen outside any `answer_limit`: nothing limits
them here.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from procexec.engine.errors import BadRequest

#: the default of `Settings.max_answer_bytes`
DEFAULT_MAX_ANSWER_BYTES = 32 * 1024 * 1024


class AnswerTooLarge(BadRequest):
    """An answer (or one document of it) would pass `Settings.max_answer_bytes`: a 400 that
    names the limit and how to ask for less."""

    def __init__(self, limit: int) -> None:
        # here, not at the top: every engine module imports `errors`, settings import them
        from procexec.engine.settings import Settings

        variable = Settings.env_name("max_answer_bytes")
        super().__init__(
            f"answer: larger than {limit} bytes ({variable}); ask for fewer documents with "
            "_limit (and the next ones with _skip), or for fewer fields with _project"
        )
        self.limit = limit


class AnswerBudget:
    """The bytes one answer may still take."""

    __slots__ = ("left", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def take(self, size: int) -> None:
        """Count `size` more bytes; `AnswerTooLarge` once past the limit."""
        self.left -= size
        if self.left < 0:
            raise AnswerTooLarge(self.limit)

    def fits(self, size: int) -> None:
        """`AnswerTooLarge` when `size` bytes alone pass the limit (nothing is counted)."""
        if size > self.limit:
            raise AnswerTooLarge(self.limit)


_budget: ContextVar[AnswerBudget | None] = ContextVar("procexec_answer_budget", default=None)


@contextlib.contextmanager
def answer_limit(limit: int | None) -> Iterator[AnswerBudget | None]:
    """The reads and answers of this block, held to `limit` bytes (None: no limit)."""
    budget = AnswerBudget(limit) if limit is not None and limit > 0 else None
    token = _budget.set(budget)
    try:
        yield budget
    finally:
        _budget.reset(token)


def current() -> AnswerBudget | None:
    """The budget of the answer being read or built; None outside `answer_limit`."""
    return _budget.get()


def fits(size: int) -> None:
    """`AnswerTooLarge` when `size` bytes (a whole answer, one stored document) pass the
    current limit; nothing outside `answer_limit`."""
    budget = _budget.get()
    if budget is not None:
        budget.fits(size)


def limit() -> int | None:
    """The current limit in bytes; None outside `answer_limit`."""
    budget = _budget.get()
    return None if budget is None else budget.limit


def gathered(rows: Iterable[bytes], shape: Callable[[bytes], bytes] | None = None) -> list[bytes]:
    """The documents of a page (stored JSON), as `shape` makes each (a projection) when given,
    counted against the current budget as they come: each stored document must fit alone
    before it is shaped, and the page (its documents and a separating byte each) in all.
    Stops at the first one past the limit, without reading further."""
    budget = _budget.get()
    if budget is None:
        return list(rows) if shape is None else [shape(row) for row in rows]
    found: list[bytes] = []
    for row in rows:
        budget.fits(len(row))
        item = row if shape is None else shape(row)
        budget.take(len(item) + 1)
        found.append(item)
    return found


def _identity(value: Any) -> Any:
    """What makes two values one, as `engine.query.sorted_distinct` sees them."""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return (type(value) is bool, value)


def at_most(values: Iterable[Any], most: int, refuse: Callable[[], Exception]) -> Iterator[Any]:
    """`values` as they come, stopped with `refuse()` once more than `most` distinct ones (null
    aside) have come: a `_distinct` over millions of log lines is refused at its 10,001st
    value, not once all of them are gathered."""
    seen: set[Any] = set()
    for value in values:
        if value is not None and len(seen) <= most:
            seen.add(_identity(value))
            if len(seen) > most:
                raise refuse()
        yield value
